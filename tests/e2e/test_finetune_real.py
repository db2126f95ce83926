"""A FineTuneJob with the ``job`` backend on the real node: the validation Job and the training Job
run kubeforge's trainer image for real (torch on the CPU), read the base model and the dataset
from a volume, and register the fine-tuned version on it; the operator, a pod itself, reports the
metrics and the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.e2e.conftest import finetunejob, get, training_volume, wait_for_condition
from tests.integration.conftest import Cluster


# training for real (about 2 minutes with the trainer image's start): the slow tier
@pytest.mark.slow
def test_job_backend_trains_in_real_pods(
    cluster: Cluster, e2e_namespace: str, trainer_image: None, tmp_path: Path
) -> None:
    ns = e2e_namespace
    training_volume(cluster, ns, tmp_path)
    ftj = finetunejob("tickets", max_steps=20)
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(ftj))
    done = wait_for_condition(
        cluster, "finetunejob", ns, "tickets", "Succeeded", status="True", timeout=420
    )
    status = done["status"]
    assert status["phase"] == "Succeeded"
    assert status["metrics"]["loss"] < status["metrics"]["baseLoss"]
    assert status["model"]["uri"] == "pvc://work/models/tickets/v1"
    # both Jobs' pods ran on the real node, as the trainer image's containers
    pods = json.loads(
        cluster.kubectl("get", "pods", "-n", ns, "-l", "job-name", "-o", "json").stdout
    )["items"]
    assert len(pods) >= 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == "kf-node-0"
        assert pod["spec"]["containers"][0]["image"] == "localhost/kubeforge/kubeforge-trainer:dev"
    # the registered version is on the volume, with its lineage
    version = "/work/models/tickets/v1"
    listing = cluster.kubectl("exec", "-n", ns, "client", "--", "ls", version).stdout
    assert "lineage.json" in listing.split()
    lineage = json.loads(
        cluster.kubectl("exec", "-n", ns, "client", "--", "cat", f"{version}/lineage.json").stdout
    )
    assert lineage["run"]["fineTuneJob"]["name"] == "tickets"
    assert get(cluster, "finetunejob", ns, "tickets")["status"]["datasetDigest"]
