"""What the real node changes on the host, saved and undone: sysctls (the kubelet sets some with no
way to opt out, the bridge plugin turns on forwarding), cgroups, mounts, network namespaces and
iptables chains. ``down`` calls each undo; each is safe when there is nothing to undo."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from kfcluster.binaries import bin_dir
from kfcluster.settings import NODE, STATE, log

SYSCTL_SAVE = STATE / "node-sysctls.json"  # outlives the node's state until it is restored
CGROUP_V1 = Path("/sys/fs/cgroup")
NETNS = Path("/var/run/netns")

# set by the kubelet (no way to opt out), the bridge plugin and kube-proxy; restored by down
SYSCTLS = [
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.ipv4.conf.all.route_localnet",
]


def save_sysctls() -> None:
    if SYSCTL_SAVE.exists():  # a node that was never stopped: the saved values are the host's
        return
    values = {}
    for key in SYSCTLS:
        path = Path("/proc/sys") / key.replace(".", "/")
        if path.exists():
            values[key] = path.read_text().strip()
    STATE.mkdir(parents=True, exist_ok=True)
    SYSCTL_SAVE.write_text(json.dumps(values, indent=2))


def make_cgroups() -> None:
    """The kubelet's cgroup root, /kubeforge in every v1 hierarchy (cpuset needs its CPUs and
    memory nodes copied from the parent before anything can join it)."""
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / NODE.cgroup_root
        root.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (root / knob).exists() and not (root / knob).read_text().strip():
                (root / knob).write_text((hierarchy / knob).read_text())


def cgroup_hierarchies() -> list[Path]:
    if not CGROUP_V1.is_dir():
        return []
    return [
        p for p in CGROUP_V1.iterdir() if p.is_dir() and not p.is_symlink() and p.name != "unified"
    ]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def unmount_all(under: Path) -> list[str]:
    """Unmount everything mounted under ``under`` (deepest first); return what stayed."""
    prefix = str(under.resolve()) + "/"

    def mounted() -> list[str]:
        points = [
            line.split()[4].replace("\\040", " ")
            for line in _read(Path("/proc/self/mountinfo")).splitlines()
        ]
        return sorted({p for p in points if (p + "/").startswith(prefix)}, key=len, reverse=True)

    for point in mounted():
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    return mounted()


def remove_netns() -> None:
    """The pod network namespaces containerd made (cni-<uuid> under /var/run/netns)."""
    if not NETNS.is_dir():
        return
    for ns in NETNS.glob("cni-*"):
        subprocess.run(["umount", "--lazy", str(ns)], capture_output=True)
        ns.unlink(missing_ok=True)


def remove_cgroups() -> None:
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / NODE.cgroup_root
        if not root.is_dir():
            continue
        for d in sorted(
            (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def remove_iptables_chains() -> None:
    """kube-proxy's, the kubelet's and the CNI plugins' chains: their rules in the built-in
    chains, then the chains themselves (iptables-restore of each table without them)."""
    kube_proxy = bin_dir() / "kube-proxy"
    if kube_proxy.exists():
        subprocess.run([str(kube_proxy), "--cleanup"], capture_output=True, timeout=60)
    if shutil.which("iptables-save") is None:
        return  # no iptables on this machine: nothing of ours can be in it
    for table in ("filter", "nat", "mangle"):
        saved = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
        if saved.returncode != 0:
            continue
        lines = saved.stdout.splitlines()
        ours = [line for line in lines if _is_ours(line)]
        if not ours:
            continue
        kept = "\n".join(line for line in lines if not _is_ours(line)) + "\n"
        subprocess.run(
            ["iptables-restore", "-T", table], input=kept, text=True, capture_output=True
        )


def _is_ours(line: str) -> bool:
    words = line.split()
    chains = [w.lstrip(":") for w in words[:1]] + [
        words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-A", "-j", "-g")
    ]
    return any(c.startswith(("KUBE-", "CNI-")) for c in chains)


def restore_sysctls() -> None:
    if not SYSCTL_SAVE.exists():
        return
    for key, value in json.loads(SYSCTL_SAVE.read_text()).items():
        path = Path("/proc/sys") / key.replace(".", "/")
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError as err:
            log(f"could not restore {key}={value}: {err}")
    SYSCTL_SAVE.unlink()


def kill_processes(also: Callable[[], list[int]]) -> None:
    """Every process in the node's cgroups (its pods' containers), and those ``also`` lists (the
    containerd shims), killed until none is left."""
    for _ in range(5):
        pids = {
            int(pid)
            for hierarchy in cgroup_hierarchies()
            for procs in (hierarchy / NODE.cgroup_root).rglob("cgroup.procs")
            for pid in _read(procs).split()
        }
        pids |= set(also())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
