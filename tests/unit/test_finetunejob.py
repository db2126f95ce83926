"""The FineTuneJob controller's pure parts: child manifests, how Job and TrainJob state reads
back, the status policy, and the KFP submission up to the client call."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from kubeforge_crds import ConditionStatus
from kubeforge_crds.contracts.pipeline import params_from_spec
from kubeforge_crds.finetunejob import FineTuneJobSpec
from kubeforge_operator.finetunejob.backends.kfp import phase_of, submission
from kubeforge_operator.finetunejob.builders import (
    RunState,
    build_train_job,
    build_validate_job,
    claims,
    observe_job,
)
from kubeforge_operator.finetunejob.reconcile import (
    checkpoint_uri,
    result_fields,
    run_outcome,
    validation_pending,
)
from kubeforge_operator.finetunejob.trainjob import (
    build_trainjob,
    observe_trainjob,
    trainer_problem,
)
from kubeforge_operator.runtime.placement import Placement
from kubeforge_operator.runtime.pods import termination_result
from tests.cases import example

OWNER = {
    "apiVersion": "kubeforge.io/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "ft", "namespace": "team-a", "uid": "0123456789abcdef"},
}
GPUS = Placement(
    gpus=2,
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    node_selector={"nvidia.com/gpu.product": "A100"},
    queue_name="team-gpus",
)


def spec(**changes: Any) -> FineTuneJobSpec:
    return FineTuneJobSpec.model_validate({**example("FineTuneJob")["spec"], **changes})


def params(s: FineTuneJobSpec | None = None) -> Any:
    s = s or spec()
    return params_from_spec(s, namespace="team-a", name="ft", uid="0123456789abcdef", backend="job")


def test_validation_job_asks_for_no_gpu_and_no_queue() -> None:
    job = build_validate_job(OWNER, spec(), params(), "img:1")
    pod = job["spec"]["template"]["spec"]
    assert job["metadata"]["name"] == "ft-validate"
    assert job["spec"]["backoffLimit"] == 0
    assert "nvidia.com/gpu" not in json.dumps(pod)
    assert "kueue.x-k8s.io/queue-name" not in json.dumps(job)
    assert job["metadata"]["ownerReferences"][0]["uid"] == "0123456789abcdef"


def test_train_job_carries_gpus_placement_queue_and_volumes() -> None:
    s = spec(env=[{"name": "HF_HOME", "value": "/x"}])
    job = build_train_job(OWNER, s, params(s), GPUS, "img:1")
    tmpl = job["spec"]["template"]
    ctr = tmpl["spec"]["containers"][0]
    assert ctr["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert ctr["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert tmpl["spec"]["tolerations"] == GPUS.tolerations
    assert tmpl["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    assert tmpl["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"
    assert {"name": "HF_HOME", "value": "/x"} in ctr["env"]
    claim_names = [v["persistentVolumeClaim"]["claimName"] for v in tmpl["spec"]["volumes"][1:]]
    assert claim_names == ["datasets", "models"]
    assert ctr["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert ctr["securityContext"]["allowPrivilegeEscalation"] is False
    assert tmpl["spec"]["automountServiceAccountToken"] is False


def test_data_connection_credentials_come_from_the_secret() -> None:
    s = spec(dataset={"uri": "s3://data/t.jsonl", "dataConnection": "s3-creds"})
    for job in (
        build_validate_job(OWNER, s, params(s), "i"),
        build_train_job(OWNER, s, params(s), GPUS, "i"),
    ):
        ctr = job["spec"]["template"]["spec"]["containers"][0]
        assert ctr["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]


def test_a_multi_node_run_is_a_trainjob_on_the_platforms_runtime() -> None:
    s = spec(
        resources={"nodes": 4, "accelerator": {"count": 8}},
        dataset={"uri": "pvc://datasets/t.jsonl", "dataConnection": "s3-creds"},
        priorityClass="high",
    )
    placement = Placement(gpus=8, queue_name="team-gpus", node_selector={"gpu": "a100"})
    job = build_trainjob(OWNER, s, params(s), placement, "img:1", "kubeforge-torch")
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert job["spec"]["runtimeRef"] == {
        "name": "kubeforge-torch",
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
    }
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (4, 8)
    assert trainer["command"][:5] == [
        "python", "-m", "torch.distributed.run", "-m", "kubeforge_pipelines"
    ]  # fmt: skip
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    # Kueue queues the TrainJob (one workload for every node) by its labels ...
    labels = job["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "team-gpus"
    assert labels["kueue.x-k8s.io/priority-class"] == "high"
    # ... and nothing below it: its JobSet, Jobs and pods are not queued again
    (patch,) = job["spec"]["runtimePatches"]
    assert patch["manager"] == "kubeforge.io/operator"
    template = patch["trainingRuntimeSpec"]["template"]
    (node,) = template["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]
    for meta in (template["metadata"], pod["metadata"]):
        assert "kueue.x-k8s.io/queue-name" not in meta["labels"]
        assert "kueue.x-k8s.io/priority-class" not in meta["labels"]
        assert meta["labels"]["kubeforge.io/finetunejob"] == "ft"
    # what Trainer lets a patch set: volumes, placement, mounts; no env on the node container
    assert pod["spec"]["nodeSelector"] == {"gpu": "a100"}
    (ctr,) = pod["spec"]["containers"]
    assert ctr["name"] == node["name"] == "node"
    assert "env" not in ctr
    mounted = {m["name"] for m in ctr["volumeMounts"]}
    assert mounted == {v["name"] for v in pod["spec"]["volumes"]}
    # a data connection's Secret: each key a variable (a TrainJob has no envFrom)
    keys = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for e in trainer["env"]
        if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "s3-creds"
    }
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_ENDPOINT"} <= keys


def test_a_trainjobs_variables_are_each_named_once_the_specs_winning() -> None:
    s = spec(
        resources={"nodes": 2},
        dataset={"uri": "s3://b/t.jsonl", "dataConnection": "s3-creds"},
        env=[
            {"name": "AWS_S3_ENDPOINT", "value": "http://minio:9000"},
            {"name": "HF_HOME", "value": "/a"},
            {"name": "HF_HOME", "value": "/b"},
        ],
    )
    job = build_trainjob(OWNER, s, params(s), Placement(), "img:1", "kubeforge-torch")
    env = job["spec"]["trainer"]["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))  # Trainer refuses a repeated name
    by_name = {e["name"]: e for e in env}
    assert by_name["HF_HOME"]["value"] == "/b"
    assert by_name["AWS_S3_ENDPOINT"] == {"name": "AWS_S3_ENDPOINT", "value": "http://minio:9000"}
    assert by_name["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
    # the node Jobs carry the FineTuneJob's label: their events reconcile it at once
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["template"]["metadata"]["labels"]["kubeforge.io/finetunejob"] == "ft"


def test_a_cluster_without_trainer_or_its_runtime_is_said_not_waited_on() -> None:
    from kubernetes import client
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    validated = validation_pending(None)
    missing = trainer_problem(ResourceNotFoundError("no TrainJob"), validated)
    accepted = next(d for d in missing.dependents if d.type == "Accepted")
    assert (missing.phase, accepted.status, accepted.reason) == (
        "Pending",
        ConditionStatus.FALSE,
        "TrainerNotInstalled",
    )
    assert "Kubeflow Trainer v2" in accepted.message
    refusal = client.ApiException(status=400)
    refusal.body = json.dumps(
        {"message": 'admission webhook "validator.trainjob.trainer.kubeflow.org" denied the '
                    'request: spec.runtimeRef: Not found: "kubeforge-torch"'}
    )  # fmt: skip
    refused = trainer_problem(refusal, validated)
    accepted = next(d for d in refused.dependents if d.type == "Accepted")
    assert accepted.reason == "RefusedByTrainer"
    assert accepted.message.endswith('spec.runtimeRef: Not found: "kubeforge-torch"')
    with pytest.raises(client.ApiException):  # anything else is not a verdict: raised
        trainer_problem(client.ApiException(status=500), validated)


def test_claims_come_from_pvc_uris_only() -> None:
    s = spec(output={"uri": "s3://bucket/models"})
    assert claims(params(s)) == ["datasets", "models"]  # base model and dataset stay on PVCs
    s = spec(
        baseModel={"uri": "hf://gpt2"},
        dataset={"uri": "s3://b/d.jsonl"},
        output={"uri": "s3://b/m"},
    )
    assert claims(params(s)) == []
    # the evaluation's prompt set on a volume of its own is mounted too, and reaches the steps
    s = spec(output={"uri": "s3://b/m"}, evaluation={"promptsUri": "pvc://evals/p.jsonl"})
    p = params(s)
    assert (p.eval_prompts_uri, p.eval_max_tokens) == ("pvc://evals/p.jsonl", 32)
    assert claims(p) == ["datasets", "evals", "models"]


def test_checkpoints_live_beside_a_volume_output_only() -> None:
    assert (
        checkpoint_uri(spec(), "ft", "0123456789abcdef")
        == "pvc://models/support-bot/.checkpoints/ft-01234567"
    )
    assert checkpoint_uri(spec(output={"uri": "s3://b/m"}), "ft", "0123456789") == ""


def _job(conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {"spec": {}, "status": {"conditions": conditions or [], **status}}


def _pod(message: str, finished: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    term = {"exitCode": 1, "message": message, "finishedAt": finished}
    return {"status": {"containerStatuses": [{"state": {"terminated": term}}]}}


@pytest.mark.parametrize(
    ("job", "state", "reason"),
    [
        (_job(), "Queued", "PodsPending"),
        (_job(active=1, startTime="t0"), "Running", "JobRunning"),
        ({"spec": {"suspend": True}, "status": {}}, "Queued", "Suspended"),
        (
            _job([{"type": "Complete", "status": "True"}], completionTime="t1"),
            "Succeeded",
            "JobComplete",
        ),
        (_job([{"type": "SuccessCriteriaMet", "status": "True"}]), "Succeeded", "JobComplete"),
        (
            _job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]),
            "Failed",
            "BackoffLimitExceeded",
        ),
        (_job([{"type": "Failed", "status": "False"}], active=1), "Running", "JobRunning"),
    ],
)
def test_job_state(job: dict[str, Any], state: str, reason: str) -> None:
    observed = observe_job(job, [])
    assert observed is not None
    assert (observed.state, observed.reason) == (state, reason)


def test_a_succeeded_job_has_one_completion_time_before_and_after_complete() -> None:
    met = {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "t1"}
    before = observe_job(_job([met], startTime="t0"), [])  # pods still terminating
    complete = {"type": "Complete", "status": "True", "lastTransitionTime": "t2"}
    after = observe_job(_job([met, complete], startTime="t0", completionTime="t2"), [])
    assert before is not None
    assert after is not None
    assert before.completion_time == after.completion_time == "t1"
    older = observe_job(_job([complete], completionTime="t2"), [])  # before 1.31: no criteria
    assert older is not None
    assert older.completion_time == "t2"


def test_a_failed_job_reports_its_container_error() -> None:
    failed = _job(
        [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}]
    )
    pods = [
        _pod('{"error": "old"}', "2026-01-01T00:00:00Z"),
        _pod('{"error": "DatasetError: row 3"}', "2026-01-01T00:05:00Z"),
    ]
    observed = observe_job(failed, pods)
    assert observed is not None
    assert observed.message == "DatasetError: row 3"  # the newest attempt's
    fallback = observe_job(failed, [])  # no pod left a message: the Job's own
    assert fallback is not None
    assert fallback.message == "limit"
    assert observe_job(None, []) is None


UNSCHEDULED = {
    "metadata": {"name": "ft-train-x"},
    "status": {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/5 nodes are available: 1 Insufficient cpu.",
            }
        ],
    },
}


def test_a_pod_no_node_fits_is_queued_with_the_schedulers_reason_not_running() -> None:
    # the Job counts the pending pod as active: without the pod's condition it would say Running
    for observed in (
        observe_job(_job(active=1, startTime="t0"), [UNSCHEDULED]),
        observe_trainjob({"status": {"conditions": []}}, [UNSCHEDULED]),
    ):
        assert observed is not None
        assert (observed.state, observed.reason) == ("Queued", "Unschedulable")
        assert observed.message == (
            "pod ft-train-x is not scheduled (Unschedulable): 0/5 nodes are available: "
            "1 Insufficient cpu."
        )
    # the validation Job's pod: the FineTuneJob's Validated condition says why it waits
    waits = validation_pending(observe_job(_job(active=1), [UNSCHEDULED]))
    assert (waits.status, waits.reason) == (ConditionStatus.UNKNOWN, "Unschedulable")
    assert waits.message.startswith("the validation Job waits: pod ft-train-x is not scheduled")
    assert validation_pending(observe_job(_job(), [])).reason == "Validating"
    scheduled = {"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}}
    running = observe_job(_job(active=1), [scheduled])
    assert running is not None
    assert running.state == "Running"


def test_termination_message_falls_back_to_the_log_tail() -> None:
    assert termination_result([_pod("Traceback ...\nOSError: disk full\n")]) == {
        "error": "Traceback ...\nOSError: disk full"
    }
    assert termination_result([{"status": {}}]) == {}


def _node_pod(index: str, phase: str, message: str | None = None) -> dict[str, Any]:
    statuses = []
    if message is not None:
        term = {"exitCode": 0, "message": message, "finishedAt": f"2026-01-01T00:00:0{index}Z"}
        statuses = [{"state": {"terminated": term}}]
    return {
        "metadata": {"labels": {"batch.kubernetes.io/job-completion-index": index}},
        "status": {"phase": phase, "startTime": f"t{index}", "containerStatuses": statuses},
    }


def test_trainjob_state() -> None:
    two = {"spec": {"trainer": {"numNodes": 2}}, "status": {}}
    assert observe_trainjob(two, []) == RunState(
        "Queued", "PodsPending", "waiting for the TrainJob's pods"
    )
    # running once every node runs (torchrun's rendezvous waits for all of them)
    one_up = observe_trainjob(two, [_node_pod("0", "Running"), _node_pod("1", "Pending")])
    assert one_up is not None
    assert one_up.state == "Queued"
    both = observe_trainjob(two, [_node_pod("0", "Running"), _node_pod("1", "Running")])
    assert both == RunState("Running", "TrainJobRunning", "", "t0")
    suspended = {"spec": {"suspend": True}, "status": {}}
    assert observe_trainjob(suspended, []).reason == "Suspended"  # type: ignore[union-attr]
    # done: the result is node 0's (rank 0 evaluates and registers), though node 1 ended last
    complete = {
        "status": {
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "t9"}]
        }
    }
    pods = [
        _node_pod("0", "Succeeded", '{"model": {"name": "m"}}'),
        _node_pod("1", "Succeeded", '{"training": {"steps": 20}}'),
    ]
    done = observe_trainjob(complete, pods)
    assert done is not None
    assert (done.state, done.reason, done.completion_time) == (
        "Succeeded",
        "TrainJobComplete",
        "t9",
    )
    assert done.result == {"model": {"name": "m"}}
    # failed: JobSet's reason, the program's own error
    failed = {
        "status": {
            "conditions": [
                {"type": "Failed", "status": "True", "reason": "FailedJobs", "message": "m"}
            ]
        }
    }
    # node 1 failed first (the cause); node 0 died after it, its rendezvous broken
    cause = _pod('{"error": "CUDA out of memory"}', finished="2026-01-01T00:00:00Z")
    after = _pod('{"error": "RendezvousClosedError"}', finished="2026-01-01T00:00:09Z")
    state = observe_trainjob(failed, [after, cause])
    assert state is not None
    assert (state.state, state.reason, state.message) == (
        "Failed",
        "FailedJobs",
        "CUDA out of memory",
    )


def test_outcome_of_a_successful_run_carries_model_metrics_and_releases_gpus() -> None:
    result = {
        "model": {"name": "m", "version": "v2", "uri": "pvc://models/m/v2"},
        "metrics": {"loss": 1.5, "perplexity": 4.5, "evalTokens": 100.0},
        "metricsBefore": {"loss": 3.0},
        "datasetDigest": "ab" * 32,
    }
    out = run_outcome(RunState("Succeeded", "JobComplete", "", "t0", "t1", result), GPUS, None)
    assert out.phase == "Succeeded"
    assert out.fields["gpus"] == 0
    assert out.fields["model"]["version"] == "v2"
    assert out.fields["metrics"] == {"loss": 1.5, "perplexity": 4.5, "baseLoss": 3.0}
    assert out.fields["datasetDigest"] == "ab" * 32
    succeeded = next(d for d in out.dependents if d.type == "Succeeded")
    assert succeeded.status == ConditionStatus.TRUE
    assert "registered m v2" in succeeded.message


@pytest.mark.parametrize(
    ("state", "gpus", "succeeded", "failed"),
    [
        (RunState("Running", "JobRunning"), 2, ConditionStatus.UNKNOWN, ConditionStatus.FALSE),
        (RunState("Queued", "PodsPending"), 2, ConditionStatus.UNKNOWN, ConditionStatus.FALSE),
        (RunState("Queued", "Suspended"), 0, ConditionStatus.UNKNOWN, ConditionStatus.FALSE),
        (
            RunState("Failed", "BackoffLimitExceeded", "boom"),
            0,
            ConditionStatus.FALSE,
            ConditionStatus.TRUE,
        ),
    ],
)
def test_outcome_conditions_and_gpus_held(
    state: RunState, gpus: int, succeeded: ConditionStatus, failed: ConditionStatus
) -> None:
    out = run_outcome(state, GPUS, None)
    assert out.fields["gpus"] == gpus
    assert next(d for d in out.dependents if d.type == "Succeeded").status == succeeded
    assert next(i for i in out.info if i.type == "Failed").status == failed


def test_result_fields_ignore_malformed_results() -> None:
    assert result_fields({"model": {"name": "x"}, "metrics": {"loss": "high"}}) == {"metrics": {}}
    assert result_fields({}) == {}


def test_kfp_submission_up_to_the_client_call() -> None:
    sub = submission(params(), "team-a", "ft", "0123456789abcdef", "kubeforge")
    assert sub.run_name == "team-a.ft.01234567"
    assert sub.package_path.endswith("kubeforge_pipelines/compiled/finetune.yaml")
    # the arguments are exactly the compiled pipeline's inputs
    ir = yaml.safe_load(open(sub.package_path))  # noqa: SIM115, PTH123
    inputs = set(ir["root"]["inputDefinitions"]["parameters"])
    assert set(sub.arguments) == inputs
    assert sub.arguments["dataset_uri"] == "pvc://datasets/support-tickets.jsonl"
    assert json.loads(str(sub.arguments["params_json"]))["model_name"] == "support-bot"


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("PENDING", "Queued"),
        ("RUNNING", "Running"),
        ("SUCCEEDED", "Succeeded"),
        ("FAILED", "Failed"),
        ("CANCELED", "Failed"),
        ("", "Queued"),
        ("something-new", "Queued"),
    ],
)
def test_kfp_states(state: str, phase: str) -> None:
    assert phase_of(state) == phase


def test_the_job_backends_summary_reports_the_base_loss_as_the_local_backend_does() -> None:
    from kubeforge_pipelines.steps import summary

    lineage = {
        "model": {"name": "tickets", "version": "v1", "uri": "pvc://work/models/v1"},
        "metrics": {"loss": 1.5, "perplexity": 4.5, "evalTokens": 900},
        "metricsBefore": {"loss": 3.25, "perplexity": 25.8},
        "dataset": {"sha256": "abc"},
    }
    from_job = result_fields(json.loads(summary(lineage)))
    assert from_job["metrics"] == {"loss": 1.5, "perplexity": 4.5, "baseLoss": 3.25}
    assert from_job == result_fields({**lineage, "datasetDigest": "abc"})
    without = {k: v for k, v in lineage.items() if k != "metricsBefore"}
    assert "baseLoss" not in result_fields(json.loads(summary(without)))["metrics"]


def test_result_fields_carry_where_training_resumed_and_why_it_started_over() -> None:
    summary = {
        "training": {
            "steps": 40,
            "resumedFromStep": 12,
            "restartReason": "checkpoint-14 is incomplete (stopped while saving), not used",
            "tokens": 123,  # the local backend's full record has more; status keeps these
        }
    }
    assert result_fields(summary)["training"] == {
        "steps": 40,
        "resumedFromStep": 12,
        "restartReason": "checkpoint-14 is incomplete (stopped while saving), not used",
    }
    assert "training" not in result_fields({"training": {}})


def test_the_loss_curve_reaches_status_through_the_4_kib_termination_message() -> None:
    from kubeforge_pipelines.steps import summary
    from kubeforge_pipelines.train import LOSS_CURVE_POINTS

    curve = [{"step": 100_000 + i * 1000, "loss": 1.234567 + i} for i in range(LOSS_CURVE_POINTS)]
    lineage = {
        "model": {"name": "tickets", "version": "v12", "uri": "s3://bucket/" + "m" * 200},
        "metrics": {"loss": 1.5, "perplexity": 4.5, "tokenAccuracy": 0.5},
        "metricsBefore": {"loss": 3.25},
        "dataset": {"sha256": "f" * 64},
        "training": {"steps": 132_000, "resumedFromStep": 99_000, "lossCurve": curve,
                     "restartReason": "checkpoint-98000 would not load: " + "x" * 300},
    }  # fmt: skip
    message = summary(lineage)
    assert len(message) <= 4096
    training = result_fields(json.loads(message))["training"]
    assert training["lossCurve"] == curve
    assert training["steps"] == 132_000


def test_a_run_waiting_in_kueues_queue_holds_no_gpus() -> None:
    """Kueue's reason replaces 'Suspended' while it waits: it still holds nothing."""
    waiting = RunState("Queued", "Queued", "waiting for quota in LocalQueue gpu, position 2")
    out = run_outcome(waiting, GPUS, None, {"queue": {"localQueue": "gpu", "position": 2}})
    assert out.fields["gpus"] == 0
    assert out.phase == "Queued"
    running = run_outcome(RunState("Running", "JobRunning", ""), GPUS, None, {"queue": None})
    assert running.fields["gpus"] == GPUS.gpus


def test_a_job_without_a_queue_or_a_cluster_without_kueue_has_no_workload() -> None:
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    from kubeforge_operator.runtime.queueing import job_workload

    class NoKueue:
        def list_children(self, *args: Any) -> list[dict[str, Any]]:
            raise ResourceNotFoundError("no kueue.x-k8s.io/v1beta2 Workload")

    job = {"metadata": {"name": "t", "namespace": "ns", "uid": "u1", "labels": {}}}
    assert job_workload(NoKueue(), job) is None  # type: ignore[arg-type]
    job["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "gpu"}
    assert job_workload(NoKueue(), job) is None  # type: ignore[arg-type]
