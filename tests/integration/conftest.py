"""Fixtures for tests against a real kube-apiserver: the embedded local control plane (started if
needed) or, when KUBECONFIG points at a reachable cluster, that cluster."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from kubeforge_labs import kit, models
from kubeforge_labs.helm import run_helm
from kubeforge_labs.kit import free_port
from tests.cases import REPO

__all__ = ["run_helm"]  # the tiers' one way to run Helm (kubeforge_labs.helm)

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


def helm_binary() -> str:
    bin_dir = subprocess.run(
        [*LOCALCLUSTER, "bin-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return str(Path(bin_dir) / "helm")


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
        proc = kit.run_kubectl(
            *args, kubeconfig=kubeconfig or self.kubeconfig, binary=self.kubectl_bin, stdin=stdin
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
        # one worker starts it, the other waits for that start and finds it running
        lock = REPO / ".cache" / "cluster-up.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with lock.open("w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
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


@dataclass
class OperatorProcess:
    metrics_url: str
    health_url: str
    launched: kit.Proc

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.launched.proc

    @property
    def log(self) -> Path:
        return self.launched.log


@dataclass
class JupyterServer:
    url: str
    launched: kit.Proc

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
    url = f"http://127.0.0.1:{port}"
    launched = kit.launch(
        "jupyter_server",
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
        root / "jupyter.log",
        url=url,
        ready=lambda: kit.http_ok(f"{url}/api/status"),
        timeout=60,
    )
    yield JupyterServer(url, launched)
    launched.stop()


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
        # a Workbench says it waits for its volume after 2 s, not 30 (test_workbench.py)
        "KUBEFORGE_OPERATOR_VOLUME_QUIET_SECONDS": "2",
        "KUBEFORGE_OPERATOR_PLATFORM_CONFIG": str(platform),
        "KUBEFORGE_OPERATOR_LOCAL_RUNS_DIR": str(workdir / "finetune-runs"),
        # this tier's InferenceServices are answered by a stand-in of KServe's Serverless mode
        # (kubeforge_labs.kserve); the e2e tier runs KServe's real controller in Standard mode
        "KUBEFORGE_OPERATOR_KSERVE_MODE": "Serverless",
        **{f"KUBEFORGE_OPERATOR_{k.upper()}": v for k, v in settings.items()},
    }
    health_url = f"http://127.0.0.1:{health}/healthz"
    launched = kit.launch(
        "the operator",
        [sys.executable, "-m", "kubeforge_operator"],
        log,
        env=env,
        ready=lambda: kit.http_ok(health_url),
        timeout=60,
        new_session=True,  # its local pipeline runs are stopped with it
    )
    return OperatorProcess(f"http://127.0.0.1:{metrics}/metrics", health_url, launched)


def stop_operator(op: OperatorProcess) -> None:
    op.launched.stop()


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
    """``kit.wait_for``, failing the test (AssertionError) when it times out."""
    try:
        return kit.wait_for(what, predicate, timeout, interval)
    except kit.WaitTimeoutError as err:
        raise AssertionError(str(err)) from None


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 the project builds itself (pretrained briefly on its general corpus), built
    once per recipe into the kubeforge cache (``kubeforge_labs.models``)."""
    return models.base_model(tmp_path_factory.mktemp("tiny-base") / "model")


@pytest.fixture(scope="session")
def tickets_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kubeforge_pipelines.tinymodel import support_tickets, write_dataset

    return write_dataset(tmp_path_factory.mktemp("data") / "tickets.jsonl", support_tickets(400, 1))
