"""ModelServer controller: a KServe InferenceService (v1beta1) serving the model, and the canary
rollout of every new revision, gated on Prometheus metrics.

A *revision* is what is served: model URI, format, runtime and injected faults, named by a digest
(``r<10 hex>``). The operator puts it on the predictor (``KUBEFORGE_RUNTIME_REVISION``) and the
runtime labels its metrics with it, so the analysis can tell canary from stable. Resources and
replicas are not part of it: they apply in place.

The rollout lives in status (``stable``, ``canary``, ``rollout``, ``rolledBack``, ``decisions``):
a restarted operator carries on from there. KServe's own canary does the traffic split: during a
rollout the predictor is the canary's with ``canaryTrafficPercent``; KServe keeps the last
rolled-out revision serving the rest. A rollback puts the stable predictor back; the rolled-back
revision is remembered and not rolled out again until the spec names something else, so the
ModelServer shows ``RolledBack`` instead of fighting a GitOps tool that keeps applying the spec.

Each analysis (``spec.rollout.interval`` apart, or one scrape interval after a failed one, to
confirm a failure quickly) queries Prometheus (``prometheus``) and the pure ``canary.analyse``
decides.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from kubernetes import client
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from kubeforge_crds import DRIFTMONITOR, FINETUNEJOB, MODELSERVER, ConditionStatus
from kubeforge_crds.base import parse_duration
from kubeforge_crds.finetunejob import FineTuneJobPhase
from kubeforge_crds.modelserver import (
    AnalysisMetric,
    FailureAction,
    MetricType,
    ModelServerPhase,
    ModelServerSpec,
    ModelServerStatus,
    Revision,
    RolloutDecision,
    RolloutProgress,
)
from kubeforge_operator.canary import (
    Action,
    Decision,
    Measurement,
    RolloutState,
    analyse,
    with_baseline,
)
from kubeforge_operator.children import child_metadata, standard_labels
from kubeforge_operator.conditions import Observation
from kubeforge_operator.metrics import ROLLOUT_DECISIONS
from kubeforge_operator.placement import Placement, SpecProblem, resolve_placement
from kubeforge_operator.platform import PlatformConfigError, load_platform_config
from kubeforge_operator.prometheus import (
    Prometheus,
    PrometheusError,
    Target,
    render_template,
    window,
)
from kubeforge_operator.reconcile import ACCEPTED, Outcome, ReconcileContext, accepted
from kubeforge_operator.settings import get_settings

ISVC_API = "serving.kserve.io/v1beta1"
RUNTIME_API = "serving.kserve.io/v1alpha1"
BUILTIN_RUNTIME = "kubeforge"  # the ClusterServingRuntime of kubeforge_runtimes
MODEL_RESOLVED = "ModelResolved"
ISVC_READY = "InferenceServiceReady"
ROLLED_BACK = "RolledBack"
KEEP_DECISIONS = 20


# --- revisions and the InferenceService -------------------------------------------------------


def revision_id(uri: str, spec: ModelServerSpec) -> str:
    """Digest of what is served; the same inputs always give the same revision."""
    what = {
        "uri": uri,
        "modelFormat": str(spec.runtime.model_format),
        "servingRuntime": spec.runtime.serving_runtime,
        "faults": spec.runtime.fault_injection.to_wire() if spec.runtime.fault_injection else None,
    }
    return "r" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]


def desired_revision(uri: str, spec: ModelServerSpec, fine_tune_job: str | None) -> Revision:
    return Revision(
        revision=revision_id(uri, spec),
        uri=uri,
        traffic_percent=0,
        model_format=spec.runtime.model_format,
        serving_runtime=spec.runtime.serving_runtime,
        fault_injection=spec.runtime.fault_injection,
        fine_tune_job=fine_tune_job,
    )


def _env(rev: Revision) -> list[dict[str, str]]:
    env = [
        {"name": "KUBEFORGE_RUNTIME_REVISION", "value": rev.revision},
        {"name": "KUBEFORGE_RUNTIME_MODEL_FORMAT", "value": str(rev.model_format)},
    ]
    if rev.fault_injection:
        env += [
            {
                "name": "KUBEFORGE_RUNTIME_ERROR_RATE",
                "value": f"{rev.fault_injection.error_rate:g}",
            },
            {
                "name": "KUBEFORGE_RUNTIME_EXTRA_LATENCY_SECONDS",
                "value": f"{rev.fault_injection.extra_latency_seconds:g}",
            },
        ]
    return env


def build_inference_service(
    owner: dict[str, Any],
    spec: ModelServerSpec,
    placement: Placement,
    served: Revision,
    canary_percent: int | None,
    logger_url: str | None = None,
) -> dict[str, Any]:
    """The InferenceService serving ``served``; with ``canary_percent``, as KServe's canary of
    the last rolled-out revision; with ``logger_url``, logging every request and response there
    (a DriftMonitor's drift service)."""
    name = owner["metadata"]["name"]
    resources = {"cpu": spec.resources.cpu, "memory": spec.resources.memory} | placement.limits()
    model: dict[str, Any] = {
        "modelFormat": {"name": str(served.model_format)},
        "runtime": served.serving_runtime or BUILTIN_RUNTIME,
        "storageUri": served.uri,
        "env": _env(served),
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }
    predictor: dict[str, Any] = {
        "minReplicas": spec.replicas.min,
        "maxReplicas": spec.replicas.max,
        "model": model,
        **placement.pod_fields(),
    }
    if canary_percent is not None and canary_percent < 100:
        predictor["canaryTrafficPercent"] = canary_percent
    if logger_url:
        predictor["logger"] = {"mode": "all", "url": logger_url}
    meta = child_metadata(owner, name, standard_labels("modelserver", name, "inference"))
    meta["annotations"] = {"serving.kserve.io/enable-prometheus-scraping": "true"}
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": predictor},
    }


