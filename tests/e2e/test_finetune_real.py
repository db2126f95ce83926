"""A FineTuneJob with the ``job`` backend on the real node: the validation Job and the training Job
run kubeforge's trainer image for real (torch on the CPU), read the base model and the dataset
from a volume, and register the fine-tuned version on it; the operator, a pod itself, reports the
metrics and the model."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import pytest
from tests.e2e.conftest import get, volume_with_client, wait_for_condition
from tests.integration.conftest import Cluster

from kubeforge_pipelines.tinymodel import build_base_model, support_tickets, write_dataset


def packed(*folders: tuple[Path, str]) -> str:
    """The folders as a gzipped tar, base64 (kubectl exec's stdin is text)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, name in folders:
            tar.add(path, arcname=name)
    return base64.b64encode(buf.getvalue()).decode()


# training for real (about 2 minutes with the trainer image's start): the slow tier
@pytest.mark.slow
def test_job_backend_trains_in_real_pods(
    cluster: Cluster, e2e_namespace: str, trainer_image: None, tmp_path: Path
) -> None:
    ns = e2e_namespace
    base = build_base_model(tmp_path / "base")
    dataset = write_dataset(tmp_path / "data" / "tickets.jsonl", support_tickets(300, 1))
    volume_with_client(
        cluster,
        ns,
        "work",
        "/work",
        storage_class="real-node",
        # the user and group kubeforge's training pods run as: a local volume gets its group
        # (fsGroup) from the first pod that mounts it on the node
        security_context={"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100},
    )
    upload = ["exec", "-i", "-n", ns, "client", "--", "sh", "-c", "base64 -d | tar -xz -C /work"]
    cluster.kubectl(*upload, stdin=packed((base, "base"), (dataset.parent, "data")))
    ftj = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "tickets"},
        "spec": {
            "baseModel": {"uri": "pvc://work/base"},
            "dataset": {"uri": "pvc://work/data/tickets.jsonl"},
            "method": {"type": "lora", "lora": {"targetModules": ["c_attn", "c_proj", "c_fc"]}},
            "hyperparameters": {
                "maxSteps": 20,
                "batchSize": 8,
                "maxSeqLength": 64,
                "learningRate": 0.002,
            },
            "resources": {"cpu": "1", "memory": "2Gi"},
            "backend": "job",
            "output": {"uri": "pvc://work/models", "modelName": "tickets"},
        },
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(ftj))
    done = wait_for_condition(
        cluster, "finetunejob", ns, "tickets", "Succeeded", status="True", timeout=420
    )
    status = done["status"]
    assert status["phase"] == "Succeeded"
    assert status["metrics"]["loss"] < status["metrics"]["baseLoss"]
    assert status["model"]["uri"] == "pvc://work/models/v1"
    # both Jobs' pods ran on the real node, as the trainer image's containers
    pods = json.loads(
        cluster.kubectl("get", "pods", "-n", ns, "-l", "job-name", "-o", "json").stdout
    )["items"]
    assert len(pods) >= 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == "kf-node-0"
        assert pod["spec"]["containers"][0]["image"] == "localhost/kubeforge/kubeforge-trainer:dev"
    # the registered version is on the volume, with its lineage
    listing = cluster.kubectl("exec", "-n", ns, "client", "--", "ls", "/work/models/v1").stdout
    assert "lineage.json" in listing.split()
    lineage = json.loads(
        cluster.kubectl(
            "exec", "-n", ns, "client", "--", "cat", "/work/models/v1/lineage.json"
        ).stdout
    )
    assert lineage["run"]["fineTuneJob"]["name"] == "tickets"
    assert get(cluster, "finetunejob", ns, "tickets")["status"]["datasetDigest"]
