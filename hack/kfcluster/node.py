"""The real node: containerd and runc (Debian's), CNI bridge networking, a kubelet and kube-proxy
built from the pinned kubernetes module, and CoreDNS for Service names, beside kwok's simulated
nodes. Containers really run on it.

It is tainted ``kubeforge.io/node=real:NoSchedule`` and labelled ``kubeforge.io/node=real``: only
pods that ask for it land there (the demo and the e2e tests steer their workloads to it through
the platform config); everything else keeps landing on kwok's nodes.

Nothing listens beyond loopback and the pod bridge: the kubelet, kube-proxy's health and metrics
and containerd's streaming server bind 127.0.0.1; CoreDNS and the relay that lets pods reach the
apiserver (which listens on 127.0.0.1 only) bind the bridge's address. ``down`` undoes what the
node changed on the host: it restores the sysctls the kubelet and the bridge set, and removes
iptables chains, the bridge, network namespaces, mounts, cgroups and the node's state.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kfcluster.files import kubeconfig_path
from kfcluster.hostchanges import (
    kill_processes,
    make_cgroups,
    remove_cgroups,
    remove_iptables_chains,
    remove_netns,
    restore_sysctls,
    save_sysctls,
    unmount_all,
)
from kfcluster.images import IMAGES, node_images
from kfcluster.nodeconfig import (
    IMAGE_STORE,
    KUBE_PROXY_HEALTHZ,
    NODE_STATE,
    REAL_NODE_STORAGE_CLASS,
    SOCKET,
    cni_config,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
    local_volume,
)
from kfcluster.ociimport import Member, oci_layout, write_layout
from kfcluster.processes import Proc, tcp_open, wait_for
from kfcluster.settings import (
    APISERVER_PORT,
    NODE,
    ClusterError,
    log,
)
from kubeforge_labs import kit

# what the host must have (Debian package names) and why
HOST_PROGRAMS = {
    "/usr/bin/containerd": "containerd",
    "/usr/bin/ctr": "containerd",
    "/usr/sbin/runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "/usr/sbin/iptables": "iptables",
    "/usr/sbin/conntrack": "conntrack",
    "/usr/bin/socat": "socat",
    "/usr/bin/mmdebstrap": "mmdebstrap",
    "/usr/bin/gcc": "gcc",
}
NODE_PACKAGES = sorted(set(HOST_PROGRAMS.values()) | {"libc6-dev"})


# (name, program): the node's processes in start order; None means the cache's binary of that name
PROCESSES: list[tuple[str, str | None]] = [
    ("containerd", "/usr/bin/containerd"),
    ("apiserver-relay", "/usr/bin/socat"),
    ("coredns", None),
    ("kubelet", None),
    ("kube-proxy", None),
]


def proc(name: str) -> Proc:
    return Proc(name, exe=dict(PROCESSES)[name])


def missing_programs() -> list[str]:
    return [
        f"{path} (Debian package {pkg})"
        for path, pkg in HOST_PROGRAMS.items()
        if not Path(path).exists()
    ]


def wanted() -> bool:
    """Whether ``up`` starts the real node: KUBEFORGE_REAL_NODE=0 turns it off, =1 requires it;
    unset, it starts where the host can run it (root, Linux, the Debian packages installed)."""
    setting = os.environ.get("KUBEFORGE_REAL_NODE", "auto")
    if setting == "0":
        return False
    problems = ([] if os.geteuid() == 0 else ["root (it runs containers)"]) + missing_programs()
    if not problems:
        return True
    if setting == "1":
        raise ClusterError(
            "the real node needs "
            + ", ".join(problems)
            + f"; install with: apt-get install {' '.join(NODE_PACKAGES)}"
        )
    log("no real node (needs " + ", ".join(problems) + "); pods run on kwok's simulated nodes only")
    return False


def is_running() -> bool:
    return proc("kubelet").pid() is not None


# ---------------------------------------------------------------------------------------- start


def up() -> None:
    started = time.monotonic()
    save_sysctls()
    NODE_STATE.mkdir(parents=True, exist_ok=True)
    for sub in ("containerd", "kubelet", "cni/net.d", "cni/ipam", "pod-logs"):
        (NODE_STATE / sub).mkdir(parents=True, exist_ok=True)
    make_cgroups()
    make_bridge()
    refuse_if_another_node_runs()
    IMAGE_STORE.mkdir(parents=True, exist_ok=True)
    unmount_all(IMAGE_STORE)  # a node that was not stopped by `down`
    start_containerd()
    forget_containers()
    import_images()
    start_relay()
    start_coredns()
    start_kubelet()
    start_kube_proxy()
    make_local_volumes()
    log(f"real node {NODE.name} ready in {time.monotonic() - started:.1f}s")


def make_bridge() -> None:
    if subprocess.run(["ip", "link", "show", NODE.bridge], capture_output=True).returncode != 0:
        run(["ip", "link", "add", NODE.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{NODE.gateway}/{NODE.prefix}", "dev", NODE.bridge])
    run(["ip", "link", "set", NODE.bridge, "up"])


def start_containerd() -> None:
    config = NODE_STATE / "containerd" / "config.toml"
    config.write_text(containerd_config())
    conflist = NODE_STATE / "cni" / "net.d" / "10-kubeforge.conflist"
    conflist.write_text(json.dumps(cni_config(), indent=2))
    proc("containerd").start(["--config", str(config)])
    wait_for(
        "containerd",
        lambda: ctr("version", check=False).returncode == 0,
        30,
    )


def another_node() -> int | None:
    """The pid of a containerd that another checkout's node runs on the machine's image store
    (each checkout has its own node state but shares the store)."""
    ours = str(NODE_STATE / "containerd" / "config.toml").encode()
    for pid, cmdline in command_lines():
        if (
            cmdline[0].endswith(b"containerd")
            and b"--config" in cmdline
            and any(a.endswith(b"/node/containerd/config.toml") and a != ours for a in cmdline)
        ):
            return pid
    return None


def command_lines() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, argv) of every process that can be read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0]:
            yield int(entry.name), cmdline


def refuse_if_another_node_runs() -> None:
    pid = another_node()
    if pid is not None:
        raise ClusterError(
            f"another checkout's real node runs on the image store {IMAGE_STORE} (containerd pid "
            f"{pid}): stop it with its own `localcluster.py down` first"
        )


def forget_containers() -> None:
    """Containers an earlier node left in the image store (one `down` did not stop): removed, and
    containerd restarted so that its CRI plugin does not hand their pods to the kubelet."""
    if remove_containers():
        proc("containerd").stop()
        start_containerd()


def remove_containers(timeout: float = 300) -> list[str]:
    """Remove the (stopped) containers and sandboxes containerd holds; the images stay. Returns
    the containers there were."""
    ids = ctr("containers", "ls", "-q", timeout=timeout).stdout.split()
    for cid in ids:
        ctr("tasks", "delete", "--force", cid, check=False, timeout=timeout)
    if ids:
        ctr("containers", "delete", *ids, check=False, timeout=timeout)
    return ids


CTR = ["/usr/bin/ctr", "--address", str(SOCKET), "--namespace", "k8s.io"]


def ctr(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc_ = subprocess.run(
        [*CTR, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc_.returncode != 0:
        raise ClusterError(f"ctr {' '.join(args)} failed: {proc_.stderr.strip()}")
    return proc_


def import_images(paths: list[Path] | None = None) -> None:
    """Import images into the node's containerd, each once per node (images are named by the
    digest of their inputs: one already imported is skipped), unless containerd lost its
    images since or a tag now names another build: under disk pressure the kubelet removes
    images no running pod uses, and an imported image cannot be pulled again."""
    paths = paths if paths is not None else node_images()  # (building drops older builds)
    done = IMAGE_STORE.parent / "node-containerd-imported"
    done.mkdir(parents=True, exist_ok=True)
    for stale in done.iterdir():  # of images the cache no longer holds
        if not (IMAGES / stale.name).exists():
            stale.unlink()
    present = set(_image_digests())
    for path in paths:
        marker = done / path.name
        images = marker.read_text().split() if marker.exists() else []
        if images and present.issuperset(images):
            continue
        t0 = time.monotonic()
        out = import_new_layers(path)
        # "unpacking <ref> (sha256:...)...done" per image imported
        found = re.findall(r"unpacking (\S+) \((sha256:[0-9a-f]+)\)", out)
        marker.write_text("\n".join(f"{ref}@{digest}" for ref, digest in found))
        log(f"imported {path.name} in {time.monotonic() - t0:.1f}s")


def import_new_layers(path: Path, present: list[str] | None = None) -> str:
    """``ctr images import`` of the image ``path`` (``images.write_image``) without the layers
    containerd holds (kfcluster.ociimport) or, in a test, those in ``present``; with every
    layer if containerd refuses that (a blob removed by its garbage collection since it was
    listed). ctr's output."""
    if present is None:
        present = ctr("content", "ls", "--quiet").stdout.split()
    try:
        return _import_layout(oci_layout(path, present)[1])
    except ImportRefusedError as err:
        log(f"importing only {path.name}'s new layers failed ({err}): all of it")
    return _import_layout(oci_layout(path, [])[1])


