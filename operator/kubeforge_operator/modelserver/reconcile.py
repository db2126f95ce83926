"""The ModelServer reconcile: preconditions -> observe -> decide -> apply -> status, in that
order. Every child is read once (``observe``); the decisions are pure (``rollout``,
``analysis``); the apply answers with the InferenceService as it is now, so nothing is read
twice."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from kubernetes import client
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from kubeforge_crds import MODELSERVER, ConditionStatus
from kubeforge_crds.base import parse_duration, serialize_datetime
from kubeforge_crds.common import QueueStatus
from kubeforge_crds.contracts.serving import ISVC_API, ISVC_POD_LABEL
from kubeforge_crds.modelserver import (
    ModelServerPhase,
    ModelServerSpec,
    ModelServerStatus,
    Revision,
    RolloutProgress,
    ServedAs,
)
from kubeforge_operator.modelserver.analysis import (
    NoPrometheus,
    measure_start,
    rollout_target,
    run_analysis,
)
from kubeforge_operator.modelserver.builders import build_inference_service
from kubeforge_operator.modelserver.conditions import TRAFFIC_ROUTED
from kubeforge_operator.modelserver.evaluation import evaluation_step, prompts_problem
from kubeforge_operator.modelserver.llmserving import (
    not_installed,
    observe_members,
    queue_refused,
    serve_members,
    traffic_flowed,
)
from kubeforge_operator.modelserver.observe import Observed, observe
from kubeforge_operator.modelserver.prometheus import PrometheusMeasurer
from kubeforge_operator.modelserver.resolve import (
    Resolved,
    confinement_problem,
    promql_problem,
    resolve_adapters,
    resolve_model,
    runtime_problem,
)
from kubeforge_operator.modelserver.revisions import desired_revision
from kubeforge_operator.modelserver.rollout import (
    Plan,
    apply_decision,
    drift_rollback,
    held_plan,
    plan_rollout,
    postponed_plan,
    traffic_started,
)
from kubeforge_operator.modelserver.status import (
    isvc_ready,
    queued,
    refused_by_kserve,
    served_outcome,
)
from kubeforge_operator.modelserver.traffic import (
    ROUTE_API,
    Mode,
    build_route,
    canary_ready,
    canary_revision,
    canary_weight,
    drained,
    hands_over,
    hostname,
    parse_gateway,
    route_canary_weight,
    route_observation,
    weights_since,
)
from kubeforge_operator.runtime.children import standard_labels
from kubeforge_operator.runtime.conditions import ACCEPTED, Observation
from kubeforge_operator.runtime.metrics import ROLLOUT_DECISIONS
from kubeforge_operator.runtime.placement import Placement
from kubeforge_operator.runtime.policies import placement_or_problem
from kubeforge_operator.runtime.queueing import held_by_kueue, read_queue
from kubeforge_operator.runtime.reconcile import Outcome, ReconcileContext, accepted

PROMPTS_RECHECK_SECONDS = 30.0


@dataclass(frozen=True)
class Serving:
    """What the preconditions resolved: where the predictor runs and what it serves."""

    placement: Placement
    desired: Revision
    uri: str


def reconcile_modelserver(ctx: ReconcileContext, spec: ModelServerSpec) -> Outcome:
    status = cast(ModelServerStatus, MODELSERVER.parse_status(ctx.obj.get("status")))
    ready = preconditions(ctx, spec, status)
    if isinstance(ready, Outcome):
        return ready
    if spec.runtime.served_as == ServedAs.LLM_INFERENCE_SERVICE:
        return reconcile_members(ctx, spec, status, ready)
    seen = observe(ctx)
    planned = decide(ctx, spec, status, ready.desired, seen)
    if isinstance(planned, Outcome):
        return planned
    hand_over = seen.mode == Mode.STANDARD and hands_over(
        seen.isvc, seen.stable_deployment, planned.served.revision, planned.canary_percent
    )
    draining = None if hand_over else draining_canary(seen, planned, ctx.now)
    manifest = build_inference_service(
        ctx.obj,
        spec,
        ready.placement,
        planned.served,
        planned.canary_percent,
        seen.logger_url,
        seen.mode,
        status.stable,
        hand_over,
        draining,
    )
    share = 100 if hand_over else planned.canary_percent
    served = planned.served.revision
    standard = seen.mode == Mode.STANDARD
    # the route first: a rollback takes the canary's traffic away before KServe removes it
    routed = route_traffic(ctx, seen, served, share) if standard else None
    weight = canary_weight(seen.isvc, seen.canary_deployment, served, share)
    if routed and weight and weight != route_canary_weight(seen.route):
        planned = traffic_started(spec, status, planned, ctx.now)
    isvc = apply_inference_service(ctx, manifest, seen, status)
    if isinstance(isvc, Outcome):
        return isvc
    record_decisions(ctx, planned)
    gpus = ready.placement.gpus * spec.replicas.min
    url = f"http://{hostname(ctx.name, ctx.namespace, seen.domain)}" if routed else None
    outcome = served_outcome(
        status, planned, isvc, ready.uri, gpus, ctx.now, seen.mode, routed, url,
        seen.canary_deployment,
    )  # fmt: skip
    outcome.fields["gpuProduct"] = ready.placement.product
    outcome.fields["queue"] = None  # admitted, or never queued: nothing left of a wait
    queue = predictor_queue(ctx, ready.placement)
    if queue is not None:
        outcome = queued(outcome, queue)
    starting = planned.canary_percent and not canary_ready(isvc, seen.canary_deployment, served)
    if hand_over or draining or (standard and starting):
        # KServe is starting the canary (the route gives it traffic once it is ready), or
        # rolling the promoted version out to the stable predictor's pods
        outcome = replace(outcome, requeue_after=min(outcome.requeue_after or 2.0, 2.0))
    return outcome


def reconcile_members(
    ctx: ReconcileContext, spec: ModelServerSpec, status: ModelServerStatus, ready: Serving
) -> Outcome:
    """A ModelServer served as KServe's LLMInferenceService: the same decisions, its members
    applied instead of an InferenceService and a route (``llmserving``)."""
    if ready.placement.queue_name:
        return queue_refused(status, ready.placement.queue_name)
    members = observe_members(ctx)
    if members is None:
        return not_installed(status)
    gateway = parse_gateway(ctx.settings.gateway)
    seen = Observed(isvc=None, logger_url=None, gateway=gateway, members=members)
    planned = decide(ctx, spec, status, ready.desired, seen)
    if isinstance(planned, Outcome):
        return planned
    record_decisions(ctx, planned)
    outcome = serve_members(
        ctx, spec, status, planned, members, gateway, ready.placement, ready.uri
    )
    outcome.fields["gpuProduct"] = ready.placement.product
    return outcome


def record_decisions(ctx: ReconcileContext, planned: Plan) -> None:
    """Each decision of this pass as a metric and an Event."""
    for d in planned.decisions:
        ROLLOUT_DECISIONS.labels(ctx.namespace, ctx.name, d.action).inc()
        ctx.kube.record_event(
            ctx.obj,
            "Warning" if d.action in ("hold", "rollback") else "Normal",
            f"Rollout{d.action.title()}",
            f"{d.revision} {d.traffic_split}: {d.reason}",
        )


def predictor_queue(ctx: ReconcileContext, placement: Placement) -> QueueStatus | None:
    """Kueue's account of the first predictor pod it holds back (a queue is named: the pods
    carry its label), or None."""
    if not placement.queue_name:
        return None
    pods = ctx.kube.list_children("v1", "Pod", ctx.namespace, f"{ISVC_POD_LABEL}={ctx.name}")
    held = next((p for p in pods if held_by_kueue(p)), None)
    return read_queue(ctx.kube, held) if held is not None else None


def draining_canary(seen: Observed, planned: Plan, now: datetime) -> list[Any] | None:
    """Standard mode, no canary planned (promoted, rolled back): the InferenceService's canary
    as it is, until the route has sent it nothing for a while (``traffic.drained``)."""
    if seen.mode != Mode.STANDARD or planned.canary_percent is not None:
        return None
    if canary_revision(seen.isvc) is None or drained(seen.route, now):
        return None
    return list(((seen.isvc or {}).get("spec") or {}).get("canary") or []) or None


def apply_inference_service(
    ctx: ReconcileContext, manifest: dict[str, Any], seen: Observed, status: ModelServerStatus
) -> dict[str, Any] | Outcome | None:
    """Apply the InferenceService; a cluster without KServe or a refusal (KServe's validating
    webhook, the schema) is the outcome instead: the stable version, if any, keeps serving and
    the pass ends there, so no analysis is made."""
    try:
        return ctx.kube.apply_observed(manifest, seen.isvc)
    except ResourceNotFoundError:
        problem = Observation(
            ACCEPTED,
            ConditionStatus.FALSE,
            "KServeNotInstalled",
            f"the InferenceService API ({ISVC_API}) is not served by this cluster; install KServe",
        )
        return Outcome(phase=ModelServerPhase.PENDING, dependents=[problem])
    except client.ApiException as exc:
        if exc.status not in (400, 403, 422):
            raise
        return refused_by_kserve(exc, status)


def route_traffic(
    ctx: ReconcileContext, seen: Observed, served: str, share: int | None
) -> Observation:
    """Apply the ModelServer's HTTPRoute (Standard mode): the planned canary share once KServe
    reports the canary ready, none before; report whether the Gateway accepted it."""
    if not seen.route_api:
        return Observation(
            TRAFFIC_ROUTED,
            ConditionStatus.FALSE,
            "GatewayAPINotInstalled",
            "KServe in Standard mode splits no traffic itself and this cluster does not serve "
            f"{ROUTE_API} HTTPRoute: install Gateway API and an implementation of it, or use "
            "KServe's Serverless mode (operator setting kserveMode)",
        )
    weight = canary_weight(seen.isvc, seen.canary_deployment, served, share)
    labels = standard_labels("modelserver", ctx.name, "inference")
    host = hostname(ctx.name, ctx.namespace, seen.domain)
    since = weights_since(seen.route)
    if since is None or weight != route_canary_weight(seen.route):
        since = ctx.now
    manifest = build_route(ctx.obj, labels, seen.gateway, host, weight, serialize_datetime(since))
    route = ctx.kube.apply_observed(manifest, seen.route)
    return route_observation(route, seen.gateway, seen.gateway_exists)


def preconditions(
    ctx: ReconcileContext, spec: ModelServerSpec, status: ModelServerStatus
) -> Serving | Outcome:
    """The platform config, the placement, the ServingRuntime and the model version, in that
    order; the first that fails is the outcome (the InferenceService, if any, keeps serving)."""
    placement = placement_or_problem(
        ctx, spec.resources.accelerator, spec.queue_name, str(status.phase or "Pending")
    )
    if isinstance(placement, Outcome):
        return placement
    problem = confinement_problem(spec, ctx.namespace) or runtime_problem(ctx, spec)
    if problem is not None:
        return Outcome(phase=str(status.phase or ModelServerPhase.FAILED), dependents=[problem])
    resolved = resolve_model(ctx, spec)
    adapters = resolve_adapters(ctx, spec) if spec.adapters else {}
    for unresolved in (resolved, adapters):
        if isinstance(unresolved, Observation):
            return Outcome(
                phase=str(status.phase or ModelServerPhase.PENDING),
                dependents=[accepted(), unresolved],
            )
    resolved, adapters = cast(Resolved, resolved), cast(dict[str, str], adapters)
    revision = desired_revision(
        resolved.uri, spec, resolved.fine_tune_job, resolved.base_model, adapters
    )
    return Serving(placement, revision, resolved.uri)


def decide(
    ctx: ReconcileContext,
    spec: ModelServerSpec,
    status: ModelServerStatus,
    desired: Revision,
    seen: Observed,
) -> Plan | Outcome:
    """The plan of this pass: start, continue (analysis due, held or postponed), roll back on a
    DriftMonitor's request, or refuse a rollout whose PromQL Prometheus rejects."""
    prom = PrometheusMeasurer(ctx.prometheus) if ctx.prometheus else None
    planned = plan_rollout(spec, status, desired, ctx.now)
    if isinstance(planned, Plan) and planned.decisions and planned.decisions[0].action == "start":
        problem = promql_problem(spec, ctx.namespace, ctx.prometheus)
        if problem is not None:  # refuse the rollout; the stable version keeps serving
            return Outcome(phase=str(status.phase or ModelServerPhase.READY), dependents=[problem])
        if spec.rollout.evaluation is not None:
            problem = prompts_problem(ctx, spec.rollout.evaluation, seen.mode)
            if problem is not None:  # the ConfigMap is not watched: look again in a while
                return Outcome(
                    phase=str(status.phase or ModelServerPhase.READY),
                    dependents=[problem],
                    requeue_after=PROMPTS_RECHECK_SECONDS,
                )
        if ctx.prometheus is not None and status.stable is not None:
            target = rollout_target(ctx.namespace, ctx.name, spec, status.stable, desired)
            scrape = ctx.settings.prometheus_scrape_interval
            planned = measure_start(spec, planned, ctx.prometheus, target, scrape)
    if isinstance(planned, Plan):
        return planned
    requested = drift_rollback(ctx.obj, desired)
    if requested is not None:
        return apply_decision(
            spec, status, desired, planned, requested, ctx.now, timedelta(seconds=1)
        )
    if planned.evaluating:
        return evaluation_step(ctx, spec, status, desired, planned, seen)
    return _analyse_if_due(ctx, spec, status, desired, planned, prom, seen)


