"""The FineTuneJob reconcile: a finished run is left as it is; otherwise the placement and the
data connection, then the run on the chosen backend (``builders`` for ``job``,
``backends.local``, ``backends.kfp``), mirrored into status with its lineage."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlparse

from kubernetes import client
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from kubeforge_crds import FINETUNEJOB, ConditionStatus
from kubeforge_crds.base import serialize_datetime
from kubeforge_crds.contracts.labels import TRIGGER_ANNOTATION
from kubeforge_crds.contracts.pipeline import PipelineParams, params_from_spec
from kubeforge_crds.finetunejob import (
    Backend,
    FineTuneJobPhase,
    FineTuneJobSpec,
    FineTuneJobStatus,
    TrainingRecord,
)
from kubeforge_operator.finetunejob.backends.kfp import (
    KfpError,
    run_phase,
    submission,
    submit_or_adopt,
)
from kubeforge_operator.finetunejob.backends.local import LOCAL_RUNS
from kubeforge_operator.finetunejob.builders import (
    FAILED,
    SUCCEEDED,
    RunState,
    build_train_job,
    build_validate_job,
    job_name,
    observe_job,
)
from kubeforge_operator.finetunejob.trainjob import (
    TRAINJOB_API,
    build_trainjob,
    observe_trainjob,
    pod_selector,
    trainer_problem,
)
from kubeforge_operator.runtime.children import with_pull_policy
from kubeforge_operator.runtime.conditions import ACCEPTED, READY, Observation
from kubeforge_operator.runtime.placement import QUEUE_LABEL, Placement
from kubeforge_operator.runtime.policies import data_connections, placement_or_problem
from kubeforge_operator.runtime.queueing import (
    QUEUE_POLL_SECONDS,
    job_workload,
    preemptions,
    queued_observation,
    read_workload_queue,
)
from kubeforge_operator.runtime.reconcile import Outcome, ReconcileContext, accepted

VALIDATED = "Validated"
DATA_CONNECTION = "DataConnectionReady"  # only when the spec names a data connection
# Set on every pass (Unknown when a pass stops before them); Validated only with backend job.
OWNED = (READY, ACCEPTED, SUCCEEDED, FAILED)
_TERMINAL = (FineTuneJobPhase.SUCCEEDED, FineTuneJobPhase.FAILED)


# --- pure policies --------------------------------------------------------------------------------


def run_outcome(
    state: RunState | None,
    placement: Placement,
    validated: Observation | None,
    extra: dict[str, Any] | None = None,
    nodes: int = 1,
) -> Outcome:
    """The FineTuneJob's phase, conditions and fields for the state of its run."""
    info: list[Observation] = [validated] if validated else []
    fields: dict[str, Any] = dict(extra or {})
    if state is None:
        return Outcome(
            phase=FineTuneJobPhase.PENDING,
            dependents=[
                accepted(),
                Observation(SUCCEEDED, ConditionStatus.UNKNOWN, "Pending", "not started yet"),
            ],
            fields=fields | {"gpus": 0},
            info=[*info, Observation(FAILED, ConditionStatus.FALSE, "Pending", "")],
        )
    if state.start_time:
        fields["startTime"] = state.start_time
    if state.completion_time:
        fields["completionTime"] = state.completion_time
    # a Job suspended for quota holds nothing (its reason then is Kueue's: Queued, ...)
    suspended = state.reason == "Suspended" or bool(fields.get("queue"))
    holding = state.state in ("Running", "Queued") and not suspended
    fields["gpus"] = placement.gpus * nodes if holding else 0
    fields["gpuProduct"] = placement.product
    if state.state == "Succeeded":
        fields |= result_fields(state.result)
        succeeded = Observation(
            SUCCEEDED, ConditionStatus.TRUE, state.reason, _model_message(fields)
        )
        failed = Observation(FAILED, ConditionStatus.FALSE, state.reason, "")
    elif state.state == "Failed":
        succeeded = Observation(SUCCEEDED, ConditionStatus.FALSE, state.reason, state.message)
        failed = Observation(FAILED, ConditionStatus.TRUE, state.reason, state.message)
    else:
        succeeded = Observation(SUCCEEDED, ConditionStatus.UNKNOWN, state.reason, state.message)
        failed = Observation(FAILED, ConditionStatus.FALSE, state.reason, "")
    return Outcome(
        phase=FineTuneJobPhase(state.state),
        dependents=[accepted(), succeeded],
        fields=fields,
        info=[*info, failed],
    )


