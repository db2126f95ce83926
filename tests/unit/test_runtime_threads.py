"""The runtime's torch threads: the CPUs its cgroup allows (or its cores) less one for the event
loop, all of them for a prefill (``kubeforge_runtimes.threads``)."""

from __future__ import annotations

import pytest

from kubeforge_runtimes.threads import intra_op_threads, quota_cpus, whole_cpus


@pytest.mark.parametrize(
    ("cpu_max", "cpus"),
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000", 1.5),
        ("50000 100000", 0.5),
        ("", None),
        (None, None),
        ("garbage", None),
    ],
)
def test_the_cgroup_quota_in_cpus(cpu_max: str | None, cpus: float | None) -> None:
    assert quota_cpus(cpu_max) == cpus


def test_one_cpu_is_left_to_the_event_loop_and_the_quota_bounds_the_cores() -> None:
    assert intra_op_threads(2, None) == 1
    assert intra_op_threads(64, None) == 63
    assert intra_op_threads(64, 2.0) == 1  # a 2-CPU predictor on a big node: not 63 threads
    assert intra_op_threads(64, 4.5) == 4  # a fraction is rounded up
    assert intra_op_threads(4, 16.0) == 3  # no more than the cores it may run on
    assert intra_op_threads(1, None) == 1
    assert intra_op_threads(8, 0.5) == 1


def test_a_prefill_may_use_every_whole_cpu_the_quota_allows() -> None:
    assert whole_cpus(2, None) == 2
    assert whole_cpus(64, 2.0) == 2
    assert whole_cpus(64, 4.5) == 4  # not 5 threads' bursts in a 4.5-CPU quota
    assert whole_cpus(64, 1.5) == 1
    assert whole_cpus(4, 16.0) == 4
    assert whole_cpus(8, 0.5) == 1
