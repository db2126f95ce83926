"""Up, down and status of the control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok started in order, each waited for; a failed start stops what it had
started."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kfcluster import monitoring, node
from kfcluster.binaries import bin_dir, build, module_dir, thirdparty_crd_files, tool_version
from kfcluster.files import (
    FRONT_PROXY_CLIENT,
    ca_file,
    kubeconfig_path,
    kwok_nodes,
    team_rbac,
    tokens,
    write_kubeconfig,
    write_pki,
)
from kfcluster.processes import Proc, fail, port_free, wait_for
from kfcluster.settings import (
    APISERVER_PORT,
    COMPONENTS,
    ETCD_PORT,
    KWOK_STAGES,
    PROJECT_STAGES,
    REPO,
    SERVICE_CIDR,
    STATE,
    STORAGE_CLASS,
    TEAMS,
    USERS,
    ClusterError,
    log,
)
from kubeforge_labs import kit


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
    """kubectl as the local cluster's admin (``kit.kubectl``); a failure is a ClusterError."""
    try:
        return kit.kubectl(
            *args,
            kubeconfig=kubeconfig_path(),
            binary=bin_dir() / "kubectl",
            stdin=stdin,
            check=check,
        )
    except kit.KubectlError as err:
        raise ClusterError(str(err)) from None


def apply_objects(objects: str | dict[str, object] | list[dict[str, object]]) -> None:
    """Server-side apply as localcluster: a manifest (JSON text), an object or a list of them."""
    if isinstance(objects, list):
        objects = {"apiVersion": "v1", "kind": "List", "items": objects}
    text = objects if isinstance(objects, str) else json.dumps(objects)
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=localcluster",
        "-f",
        "-",
        stdin=text,
    )


def helm_template(
    release: str, chart: Path, namespace: str, values: dict[str, Any]
) -> list[dict[str, Any]]:
    """``helm template`` of a chart (a third-party controller's own) with ``values``, as
    objects; a chart Helm refuses is a ClusterError."""
    import yaml  # PyYAML: Helm renders YAML; the tests and the localcluster commands have it

    proc = subprocess.run(
        [str(bin_dir() / "helm"), "template", release, str(chart), "--namespace", namespace,
         "--values", "-"],
        input=json.dumps(values), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise ClusterError(f"helm template of {chart.name} failed: {proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def admitted(*probes: dict[str, Any]) -> bool:
    """Whether a server-side dry run of each object passes: its webhooks answer and admit it."""
    try:
        for probe in probes:
            kubectl("create", "--dry-run=server", "-f", "-", "-o", "name", stdin=json.dumps(probe))
    except ClusterError:
        return False
    return True


def deployment_exists(namespace: str, name: str) -> bool:
    try:
        kubectl("get", "deployment", name, "-n", namespace, "-o", "name")
    except ClusterError:
        return False
    return True


def wait_rollout(namespace: str, name: str, what: str, timeout: str = "180s") -> None:
    """Wait until a system Deployment is ready; its logs are named when it is not."""
    try:
        kubectl("rollout", "status", f"deployment/{name}", "-n", namespace, f"--timeout={timeout}")
    except ClusterError as err:
        raise ClusterError(
            f"{what} did not become ready: {err}; see kubectl -n {namespace} logs deploy/{name}"
        ) from None


def is_up() -> bool:
    if any(Proc(c).pid() is None for c in COMPONENTS):
        return False
    try:
        return api_get("/readyz")[0] == 200
    except OSError:
        return False


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
    start_etcd()
    start_apiserver(pki)
    start_controllers(pki)
    start_kwok()
    apply_base_objects()
    for c in ("kube-scheduler", "kube-controller-manager"):
        if Proc(c).pid() is None:
            raise fail(c, "the process exited")
    install_thirdparty_crds()
    if node.wanted():
        node.up()
        monitoring.up()
    log(f"up in {time.monotonic() - started:.1f}s; binaries {bins}")
    log(f'use it with: eval "$({sys.executable} hack/localcluster.py env)"')


def start_etcd() -> None:
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


def start_apiserver(pki: Path) -> None:
    etcd_url = f"http://127.0.0.1:{ETCD_PORT}"
    Proc("kube-apiserver").start(
        [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={APISERVER_PORT}",
            f"--cert-dir={pki / 'apiserver'}",
            f"--token-auth-file={STATE / 'tokens.csv'}",
            # Node: the real node's kubelet may touch only its own node and the pods bound to it
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            # the aggregation layer, for extension API servers (Kueue's visibility API)
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / f'{FRONT_PROXY_CLIENT}.crt'}",
            f"--proxy-client-key-file={pki / f'{FRONT_PROXY_CLIENT}.key'}",
            # to the Service's ready endpoints (pod IPs on the node's bridge), not its cluster
            # IP: a connection opened before kube-proxy has the Service's rule would leave by
            # the default route and, kept alive, answer 404 for good
            "--enable-aggregator-routing=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # /debug/pprof only when asked (bench/workbench_scale.py --profile): a profiler
            # the tests never use is an endpoint less
            f"--profiling={'true' if os.environ.get('KUBEFORGE_APISERVER_PROFILING') else 'false'}",
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


def start_controllers(pki: Path) -> None:
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


def start_kwok() -> None:
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


def apply_base_objects() -> None:
    """The kwok nodes, the teams' RBAC and the storage class; then wait until the nodes are
    Ready and the controller manager has made the default ServiceAccount."""
    apply_objects(kwok_nodes())
    apply_objects(team_rbac())
    apply_objects(STORAGE_CLASS)

    def nodes_ready() -> bool:
        out = kubectl(
            "get",
            "nodes",
            "-l",
            "type=kwok",
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


def down(purge: bool = True, images: bool = False) -> None:
    node.down(images=images)
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
    for name, pid in node.status():
        print(f"{name:26} {'running pid ' + str(pid) if pid else 'stopped'}")
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