def validation_pending(vstate: RunState | None) -> Observation:
    """Validated=Unknown while the validation Job runs, or waits with the scheduler's or the
    kubelet's reason why its pod does not run (no node fits, a bad image)."""
    if vstate is not None and vstate.state == "Queued" and vstate.reason != "PodsPending":
        return Observation(
            VALIDATED,
            ConditionStatus.UNKNOWN,
            vstate.reason,
            f"the validation Job waits: {vstate.message}",
        )
    return Observation(
        VALIDATED,
        ConditionStatus.UNKNOWN,
        "Validating",
        "checking the dataset, model and method (no GPU yet)",
    )


def _model_message(fields: dict[str, Any]) -> str:
    model = fields.get("model")
    if not model:
        return "the run succeeded but reported no model version (no termination message)"
    return f"registered {model['name']} {model['version']} at {model['uri']}"


def result_fields(result: dict[str, Any]) -> dict[str, Any]:
    """Status fields from a run's result: the full lineage (local backend) or the summary a
    Job's container left as its termination message."""
    out: dict[str, Any] = {}
    model = result.get("model")
    if isinstance(model, dict) and {"name", "version", "uri"} <= model.keys():
        out["model"] = {k: str(model[k]) for k in ("name", "version", "uri")}
    metrics = result.get("metrics")
    if isinstance(metrics, dict):
        out["metrics"] = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and k != "evalTokens"
        }
    before = result.get("metricsBefore")
    if isinstance(before, dict) and "loss" in before:
        out.setdefault("metrics", {})["baseLoss"] = float(before["loss"])
    digest = result.get("datasetDigest") or (result.get("dataset") or {}).get("sha256")
    if digest:
        out["datasetDigest"] = str(digest)
    training = result.get("training")
    record = TrainingRecord.model_validate(training).to_wire() if isinstance(training, dict) else {}
    if record:
        out["training"] = record
    return out


def lineage_fields(
    spec: FineTuneJobSpec,
    run_id: str | None,
    digest: str | None,
    model_uri: str | None,
    trigger: str | None,
) -> dict[str, Any]:
    lineage: dict[str, Any] = {"baseModel": spec.base_model.uri, "datasetUri": spec.dataset.uri}
    if digest:
        lineage["datasetDigest"] = digest
    if run_id:
        lineage["runId"] = run_id
    if model_uri:
        lineage["uri"] = f"{model_uri.rstrip('/')}/lineage.json"
    if trigger:
        lineage["trigger"] = trigger[:1024]
    return lineage


def checkpoint_uri(spec: FineTuneJobSpec, name: str, uid: str) -> str:
    """Checkpoints beside the output on a volume, so a retried pod resumes; none on S3."""
    out = spec.output.uri
    if urlparse(out).scheme in ("pvc", "file"):
        return f"{out.rstrip('/')}/.checkpoints/{name}-{uid[:8]}"
    return ""


# --- reconcile ------------------------------------------------------------------------------------


def _terminal(status: FineTuneJobStatus) -> Outcome:
    """A finished run keeps the conditions it finished with."""
    keep = {c.type: c for c in status.conditions}

    def obs(type_: str) -> list[Observation]:
        c = keep.get(type_)
        return [Observation(c.type, ConditionStatus(c.status), c.reason, c.message)] if c else []

    return Outcome(
        phase=str(status.phase),
        dependents=[*obs(ACCEPTED), *obs(SUCCEEDED)],
        info=[*obs(FAILED), *obs(VALIDATED)],
    )