def isvc_ready(isvc: dict[str, Any] | None) -> Observation:
    """KServe's Ready condition for the generation we last applied."""
    if isvc is None:
        return Observation(ISVC_READY, ConditionStatus.UNKNOWN, "Creating", "")
    status = isvc.get("status") or {}
    if status.get("observedGeneration") != isvc["metadata"].get("generation"):
        return Observation(
            ISVC_READY,
            ConditionStatus.UNKNOWN,
            "WaitingForKServe",
            f"KServe has not reported on InferenceService {isvc['metadata']['name']} generation "
            f"{isvc['metadata'].get('generation')} yet",
        )
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            state = ConditionStatus(cond.get("status", "Unknown"))
            reason = cond.get("reason") or (
                "Ready" if state == ConditionStatus.TRUE else "NotReady"
            )
            return Observation(ISVC_READY, state, reason, cond.get("message") or "")
    return Observation(ISVC_READY, ConditionStatus.UNKNOWN, "WaitingForKServe", "no Ready yet")


# --- the rollout state machine (pure) ------------------------------------------------------------


@dataclass
class Plan:
    """What the reconcile applies and records."""

    served: Revision  # the predictor in the InferenceService
    canary_percent: int | None
    status: dict[str, Any]  # status fields (wire names)
    decisions: list[RolloutDecision] = field(default_factory=list)
    phase: str = ModelServerPhase.READY
    rolled_back: Observation | None = None
    next_analysis: datetime | None = None


def _split(stable: int, canary: int | None) -> str:
    return f"{stable}/{canary}" if canary is not None else f"{stable}/0"


def _decision(
    now: datetime, step: int, action: str, revision: str, split: str, reason: str, values: Any
) -> RolloutDecision:
    return RolloutDecision(
        time=now,
        step=step,
        action=action,
        revision=revision,
        traffic_split=split,
        reason=reason[:1024],
        measurements=dict(values or {}),
    )


def _with(rev: Revision, traffic: int) -> Revision:
    return rev.model_copy(update={"traffic_percent": traffic})


def _steady(rev: Revision, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "stable": _with(rev, 100).to_wire(),
        "canary": None,
        "rollout": None,
        "trafficSplit": "100/0",
        **(extra or {}),
    }


