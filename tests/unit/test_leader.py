"""Leader election's decision, as client-go makes it: who may write itself into the Lease."""

from __future__ import annotations

import pytest

from kubeforge_operator.runtime.leader import LeaderElector, LeaseRecord, may_take

HELD = LeaseRecord(holder="replica-a", lease_seconds=15, transitions=3)


def test_a_free_or_released_lease_is_taken_at_once() -> None:
    free = LeaseRecord(holder="", lease_seconds=1, transitions=3)
    assert may_take(free, "7", None, now=100.0, identity="replica-b")


def test_the_holder_renews_its_own_lease() -> None:
    assert may_take(HELD, "7", None, now=100.0, identity="replica-a")


def test_a_held_lease_is_not_taken_while_its_record_changes() -> None:
    # first sight: the duration starts counting on our clock, whatever renewTime says
    assert not may_take(HELD, "7", None, now=100.0, identity="replica-b")
    # renewed since we last looked (new resourceVersion): counting starts again
    assert not may_take(HELD, "8", ("7", 0.0), now=100.0, identity="replica-b")


def test_a_held_lease_is_taken_once_unchanged_for_its_duration_on_our_clock() -> None:
    assert not may_take(HELD, "7", ("7", 100.0), now=114.9, identity="replica-b")
    assert may_take(HELD, "7", ("7", 100.0), now=115.0, identity="replica-b")


def test_timings_must_leave_the_leader_time_to_step_down() -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_seconds"):
        LeaderElector(None, "ns", "lease", "me", lease_seconds=10, renew_deadline=10)  # type: ignore[arg-type]