def reconcile_finetunejob(ctx: ReconcileContext, spec: FineTuneJobSpec) -> Outcome:
    status = cast(FineTuneJobStatus, FINETUNEJOB.parse_status(ctx.obj.get("status")))
    if status.phase in _TERMINAL and any(c.type == SUCCEEDED for c in status.conditions):
        return _terminal(status)
    placement = placement_or_problem(
        ctx, spec.resources.accelerator, spec.queue_name, FineTuneJobPhase.PENDING
    )
    if isinstance(placement, Outcome):
        return placement
    connection = spec.dataset.data_connection
    refs = [("spec.dataset.dataConnection", connection)] if connection else []
    secrets = data_connections(ctx, DATA_CONNECTION, refs)
    if isinstance(secrets, Outcome):
        return secrets
    meta = ctx.obj["metadata"]
    uid = str(meta["uid"])
    trigger = (meta.get("annotations") or {}).get(TRIGGER_ANNOTATION)
    params = params_from_spec(
        spec,
        namespace=ctx.namespace,
        name=ctx.name,
        uid=uid,
        backend=str(spec.backend),
        checkpoint_uri=checkpoint_uri(spec, ctx.name, uid) if spec.backend == Backend.JOB else "",
        trigger={"annotation": trigger} if trigger else None,
    )
    if spec.backend == Backend.LOCAL:
        outcome, run_id = _local(ctx, params, placement, status)
    elif spec.backend == Backend.KFP:
        outcome, run_id = _kfp(ctx, params, placement, status)
    else:
        outcome, run_id = _job(ctx, spec, params, placement)
    fields = dict(outcome.fields)
    if run_id:
        fields["runId"] = run_id
    model_uri = (fields.get("model") or {}).get("uri")
    fields["lineage"] = lineage_fields(
        spec, run_id, fields.get("datasetDigest") or status.dataset_digest, model_uri, trigger
    )
    checked = [secrets] if secrets is not None else []
    # a queued run's position moves as others are admitted or leave, which no event tells
    requeue = QUEUE_POLL_SECONDS if fields.get("queue") else None
    return Outcome(
        outcome.phase, outcome.dependents, fields, [*outcome.info, *checked], requeue_after=requeue
    )


def _job(
    ctx: ReconcileContext, spec: FineTuneJobSpec, params: PipelineParams, placement: Placement
) -> tuple[Outcome, str | None]:
    image, pull_policy = ctx.settings.trainer_image, ctx.settings.image_pull_policy
    ns = ctx.namespace
    validate_name = job_name(ctx.name, "validate")
    cpu = placement_or_problem(ctx, None, None)  # validation runs where CPU workloads run
    if isinstance(cpu, Outcome):
        return cpu, None
    validate = build_validate_job(ctx.obj, spec, params, image, cpu)
    ctx.kube.apply(with_pull_policy(validate, pull_policy))
    vjob = ctx.kube.get_child("batch/v1", "Job", ns, validate_name)
    vpods = ctx.kube.list_children("v1", "Pod", ns, f"job-name={validate_name}") if vjob else []
    vstate = observe_job(vjob, vpods)
    if vstate is None or vstate.state in ("Queued", "Running"):
        validated = validation_pending(vstate)
        return run_outcome(None, placement, validated), None
    if vstate.state == "Failed":
        validated = Observation(VALIDATED, ConditionStatus.FALSE, "InvalidInput", vstate.message)
        failed = RunState(
            "Failed", "InvalidInput", vstate.message, vstate.start_time, vstate.completion_time
        )
        return run_outcome(failed, placement, validated), f"job/{ns}/{validate_name}"
    digest = (vstate.result.get("dataset") or {}).get("sha256")
    rows = (vstate.result.get("dataset") or {}).get("rows")
    validated = Observation(
        VALIDATED,
        ConditionStatus.TRUE,
        "InputValid",
        f"{rows} rows, sha256 {digest}" if digest else "dataset and model checked",
    )
    multi = spec.resources.nodes > 1
    api, kind = (TRAINJOB_API, "TrainJob") if multi else ("batch/v1", "Job")
    train_name = job_name(ctx.name, "train")
    try:
        existed = _apply_training(ctx, spec, params, placement, (api, kind, train_name))
    except (ResourceNotFoundError, client.ApiException) as err:
        if not multi:
            raise
        return trainer_problem(err, validated), None
    if not existed:
        ctx.kube.record_event(
            ctx.obj,
            "Normal",
            "TrainingStarted",
            f"validated; created {kind} {train_name} with "
            f"{placement.gpus * spec.resources.nodes} GPU(s)",
        )
    tjob = ctx.kube.get_child(api, kind, ns, train_name)
    selector = pod_selector(train_name) if multi else f"job-name={train_name}"
    tpods = ctx.kube.list_children("v1", "Pod", ns, selector) if tjob else []
    tstate = (observe_trainjob if multi else observe_job)(tjob, tpods)
    extra = {"datasetDigest": digest} if digest else {}
    if tjob is not None:
        tstate, kueue = kueue_account(ctx, tjob, tstate)
        extra |= kueue
    outcome = run_outcome(tstate, placement, validated, extra, spec.resources.nodes)
    return outcome, f"{kind.lower()}/{ns}/{train_name}"