def plan_rollout(
    spec: ModelServerSpec,
    status: ModelServerStatus,
    desired: Revision,
    now: datetime,
) -> Plan | RolloutProgress:
    """Everything decided without measuring: first deployment, a cancelled or refused rollout,
    the start of a new one. Returns the rollout in progress when it needs an analysis (or is
    held) instead."""
    policy = spec.rollout
    stable = status.stable
    if stable is None:
        return Plan(desired, None, _steady(desired))
    if desired.revision == stable.revision:
        plan = Plan(_with(desired, 100), None, _steady(desired))
        if status.rollout is not None:
            plan.decisions.append(
                _decision(
                    now,
                    status.rollout.step,
                    "cancel",
                    status.rollout.revision,
                    "100/0",
                    "the spec names the stable revision again: rollout cancelled",
                    None,
                )
            )
        return plan
    if status.rolled_back is not None and desired.revision == status.rolled_back.revision:
        return Plan(stable, None, _steady(stable), phase=ModelServerPhase.ROLLED_BACK)
    if status.rollout is None or status.rollout.revision != desired.revision:
        first = policy.steps[0]
        interval = parse_duration(policy.interval)
        rollout = RolloutProgress(
            revision=desired.revision,
            step=0,
            failures=0,
            start_time=now,
            next_analysis_time=now + interval,
        )
        canary = _with(desired, first)
        split = _split(100 - first, first)
        return Plan(
            desired,
            first,
            {
                "stable": _with(stable, 100 - first).to_wire(),
                "canary": canary.to_wire(),
                "rollout": rollout.to_wire(),
                "trafficSplit": split,
            },
            [_decision(now, 0, "start", desired.revision, split, f"canary at {first}%", None)],
            phase=ModelServerPhase.PROGRESSING,
            next_analysis=now + interval,
        )
    return status.rollout


def apply_decision(
    spec: ModelServerSpec,
    status: ModelServerStatus,
    desired: Revision,
    rollout: RolloutProgress,
    decision: Decision,
    now: datetime,
    recheck: timedelta,
) -> Plan:
    """The plan after an analysis decided ``decision``."""
    stable = cast(Revision, status.stable)
    policy = spec.rollout
    interval = parse_duration(policy.interval)
    step = decision.step
    if decision.action == Action.PROMOTE:
        split = "0/100"
        return Plan(
            _with(desired, 100),
            None,
            _steady(desired, {"rolledBack": None}),
            [
                _decision(
                    now,
                    step,
                    "promote",
                    desired.revision,
                    split,
                    decision.reason,
                    decision.measurements,
                )
            ],
        )
    if decision.action == Action.ROLLBACK:
        plan = Plan(
            stable,
            None,
            _steady(stable, {"rolledBack": _with(desired, 0).to_wire()}),
            [
                _decision(
                    now,
                    step,
                    "rollback",
                    desired.revision,
                    "100/0",
                    decision.reason,
                    decision.measurements,
                )
            ],
            phase=ModelServerPhase.ROLLED_BACK,
        )
        plan.rolled_back = Observation(
            ROLLED_BACK, ConditionStatus.TRUE, rollback_reason(decision), decision.reason
        )
        return plan
    traffic = decision.traffic
    split = _split(100 - traffic, traffic)
    final_hold = (
        decision.action == Action.HOLD
        and decision.failures >= policy.failure_threshold
        and policy.on_failure == FailureAction.HOLD
    )
    if decision.action == Action.ADVANCE:
        due: datetime | None = now + interval
    elif final_hold:
        due = None
    else:
        due = now + recheck  # confirm a failure after one more scrape, not a whole interval
    progress = rollout.model_copy(
        update={
            "step": step,
            "failures": decision.failures,
            "last_analysis_time": now,
            "next_analysis_time": due,
        }
    )
    return Plan(
        desired,
        traffic,
        {
            "stable": _with(stable, 100 - traffic).to_wire(),
            "canary": _with(desired, traffic).to_wire(),
            "rollout": progress.to_wire(),
            "trafficSplit": split,
        },
        [
            _decision(
                now,
                step,
                str(decision.action),
                desired.revision,
                split,
                decision.reason,
                decision.measurements,
            )
        ],
        phase=ModelServerPhase.HELD if final_hold else ModelServerPhase.PROGRESSING,
        next_analysis=due,
    )


