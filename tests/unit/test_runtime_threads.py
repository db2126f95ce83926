"""The runtime's torch threads: the CPUs its cgroup allows or its container requests (or its
cores) less one for the event loop, all of them for a prefill (``kubeforge_runtimes.threads``),
and where its cgroup's quota is (``kubeforge_pipelines.cgroups``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeforge_pipelines.cgroups import CpuCgroup, cpu_cgroup, least_quota, quota_of, usable_cpus
from kubeforge_runtimes.threads import (
    cpu_budget,
    intra_op_threads,
    physical_cores,
    prefill_count,
    requested_cpus,
)

# /proc/self/mountinfo's cgroup lines as each kind of machine shows them (the tmpfs and other
# mounts around them are left in: they are skipped)
HYBRID_HOST = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
POD = "/kubepods/burstable/pod1b2c/0a1b2c3d"
# runc on a v1 node: the host's cgroup namespace, the container's own cgroup bind-mounted
V1_CONTAINER = f"""\
612 600 0:29 {POD} /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct
613 600 0:32 {POD} /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
"""
V2_CONTAINER = "700 690 0:27 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw,nsdelegate\n"
V2_HOST = "35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


V2_NO_NAMESPACE = f"700 690 0:27 {POD} /sys/fs/cgroup ro - cgroup2 cgroup rw\n"
SPACED = "9 1 0:9 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n"  # mountinfo's \\040: a space
SERVICE = "/system.slice/kubelet.service"


@pytest.mark.parametrize(
    ("proc_cgroup", "mountinfo", "found"),
    [
        # a process in a cgroup of its own on a hybrid (v1) machine: under the cpu mount
        ("4:cpu:/kf/t1\n3:cpuacct:/\n0::/\n", HYBRID_HOST, ("/sys/fs/cgroup/cpu/kf/t1", 1)),
        ("4:cpu:/\n0::/\n", HYBRID_HOST, ("/sys/fs/cgroup/cpu", 1)),
        # a v1 container: /proc/self/cgroup names the host's path, the mount shows it at its point
        (f"5:cpu,cpuacct:{POD}\n4:memory:{POD}\n", V1_CONTAINER, ("/sys/fs/cgroup/cpu,cpuacct", 1)),
        # a v2 container in its own cgroup namespace: its cgroup is the mount's root
        ("0::/\n", V2_CONTAINER, ("/sys/fs/cgroup", 2)),
        # a v2 service on a host
        (f"0::{SERVICE}\n", V2_HOST, (f"/sys/fs/cgroup{SERVICE}", 2)),
        # a v2 container without a namespace of its own: the host's path, the mount its root
        (f"0::{POD}\n", V2_NO_NAMESPACE, ("/sys/fs/cgroup", 2)),
        ("0::/a\n", SPACED, ("/mnt/my cgroups/a", 2)),
        ("0::/\n", "22 1 0:5 / /proc rw - proc proc rw\n", None),  # no cgroup mounted
        ("", HYBRID_HOST, None),  # no membership to go by
    ],
)
def test_the_cpu_cgroup_is_found_from_the_membership_and_the_mounts(
    proc_cgroup: str, mountinfo: str, found: tuple[str, int] | None
) -> None:
    got = cpu_cgroup(proc_cgroup, mountinfo)
    assert (None if got is None else (str(got[0]), got[1])) == found


@pytest.mark.parametrize(
    ("version", "files", "cpus"),
    [
        (2, {"cpu.max": "max 100000\n"}, None),
        (2, {"cpu.max": "200000 100000\n"}, 2.0),
        (2, {"cpu.max": "150000 100000"}, 1.5),
        (2, {"cpu.max": "50000 100000"}, 0.5),
        (2, {"cpu.max": "garbage"}, None),
        (2, {}, None),  # not there (no CPU controller in this cgroup)
        (1, {"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n"}, None),
        (1, {"cpu.cfs_quota_us": "150000\n", "cpu.cfs_period_us": "100000\n"}, 1.5),
        (1, {"cpu.cfs_quota_us": "50000\n", "cpu.cfs_period_us": "200000\n"}, 0.25),
        (1, {"cpu.cfs_quota_us": "150000\n"}, None),  # no period to divide by
    ],
)
def test_the_cgroup_quota_in_cpus(
    tmp_path: Path, version: int, files: dict[str, str], cpus: float | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert quota_of(tmp_path, version) == cpus


def test_a_parent_cgroup_s_quota_applies_below_it(tmp_path: Path) -> None:
    leaf = tmp_path / "init" / "sub"
    leaf.mkdir(parents=True)
    (tmp_path / "cpu.max").write_text("200000 100000\n")  # the container's own limit
    (tmp_path / "init" / "cpu.max").write_text("max 100000\n")
    (leaf / "cpu.max").write_text("max 100000\n")
    assert least_quota(CpuCgroup(leaf, 2, tmp_path)) == 2.0
    (tmp_path / "init" / "cpu.max").write_text("50000 100000\n")  # a tighter one between
    assert least_quota(CpuCgroup(leaf, 2, tmp_path)) == 0.5
    assert least_quota(CpuCgroup(tmp_path, 2, tmp_path)) == 2.0  # the mount point: the top


def test_the_request_in_millicores_and_the_budget_the_smaller_of_quota_and_request() -> None:
    assert requested_cpus("1500") == 1.5
    assert requested_cpus("200") == 0.2
    assert requested_cpus("0") is None  # the downward API's value for no request
    assert requested_cpus(None) is None
    assert requested_cpus("2Gi") is None  # not millicores: ignored, with a warning
    assert cpu_budget(None, None) is None
    assert cpu_budget(2.0, None) == 2.0
    assert cpu_budget(None, 1.5) == 1.5
    assert cpu_budget(4.0, 2.0) == 2.0  # a 2-CPU request under a 4-CPU limit: 2
    assert cpu_budget(1.0, 2.0) == 1.0


def test_one_cpu_is_left_to_the_event_loop_and_the_quota_bounds_the_cores() -> None:
    assert intra_op_threads(2, None) == 1
    assert intra_op_threads(64, None) == 63
    assert intra_op_threads(64, 2.0) == 1  # a 2-CPU predictor on a big node: not 63 threads
    assert intra_op_threads(64, 4.5) == 4  # a fraction is rounded up
    assert intra_op_threads(4, 16.0) == 3  # no more than the cores it may run on
    assert intra_op_threads(1, None) == 1
    assert intra_op_threads(8, 0.5) == 1


def test_a_prefill_may_use_every_cpu_the_budget_allows() -> None:
    assert usable_cpus(2, None) == 2
    assert usable_cpus(64, 2.0) == 2
    assert usable_cpus(64, 4.5) == 5  # a fraction's burst fits in the period (measured: faster)
    assert usable_cpus(64, 1.5) == 2
    assert usable_cpus(4, 16.0) == 4
    assert usable_cpus(8, 0.5) == 1
    assert usable_cpus(8, 0.2) == 1


def test_with_hyperthreads_no_more_threads_than_physical_cores() -> None:
    # a Guaranteed 4-CPU pod pinned to two cores' four threads: a thread per core, and the
    # event loop takes a core's second thread rather than a whole core
    assert intra_op_threads(4, 4.0, cores=2) == 2
    assert prefill_count(4, 4.0, cores=2) == 2
    # a 2-vCPU VM that is one core's two threads
    assert intra_op_threads(2, None, cores=1) == 1
    assert prefill_count(2, None, cores=1) == 1
    # a budget below the cores decides, as without hyperthreads
    assert intra_op_threads(64, 2.0, cores=32) == 1
    assert prefill_count(64, 1.5, cores=32) == 2
    # without hyperthreads (cores == CPUs) nothing changes
    assert intra_op_threads(2, None, cores=2) == intra_op_threads(2, None) == 1
    assert prefill_count(2, None, cores=2) == usable_cpus(2, None) == 2


def _topology(root: Path, siblings: dict[int, str]) -> Path:
    for cpu, listed in siblings.items():
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(listed + "\n")
    return root


def test_hyperthreads_of_one_core_count_as_one(tmp_path: Path) -> None:
    # two cores of two hyperthreads each, numbered as Intel numbers them (0 and 2 share a core)
    sysfs = _topology(tmp_path, {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})
    assert physical_cores({0, 1, 2, 3}, sysfs) == 2
    assert physical_cores({0, 2}, sysfs) == 1  # a cpuset of one core's two threads
    assert physical_cores({0, 1}, sysfs) == 2
    ranged = _topology(tmp_path / "ranged", {0: "0-1", 1: "0-1", 2: "2-3", 3: "2-3"})
    assert physical_cores({0, 1, 2}, ranged) == 2


def test_a_cpu_without_topology_counts_as_a_core(tmp_path: Path) -> None:
    sysfs = _topology(tmp_path, {0: "0,1", 1: "0,1"})
    assert physical_cores({0, 1, 5, 6}, sysfs) == 3
    assert physical_cores({0, 1}, tmp_path / "none") == 2
    (tmp_path / "cpu0" / "topology" / "thread_siblings_list").write_text("garbled\n")
    assert physical_cores({0}, sysfs) == 1
