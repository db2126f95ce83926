"""Fixtures of the e2e tier: kubeforge installed by its Helm chart on the local cluster's real
node (operator and API in pods of the images built here), and workloads whose containers really
run. Needs the embedded control plane with its real node (root and the Debian packages that
``make deps`` installs)."""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from tests.cases import REPO
from tests.integration.conftest import (
    LOCALCLUSTER,
    Cluster,
    cluster,
    helm_binary,
    wait_until,
)

from kubeforge_labs import helm, models
from kubeforge_labs.gateway import ON_REAL_NODE

__all__ = ["cluster"]  # the session's cluster fixture, shared with the integration tier

REAL_NODE = "kf-node-0"
# what steers a pod to the real node (its label and taint)
RELEASE, SYSTEM = "kubeforge-e2e", "kf-iso-e2e-system"
WATCHED = "kf-iso-e2e-"  # the integration tier's operator leaves kf-iso-* alone
# KUBEFORGE_E2E_KEEP=1 leaves the release and the test namespaces in place, to look at them
KEEP = os.environ.get("KUBEFORGE_E2E_KEEP") == "1"


def node_control(part: str = "node") -> ModuleType:
    """A part of the local cluster (hack/kfcluster): ``node``, the real node's processes (stop
    and start its kubelet); ``monitoring``, its Prometheus."""
    sys.path.insert(0, str(REPO / "hack"))
    return importlib.import_module(f"kfcluster.{part}")


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> str:
    if not cluster.local:
        pytest.fail("the e2e tier runs on the embedded control plane's real node; unset KUBECONFIG")
    ready = cluster.kubectl(
        "get",
        "node",
        REAL_NODE,
        "--ignore-not-found",
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
    ).stdout
    if ready != "True":
        pytest.fail(
            f"node {REAL_NODE} is not there or not Ready: the real node needs root and Debian's "
            "containerd, runc, containernetworking-plugins, iptables, conntrack, socat, "
            "mmdebstrap and gcc (`make deps` installs them); see .cache/cluster/logs/"
        )
    return REAL_NODE


@pytest.fixture(scope="session")
def images(real_node: str) -> None:
    """kubeforge's images for the current sources, built and imported into the node; the
    trainer only for the tests that ask for it (``trainer_image``)."""
    subprocess.run(
        [*LOCALCLUSTER, "images", "core", "runtime", "notebook"], check=True, timeout=1200
    )


@pytest.fixture(scope="session")
def trainer_image(images: None) -> None:
    """The trainer image (4 GB) built and imported: training on the real node."""
    subprocess.run([*LOCALCLUSTER, "images", "trainer"], check=True, timeout=1200)


@pytest.fixture(scope="session")
def kubeforge(cluster: Cluster, images: None) -> Iterator[str]:
    """The chart installed with hack/values-local.yaml: the operator and API run as pods on the
    real node and reconcile the kf-iso-e2e-* namespaces."""
    bin_dir = Path(helm_binary()).parent
    node_control("node").recycle_volumes()  # volumes earlier runs' namespaces released
    helm.install_local(bin_dir, cluster.kubeconfig, RELEASE, SYSTEM, f"{WATCHED}*")
    yield SYSTEM
    if KEEP:
        return
    logs = cluster.kubectl(
        "logs",
        "-n",
        SYSTEM,
        "-l",
        "app.kubernetes.io/component=operator",
        "--tail=-1",
        check=False,
    )
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "e2e-operator.log").write_text(logs.stdout + logs.stderr)
    helm.uninstall_local(bin_dir, cluster.kubeconfig, RELEASE, SYSTEM)


