"""The CPU quota of this process's own cgroup, on cgroup v2 (``cpu.max``) or v1
(``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``), in a container or not, and torch's threads
fitted to it for training (``fit_torch_threads``; the runtime sizes its own:
``kubeforge_runtimes.threads``).

Where the file is: the process's cgroup (``/proc/self/cgroup``) under the mount of its
hierarchy (``/proc/self/mountinfo``). A container usually sees its own cgroup as the mount's
root (``/sys/fs/cgroup/cpu.max``); but on a v1 node, and in a v2 container without its own
cgroup namespace, ``/proc/self/cgroup`` names the host's path (``/kubepods/burstable/pod…/…``)
and the mount shows that path's directory at the mount point, so the path is taken relative to
the mount's root. Outside a container the file at the mount point is the root cgroup's, which
never has a quota: reading only ``/sys/fs/cgroup/cpu.max`` saw no quota on a v1 node (the real
node of ``hack/kfcluster`` is one: Kubernetes 1.35 runs there with ``failCgroupV1: false``).

Why written here: no well-kept Python library reads it (``os.process_cpu_count`` and psutil count
cores; Go's automaxprocs and the JDK do this resolution for their own runtimes).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

PROC_CGROUP = Path("/proc/self/cgroup")
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class Mount:
    """A cgroup hierarchy's mount: the path of the hierarchy it shows (``root``), where
    (``point``), its version, and for v1 its controllers."""

    root: str
    point: str
    version: int
    controllers: frozenset[str]


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (a space is ``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def cgroup_mounts(mountinfo: str) -> list[Mount]:
    """The cgroup mounts in ``mountinfo`` (``/proc/self/mountinfo``'s text): fields 4 and 5 are
    the root and the mount point; after ``-``, the file system's type, its source and its
    options (a v1 hierarchy's controllers among them)."""
    mounts = []
    for line in mountinfo.splitlines():
        fields, sep, rest = line.partition(" - ")
        before, after = fields.split(), rest.split()
        if not sep or len(before) < 5 or len(after) < 3 or after[0] not in ("cgroup", "cgroup2"):
            continue
        version = 2 if after[0] == "cgroup2" else 1
        controllers = frozenset(after[2].split(",")) if version == 1 else frozenset()
        mounts.append(Mount(_unescape(before[3]), _unescape(before[4]), version, controllers))
    return mounts


def memberships(proc_cgroup: str) -> dict[str, str]:
    """The process's cgroup path by controller (``""``: the v2 hierarchy) from
    ``/proc/self/cgroup``'s lines, ``id:controllers:path``."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            paths[controller] = parts[2]
    return paths


def _under(mount: Mount, path: str) -> Path:
    """Where the cgroup ``path`` (as ``/proc/self/cgroup`` names it) is under ``mount``; the
    mount point itself when the mount shows a hierarchy's part the path is not in (a container
    whose cgroup namespace hides the host's path shows its own cgroup as ``/``)."""
    root = mount.root.rstrip("/")
    if path == mount.root or path.startswith(root + "/"):
        return Path(mount.point) / path[len(root) :].lstrip("/")
    return Path(mount.point)


class CpuCgroup(NamedTuple):
    """Where this process's CPU controller is: its cgroup's directory, the cgroup version, and
    the mount point (the top of what it can see of the hierarchy)."""

    path: Path
    version: int
    mount: Path


def cpu_cgroup(proc_cgroup: str, mountinfo: str) -> CpuCgroup | None:
    """This process's CPU cgroup: v1's ``cpu`` hierarchy if one is mounted (a hybrid machine's
    v2 mount has no CPU controller), else the v2 hierarchy; None when neither is mounted."""
    paths = memberships(proc_cgroup)
    mounts = cgroup_mounts(mountinfo)
    for mount in mounts:
        if mount.version == 1 and "cpu" in mount.controllers and "cpu" in paths:
            return CpuCgroup(_under(mount, paths["cpu"]), 1, Path(mount.point))
    for mount in mounts:
        if mount.version == 2 and "" in paths:
            return CpuCgroup(_under(mount, paths[""]), 2, Path(mount.point))
    return None


def quota_of(directory: Path, version: int) -> float | None:
    """The CPUs the cgroup at ``directory`` may use per period (None: no limit, or unreadable)."""
    try:
        if version == 2:
            quota, _, period = (directory / "cpu.max").read_text().strip().partition(" ")
        else:
            quota = (directory / "cpu.cfs_quota_us").read_text().strip()
            period = (directory / "cpu.cfs_period_us").read_text().strip()
        cpus = int(quota) / int(period or "100000")
    except (OSError, ValueError):  # "max" (v2) is no limit; so is -1 (v1), below
        return None
    return cpus if cpus > 0 else None


def least_quota(found: CpuCgroup) -> float | None:
    """The least quota of the cgroup and of its parents up to the mount point: a parent's
    applies to everything below it (a container whose processes were moved into a child
    cgroup, a service in a slice with a quota)."""
    quotas = []
    path = found.path
    while True:
        quota = quota_of(path, found.version)
        if quota is not None:
            quotas.append(quota)
        if path == found.mount or found.mount not in path.parents:
            return min(quotas, default=None)
        path = path.parent


def cpu_quota() -> float | None:
    """This process's CPU quota in CPUs (1.5 for ``limits.cpu: 1500m``), or None."""
    try:
        found = cpu_cgroup(PROC_CGROUP.read_text(), MOUNTINFO.read_text())
    except OSError:
        return None
    return least_quota(found) if found else None


def usable_cpus(cores: int, quota: float | None) -> int:
    """The CPUs a process may use: ``cores`` usable cores under a quota of ``quota`` CPUs (a
    fraction rounded up: a 1.5-CPU quota lets two threads run 75 ms of each 100 ms period, and
    a prefill on both finished sooner than on one under a real quota of 1.5 CPUs: GPT-2 small's
    shape, first token 87 against 105 ms, docs/benchmarks.md)."""
    return min(cores, math.ceil(quota)) if quota else cores


def fit_torch_threads() -> int | None:
    """Lower torch's threads to the CPUs this process's quota allows, for work that computes on
    every thread (training, evaluation). torch takes one thread per core of the node, not of
    the container: a training container limited to 2 CPUs on a 64-core node would run 32 or
    more threads in its quota, throttled most of each period, each product waiting for its
    slowest thread (under a real 1-CPU quota here a training step took 198-203 ms on torch's
    two threads, 161-166 ms on one: ``bench/quota_threads.py``). Left alone when ``OMP_NUM_THREADS``
    is set or there is no quota; never raised. Returns the count set, or None."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch

    quota = cpu_quota()
    fitted = usable_cpus(len(os.sched_getaffinity(0)), quota)
    if quota is None or fitted >= torch.get_num_threads():
        return None
    log.info("torch's threads %d -> %d: a CPU quota of %g", torch.get_num_threads(), fitted, quota)
    torch.set_num_threads(fitted)
    return fitted