class ImportRefusedError(ClusterError):
    """``ctr images import`` failed."""


def _import_layout(members: list[Member]) -> str:
    # (its output to files: a pipe it filled while this writes to its stdin would block both)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with subprocess.Popen(
            [*CTR, "images", "import", "-"], stdin=subprocess.PIPE, stdout=out, stderr=err
        ) as importer:
            assert importer.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # ctr stopped reading: its error says why
                write_layout(importer.stdin, members)
        out.seek(0)
        err.seek(0)
        if importer.returncode == 0:
            return out.read().decode()
        raise ImportRefusedError(f"ctr images import: {err.read().decode().strip()}")


def _image_digests() -> list[str]:
    """``ref@digest`` of every image containerd holds (``ctr images ls``: REF TYPE DIGEST ...)."""
    lines = ctr("images", "ls").stdout.splitlines()[1:]
    return [f"{cols[0]}@{cols[2]}" for cols in (line.split() for line in lines) if len(cols) > 2]


def start_relay() -> None:
    """Pods reach the apiserver at the ``kubernetes`` Service (10.96.0.1:443); its endpoint is
    the bridge's address, where this relay passes TCP (TLS untouched) to the apiserver on
    loopback. The apiserver's certificate already names 10.96.0.1 and kubernetes.default.svc."""
    proc("apiserver-relay").start(
        [
            f"TCP-LISTEN:{APISERVER_PORT},bind={NODE.gateway},fork,reuseaddr",
            f"TCP:127.0.0.1:{APISERVER_PORT}",
        ]
    )
    from kfcluster.components import apply_objects  # (components imports this module)

    apply_objects(apiserver_endpoints())