def drift_rollback(obj: dict[str, Any], desired: Revision) -> Decision | None:
    """A rollback a DriftMonitor asked for (``kubeforge.io/rollback-revision`` naming the canary
    in progress); an annotation naming any other revision is stale and ignored."""
    from kubeforge_operator.driftmonitor import ROLLBACK_ANNOTATION, ROLLBACK_REASON_ANNOTATION

    annotations = obj["metadata"].get("annotations") or {}
    if annotations.get(ROLLBACK_ANNOTATION) != desired.revision:
        return None
    reason = annotations.get(ROLLBACK_REASON_ANNOTATION) or "a DriftMonitor found drift"
    return Decision(Action.ROLLBACK, 0, 0, 0, reason, cause="DriftDetected")


def _drift_logger(ctx: ReconcileContext) -> str | None:
    """The logger URL of the first DriftMonitor (by name) that targets this ModelServer."""
    from kubeforge_operator.driftmonitor import logger_url

    try:
        listed = ctx.kube.custom.list_namespaced_custom_object(
            DRIFTMONITOR.group, DRIFTMONITOR.version, ctx.namespace, DRIFTMONITOR.plural
        )
    except client.ApiException as exc:
        if exc.status == 404:  # the DriftMonitor CRD is not installed
            return None
        raise
    names = sorted(
        item["metadata"]["name"]
        for item in listed.get("items") or []
        if ((item.get("spec") or {}).get("target") or {}).get("modelServer") == ctx.name
        and not item["metadata"].get("deletionTimestamp")
    )
    return logger_url(ctx.namespace, names[0]) if names else None


def rollback_reason(decision: Decision) -> str:
    """A CamelCase reason naming what failed first."""
    if decision.cause:
        return decision.cause
    for check in decision.checks:
        if check.passed is False:
            return {"error-rate": "ErrorRateExceeded", "latency-p95": "LatencyExceeded"}.get(
                check.metric, "MetricThresholdExceeded"
            )
    if any("query failed" in c.reason for c in decision.checks):
        return "MetricsUnavailable"
    return "NoMetricData"


def held_plan(status: ModelServerStatus, desired: Revision, rollout: RolloutProgress) -> Plan:
    canary = cast(Revision, status.canary)
    traffic = canary.traffic_percent
    return Plan(
        desired,
        traffic,
        {},
        phase=ModelServerPhase.HELD
        if rollout.next_analysis_time is None
        else ModelServerPhase.PROGRESSING,
        next_analysis=rollout.next_analysis_time,
    )


def postponed_plan(
    spec: ModelServerSpec,
    status: ModelServerStatus,
    desired: Revision,
    rollout: RolloutProgress,
    now: datetime,
) -> Plan:
    """An analysis fell due while KServe has not reported the traffic split we applied as
    Ready (the canary's pods are still starting): measuring now would judge a canary that had
    little or no traffic. The interval starts again."""
    canary = cast(Revision, status.canary)
    due = now + parse_duration(spec.rollout.interval)
    progress = rollout.model_copy(update={"next_analysis_time": due})
    return Plan(
        desired,
        canary.traffic_percent,
        {"rollout": progress.to_wire()},
        phase=ModelServerPhase.PROGRESSING,
        next_analysis=due,
    )


# --- reconcile -----------------------------------------------------------------------------------


def resolve_model(
    ctx: ReconcileContext, spec: ModelServerSpec
) -> tuple[str, str | None] | Observation:
    """The model URI (and its FineTuneJob), or why there is none to serve yet."""
    if spec.model.uri:
        return spec.model.uri, None
    if spec.model.model_name:
        listed = ctx.kube.custom.list_namespaced_custom_object(
            FINETUNEJOB.group, FINETUNEJOB.version, ctx.namespace, FINETUNEJOB.plural
        )
        newest = newest_version(listed.get("items") or [], spec.model.model_name)
        if newest is None:
            return Observation(
                MODEL_RESOLVED,
                ConditionStatus.FALSE,
                "NoModelVersion",
                f"spec.model.modelName: no Succeeded FineTuneJob in {ctx.namespace} has "
                f"registered a version of model {spec.model.model_name!r} yet (spec.output."
                "modelName); serving starts when one has",
            )
        return newest
    name = cast(str, spec.model.fine_tune_job)
    ftj = ctx.kube.get(FINETUNEJOB, ctx.namespace, name)
    if ftj is None:
        return Observation(
            MODEL_RESOLVED,
            ConditionStatus.FALSE,
            "FineTuneJobNotFound",
            f"spec.model.fineTuneJob: FineTuneJob {name!r} not found in {ctx.namespace}",
        )
    status = ftj.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase == FineTuneJobPhase.FAILED:
        return Observation(
            MODEL_RESOLVED,
            ConditionStatus.FALSE,
            "FineTuneJobFailed",
            f"spec.model.fineTuneJob: FineTuneJob {name!r} failed; it has no model to serve",
        )
    uri = (status.get("model") or {}).get("uri")
    if phase == FineTuneJobPhase.SUCCEEDED and not uri:
        return Observation(
            MODEL_RESOLVED,
            ConditionStatus.FALSE,
            "FineTuneJobHasNoModel",
            f"spec.model.fineTuneJob: FineTuneJob {name!r} succeeded but reported no model "
            "version (status.model.uri is empty); serve its output with spec.model.uri",
        )
    if phase != FineTuneJobPhase.SUCCEEDED:
        return Observation(
            MODEL_RESOLVED,
            ConditionStatus.FALSE,
            "FineTuneJobNotSucceeded",
            f"spec.model.fineTuneJob: FineTuneJob {name!r} is {phase}; serving starts when it "
            "has Succeeded",
        )
    return str(uri), name


