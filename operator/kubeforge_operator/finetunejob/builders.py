"""Children of a FineTuneJob with backend ``job``, and how their state reads back.

Two stages, so that a bad dataset or model is reported before any GPU is requested:

1. ``<name>-validate``: a CPU-only Job that runs ``python -m kubeforge_pipelines validate``
   (reads and checks every row, checks the model format and the LoRA target modules on a
   meta-device skeleton) and exits;
2. ``<name>-train``: once validation succeeded, a Job (one node) or a Kubeflow Trainer
   TrainJob (several nodes, torchrun: ``trainjob``) with the GPUs, node selector,
   tolerations and Kueue queue label, running ``python -m kubeforge_pipelines run --runner=steps``.

Both run the pipeline's own step functions, and leave a JSON summary as the container's
termination message, which the operator copies into status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from kubeforge_crds.contracts.labels import FINETUNEJOB_LABEL, STAGE_LABEL
from kubeforge_crds.contracts.pipeline import PipelineParams
from kubeforge_crds.finetunejob import FineTuneJobSpec
from kubeforge_operator.runtime.children import (
    child_metadata,
    container_security_context,
    pod_security_context,
    standard_labels,
)
from kubeforge_operator.runtime.placement import Placement
from kubeforge_operator.runtime.pods import (
    PodProblem,
    first_problem,
    termination_result,
    true_condition,
    unscheduled,
)

# the FineTuneJob's conditions of a run (besides Accepted and Ready)
SUCCEEDED = "Succeeded"
FAILED = "Failed"
PVC_ROOT = "/mnt/pvc"
WORKDIR = "/workspace"
TERMINATION_LOG = "/dev/termination-log"


def job_name(owner_name: str, stage: str) -> str:
    return f"{owner_name}-{stage}"


def labels(owner_name: str, stage: str) -> dict[str, str]:
    return standard_labels("finetunejob", owner_name, stage) | {
        FINETUNEJOB_LABEL: owner_name,
        STAGE_LABEL: stage,
    }


def claims(params: PipelineParams) -> list[str]:
    """PersistentVolumeClaims named by the run's pvc:// URIs, in a stable order."""
    uris = [
        params.base_model_uri,
        params.dataset_uri,
        params.output_uri,
        params.checkpoint_uri,
        params.eval_prompts_uri,
    ]
    return sorted({urlparse(u).netloc for u in uris if u.startswith("pvc://")})


def _volumes(params: PipelineParams) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [{"name": "workspace", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "workspace", "mountPath": WORKDIR}]
    for i, claim in enumerate(claims(params)):
        volumes.append({"name": f"pvc-{i}", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": f"pvc-{i}", "mountPath": f"{PVC_ROOT}/{claim}"})
    return volumes, mounts


def _container(
    name: str,
    spec: FineTuneJobSpec,
    image: str,
    command: list[str],
    mounts: list[dict[str, Any]],
    gpu_limits: dict[str, str],
) -> dict[str, Any]:
    res = spec.resources
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": command,
        "env": [{"name": e.name, "value": e.value} for e in spec.env]
        + [{"name": "KUBEFORGE_PVC_ROOT", "value": PVC_ROOT}, {"name": "HOME", "value": WORKDIR}],
        "resources": {
            "requests": {"cpu": res.cpu, "memory": res.memory},
            "limits": {"cpu": res.cpu, "memory": res.memory, **gpu_limits},
        },
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(),
    }
    if spec.dataset.data_connection:
        container["envFrom"] = [{"secretRef": {"name": spec.dataset.data_connection}}]
    return container


def _pipeline_args(params: PipelineParams, run_id: str) -> list[str]:
    return [
        f"--workdir={WORKDIR}",
        f"--params-json={params.to_json()}",
        f"--termination-log={TERMINATION_LOG}",
        f"--run-id={run_id}",
    ]


def _pod_spec(
    containers: list[dict[str, Any]], volumes: list[dict[str, Any]], placement: Placement | None
) -> dict[str, Any]:
    return {
        "restartPolicy": "Never",
        "containers": containers,
        "volumes": volumes,
        "securityContext": pod_security_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        **(placement.pod_fields() if placement else {}),
    }


def build_validate_job(
    owner: dict[str, Any],
    spec: FineTuneJobSpec,
    params: PipelineParams,
    image: str,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """The CPU-only check of dataset, model and method. No GPU, no queue: it is cheap and must
    not wait behind training jobs for quota. ``placement``: where CPU pods run (the platform's
    default placement)."""
    name = owner["metadata"]["name"]
    volumes, mounts = _volumes(params)
    command = [
        "python",
        "-m",
        "kubeforge_pipelines",
        "validate",
        f"--params-json={params.to_json()}",
        f"--termination-log={TERMINATION_LOG}",
    ]
    container = _container("validate", spec, image, command, mounts, {})
    # spec.env is for the training containers; validation only reads data (with the data
    # connection's credentials) and model files
    container["env"] = [e for e in container["env"] if e["name"] in ("KUBEFORGE_PVC_ROOT", "HOME")]
    container["resources"] = {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(owner, job_name(name, "validate"), labels(name, "validate")),
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels(name, "validate")},
                "spec": _pod_spec([container], volumes, placement),
            },
        },
    }