def apiserver_endpoints() -> dict[str, object]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "localcluster.kubeforge.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [NODE.gateway], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": APISERVER_PORT, "protocol": "TCP"}],
    }


def start_coredns() -> None:
    corefile = NODE_STATE / "Corefile"
    corefile.write_text(
        f"""cluster.local:53 {{
    bind {NODE.gateway}
    errors
    kubernetes cluster.local {{
        kubeconfig {kubeconfig_path("coredns")}
        pods insecure
    }}
    cache 5
}}
.:53 {{
    bind {NODE.gateway}
    errors
    forward . /etc/resolv.conf
    cache 30
}}
"""
    )
    proc("coredns").start(["-conf", str(corefile), "-dns.port", "53"])
    wait_for("coredns", lambda: tcp_open(NODE.gateway, 53), 30)


def start_kubelet() -> None:
    config = NODE_STATE / "kubelet" / "config.json"
    config.write_text(json.dumps(kubelet_config(), indent=2))
    proc("kubelet").start(
        [
            f"--config={config}",
            f"--kubeconfig={kubeconfig_path(NODE.user)}",
            f"--root-dir={NODE_STATE / 'kubelet'}",
            f"--cert-dir={NODE_STATE / 'kubelet' / 'pki'}",
            f"--hostname-override={NODE.name}",
            f"--node-ip={NODE.node_ip}",
            "--node-labels=kubeforge.io/node=real,type=real",
            "--v=1",
        ]
    )

    def ready() -> bool:
        from kfcluster.components import kubectl

        out = kubectl(
            "get",
            "node",
            NODE.name,
            "--ignore-not-found",
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        )
        return out.strip() == "True"

    wait_for("kubelet", ready, 90)


def make_local_volumes() -> None:
    """The real node's storage: ``local`` PersistentVolumes of StorageClass ``real-node`` (folders
    under the node's state), as bare-metal clusters offer node-local disks. Unlike the default
    class's hostPath volumes, the kubelet applies a pod's fsGroup to them, so a notebook running
    as its own user can write its home. Statically made (no provisioner): a released volume keeps
    its data until ``recycle_volumes`` empties it and makes it available again."""
    from kfcluster.components import apply_objects  # (components imports this module)

    items: list[dict[str, object]] = [REAL_NODE_STORAGE_CLASS]
    for i in range(NODE.volumes):
        path = NODE_STATE / "volumes" / f"pv-{i:02d}"
        path.mkdir(parents=True, exist_ok=True)
        items.append(local_volume(f"{NODE.name}-pv-{i:02d}", path))
    apply_objects(items)