def newest_version(finetunejobs: list[dict[str, Any]], model_name: str) -> tuple[str, str] | None:
    """(URI, FineTuneJob) of the version of ``model_name`` registered last: among Succeeded
    FineTuneJobs whose status.model names it, the latest completionTime (then name)."""
    candidates = []
    for ftj in finetunejobs:
        status = ftj.get("status") or {}
        model = status.get("model") or {}
        if (
            status.get("phase") == FineTuneJobPhase.SUCCEEDED
            and model.get("name") == model_name
            and model.get("uri")
        ):
            done = status.get("completionTime") or ftj["metadata"].get("creationTimestamp", "")
            candidates.append((done, ftj["metadata"]["name"], str(model["uri"])))
    if not candidates:
        return None
    _, name, uri = max(candidates)
    return uri, name


def _runtime_problem(ctx: ReconcileContext, spec: ModelServerSpec) -> Observation | None:
    name = spec.runtime.serving_runtime
    if name is None:
        return None
    try:
        found = ctx.kube.get_child(RUNTIME_API, "ServingRuntime", ctx.namespace, name)
        found = found or ctx.kube.get_child(RUNTIME_API, "ClusterServingRuntime", "", name)
    except ResourceNotFoundError:
        found = None
    if found is None:
        return Observation(
            ACCEPTED,
            ConditionStatus.FALSE,
            "UnknownRuntime",
            f"spec.runtime.servingRuntime: no ServingRuntime or ClusterServingRuntime named "
            f"{name!r}; unset it to use kubeforge's built-in runtime",
        )
    return None


def _promql_problem(spec: ModelServerSpec, prom: Prometheus | None) -> Observation | None:
    """Prometheus's parse error for a promql metric, checked before a rollout starts."""
    if prom is None:
        return None
    for metric in spec.rollout.metrics:
        if metric.type != MetricType.PROMQL or metric.query is None:
            continue
        query = render_template(metric.query, "ns", "name", "r0", "1m")
        try:
            error = prom.check(query)
        except PrometheusError:
            return None  # cannot check now; the analysis will say it has no data
        if error:
            i = spec.rollout.metrics.index(metric)
            return Observation(
                ACCEPTED,
                ConditionStatus.FALSE,
                "InvalidPromQL",
                f"spec.rollout.metrics[{i}].query: Prometheus rejects it: {error}",
            )
    return None


def _prometheus() -> Prometheus | None:
    url = get_settings().prometheus_url
    return Prometheus(url) if url else None


class Measurer(Protocol):
    def measure(
        self, metrics: list[AnalysisMetric], target: Target, win: str
    ) -> dict[str, Measurement]: ...


class _NoPrometheus:
    """Measurements when no Prometheus is configured: every query fails, saying so."""

    def measure(
        self, metrics: list[AnalysisMetric], target: Target, win: str
    ) -> dict[str, Measurement]:
        why = "no Prometheus configured (operator setting KUBEFORGE_OPERATOR_PROMETHEUS_URL)"
        return {m.name: Measurement(error=why) for m in metrics}


