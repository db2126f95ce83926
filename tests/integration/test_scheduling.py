"""The embedded control plane schedules for real: GPU pods land on GPU nodes, impossible requests
stay Pending with the scheduler's reason, and Jobs complete."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import Cluster, wait_until

pytestmark = pytest.mark.usefixtures("local_cluster")

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _pod(name: str, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "tolerations": [GPU_TOLERATION],
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def _get(cluster: Cluster, namespace: str, what: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", what, "-n", namespace, "-o", "json").stdout))


def test_nodes_have_gpus_labels_and_taints(cluster: Cluster) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    gpu = [n for n in nodes if "nvidia.com/gpu" in n["status"]["capacity"]]
    cpu = [n for n in nodes if "nvidia.com/gpu" not in n["status"]["capacity"]]
    assert len(gpu) >= 2
    assert len(cpu) >= 2
    for n in gpu:
        assert n["status"]["capacity"]["nvidia.com/gpu"] == "8"
        assert n["metadata"]["labels"]["nvidia.com/gpu.product"]
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in n["spec"][
            "taints"
        ]


def test_gpu_pod_lands_on_a_gpu_node_and_runs(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(_pod("gpu-2", 2)))

    def running() -> dict[str, Any] | None:
        pod = _get(cluster, namespace, "pod/gpu-2")
        return pod if pod["status"].get("phase") == "Running" else None

    pod = wait_until(running, 60, what="the GPU pod to run")
    assert pod["spec"]["nodeName"].startswith("kwok-gpu-")


def test_too_many_gpus_stays_pending_with_the_schedulers_reason(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(_pod("gpu-16", 16)))

    def unschedulable() -> dict[str, Any] | None:
        pod = _get(cluster, namespace, "pod/gpu-16")
        for cond in pod["status"].get("conditions", []):
            if cond["type"] == "PodScheduled" and cond["status"] == "False":
                return dict(cond)
        return None

    cond = wait_until(unschedulable, 60, what="the scheduler to give up on the pod")
    assert cond["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in cond["message"]
    assert _get(cluster, namespace, "pod/gpu-16")["status"]["phase"] == "Pending"


def test_a_job_runs_to_completion(cluster: Cluster, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}],
                }
            },
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(job))
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Complete", "--timeout=60s", "job/train"
    )
