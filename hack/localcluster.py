#!/usr/bin/env python3
"""The embedded local control plane: a real Kubernetes control plane on 127.0.0.1, without Docker.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl are built from pinned Go
modules (``hack/tools/*/go.mod``); kwok turns simulated Node objects into nodes whose pods the real
scheduler places and kwok moves through their lifecycle (Running; Succeeded for pods of Jobs). No
container runs. See docs/local-control-plane.md.

    python3 hack/localcluster.py build     # build the binaries once into the cache
    python3 hack/localcluster.py up        # start (harmless if already running)
    python3 hack/localcluster.py down      # stop and wipe (harmless if stopped)
    python3 hack/localcluster.py status
    eval "$(python3 hack/localcluster.py env)"   # KUBECONFIG, PATH and the users' tokens

Only the standard library is used, so this runs before any Python dependency is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HACK = REPO / "hack"
TOOLS = HACK / "tools"
CACHE = Path(
    os.environ.get("KUBEFORGE_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kubeforge"
)
STATE = Path(os.environ.get("KUBEFORGE_CLUSTER_DIR", REPO / ".cache" / "cluster"))

APISERVER_PORT = int(os.environ.get("KUBEFORGE_APISERVER_PORT", "16443"))
ETCD_PORT = int(os.environ.get("KUBEFORGE_ETCD_PORT", "12379"))
SERVICE_CIDR = "10.96.0.0/16"

# binary -> (tool module under hack/tools, Go package)
BINARIES: dict[str, tuple[str, str]] = {
    "etcd": ("etcd", "go.etcd.io/etcd/server/v3"),
    "kube-apiserver": ("k8s", "k8s.io/kubernetes/cmd/kube-apiserver"),
    "kube-controller-manager": ("k8s", "k8s.io/kubernetes/cmd/kube-controller-manager"),
    "kube-scheduler": ("k8s", "k8s.io/kubernetes/cmd/kube-scheduler"),
    "kubectl": ("k8s", "k8s.io/kubernetes/cmd/kubectl"),
    "kwok": ("kwok", "sigs.k8s.io/kwok/cmd/kwok"),
    "helm": ("helm", "helm.sh/helm/v3/cmd/helm"),
}
# kwok's own stage definitions, taken from the pinned kwok module: nodes become Ready and keep a
# lease; pods become Running, and deleted pods go away.
KWOK_STAGES = [
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
]
# ours: pods of Jobs then Succeeded, or Failed when their container sets KWOK_SIMULATE_FAILURE
PROJECT_STAGES = ["hack/kwok-stages/pod-complete.yaml"]
USERS = {  # name -> groups; RBAC for user-a/user-b is created in their namespaces on start
    "admin": ["system:masters"],
    "user-a": ["kubeforge:users"],
    "user-b": ["kubeforge:users"],
    "system:kube-controller-manager": [],
    "system:kube-scheduler": [],
    "kwok": ["system:masters"],
    # the operator when it runs outside the cluster (tests, demo, benchmarks); a user of its own
    # so that the audit log tells its requests apart
    "kubeforge-operator": ["system:masters"],
    # the REST API outside the cluster: it may only review tokens and impersonate (see
    # team_rbac); everything else it does as the caller
    "kubeforge-api": [],
}
TEAMS = {"team-a": "user-a", "team-b": "user-b"}
# The default StorageClass: kube-controller-manager's own hostPath provisioner creates and deletes
# the volumes (under /tmp/hostpath_pv), so PVCs bind and pods that mount them get scheduled.
STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {
        "name": "standard",
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
    },
    "provisioner": "kubernetes.io/host-path",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
}
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]


class ClusterError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[localcluster] {msg}", file=sys.stderr, flush=True)


# --- binaries ------------------------------------------------------------------------------------


def _tool_digest() -> str:
    h = hashlib.sha256()
    for mod in sorted(TOOLS.glob("*/go.mod")):
        for f in (mod, mod.with_name("go.sum")):
            h.update(f.relative_to(TOOLS).as_posix().encode())
            h.update(f.read_bytes())
    h.update(json.dumps(BINARIES, sort_keys=True).encode())
    h.update(b"version-ldflags-2")  # binaries built before version_ldflags() are rebuilt
    return h.hexdigest()[:16]


def bin_dir() -> Path:
    return CACHE / "bin" / _tool_digest()


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", "local")
    # go.sum is committed: a missing checksum is an error, never a silent edit of hack/tools
    env["GOFLAGS"] = "-mod=readonly -buildvcs=false"
    env["CGO_ENABLED"] = "0"
    return env


def build(force: bool = False) -> Path:
    """Build every binary into the cache, once per set of pinned versions."""
    out = bin_dir()
    if not force and all((out / b).exists() for b in BINARIES):
        return out
    if shutil.which("go") is None:
        raise ClusterError("Go is needed to build the control plane; install Go 1.25 or newer")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.monotonic()
    for name, (module, package) in BINARIES.items():
        log(f"building {name} ({package})")
        t0 = time.monotonic()
        ldflags = "-s -w " + version_ldflags(module)
        cmd = ["go", "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(tmp / name), package]
        proc = subprocess.run(cmd, cwd=TOOLS / module, env=go_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClusterError(f"building {name} failed:\n{proc.stderr[-4000:]}")
        log(f"built {name} in {time.monotonic() - t0:.0f}s")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    (out / "BUILD_SECONDS").write_text(f"{time.monotonic() - started:.0f}\n")
    log(f"binaries ready in {out} ({time.monotonic() - started:.0f}s)")
    return out


def version_ldflags(module: str) -> str:
    """The Kubernetes binaries report the version they were built from (as release builds do),
    not v0.0.0-master: `kubectl version`, discovery and Helm's kubeVersion checks read it.
    Helm gets what its own Makefile sets: its version, and the Kubernetes version `helm template`
    and `helm lint` assume (that of its client-go), without which they assume v1.20."""
    if module == "helm":
        helm = tool_version("helm", "helm.sh/helm/v3")
        client_minor = tool_version("helm", "k8s.io/client-go").split(".")[1]
        return " ".join(
            [f"-X helm.sh/helm/v3/internal/version.version={helm}"]
            + [
                f"-X helm.sh/helm/v3/pkg/{pkg}.{key}={value}"
                for pkg in ("lint/rules", "chartutil")
                for key, value in (("k8sVersionMajor", "1"), ("k8sVersionMinor", client_minor))
            ]
        )
    if module != "k8s":
        return ""
    version = tool_version("k8s", "k8s.io/kubernetes")
    major, minor = version.lstrip("v").split(".")[:2]
    base = "k8s.io/component-base/version"
    return " ".join(
        f"-X {pkg}.{key}={value}"
        for pkg in (base, "k8s.io/client-go/pkg/version")
        for key, value in (
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        )
    )


def module_dir(module: str, version: str) -> Path:
    """Download a pinned Go module through the module proxy (checksum-verified) and return its
    directory in the module cache."""
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        env=go_env(),
        capture_output=True,
        text=True,
        cwd=str(Path.home()),
    )
    info = json.loads(proc.stdout or "{}")
    if proc.returncode != 0 or "Dir" not in info:
        raise ClusterError(
            f"cannot download {module}@{version}: {info.get('Error') or proc.stderr}"
        )
    return Path(info["Dir"])


def tool_version(module_dir_name: str, module: str) -> str:
    for line in (TOOLS / module_dir_name / "go.mod").read_text().splitlines():
        parts = line.split("//", 1)[0].split()
        if parts[:1] == ["require"]:  # a one-line require
            parts = parts[1:]
        if len(parts) == 2 and parts[0] == module and parts[1].startswith("v"):
            return parts[1]
    raise ClusterError(f"{module} is not pinned in hack/tools/{module_dir_name}/go.mod")


def thirdparty_crd_files() -> list[Path]:
    """The third-party CRD manifests named in hack/thirdparty-crds.txt, from their modules."""
    files = []
    for line in (HACK / "thirdparty-crds.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        modver, path = line.split()
        module, version = modver.split("@")
        f = module_dir(module, version) / path
        if not f.exists():
            raise ClusterError(f"{path} is not in {module}@{version}")
        files.append(f)
    return files


# --- processes -----------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str

    @property
    def pidfile(self) -> Path:
        return STATE / "run" / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return STATE / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # a zombie or a recycled pid is not ours
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        if stat.split(")")[-1].split()[0] == "Z" or not cmdline.endswith(self.name.encode()):
            return None
        return pid

    def start(self, args: list[str]) -> None:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as logf:
            proc = subprocess.Popen(
                [str(bin_dir() / self.name), *args],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=STATE,
            )
        self.pidfile.write_text(str(proc.pid))
        # until the child has exec'd, /proc shows the Python parent's command line
        deadline = time.monotonic() + 5
        while self.pid() is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self, timeout: float = 10) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.pid() is not None:
                os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def fail(component: str, why: str) -> ClusterError:
    proc = Proc(component)
    return ClusterError(
        f"{component} failed to start: {why}\n--- last lines of {proc.logfile} ---\n{proc.tail()}"
    )


def wait_for(component: str, check, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if Proc(component).pid() is None:
            raise fail(component, "the process exited")
        try:
            if check():
                return
        except Exception as exc:
            last = str(exc)
        time.sleep(0.25)
    raise fail(component, f"not ready after {timeout:.0f}s {last}")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


# --- configuration files -------------------------------------------------------------------------


def tokens() -> dict[str, str]:
    path = STATE / "tokens.json"
    toks: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if all(user in toks for user in USERS):
        return toks
    toks |= {user: secrets.token_hex(16) for user in USERS if user not in toks}
    path.write_text(json.dumps(toks, indent=2))
    path.chmod(0o600)
    return toks


# Every write request (not reads) is logged with its user and object, at Metadata level: the
# tests and benchmarks count the operator's writes from it. Every request of the service accounts
# of kubeforge-system (where the tests install the Helm chart) is logged, reads too: the chart's
# RBAC test checks each of the operator's calls against its ClusterRole.
CHART_NAMESPACE = "kubeforge-system"
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "userGroups": [f"system:serviceaccounts:{CHART_NAMESPACE}"]},
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}


def audit_log() -> Path:
    return STATE / "logs" / "audit.log"


def write_pki() -> None:
    pki = STATE / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "sa.key").exists():
        subprocess.run(
            ["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
            check=True,
            capture_output=True,
        )
    (STATE / "audit-policy.json").write_text(json.dumps(AUDIT_POLICY))
    toks = tokens()
    with (STATE / "tokens.csv").open("w") as f:
        for i, (user, groups) in enumerate(USERS.items()):
            f.write(f'{toks[user]},{user},uid-{i},"{",".join(groups)}"\n')


def ca_file() -> Path:
    return STATE / "pki" / "apiserver" / "apiserver.crt"


def kubeconfig_path(user: str = "admin") -> Path:
    return STATE / ("kubeconfig" if user == "admin" else f"kubeconfig-{user}")


def write_kubeconfig(user: str) -> Path:
    path = kubeconfig_path(user)
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubeforge-local",
                "cluster": {
                    "server": f"https://127.0.0.1:{APISERVER_PORT}",
                    "certificate-authority": str(ca_file()),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": tokens()[user]}}],
        "contexts": [
            {
                "name": f"kubeforge-local-{user}".replace(":", "-"),
                "context": {"cluster": "kubeforge-local", "user": user, "namespace": "default"},
            }
        ],
        "current-context": f"kubeforge-local-{user}".replace(":", "-"),
    }
    path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
    path.chmod(0o600)
    return path


def kwok_nodes() -> str:
    """Two CPU nodes and two GPU nodes (8 x nvidia.com/gpu, product label, NoSchedule taint)."""
    docs = []
    for i in range(2):
        docs.append(node_manifest(f"kwok-cpu-{i}", cpu="16", memory="64Gi", gpus=0))
    for i in range(2):
        docs.append(node_manifest(f"kwok-gpu-{i}", cpu="64", memory="512Gi", gpus=8))
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def node_manifest(name: str, cpu: str, memory: str, gpus: int) -> dict[str, object]:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        "node.kubernetes.io/instance-type": "gpu-a100x8" if gpus else "cpu-16",
    }
    capacity = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "200Gi"}
    spec: dict[str, object] = {}
    if gpus:
        labels["nvidia.com/gpu.present"] = "true"
        labels["nvidia.com/gpu.product"] = "NVIDIA-A100-SXM4-80GB"
        labels["nvidia.com/gpu.count"] = str(gpus)
        capacity["nvidia.com/gpu"] = str(gpus)
        spec["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": spec,
        "status": {"capacity": capacity, "allocatable": capacity},
    }


API_RBAC: list[dict[str, object]] = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "kubeforge-api-local"},
        "rules": [
            {
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["tokenreviews"],
                "verbs": ["create"],
            },
            {"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]},
            # namespace names, for the namespaces a caller may use (filtered per caller)
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]},
            {
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["userextras/scopes", "uids"],
                "verbs": ["impersonate"],
            },
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubeforge-api-local"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "kubeforge-api-local",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kubeforge-api"}
        ],
    },
]


def team_rbac() -> str:
    items: list[dict[str, object]] = list(API_RBAC)
    for ns, user in TEAMS.items():
        items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        items.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": f"{user}-edit", "namespace": ns},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "edit",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


# --- the API server, as an HTTP client (stdlib) ---------------------------------------------------


def api_get(path: str, user: str = "admin", timeout: float = 5) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(ca_file()))
    req = urllib.request.Request(
        f"https://127.0.0.1:{APISERVER_PORT}{path}",
        headers={"Authorization": f"Bearer {tokens()[user]}"},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:  # noqa: S310
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        [str(bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig_path()), *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def is_up() -> bool:
    if any(Proc(c).pid() is None for c in COMPONENTS):
        return False
    try:
        return api_get("/readyz")[0] == 200
    except OSError:
        return False


# --- up / down ------------------------------------------------------------------------------------


def up() -> None:
    """Start the control plane. A start that fails stops whatever it had started (the logs stay
    in .cache/cluster/logs), so running it again is always safe."""
    try:
        _up()
    except ClusterError:
        down(purge=True)
        raise


def _up() -> None:
    started = time.monotonic()
    if is_up():
        log(f"already running; KUBECONFIG={kubeconfig_path()}")
        return
    if any(Proc(c).pid() is not None for c in COMPONENTS):
        log("a previous start is partly running; stopping it first")
        down(purge=True)
    bins = build()
    for port, what, setting in (
        (APISERVER_PORT, "kube-apiserver", "APISERVER_PORT"),
        (ETCD_PORT, "etcd", "ETCD_PORT"),
        (ETCD_PORT + 1, "etcd's peer listener (the etcd port + 1)", "ETCD_PORT"),
    ):
        if not port_free(port):
            raise ClusterError(
                f"port {port} for {what} is taken by another program; stop it, or set "
                f"KUBEFORGE_{setting}"
            )
    STATE.mkdir(parents=True, exist_ok=True)
    write_pki()
    pki = STATE / "pki"

    etcd_url = f"http://127.0.0.1:{ETCD_PORT}"
    Proc("etcd").start(
        [
            "--name=kubeforge",
            f"--data-dir={STATE / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{ETCD_PORT + 1}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PORT + 1}",
            f"--initial-cluster=kubeforge=http://127.0.0.1:{ETCD_PORT + 1}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]
    )
    wait_for(
        "etcd",
        lambda: urllib.request.urlopen(f"{etcd_url}/health", timeout=2).status == 200,  # noqa: S310
        30,
    )

    Proc("kube-apiserver").start(
        [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={APISERVER_PORT}",
            f"--cert-dir={pki / 'apiserver'}",
            f"--token-auth-file={STATE / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            f"--audit-policy-file={STATE / 'audit-policy.json'}",
            f"--audit-log-path={STATE / 'logs' / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-maxsize=200",
            "--endpoint-reconciler-type=none",
            *shlex.split(os.environ.get("KUBEFORGE_APISERVER_EXTRA_ARGS", "")),
        ]
    )
    wait_for("kube-apiserver", lambda: ca_file().exists() and api_get("/readyz")[0] == 200, 90)
    for user in USERS:
        write_kubeconfig(user)

    Proc("kube-controller-manager").start(
        [
            f"--kubeconfig={kubeconfig_path('system:kube-controller-manager')}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={ca_file()}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--secure-port=0",
            "--cluster-name=kubeforge-local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
            # real dynamic provisioning of PersistentVolumes (hostPath under /tmp), for development
            "--enable-hostpath-provisioner=true",
            # the defaults (20/30) throttle the PV controller to a handful of volumes a second
            "--kube-api-qps=200",
            "--kube-api-burst=400",
        ]
    )
    Proc("kube-scheduler").start(
        [
            f"--kubeconfig={kubeconfig_path('system:kube-scheduler')}",
            "--leader-elect=false",
            "--secure-port=0",
        ]
    )
    kwok_dir = module_dir("sigs.k8s.io/kwok", tool_version("kwok", "sigs.k8s.io/kwok"))
    stage_args = [f"--config={kwok_dir / s}" for s in KWOK_STAGES]
    stage_args += [f"--config={REPO / s}" for s in PROJECT_STAGES]
    Proc("kwok").start(
        [
            f"--kubeconfig={kubeconfig_path('kwok')}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.0/16",
            "--node-ip=127.0.0.1",
            *stage_args,
        ]
    )

    kubectl("apply", "--server-side", "--field-manager=localcluster", "-f", "-", stdin=kwok_nodes())
    kubectl("apply", "--server-side", "--field-manager=localcluster", "-f", "-", stdin=team_rbac())
    kubectl(
        "apply",
        "--server-side",
        "--field-manager=localcluster",
        "-f",
        "-",
        stdin=json.dumps(STORAGE_CLASS),
    )

    def nodes_ready() -> bool:
        out = kubectl(
            "get",
            "nodes",
            "-o",
            'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
        )
        return out.split() == ["True"] * 4

    wait_for("kwok", nodes_ready, 60)
    wait_for(
        "kube-controller-manager",
        lambda: api_get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
        60,
    )
    for c in ("kube-scheduler", "kube-controller-manager"):
        if Proc(c).pid() is None:
            raise fail(c, "the process exited")
    install_thirdparty_crds()
    log(f"up in {time.monotonic() - started:.1f}s; binaries {bins}")
    log(f'use it with: eval "$({sys.executable} {Path(__file__).relative_to(REPO)} env)"')


def install_thirdparty_crds() -> None:
    files = thirdparty_crd_files()
    args = ["apply", "--server-side", "--force-conflicts", "--field-manager=localcluster"]
    for f in files:
        args += ["-f", str(f)]
    kubectl(*args)
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *[f"crd/{_crd_name(f)}" for f in files],
    )
    log(f"installed {len(files)} third-party CRDs")


def _crd_name(path: Path) -> str:
    """The CRD's name, from the manifest's top-level metadata.name (files are not all named
    <group>_<plural>.yaml); read without a YAML library, as this script uses only the stdlib."""
    in_metadata = False
    for line in path.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            in_metadata = line.rstrip() == "metadata:"
        elif in_metadata and line.startswith("  name: "):
            return line.split(":", 1)[1].strip().strip("'\"")
    raise ClusterError(f"{path}: no metadata.name")


def down(purge: bool = True) -> None:
    for c in reversed(COMPONENTS):
        Proc(c).stop()
    if purge:
        for sub in ("etcd", "pki", "run", "tokens.json", "tokens.csv"):
            p = STATE / sub
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        for f in STATE.glob("kubeconfig*"):
            f.unlink()
    log("stopped")


def status() -> int:
    ok = True
    for c in COMPONENTS:
        pid = Proc(c).pid()
        ok &= pid is not None
        print(f"{c:26} {'running pid ' + str(pid) if pid else 'stopped'}")
    ready = ok and is_up()
    print(f"{'apiserver /readyz':26} {'ok' if ready else 'not ready'}")
    return 0 if ready else 1


def env() -> None:
    toks = tokens() if (STATE / "tokens.json").exists() else {}
    print(f"export KUBECONFIG={kubeconfig_path()}")
    print(f'export PATH="{bin_dir()}:$PATH"')
    for user in TEAMS.values():
        var = user.upper().replace("-", "_")
        if user in toks:
            print(f"export KUBEFORGE_TOKEN_{var}={toks[user]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the control-plane binaries into the cache")
    b.add_argument("--force", action="store_true")
    sub.add_parser("up", help="start the control plane (no-op if running)")
    d = sub.add_parser("down", help="stop the control plane (no-op if stopped)")
    d.add_argument("--keep-data", action="store_true", help="keep etcd data and credentials")
    sub.add_parser("status", help="show each component")
    sub.add_parser("env", help="print shell exports for KUBECONFIG, PATH and tokens")
    sub.add_parser("bin-dir", help="print where the binaries are")
    sub.add_parser("crds", help="(re)install the third-party CRDs")
    args = parser.parse_args()
    try:
        if args.cmd == "build":
            print(build(force=args.force))
        elif args.cmd == "up":
            up()
        elif args.cmd == "down":
            down(purge=not args.keep_data)
        elif args.cmd == "status":
            return status()
        elif args.cmd == "env":
            env()
        elif args.cmd == "bin-dir":
            print(bin_dir())
        elif args.cmd == "crds":
            install_thirdparty_crds()
    except ClusterError as err:
        log(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