def reconcile_modelserver(ctx: ReconcileContext, spec: ModelServerSpec) -> Outcome:
    status = cast(ModelServerStatus, MODELSERVER.parse_status(ctx.obj.get("status")))
    settings = get_settings()
    try:
        platform = load_platform_config(settings.platform_config)
    except PlatformConfigError as err:
        invalid = Observation(ACCEPTED, ConditionStatus.UNKNOWN, "PlatformConfigInvalid", str(err))
        return Outcome(phase=str(status.phase or "Pending"), dependents=[invalid])
    placement = resolve_placement(spec.resources.accelerator, None, platform)
    if isinstance(placement, SpecProblem):
        return Outcome(phase=ModelServerPhase.FAILED, dependents=[placement.observation()])
    problem: Observation | None = _runtime_problem(ctx, spec)
    if problem is not None:
        return Outcome(phase=str(status.phase or ModelServerPhase.FAILED), dependents=[problem])
    resolved = resolve_model(ctx, spec)
    if isinstance(resolved, Observation):
        # nothing new to serve: the InferenceService, if any, keeps serving what it serves
        return Outcome(
            phase=str(status.phase or ModelServerPhase.PENDING), dependents=[accepted(), resolved]
        )
    uri, ftj = resolved
    model_ok = Observation(MODEL_RESOLVED, ConditionStatus.TRUE, "Resolved", uri)
    desired = desired_revision(uri, spec, ftj)
    prom = _prometheus()
    planned = plan_rollout(spec, status, desired, ctx.now)
    if isinstance(planned, Plan) and planned.decisions and planned.decisions[0].action == "start":
        problem = _promql_problem(spec, prom)
        if problem is not None:  # refuse the rollout; the stable version keeps serving
            return Outcome(phase=str(status.phase or ModelServerPhase.READY), dependents=[problem])
        if prom is not None and status.stable is not None:
            planned = record_full_load(
                spec,
                planned,
                prom,
                Target(ctx.namespace, ctx.name, desired.revision, status.stable.revision),
                get_settings().prometheus_scrape_interval,
            )
    if isinstance(planned, RolloutProgress):
        requested = drift_rollback(ctx.obj, desired)
        if requested is not None:
            planned = apply_decision(
                spec, status, desired, planned, requested, ctx.now, timedelta(seconds=1)
            )
        else:
            planned = _analyse_if_due(ctx, spec, status, desired, planned, prom)
    isvc_manifest = build_inference_service(
        ctx.obj, spec, placement, planned.served, planned.canary_percent, _drift_logger(ctx)
    )
    try:
        ctx.kube.apply(isvc_manifest)
    except ResourceNotFoundError:
        problem = Observation(
            ACCEPTED,
            ConditionStatus.FALSE,
            "KServeNotInstalled",
            "the InferenceService API (serving.kserve.io/v1beta1) is not served by this cluster; "
            "install KServe",
        )
        return Outcome(phase=ModelServerPhase.PENDING, dependents=[problem])
    for d in planned.decisions:
        ROLLOUT_DECISIONS.labels(ctx.namespace, ctx.name, d.action).inc()
        ctx.kube.record_event(
            ctx.obj,
            "Warning" if d.action in ("hold", "rollback") else "Normal",
            f"Rollout{d.action.title()}",
            f"{d.revision} {d.traffic_split}: {d.reason}",
        )
    isvc = ctx.kube.get_child(ISVC_API, "InferenceService", ctx.namespace, ctx.name)
    ready = isvc_ready(isvc)
    fields: dict[str, Any] = dict(planned.status)
    fields["inferenceService"] = ctx.name
    fields["gpus"] = placement.gpus * spec.replicas.min
    url = ((isvc or {}).get("status") or {}).get("url")
    if url:
        fields["url"] = url
    if planned.decisions:
        kept = [*status.decisions, *planned.decisions][-KEEP_DECISIONS:]
        fields["decisions"] = [d.to_wire() for d in kept]
    info = []
    if planned.rolled_back is not None:
        info.append(planned.rolled_back)
    elif planned.phase != ModelServerPhase.ROLLED_BACK:  # a rolled-back state keeps its reason
        info.append(Observation(ROLLED_BACK, ConditionStatus.FALSE, "NoRollback", ""))
    phase = planned.phase
    if phase == ModelServerPhase.READY and ready.status != ConditionStatus.TRUE:
        phase = ModelServerPhase.PENDING
    requeue = None
    if planned.next_analysis is not None:
        requeue = max(0.5, (planned.next_analysis - ctx.now).total_seconds())
    return Outcome(
        phase=phase,
        dependents=[accepted(), model_ok, ready],
        fields=fields,
        info=info,
        requeue_after=requeue,
    )