def recycle_volumes(released_by: str = "", timeout: float = 60) -> list[str]:
    """Make the real node's Released volumes (their claim deleted, with its namespace or alone)
    Available again, emptied: what a provisioner's deleter would do. Run before workloads that
    need volumes (the demo, the e2e tier) and after deleting namespace ``released_by`` (then it
    first waits until the volume controller has released that namespace's volumes); returns the
    names of the volumes recycled."""
    from kfcluster.components import kubectl  # (components imports this module)

    def volumes() -> list[dict[str, Any]]:
        out = kubectl("get", "pv", "-l", "kubeforge.io/node=real", "-o", "json")
        return list(json.loads(out)["items"])

    def released() -> bool:
        return not [
            pv
            for pv in volumes()
            if pv["spec"].get("claimRef", {}).get("namespace") == released_by
            and pv.get("status", {}).get("phase") == "Bound"
        ]

    if released_by:
        kit.wait_for(f"the volumes of namespace {released_by} released", released, timeout, 1)
    recycled = []
    for pv in volumes():
        if pv.get("status", {}).get("phase") != "Released":
            continue
        path = Path(pv["spec"]["local"]["path"])
        if path.is_relative_to(NODE_STATE / "volumes") and path.is_dir():
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        name = pv["metadata"]["name"]
        patch = '[{"op": "remove", "path": "/spec/claimRef"}]'
        kubectl("patch", "pv", name, "--type=json", "-p", patch)
        recycled.append(name)
    if recycled:
        log(f"recycled {len(recycled)} released volume(s) of the real node")
    return recycled


def start_kube_proxy() -> None:
    config = NODE_STATE / "kube-proxy.json"
    config.write_text(json.dumps(kube_proxy_config(kubeconfig_path("system:kube-proxy")), indent=2))
    proc("kube-proxy").start([f"--config={config}"])
    healthz = f"http://{KUBE_PROXY_HEALTHZ}/healthz"
    wait_for(
        "kube-proxy",
        lambda: urllib.request.urlopen(healthz, timeout=2).status == 200,
        60,
    )


def run(cmd: list[str]) -> None:
    proc_ = subprocess.run(cmd, capture_output=True, text=True)
    if proc_.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed: {proc_.stderr.strip()}")


# ----------------------------------------------------------------------------------------- stop


def down(images: bool = False) -> None:
    """Stop the node and undo what it changed on the host; its images stay in the image store
    for the next start unless ``images``. Safe to run when nothing is running and after a
    start that failed half-way."""
    for name in ("kube-proxy", "kubelet"):
        proc(name).stop()
    kill_processes(shim_pids)
    if proc("containerd").pid() is not None:
        # never a reason to stop half-way: the next `up` removes what is left
        try:
            remove_containers(timeout=20)
            left = ctr("containers", "ls", "-q", check=False, timeout=20).stdout.split()
            if left:
                log(f"{len(left)} container(s) left in the image store; the next up removes them")
        except (ClusterError, subprocess.TimeoutExpired) as err:
            log(f"containerd did not answer ({err}); the next up removes its containers")
    for name in ("coredns", "apiserver-relay", "containerd"):
        proc(name).stop()
    leftovers = unmount_all(NODE_STATE) + unmount_all(IMAGE_STORE)
    remove_netns()
    remove_cgroups()
    subprocess.run(["ip", "link", "delete", NODE.bridge], capture_output=True)
    remove_iptables_chains()
    restore_sysctls()
    if leftovers:
        raise ClusterError(
            f"these mounts under {NODE_STATE} or {IMAGE_STORE} could not be removed, so the "
            "node's files are kept: " + ", ".join(leftovers)
        )
    shutil.rmtree(NODE_STATE, ignore_errors=True)
    if images:
        refuse_if_another_node_runs()
        shutil.rmtree(IMAGE_STORE, ignore_errors=True)
        shutil.rmtree(IMAGE_STORE.parent / "node-containerd-imported", ignore_errors=True)


def shim_pids() -> list[int]:
    socket = str(SOCKET).encode()
    return [
        pid
        for pid, cmdline in command_lines()
        if cmdline[0].endswith(b"containerd-shim-runc-v2") and socket in cmdline
    ]


def status() -> list[tuple[str, int | None]]:
    return [(name, proc(name).pid()) for name, _ in PROCESSES]