@pytest.fixture
def e2e_namespace(cluster: Cluster, kubeforge: str) -> Iterator[str]:
    name = f"{WATCHED}{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    if not KEEP:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def get(cluster: Cluster, kind: str, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def wait_for_condition(
    cluster: Cluster,
    kind: str,
    namespace: str,
    name: str,
    type_: str,
    reason: str | None = None,
    status: str | None = None,
    timeout: float = 180,
) -> dict[str, Any]:
    """Wait until ``kind/name`` has condition ``type_`` with that reason (and status); return
    the object. A timeout fails with the object's conditions."""

    def matches() -> dict[str, Any] | None:
        obj = get(cluster, kind, namespace, name)
        cond = condition(obj, type_)
        ok = (reason is None or cond.get("reason") == reason) and (
            status is None or cond.get("status") == status
        )
        return obj if cond and ok else None

    try:
        return wait_until(
            matches, timeout, 1, f"{kind}/{name} {type_} {reason or ''} {status or ''}"
        )
    except AssertionError as err:
        conditions = (get(cluster, kind, namespace, name).get("status") or {}).get("conditions")
        pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        raise AssertionError(
            f"{err}\nconditions: {json.dumps(conditions, indent=1)}\npods:\n{pods}"
            f"{node_and_events(cluster, namespace)}"
        ) from None


def node_and_events(cluster: Cluster, namespace: str) -> str:
    """What a timed-out wait on the real node adds to its failure: the node's taints and the
    conditions that are not as they should be (a pressure, a kubelet not ready), the free disk
    of its state and of its image store, and the namespace's last events (a pod not placed, a
    sandbox not created): enough to tell a broken node from a broken kubeforge in a CI log.
    Never raises: what it cannot read, it says."""
    try:
        out = cluster.kubectl("get", "node", REAL_NODE, "-o", "json", check=False)
        if out.returncode != 0:
            node_text = f"node {REAL_NODE} could not be read: {out.stderr.strip()}"
        else:
            node = json.loads(out.stdout)
            taints = [f"{t['key']}:{t['effect']}" for t in node["spec"].get("taints") or []]
            off = [
                f"{c['type']}={c['status']} ({c.get('reason')}: {c.get('message')})"
                for c in node["status"].get("conditions") or []
                if (c["type"] == "Ready") != (c["status"] == "True")
            ]
            node_text = (
                f"node {REAL_NODE}: taints {taints}; conditions not as they should be: "
                f"{off or 'none'}"
            )
        disks = []
        for what, path in (("state", REPO), ("images", node_control("nodeconfig").IMAGE_STORE)):
            usage = shutil.disk_usage(path if path.exists() else path.parent)
            disks.append(f"{what} {usage.free / 2**30:.1f} GiB of {usage.total / 2**30:.0f}")
        # by creation: the scheduler's events have an eventTime and no lastTimestamp
        events = cluster.kubectl(
            "get", "events", "-n", namespace, "--sort-by=.metadata.creationTimestamp",
            check=False,
        ).stdout.splitlines()[-15:]  # fmt: skip
        return f"\n{node_text}\ndisk free: {', '.join(disks)}\nevents:\n" + "\n".join(events)
    except Exception as err:  # the wait's own failure must not be lost
        return f"\n(the node and events could not be read: {err!r})"


def call_api(cluster: Cluster, path: str, body: dict[str, Any] | None = None) -> Any:
    """kubeforge's REST API (the chart's pod, reached at its pod IP) as the cluster's admin."""
    ip = cluster.kubectl(
        "get", "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/component=api",
        "-o", "jsonpath={.items[0].status.podIP}",
    ).stdout  # fmt: skip
    token = node_control("files").tokens()["admin"]
    request = urllib.request.Request(
        f"http://{ip}:8000{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - the pod's IP
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise AssertionError(f"{path}: HTTP {err.code}: {err.read().decode()}") from None


def apply(cluster: Cluster, namespace: str, *docs: dict[str, Any]) -> None:
    body = {"apiVersion": "v1", "kind": "List", "items": list(docs)}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(body))


def volume_with_client(
    cluster: Cluster,
    namespace: str,
    claim: str,
    mount: str,
    storage_class: str | None = None,
    security_context: dict[str, Any] | None = None,
) -> None:
    """A volume and a pod ``client`` of the base image on the real node that mounts it at
    ``mount`` (for ``kubectl exec``: writing a test's data, reading what a workload wrote);
    waits until the pod is Ready."""
    volume: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }
    if storage_class:
        volume["storageClassName"] = storage_class
    pod: dict[str, Any] = {
        **ON_REAL_NODE,
        "containers": [
            {
                "name": "client",
                "image": "localhost/kubeforge/base:bookworm",
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
                "volumeMounts": [{"name": claim, "mountPath": mount}],
            }
        ],
        "volumes": [{"name": claim, "persistentVolumeClaim": {"claimName": claim}}],
    }
    if security_context:
        pod["securityContext"] = security_context
    apply(
        cluster,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim},
            "spec": volume,
        },
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"}, "spec": pod},
    )
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "pod/client", "--timeout=120s"
    )