def _analyse_if_due(
    ctx: ReconcileContext,
    spec: ModelServerSpec,
    status: ModelServerStatus,
    desired: Revision,
    rollout: RolloutProgress,
    prom: PrometheusMeasurer | None,
    seen: Observed,
) -> Plan:
    due = rollout.next_analysis_time
    if due is None or ctx.now < due:
        return held_plan(status, desired, rollout)
    if seen.members is not None:
        flowing, flowed = traffic_flowed(seen.members, spec, status, desired.revision)
        if not flowing or flowed is None:
            return postponed_plan(spec, status, desired, rollout, ctx.now)
        if ctx.now < flowed:
            return postponed_plan(spec, status, desired, rollout, ctx.now, flowed)
    elif isvc_ready(seen.isvc, seen.mode).status != ConditionStatus.TRUE:
        return postponed_plan(spec, status, desired, rollout, ctx.now)
    elif seen.mode == Mode.STANDARD:
        # the route must have carried the step's weight for an interval (not the time the
        # canary's pods took to start, nor a status write a restart lost)
        canary = cast(Revision, status.canary)
        since = weights_since(seen.route)
        live = route_canary_weight(seen.route)
        ready = canary_ready(seen.isvc, seen.canary_deployment, desired.revision)
        if not ready or live != canary.traffic_percent or since is None:
            return postponed_plan(spec, status, desired, rollout, ctx.now)
        flowed = since + parse_duration(spec.rollout.interval)
        if ctx.now < flowed:
            return postponed_plan(spec, status, desired, rollout, ctx.now, flowed)
    stable = cast(Revision, status.stable)
    return run_analysis(
        spec,
        status,
        desired,
        rollout,
        prom or NoPrometheus(),
        rollout_target(ctx.namespace, ctx.name, spec, stable, desired, rollout),
        ctx.settings.prometheus_scrape_interval,
        ctx.now,
    )