def _apply_training(
    ctx: ReconcileContext,
    spec: FineTuneJobSpec,
    params: PipelineParams,
    placement: Placement,
    child: tuple[str, str, str],
) -> bool:
    """Apply the training Job or TrainJob; whether it existed before. A TrainJob's trainer and
    runtime patches are immutable once it runs: it is applied once, when created."""
    api, kind, name = child
    image, pull_policy = ctx.settings.trainer_image, ctx.settings.image_pull_policy
    existed = ctx.kube.get_child(api, kind, ctx.namespace, name) is not None
    if kind == "TrainJob" and not existed:
        runtime = ctx.settings.training_runtime
        ctx.kube.apply(build_trainjob(ctx.obj, spec, params, placement, image, runtime))
    elif kind == "Job":
        train = build_train_job(ctx.obj, spec, params, placement, image)
        ctx.kube.apply(with_pull_policy(train, pull_policy))
    return existed


def kueue_account(
    ctx: ReconcileContext, job: dict[str, Any], state: RunState | None
) -> tuple[RunState | None, dict[str, Any]]:
    """Kueue's side of a training job: while it is suspended for quota, where it waits and
    why (status.queue); the preemptions so far, with an Event for each new one."""
    workload = job_workload(ctx.kube, job)
    fields: dict[str, Any] = {"queue": None}
    if workload is None:  # no Kueue, or not yet
        return state, fields
    count = preemptions(workload)
    if count:
        fields["preemptions"] = count
    if count > int((ctx.obj.get("status") or {}).get("preemptions") or 0):
        ctx.kube.record_event(
            ctx.obj,
            "Warning",
            "Preempted",
            f"Kueue preempted the run ({count} time(s) so far): it saved a checkpoint and "
            "resumes from it when admitted again",
        )
    if state is not None and state.state == "Queued" and state.reason == "Suspended":
        queue_name = (job["metadata"].get("labels") or {}).get(QUEUE_LABEL, "")
        name = workload["metadata"]["name"]
        queue = read_workload_queue(ctx.kube, ctx.namespace, queue_name, name, workload)
        fields["queue"] = queue.to_wire()
        waiting = queued_observation(SUCCEEDED, queue)
        state = RunState("Queued", waiting.reason, waiting.message, state.start_time)
    return state, fields


def _times(ctx: ReconcileContext, status: FineTuneJobStatus, done: bool) -> tuple[str, str | None]:
    """Start (recorded, or now) and completion (now, once done) for runs that report neither."""
    now = serialize_datetime(ctx.now)
    start = serialize_datetime(status.start_time) if status.start_time else now
    return start, now if done else None


def _local(
    ctx: ReconcileContext, params: PipelineParams, placement: Placement, status: FineTuneJobStatus
) -> tuple[Outcome, str | None]:
    settings = ctx.settings
    uid = str(ctx.obj["metadata"]["uid"])
    state = LOCAL_RUNS.observe(
        settings.local_runs_dir, ctx.namespace, ctx.name, uid, params, settings.local_python
    )
    start, end = _times(ctx, status, state.state in ("Succeeded", "Failed"))
    run = RunState(state.state, state.reason, state.message, start, end, state.result or {})
    run_id = (state.result or {}).get("run", {}).get("id") if state.result else None
    return run_outcome(run, placement, None), f"local/{run_id}" if run_id else None


def _kfp(
    ctx: ReconcileContext, params: PipelineParams, placement: Placement, status: FineTuneJobStatus
) -> tuple[Outcome, str | None]:
    settings = ctx.settings
    if not settings.kfp_host:
        problem = Observation(
            ACCEPTED,
            ConditionStatus.FALSE,
            "KFPNotConfigured",
            "spec.backend: kfp needs the operator setting "
            "KUBEFORGE_OPERATOR_KFP_HOST (the Kubeflow Pipelines API URL); "
            "use backend job or local, or ask the platform team to set it",
        )
        return Outcome(phase=FineTuneJobPhase.PENDING, dependents=[problem]), None
    uid = str(ctx.obj["metadata"]["uid"])
    sub = submission(params, ctx.namespace, ctx.name, uid, settings.kfp_experiment)
    try:
        run_id = status.run_id or submit_or_adopt(settings.kfp_host, sub)
        phase, kfp_state = run_phase(settings.kfp_host, run_id)
    except KfpError as err:
        waiting = RunState("Queued", err.reason, str(err))
        return run_outcome(waiting, placement, None), status.run_id
    start, end = _times(ctx, status, phase in ("Succeeded", "Failed"))
    reason = f"KFPRun{kfp_state.title() or 'Pending'}"
    run = RunState(phase, reason, f"KFP run {run_id}: {kfp_state}", start, end)
    return run_outcome(run, placement, None), run_id