def packed(*folders: tuple[Path, str]) -> str:
    """The folders as a gzipped tar, base64 (kubectl exec's stdin is text)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, name in folders:
            tar.add(path, arcname=name)
    return base64.b64encode(buf.getvalue()).decode()


def training_volume(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """The volume ``work`` on the real node with a tiny base model (``base``) and a dataset
    (``data/tickets.jsonl``), and the ``client`` pod that mounts it at /work."""
    from kubeforge_pipelines.tinymodel import support_tickets, write_dataset

    base = models.base_model(tmp_path / "base")
    dataset = write_dataset(tmp_path / "data" / "tickets.jsonl", support_tickets(300, 1))
    volume_with_client(
        cluster,
        namespace,
        "work",
        "/work",
        storage_class="real-node",
        # the user and group kubeforge's training pods run as: a local volume gets its group
        # (fsGroup) from the first pod that mounts it on the node
        security_context={"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100},
    )
    upload = ["exec", "-i", "-n", namespace, "client", "--", "sh", "-c",
              "base64 -d | tar -xz -C /work"]  # fmt: skip
    cluster.kubectl(*upload, stdin=packed((base, "base"), (dataset.parent, "data")))


def finetunejob(
    name: str,
    max_steps: int,
    cpu: str = "1",
    save_steps: int = 50,
    batch_size: int = 8,
    **spec: Any,
) -> dict[str, Any]:
    """A LoRA FineTuneJob of the ``job`` backend on ``training_volume``'s model and data."""
    return {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": "pvc://work/base"},
            "dataset": {"uri": "pvc://work/data/tickets.jsonl"},
            "method": {"type": "lora", "lora": {"targetModules": ["c_attn", "c_proj", "c_fc"]}},
            "hyperparameters": {
                "maxSteps": max_steps,
                "batchSize": batch_size,
                "maxSeqLength": 64,
                "learningRate": 0.002,
                "saveSteps": save_steps,
            },
            "resources": {"cpu": cpu, "memory": "2Gi"},
            "backend": "job",
            "output": {"uri": f"pvc://work/models/{name}", "modelName": name},
        }
        | spec,
    }


def chart_part(template: str, *settings: str, **values: Any) -> str:
    """One template of the chart, rendered with hack/values-local.yaml, ``settings``
    (``--set``) and ``values`` (each a top-level value, as JSON)."""
    sets = [arg for setting in settings for arg in ("--set", setting)]
    sets += [arg for key, v in values.items() for arg in ("--set-json", f"{key}={json.dumps(v)}")]
    return helm.run_helm(
        helm_binary(),
        "template", "kubeforge", str(helm.CHART), "-f", str(helm.LOCAL_VALUES), *sets,
        "-s", template,
    ).stdout  # fmt: skip


@pytest.fixture(scope="session")
def kserve(cluster: Cluster, kubeforge: str) -> Iterator[None]:
    """KServe's controller and the Gateway (localcluster.py kserve up), and the chart's
    ClusterServingRuntime of kubeforge's runtime; removed when the session ends, after the e2e
    tier, which the make targets run last (the integration tier plays KServe's Serverless mode
    with a stand-in on the same cluster). Once for the tier's modules that use it (about 45 s
    each up and down). test_demo.py, first in the tier, starts and removes its own KServe: run
    it before any module that uses this one, never after."""
    subprocess.run([*LOCALCLUSTER, "kserve", "up"], check=True, timeout=600)
    runtime = chart_part("templates/servingruntime.yaml", "kserve.servingRuntime.enabled=true")
    cluster.kubectl("apply", "-f", "-", stdin=runtime)
    yield
    if not KEEP:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", stdin=runtime)
        subprocess.run([*LOCALCLUSTER, "kserve", "down"], check=True, timeout=600)