def _analyse_if_due(
    ctx: ReconcileContext,
    spec: ModelServerSpec,
    status: ModelServerStatus,
    desired: Revision,
    rollout: RolloutProgress,
    prom: Prometheus | None,
) -> Plan:
    due = rollout.next_analysis_time
    if due is None or ctx.now < due:
        return held_plan(status, desired, rollout)
    isvc = ctx.kube.get_child(ISVC_API, "InferenceService", ctx.namespace, ctx.name)
    if isvc_ready(isvc).status != ConditionStatus.TRUE:
        return postponed_plan(spec, status, desired, rollout, ctx.now)
    settings = get_settings()
    return run_analysis(
        spec,
        status,
        desired,
        rollout,
        prom or _NoPrometheus(),
        Target(ctx.namespace, ctx.name, canary=desired.revision, stable=status.stable.revision),  # type: ignore[union-attr]
        settings.prometheus_scrape_interval,
        ctx.now,
    )


def run_analysis(
    spec: ModelServerSpec,
    status: ModelServerStatus,
    desired: Revision,
    rollout: RolloutProgress,
    measurer: Measurer,
    target: Target,
    scrape_seconds: float,
    now: datetime,
    recheck_seconds: float | None = None,
) -> Plan:
    """One analysis of the rollout: measure, decide (``canary.analyse``), and plan the result.
    The operator's reconcile and ``labs/canary.py`` both run exactly this. A failed analysis
    is confirmed after ``recheck_seconds`` (default: one scrape interval)."""
    interval = parse_duration(spec.rollout.interval).total_seconds()
    measured = measurer.measure(spec.rollout.metrics, target, window(interval, scrape_seconds))
    measured, baseline = with_baseline(
        measured,
        rollout.stable_baseline,
        rollout.stable_full_load,
        spec.rollout.steps[rollout.step],
    )
    decision = analyse(
        spec.rollout, RolloutState(step=rollout.step, failures=rollout.failures), measured
    )
    recheck = timedelta(seconds=max(1.0, recheck_seconds or scrape_seconds))
    progress = rollout.model_copy(update={"stable_baseline": baseline})
    return apply_decision(spec, status, desired, progress, decision, now, recheck)


def record_full_load(
    spec: ModelServerSpec,
    plan: Plan,
    measurer: Measurer,
    target: Target,
    scrape_seconds: float,
) -> Plan:
    """At the start of a rollout, measure the stable version's relative metrics over the
    interval before it, when it still took all the traffic: the 100% step compares the canary
    with these, at the same load (``canary.with_baseline``). Nothing is recorded for a metric
    without data (no traffic yet) or whose query failed; the rollout starts either way."""
    relative = [m for m in spec.rollout.metrics if m.relative_to_stable]
    rollout = plan.status.get("rollout")
    if not relative or rollout is None:
        return plan
    interval = parse_duration(spec.rollout.interval).total_seconds()
    # the stable revision measured as if it were the canary: one query per metric
    as_absolute = [m.model_copy(update={"relative_to_stable": False}) for m in relative]
    stable_only = Target(target.namespace, target.name, canary=target.stable, stable=target.stable)
    measured = measurer.measure(as_absolute, stable_only, window(interval, scrape_seconds))
    values = {
        name: m.canary
        for name, m in measured.items()
        if m.error is None and m.canary is not None and math.isfinite(m.canary)
    }
    if not values:
        return plan
    rollout = {**rollout, "stableFullLoad": values}
    # said in the start decision's reason; its measurements stay what they are elsewhere (each
    # check's value: a ratio for a relative check), not seconds under the same name
    measured_at_full_load = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
    decisions = [
        d.model_copy(
            update={"reason": f"{d.reason}; stable at full load: {measured_at_full_load}"[:1024]}
        )
        if d.action == "start"
        else d
        for d in plan.decisions
    ]
    return replace(plan, status={**plan.status, "rollout": rollout}, decisions=decisions)