# Kueue's label naming a WorkloadPriorityClass
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
# a preempted training pod gets SIGTERM: time to finish its step and save a checkpoint
PREEMPTIBLE = {"terminationGracePeriodSeconds": 120}


def training_parts(
    owner: dict[str, Any],
    spec: FineTuneJobSpec,
    params: PipelineParams,
    placement: Placement,
    image: str,
    *,
    launcher: list[str],
    kind: str,
    container: str,
) -> tuple[str, dict[str, str], dict[str, Any], list[dict[str, Any]]]:
    """What the training Job and TrainJob share: name, labels (with the queue), the container
    running the pipeline's steps with the GPUs, and the volumes."""
    name = owner["metadata"]["name"]
    job = job_name(name, "train")
    volumes, mounts = _volumes(params)
    command = [
        *launcher,
        "-m",
        "kubeforge_pipelines",
        "run",
        "--runner=steps",
        *_pipeline_args(params, f"{kind}/{owner['metadata']['namespace']}/{job}"),
    ]
    ctr = _container(container, spec, image, command, mounts, placement.limits())
    job_labels = labels(name, "train") | placement.pod_labels()
    if spec.priority_class:
        job_labels[PRIORITY_LABEL] = spec.priority_class
    return job, job_labels, ctr, volumes


def build_train_job(
    owner: dict[str, Any],
    spec: FineTuneJobSpec,
    params: PipelineParams,
    placement: Placement,
    image: str,
) -> dict[str, Any]:
    """One node: a batch/v1 Job holding the GPUs, queued by Kueue through its label."""
    job, job_labels, container, volumes = training_parts(
        owner, spec, params, placement, image, launcher=["python"], kind="job", container="train"
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(owner, job, job_labels),
        "spec": {
            # a retried pod resumes from the newest checkpoint when checkpoints are on a volume
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": job_labels},
                "spec": _pod_spec([container], volumes, placement) | PREEMPTIBLE,
            },
        },
    }


# --- reading state back ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunState:
    """Where a Job or TrainJob is, in FineTuneJob terms."""

    state: str  # Queued | Running | Succeeded | Failed
    reason: str
    message: str = ""
    start_time: str | None = None
    completion_time: str | None = None
    result: dict[str, Any] = field(default_factory=dict)  # the termination message, parsed


def failed_run(
    failed: dict[str, Any],
    default_reason: str,
    default_message: str,
    pods: list[dict[str, Any]],
    problem: PodProblem | None,
    start: str | None,
    end: str | None,
) -> RunState:
    """A failed run's state: an OOM kill is named as such (the Job itself only says its backoff
    limit was reached); otherwise the program's own error, or the Job's message."""
    result = termination_result(pods)
    if problem is not None and problem.reason == "OOMKilled":
        reason, message = problem.reason, problem.message
    else:
        reason = str(failed.get("reason") or default_reason)
        message = str(result.get("error") or failed.get("message") or default_message)
    return RunState(
        "Failed", reason, message, start, end or failed.get("lastTransitionTime"), result
    )


def observe_job(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> RunState | None:
    """None while the Job does not exist yet."""
    if job is None:
        return None
    status = job.get("status") or {}
    start, end = status.get("startTime"), status.get("completionTime")
    if done := true_condition(job, "SuccessCriteriaMet", "Complete"):
        # Kubernetes >= 1.31 says SuccessCriteriaMet first and sets completionTime only with
        # Complete, once the pods are gone: the run ended when its criteria were met, so that
        # time stays the same on every pass.
        if done.get("type") == "SuccessCriteriaMet" or not end:
            end = done.get("lastTransitionTime") or end
        return RunState("Succeeded", "JobComplete", "", start, end, termination_result(pods))
    failed = true_condition(job, "Failed", "FailureTarget")
    problem = first_problem(pods)
    if failed:
        return failed_run(failed, "JobFailed", "the Job failed", pods, problem, start, None)
    if (job.get("spec") or {}).get("suspend"):
        return RunState("Queued", "Suspended", "waiting for quota (the Job is suspended)")
    if problem is not None:  # the kubelet's reason: a bad image, a crash loop, an OOM kill
        return RunState("Queued", problem.reason, problem.message, start)
    if (waiting := unscheduled(pods)) is not None:  # the scheduler's: no node fits
        return RunState("Queued", waiting.reason, waiting.message, start)
    if status.get("active") or status.get("ready"):
        return RunState("Running", "JobRunning", "", start)
    return RunState("Queued", "PodsPending", "waiting for the Job's pod", start)
