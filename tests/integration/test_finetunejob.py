"""FineTuneJob against the real apiserver, scheduler, controller manager (Job controller, garbage
collector) and kwok nodes.

Backend job: a CPU-only validation Job, then a GPU training Job (or a TrainJob Kubeflow Trainer's
CRD schema accepts) with GPU limits, tolerations, node selector and the Kueue queue label. kwok
completes the pods of Jobs (our stage file fails the ones whose container sets
KWOK_SIMULATE_FAILURE, with its value as the termination message). Trainer's controller does not
run in this tier, so that test sets the TrainJob's status as Trainer would; the e2e tier
(tests/e2e/test_queueing_real.py) runs a TrainJob on two nodes with Trainer's and JobSet's real
controllers.

Backend local: the pipeline really runs beside the operator (kfp's local runner), and its
result reaches status.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.cases import example
from tests.integration.conftest import (
    ISOLATED_PREFIX,
    Cluster,
    start_operator,
    stop_operator,
    wait_until,
)

pytestmark = [pytest.mark.usefixtures("operator", "local_cluster")]


def _get(cluster: Cluster, ns: str, what: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", what, "-n", ns, "-o", "json", check=False)
    return dict(json.loads(proc.stdout)) if proc.returncode == 0 else None


def _apply(cluster: Cluster, ns: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(obj))


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def _ftj(name: str, **spec: Any) -> dict[str, Any]:
    base = example("FineTuneJob")
    return {
        "apiVersion": base["apiVersion"],
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {**base["spec"], **spec},
    }


def _wait_phase(
    cluster: Cluster, ns: str, name: str, phase: str, timeout: float = 90
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj = _get(cluster, ns, f"finetunejob/{name}")
        return obj if obj and obj.get("status", {}).get("phase") == phase else None

    return dict(wait_until(reached, timeout, what=f"FineTuneJob {name} to be {phase}"))


@pytest.fixture(scope="module")
def volumes(cluster: Cluster, namespace: str) -> str:
    """The claims the example's pvc:// URIs name."""
    for claim in ("models", "datasets"):
        _apply(
            cluster,
            namespace,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
    return namespace


def test_job_backend_validates_on_cpu_then_trains_on_gpus(cluster: Cluster, volumes: str) -> None:
    ns = volumes
    _apply(
        cluster,
        ns,
        _ftj(
            "tune",
            resources={"cpu": "2", "memory": "8Gi", "accelerator": {"count": 2}},
            queueName="team-gpus",
            env=[{"name": "HF_HOME", "value": "/mnt/pvc/models/.hf"}],
        ),
    )
    ftj = _wait_phase(cluster, ns, "tune", "Succeeded")

    validate = _get(cluster, ns, "job/tune-validate")
    assert validate is not None
    vpod = validate["spec"]["template"]["spec"]
    vctr = vpod["containers"][0]
    assert "nvidia.com/gpu" not in vctr["resources"]["limits"]  # no GPU before input is checked
    assert "kueue.x-k8s.io/queue-name" not in validate["metadata"]["labels"]
    assert "tolerations" not in vpod
    assert vctr["command"][:4] == ["python", "-m", "kubeforge_pipelines", "validate"]
    assert "HF_HOME" not in {e["name"] for e in vctr["env"]}

    train = _get(cluster, ns, "job/tune-train")
    assert train is not None
    assert train["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"
    pod = train["spec"]["template"]
    assert pod["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"
    ctr = pod["spec"]["containers"][0]
    assert ctr["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"][
        "tolerations"
    ]
    assert ctr["command"][:6] == [
        "python",
        "-m",
        "kubeforge_pipelines",
        "run",
        "--runner=steps",
        "--workdir=/workspace",
    ]
    params = json.loads(next(a for a in ctr["command"] if a.startswith("--params-json="))[14:])
    assert params["dataset_uri"] == "pvc://datasets/support-tickets.jsonl"
    assert params["checkpoint_uri"].startswith("pvc://models/support-bot/.checkpoints/tune-")
    mounts = {m["mountPath"] for m in ctr["volumeMounts"]}
    assert {"/mnt/pvc/models", "/mnt/pvc/datasets"} <= mounts
    assert {"name": "HF_HOME", "value": "/mnt/pvc/models/.hf"} in ctr["env"]
    pods = json.loads(
        cluster.kubectl("get", "pods", "-n", ns, "-l", "job-name=tune-train", "-o", "json").stdout
    )
    assert pods["items"][0]["spec"]["nodeName"].startswith("kwok-gpu-")

    status = ftj["status"]
    conds = _conditions(ftj)
    assert conds["Validated"]["status"] == "True"
    assert conds["Succeeded"]["status"] == "True"
    assert conds["Failed"]["status"] == "False"
    assert conds["Ready"]["status"] == "True"
    assert status["runId"] == f"job/{ns}/tune-train"
    assert status["gpus"] == 0  # released once the run ended
    assert status["startTime"] <= status["completionTime"]
    assert status["lineage"]["baseModel"] == "pvc://models/tiny-gpt2"
    # a simulated node runs no container, so no model was reported, and status says so
    assert "model" not in status
    assert conds["Succeeded"]["message"] == (
        "the run succeeded but reported no model version (no termination message)"
    )

    events = json.loads(cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    started = [
        e
        for e in events
        if e["reason"] == "TrainingStarted" and e["involvedObject"]["name"] == "tune"
    ]
    assert started
    assert "2 GPU(s)" in started[0]["message"]


def test_failing_training_job_reports_failed_with_the_reason(
    cluster: Cluster, volumes: str
) -> None:
    ns = volumes
    error = "ModelError: LoRA target modules ['q_proj'] are not in the model"
    _apply(
        cluster,
        ns,
        _ftj(
            "doomed", env=[{"name": "KWOK_SIMULATE_FAILURE", "value": json.dumps({"error": error})}]
        ),
    )
    ftj = _wait_phase(cluster, ns, "doomed", "Failed")
    conds = _conditions(ftj)
    assert conds["Failed"]["status"] == "True"
    assert conds["Failed"]["reason"] == "BackoffLimitExceeded"
    assert error in conds["Failed"]["message"]
    assert conds["Ready"]["status"] == "False"
    assert conds["Succeeded"]["status"] == "False"
    assert ftj["status"]["completionTime"]


def test_multi_node_run_is_a_trainjob_the_crd_accepts(cluster: Cluster, volumes: str) -> None:
    ns = volumes
    _apply(
        cluster,
        ns,
        _ftj(
            "multi",
            resources={
                "cpu": "8",
                "memory": "32Gi",
                "nodes": 3,
                "accelerator": {"count": 4, "product": "NVIDIA-A100-SXM4-80GB"},
            },
            queueName="team-gpus",
        ),
    )

    def created() -> dict[str, Any] | None:
        return _get(cluster, ns, "trainjob/multi-train")

    job = wait_until(created, 60, what="the TrainJob")
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 4)
    assert trainer["command"][:5] == [
        "python", "-m", "torch.distributed.run", "-m", "kubeforge_pipelines"
    ]  # fmt: skip
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
    assert job["spec"]["runtimeRef"]["name"] == "kubeforge-torch"
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"
    running = _wait_phase(cluster, ns, "multi", "Queued", 30)
    assert running["status"]["gpus"] == 3 * 4  # the run's: 4 on each of its 3 nodes

    # Trainer's controller does not run in this tier: its verdict, on the status subresource
    now = "2026-01-01T00:00:00Z"
    complete = {"type": "Complete", "status": "True", "reason": "AllJobsCompleted",
                "message": "jobset completed successfully", "lastTransitionTime": now}  # fmt: skip
    cluster.kubectl(
        "patch", "trainjob", "multi-train", "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"conditions": [complete]}}),
    )  # fmt: skip
    done = _wait_phase(cluster, ns, "multi", "Succeeded", 30)
    assert _conditions(done)["Succeeded"]["reason"] == "TrainJobComplete"
    assert done["status"]["runId"] == f"trainjob/{ns}/multi-train"


def test_more_gpus_than_the_profile_allows_fails_before_any_job(
    cluster: Cluster, volumes: str
) -> None:
    ns = volumes
    _apply(cluster, ns, _ftj("greedy", resources={"accelerator": {"profile": "a100", "count": 8}}))
    ftj = _wait_phase(cluster, ns, "greedy", "Failed", 30)
    accepted = _conditions(ftj)["Accepted"]
    assert accepted["reason"] == "OutsideHardwareProfile"
    assert "spec.resources.accelerator.count: 8 is outside" in accepted["message"]
    assert _get(cluster, ns, "job/greedy-validate") is None


def test_missing_data_connection_waits_and_names_the_secret(cluster: Cluster, volumes: str) -> None:
    ns = volumes
    spec = example("FineTuneJob")["spec"]
    _apply(
        cluster,
        ns,
        _ftj(
            "s3",
            dataset={
                **spec["dataset"],
                "uri": "s3://datasets/t.jsonl",
                "dataConnection": "s3-creds",
            },
        ),
    )
    ftj = _wait_phase(cluster, ns, "s3", "Pending", 30)
    cond = wait_until(
        lambda: _conditions(_get(cluster, ns, "finetunejob/s3") or {}).get("DataConnectionReady"),
        30,
    )
    assert cond["status"] == "False"
    assert "Secret 's3-creds' not found" in cond["message"]
    assert ftj["status"].get("gpus", 0) == 0
    assert _get(cluster, ns, "job/s3-validate") is None


def test_spec_is_immutable(cluster: Cluster, volumes: str) -> None:
    ns = volumes
    _apply(cluster, ns, _ftj("fixed"))
    proc = cluster.kubectl(
        "patch",
        "ftj",
        "fixed",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec":{"hyperparameters":{"epochs":3}}}',
        check=False,
    )
    assert proc.returncode != 0
    assert "spec is immutable; create a new FineTuneJob instead" in proc.stderr


def test_deleting_the_finetunejob_removes_its_jobs_and_pods(cluster: Cluster, volumes: str) -> None:
    ns = volumes
    _apply(cluster, ns, _ftj("temp"))
    _wait_phase(cluster, ns, "temp", "Succeeded")
    assert _get(cluster, ns, "job/temp-train") is not None
    cluster.kubectl("delete", "ftj", "temp", "-n", ns, "--wait=true")

    def gone() -> bool:
        jobs = cluster.kubectl(
            "get", "jobs,pods", "-n", ns, "-l", "kubeforge.io/finetunejob=temp", "-o", "name"
        ).stdout
        return not jobs.strip()

    wait_until(gone, 60, what="the garbage collector to remove the Jobs and pods")


# --- backend local: the pipeline for real, beside the operator -----------------------------------


def _local_ftj(name: str, base: Path, dataset: Path, out: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": f"file://{base}"},
            "dataset": {"uri": f"file://{dataset}"},
            "method": {"type": "lora", "lora": {"targetModules": ["c_attn", "c_proj", "c_fc"]}},
            "hyperparameters": {
                "maxSteps": 40,
                "batchSize": 8,
                "maxSeqLength": 64,
                "learningRate": 0.002,
            },
            "backend": "local",
            "output": {"uri": f"file://{out}", "modelName": "tickets"},
        },
    }


def test_local_backend_trains_registers_and_reports(
    cluster: Cluster, namespace: str, tiny_base_model: Path, tickets_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "models"
    _apply(cluster, namespace, _local_ftj("local", tiny_base_model, tickets_dataset, out))
    running = _wait_phase(cluster, namespace, "local", "Running", 30)
    assert _conditions(running)["Succeeded"]["status"] == "Unknown"
    ftj = _wait_phase(cluster, namespace, "local", "Succeeded", 300)
    status = ftj["status"]
    assert status["model"] == {"name": "tickets", "version": "v1", "uri": f"file://{out}/v1"}
    assert status["metrics"]["loss"] < status["metrics"]["baseLoss"]
    assert status["metrics"]["perplexity"] > 1
    # the loss as the trainer logged it: every 5 of the 40 steps (a curve of 8 points)
    curve = status["training"]["lossCurve"]
    assert [p["step"] for p in curve] == list(range(5, 41, 5))
    assert curve[-1]["loss"] < curve[0]["loss"]
    digest = hashlib.sha256(tickets_dataset.read_bytes()).hexdigest()
    assert status["datasetDigest"] == digest
    assert status["lineage"]["datasetDigest"] == digest
    assert status["lineage"]["uri"] == f"file://{out}/v1/lineage.json"
    assert status["runId"].startswith("local/")
    lineage = json.loads((out / "v1" / "lineage.json").read_text())
    assert lineage["run"]["fineTuneJob"]["name"] == "local"
    assert lineage["run"]["fineTuneJob"]["namespace"] == namespace
    assert _conditions(ftj)["Ready"]["status"] == "True"
    assert "registered tickets v1" in _conditions(ftj)["Succeeded"]["message"]


def test_local_backend_bad_dataset_fails_naming_row_and_field(
    cluster: Cluster, namespace: str, tiny_base_model: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"text": "b"}\n{"body": "c"}\n')
    _apply(cluster, namespace, _local_ftj("baddata", tiny_base_model, bad, tmp_path / "models"))
    ftj = _wait_phase(cluster, namespace, "baddata", "Failed", 120)
    failed = _conditions(ftj)["Failed"]
    assert failed["reason"] == "PipelineFailed"
    assert "step prepare failed" in failed["message"]
    assert "row 3: field 'text' is missing (fields: body)" in failed["message"]
    assert not (tmp_path / "models").exists()


# --- backend kfp: everything up to the KFP API ---------------------------------------------------


def test_kfp_backend_without_an_api_says_how_to_fix_it(cluster: Cluster, volumes: str) -> None:
    ns = volumes
    _apply(cluster, ns, _ftj("viakfp", backend="kfp"))
    ftj = _wait_phase(cluster, ns, "viakfp", "Pending", 30)
    accepted = wait_until(
        lambda: _conditions(_get(cluster, ns, "finetunejob/viakfp") or {}).get("Accepted"), 30
    )
    assert accepted["reason"] == "KFPNotConfigured"
    assert "KUBEFORGE_OPERATOR_KFP_HOST" in accepted["message"]
    assert ftj["status"].get("runId") is None


def test_kfp_backend_with_an_unreachable_api_waits_and_says_why(
    cluster: Cluster, tmp_path: Path
) -> None:
    ns = f"{ISOLATED_PREFIX}kfp"
    cluster.kubectl("create", "namespace", ns, check=False)
    op = start_operator(
        cluster, tmp_path, kfp_host="http://127.0.0.1:9", namespaces=json.dumps([ns])
    )
    try:
        _apply(cluster, ns, _ftj("viakfp", backend="kfp"))
        ftj = _wait_phase(cluster, ns, "viakfp", "Queued", 60)
        succeeded = _conditions(ftj)["Succeeded"]
        assert succeeded["status"] == "Unknown"
        assert succeeded["reason"] == "KFPUnreachable"
        assert "KFP API at http://127.0.0.1:9" in succeeded["message"]
    finally:
        stop_operator(op)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
