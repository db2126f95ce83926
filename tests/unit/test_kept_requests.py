"""The request bodies the drift service keeps to explain later: each leaves with the last of
its rows, all together stay under their byte budget, and what cannot be kept is not."""

from __future__ import annotations

from kubeforge_runtimes.drift.kept import KEPT_REQUEST_BYTES, KeptRequests


def test_a_body_leaves_with_the_last_of_its_rows() -> None:
    kept = KeptRequests(rows=4)
    kept.add("a", {"instances": [1, 2, 3]}, rows=3)
    kept.add("b", {"instances": [4]}, rows=1)
    assert kept.get("a") == {"instances": [1, 2, 3]}
    kept.add("c", {"instances": [5, 6]}, rows=2)  # two of a's rows leave; one is still there
    assert kept.get("a") is not None
    kept.add("d", {"instances": [7]}, rows=1)  # a's last row leaves
    assert kept.get("a") is None
    assert [k for k in "abcd" if kept.get(k)] == ["b", "c", "d"]


def test_bodies_stay_under_their_byte_budget_oldest_out_first() -> None:
    kept = KeptRequests(rows=1000, max_bytes=250)
    for i in range(5):
        kept.add(f"r{i}", {"instances": [i]}, rows=1, size=100)
    assert kept.bytes <= 250
    assert [kept.get(f"r{i}") is not None for i in range(5)] == [False] * 3 + [True] * 2


def test_what_cannot_be_kept_is_not() -> None:
    kept = KeptRequests(rows=10)
    kept.add("huge", {"instances": ["x"]}, rows=1, size=KEPT_REQUEST_BYTES + 1)
    kept.add("empty", {"instances": []}, rows=0)
    assert (kept.get("huge"), kept.get("empty")) == (None, None)
    kept.add("again", {"v": 1}, rows=1)
    kept.add("again", {"v": 2}, rows=1, size=KEPT_REQUEST_BYTES + 1)  # the newer is too large
    assert kept.get("again") is None  # not the older body under the newer request's id
    assert len(kept) == 0
