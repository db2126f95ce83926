"""GPU quota enforced by Kueue's real controller (built from its module, on the real node):
Workbenches over a team's quota wait with their place in the queue and Kueue's reason, and run
when a stopped one gives its GPUs back; a queue that does not exist and a request no quota can
ever hold are said, not waited on."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.conftest import KEEP, condition, get, wait_for_condition
from tests.integration.conftest import LOCALCLUSTER, Cluster, wait_until

KUEUE = "kueue.x-k8s.io/v1beta2"
FLAVOR = "kf-e2e-a100"
GPUS = 2


@pytest.fixture(scope="module")
def kueue(cluster: Cluster, kubeforge: str) -> Iterator[None]:
    """Kueue's controller (localcluster.py kueue up) for this module's tests only: its pod
    webhook would refuse queued pods anywhere once its server is gone."""
    subprocess.run([*LOCALCLUSTER, "kueue", "up"], check=True, timeout=600)
    yield
    if not KEEP:
        subprocess.run([*LOCALCLUSTER, "kueue", "down"], check=True, timeout=600)


@pytest.fixture
def team_queue(cluster: Cluster, kueue: None, e2e_namespace: str) -> Iterator[str]:
    """A ClusterQueue of 2 A100s for the test's namespace (no cohort: nothing to borrow), its
    ResourceFlavor on the kwok GPU nodes, and the LocalQueue ``gpu``."""
    ns = e2e_namespace
    tolerate = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    flavor = {
        "apiVersion": KUEUE,
        "kind": "ResourceFlavor",
        "metadata": {"name": FLAVOR},
        "spec": {
            "nodeLabels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            "tolerations": tolerate,
        },
    }
    quota = [("cpu", "16"), ("memory", "64Gi"), ("nvidia.com/gpu", str(GPUS))]
    cluster_queue = {
        "apiVersion": KUEUE,
        "kind": "ClusterQueue",
        "metadata": {"name": ns},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "resourceGroups": [
                {
                    "coveredResources": [r for r, _ in quota],
                    "flavors": [
                        {
                            "name": FLAVOR,
                            "resources": [{"name": r, "nominalQuota": q} for r, q in quota],
                        }
                    ],
                }
            ],
        },
    }
    local_queue = {
        "apiVersion": KUEUE,
        "kind": "LocalQueue",
        "metadata": {"name": "gpu", "namespace": ns},
        "spec": {"clusterQueue": ns},
    }
    items = [flavor, cluster_queue, local_queue]
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps({"kind": "List", "apiVersion": "v1",
                                                          "items": items}))  # fmt: skip
    yield ns
    if not KEEP:
        cluster.kubectl("delete", "clusterqueue", ns, "--wait=false", check=False)


def gpu_workbench(cluster: Cluster, ns: str, name: str, gpus: int = 1, queue: str = "gpu") -> None:
    body = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "Workbench",
        "metadata": {"name": name, "namespace": ns},
        # on a kwok GPU node: the quota is the subject here, not the container
        "spec": {
            "catalogImage": "jupyter",
            "resources": {"cpu": "500m", "memory": "1Gi", "accelerator": {"count": gpus}},
            "queueName": queue,
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))


def phase(cluster: Cluster, ns: str, name: str) -> str:
    return str((get(cluster, "workbench", ns, name).get("status") or {}).get("phase"))


def wait_phase(cluster: Cluster, ns: str, name: str, want: str, timeout: float = 120) -> Any:
    wait_until(lambda: phase(cluster, ns, name) == want, timeout, 1, f"{name} {want}")
    return get(cluster, "workbench", ns, name)


def gpu_usage(cluster: Cluster, cq: str) -> float:
    status = json.loads(cluster.kubectl("get", "clusterqueue", cq, "-o", "json").stdout)["status"]
    for flavor in status.get("flavorsUsage") or []:
        for res in flavor["resources"]:
            if res["name"] == "nvidia.com/gpu":
                return float(res["total"])
    return 0.0


@pytest.mark.slow  # Kueue's controller on the real node and the chart's operator
def test_the_third_gpu_workbench_queues_with_its_position_then_runs_when_one_stops(
    cluster: Cluster, team_queue: str
) -> None:
    ns = team_queue
    for name in ("wb1", "wb2"):
        gpu_workbench(cluster, ns, name)
        running = wait_phase(cluster, ns, name, "Running")
        assert running["status"]["gpus"] == 1
        assert "queue" not in running["status"]
    assert gpu_usage(cluster, ns) == GPUS

    gpu_workbench(cluster, ns, "wb3")
    queued = wait_for_condition(cluster, "workbench", ns, "wb3", "Scheduled", reason="Queued")
    wait_until(
        lambda: (get(cluster, "workbench", ns, "wb3")["status"].get("queue") or {}).get("position"),
        60, 1, "wb3's position from Kueue's visibility API",
    )  # fmt: skip
    queued = get(cluster, "workbench", ns, "wb3")
    assert queued["status"]["phase"] == "Queued"
    queue = queued["status"]["queue"]
    assert (queue["localQueue"], queue["clusterQueue"], queue["position"]) == ("gpu", ns, 1)
    assert queue["reason"] == "Pending"
    assert "insufficient unused quota for nvidia.com/gpu" in queue["message"]
    message = condition(queued, "Scheduled")["message"]
    where = f"LocalQueue gpu (ClusterQueue {ns}), position 1"
    assert message.startswith(f"waiting for quota in {where}")
    assert condition(queued, "Ready")["status"] == "False"
    # Kueue holds the pod itself back: no node, its admission gate on
    pod = get(cluster, "pod", ns, "wb3-0")
    assert not pod["spec"].get("nodeName")
    assert {"name": "kueue.x-k8s.io/admission"} in pod["spec"]["schedulingGates"]

    # a stopped Workbench gives its GPU back and the queued one is admitted
    cluster.kubectl(
        "patch", "workbench", "wb1", "-n", ns, "--type=merge", "-p", '{"spec":{"stopped":true}}'
    )
    admitted = wait_phase(cluster, ns, "wb3", "Running", timeout=120)
    assert admitted["status"]["gpus"] == 1
    assert "queue" not in admitted["status"]
    assert condition(admitted, "Scheduled")["reason"] == "Scheduled"
    assert wait_phase(cluster, ns, "wb1", "Stopped")["status"]["gpus"] == 0
    assert gpu_usage(cluster, ns) == GPUS


@pytest.mark.slow
def test_a_missing_queue_and_a_request_no_quota_can_hold_are_said(
    cluster: Cluster, team_queue: str
) -> None:
    ns = team_queue
    gpu_workbench(cluster, ns, "lost", queue="nope")
    lost = wait_for_condition(cluster, "workbench", ns, "lost", "Scheduled", reason="Inadmissible")
    assert lost["status"]["phase"] == "Queued"
    assert (
        "LocalQueue nope or its ClusterQueue does not exist: fix the queue name"
        in (condition(lost, "Scheduled")["message"])
    )
    gpu_workbench(cluster, ns, "big", gpus=GPUS + 1)
    big = wait_for_condition(cluster, "workbench", ns, "big", "Scheduled", reason="ExceedsQuota")
    assert (
        f"asks for {GPUS + 1} nvidia.com/gpu, more than ClusterQueue {ns} can ever give"
        in (condition(big, "Scheduled")["message"])
    )
    assert condition(big, "Ready")["status"] == "False"
