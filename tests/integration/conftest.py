"""Fixtures for tests against a real kube-apiserver: the embedded local control plane (started if
needed) or, when KUBECONFIG points at a reachable cluster, that cluster."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.cases import REPO

LOCALCLUSTER = [sys.executable, str(REPO / "hack" / "localcluster.py")]
OPERATOR_USER = "kubeforge-operator"
# What a platform team would configure; the operator of the test session reads it.
PLATFORM_CONFIG = {
    "notebookImages": [
        {"name": "minimal", "image": "quay.io/jupyter/minimal-notebook:2025-10-20"},
    ],
    "hardwareProfiles": [
        {
            "name": "a100",
            "accelerator": {
                "identifier": "nvidia.com/gpu",
                "minCount": 1,
                "maxCount": 4,
                "defaultCount": 1,
            },
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        }
    ],
}


@dataclass
class Cluster:
    kubeconfig: str
    kubectl_bin: str
    local: bool  # the embedded control plane (with its users and kwok nodes)
    api: client.ApiClient

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        kubeconfig: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", kubeconfig or self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
        return proc

    def user_kubeconfig(self, user: str) -> str:
        return str(Path(self.kubeconfig).with_name(f"kubeconfig-{user}"))

    @property
    def audit_log(self) -> Path:
        return Path(self.kubeconfig).parent / "logs" / "audit.log"

    def audit_offset(self) -> int:
        return self.audit_log.stat().st_size

    def writes_since(self, offset: int, user: str, namespace: str | None = None) -> list[str]:
        """``verb resource/name`` of each write ``user`` made after ``offset`` (the apiserver's
        audit log records every create, update, patch and delete)."""
        out = []
        with self.audit_log.open() as f:
            f.seek(offset)
            for line in f:
                event = json.loads(line)
                ref = event.get("objectRef", {})
                if event["user"]["username"] != user or event.get("stage") != "ResponseComplete":
                    continue
                if namespace is not None and ref.get("namespace") != namespace:
                    continue
                sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
                out.append(f"{event['verb']} {ref.get('resource')}{sub}/{ref.get('name')}")
        return out


def _local_kubeconfig() -> str:
    out = subprocess.run([*LOCALCLUSTER, "env"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("export KUBECONFIG="):
            return line.split("=", 1)[1]
    raise RuntimeError("localcluster env printed no KUBECONFIG")


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    local_cfg = _local_kubeconfig()
    external = os.environ.get("KUBECONFIG")
    bin_dir = subprocess.run(
        [*LOCALCLUSTER, "bin-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    kubectl_bin = str(Path(bin_dir) / "kubectl")
    if external and Path(external).resolve() != Path(local_cfg).resolve():
        probe = subprocess.run(
            [kubectl_bin, "--kubeconfig", external, "version", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if probe.returncode != 0:
            pytest.exit(
                f"KUBECONFIG={external} is not reachable ({probe.stderr.strip()}); "
                "unset KUBECONFIG to use the embedded control plane",
                returncode=2,
            )
        cfg, local = external, False
    else:
        subprocess.run([*LOCALCLUSTER, "up"], check=True, timeout=1800)
        cfg, local = local_cfg, True
    api = config.new_client_from_config(config_file=cfg)
    c = Cluster(kubeconfig=cfg, kubectl_bin=kubectl_bin, local=local, api=api)
    c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "manifests"))
    c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "rbac"))
    c.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *[
            f"crd/{p.stem.split('_', 1)[1]}.kubeforge.io"
            for p in (REPO / "crds" / "manifests").glob("*.yaml")
        ],
    )
    return c


@pytest.fixture
def local_cluster(cluster: Cluster) -> Cluster:
    if not cluster.local:
        pytest.skip("needs the embedded control plane (its kwok nodes and users)")
    return cluster


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"kf-test-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OperatorProcess:
    metrics_url: str
    health_url: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class JupyterServer:
    url: str
    proc: subprocess.Popen[bytes]

    def touch(self) -> None:
        """An authenticated API request: activity, as a person using the notebook makes."""
        with urllib.request.urlopen(f"{self.url}/api/contents", timeout=5):  # noqa: S310
            pass

    def status(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.url}/api/status", timeout=5) as resp:  # noqa: S310
            return dict(json.loads(resp.read()))


@pytest.fixture(scope="session")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A real jupyter_server, standing in for the notebook pods' servers (no container runs on
    the local control plane): the operator's culler reads its /api/status."""
    port = free_port()
    root = tmp_path_factory.mktemp("jupyter")
    log = (root / "jupyter.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--ServerApp.root_dir={root}",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = JupyterServer(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.status()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((root / "jupyter.log").read_text()[-2000:]) from None
            time.sleep(0.3)
    yield server
    proc.terminate()
    proc.wait(timeout=20)


ISOLATED_PREFIX = "kf-iso-"  # namespaces the session's operator leaves to a test's own operator


def start_operator(
    cluster: Cluster, workdir: Path, kubeconfig: str | None = None, **settings: str
) -> OperatorProcess:
    """Run ``python -m kubeforge_operator`` against the cluster and wait until it is healthy.
    ``settings`` are KUBEFORGE_OPERATOR_* variables (lower-case names, without the prefix);
    ``kubeconfig`` replaces the operator's own local user (e.g. a ServiceAccount's token)."""
    metrics, health = free_port(), free_port()
    log = workdir / f"operator-{metrics}.log"
    platform = workdir / "platform.yaml"
    platform.write_text(json.dumps(PLATFORM_CONFIG))
    env = {
        **os.environ,
        # on the local control plane the operator has a user of its own (see the audit log)
        "KUBECONFIG": kubeconfig
        or (cluster.user_kubeconfig(OPERATOR_USER) if cluster.local else cluster.kubeconfig),
        "KUBEFORGE_OPERATOR_METRICS_HOST": "127.0.0.1",
        "KUBEFORGE_OPERATOR_METRICS_PORT": str(metrics),
        "KUBEFORGE_OPERATOR_LIVENESS_HOST": "127.0.0.1",
        "KUBEFORGE_OPERATOR_LIVENESS_PORT": str(health),
        "KUBEFORGE_OPERATOR_RESYNC_SECONDS": "5",
        "KUBEFORGE_OPERATOR_PLATFORM_CONFIG": str(platform),
        "KUBEFORGE_OPERATOR_LOCAL_RUNS_DIR": str(workdir / "finetune-runs"),
        **{f"KUBEFORGE_OPERATOR_{k.upper()}": v for k, v in settings.items()},
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubeforge_operator"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    op = OperatorProcess(
        f"http://127.0.0.1:{metrics}/metrics", f"http://127.0.0.1:{health}/healthz", proc, log
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(op.health_url, timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return op
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"operator did not become healthy:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def stop_operator(op: OperatorProcess) -> None:
    op.proc.terminate()
    try:
        op.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        op.proc.kill()


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, jupyter: JupyterServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = start_operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        # every notebook's activity comes from the one real jupyter_server of the test session
        activity_url_template=jupyter.url + "{path}",
        namespaces=json.dumps([f"!{ISOLATED_PREFIX}*"]),
    )
    yield op
    stop_operator(op)
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "operator.log").write_bytes(op.log.read_bytes())


def wait_until(predicate, timeout: float = 60, interval: float = 0.5, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 the project builds itself (pretrained briefly on its general corpus)."""
    from kubeforge_pipelines.tinymodel import build_base_model

    return build_base_model(tmp_path_factory.mktemp("tiny-base") / "model")


@pytest.fixture(scope="session")
def tickets_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kubeforge_pipelines.tinymodel import support_tickets, write_dataset

    return write_dataset(tmp_path_factory.mktemp("data") / "tickets.jsonl", support_tickets(400, 1))
