"""The DriftMonitor reconcile: target and reference -> apply the drift service and its
monitoring -> read the service -> act -> status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from kubernetes.dynamic.exceptions import ResourceNotFoundError

from kubeforge_crds import MODELSERVER, ConditionStatus
from kubeforge_crds.base import parse_duration
from kubeforge_crds.contracts.drift import (
    logger_url,
)
from kubeforge_crds.driftmonitor import (
    DriftMonitorPhase,
    DriftMonitorSpec,
    DriftMonitorStatus,
)
from kubeforge_operator.driftmonitor.actions import KEEP_ACTIONS, act
from kubeforge_operator.driftmonitor.alerts import build_prometheus_rule
from kubeforge_operator.driftmonitor.builders import (
    build_config_map,
    build_deployment,
    build_network_policy,
    build_service,
    build_service_monitor,
    drift_selector,
    monitor_config,
)
from kubeforge_operator.driftmonitor.conditions import (
    MONITORING_READY,
    REFERENCE_RESOLVED,
    SERVICE_READY,
    TARGET_FOUND,
)
from kubeforge_operator.driftmonitor.observe import (
    fetch_status,
    logger_observation,
    nudge,
    source_fine_tune_job,
    status_url,
)
from kubeforge_operator.driftmonitor.reading import (
    Reading,
    read_service_status,
    resolve_reference,
)
from kubeforge_operator.runtime.children import with_pull_policy
from kubeforge_operator.runtime.conditions import Observation
from kubeforge_operator.runtime.placement import Placement
from kubeforge_operator.runtime.pods import (
    IMAGE_REASONS,
    PodProblem,
    first_problem,
    running_not_ready,
)
from kubeforge_operator.runtime.policies import placement_or_problem
from kubeforge_operator.runtime.reconcile import Outcome, ReconcileContext, accepted

MAX_RECHECK_SECONDS = 60.0


@dataclass(frozen=True)
class Resolved:
    """The preconditions met: the target, its source FineTuneJob, the reference to compare with
    (and the data connection Secret that reads it), and the conditions saying so."""

    model_server: dict[str, Any]
    ftj: dict[str, Any] | None
    reference: str
    secret: str | None
    met: list[Observation]
    placement: Placement


def reconcile_driftmonitor(ctx: ReconcileContext, spec: DriftMonitorSpec) -> Outcome:
    status = cast(DriftMonitorStatus, ctx.kind.parse_status(ctx.obj.get("status")))
    recheck = min(parse_duration(spec.window.interval).total_seconds(), MAX_RECHECK_SECONDS)
    resolved = preconditions(ctx, spec)
    if isinstance(resolved, list):
        return Outcome(phase=DriftMonitorPhase.PENDING, dependents=resolved, requeue_after=recheck)
    info = apply_children(ctx, spec, resolved)
    logger = logger_observation(ctx, spec.target.model_server)
    if logger.reason == "Waiting":
        nudge(ctx, resolved.model_server)
    fields: dict[str, Any] = {
        "referenceUri": resolved.reference,
        "service": logger_url(ctx.namespace, ctx.name),
    }
    service, body = read_service(ctx, resolved.reference)
    if body is None:
        failed = service.reason == "ReferenceMismatch" or service.reason in IMAGE_REASONS
        return Outcome(
            phase=DriftMonitorPhase.FAILED if failed else DriftMonitorPhase.PENDING,
            dependents=[*resolved.met, service, logger],
            fields=fields,
            info=info,
            requeue_after=recheck,
        )
    reading = read_service_status(
        body, spec.bias is not None, spec.ground_truth is not None, spec.anomalies is not None
    )
    fields.update(reading.fields)
    info += [reading.drift, reading.bias, reading.quality, reading.anomalies]
    actions = list(status.actions)
    if reading.detected:
        act(ctx, spec, status, resolved.model_server, resolved.ftj, reading, actions)
    if len(actions) != len(status.actions):
        fields["actions"] = [a.to_wire() for a in actions[-KEEP_ACTIONS:]]
    return Outcome(
        phase=phase(reading),
        dependents=[*resolved.met, service, logger],
        fields=fields,
        info=info,
        requeue_after=recheck,
    )


def phase(reading: Reading) -> DriftMonitorPhase:
    """Degraded (the model's answers are measurably worse) outranks Drifted (its inputs moved)."""
    if reading.degraded:
        return DriftMonitorPhase.DEGRADED
    return DriftMonitorPhase.DRIFTED if reading.detected else DriftMonitorPhase.MONITORING


def preconditions(ctx: ReconcileContext, spec: DriftMonitorSpec) -> Resolved | list[Observation]:
    """The target ModelServer must exist and the reference must resolve; otherwise the
    conditions that say what is missing."""
    placement = placement_or_problem(ctx, None, None)  # the service runs where CPU pods run
    if isinstance(placement, Outcome):
        return list(placement.dependents)
    target = spec.target.model_server
    model_server = ctx.kube.get(MODELSERVER, ctx.namespace, target)
    if model_server is None:
        missing = Observation(
            TARGET_FOUND,
            ConditionStatus.FALSE,
            "ModelServerNotFound",
            f"ModelServer {target} does not exist in namespace {ctx.namespace}",
        )
        return [accepted(), missing]
    found = Observation(TARGET_FOUND, ConditionStatus.TRUE, "Found", f"ModelServer {target}")
    ftj, ftj_name = source_fine_tune_job(ctx, model_server)
    resolved = resolve_reference(spec, model_server, ftj, ftj_name)
    if isinstance(resolved, Observation):
        return [accepted(), found, resolved]
    reference, secret = resolved
    reference_ok = Observation(REFERENCE_RESOLVED, ConditionStatus.TRUE, "Resolved", reference)
    met = [accepted(), found, reference_ok]
    return Resolved(model_server, ftj, reference, secret, met, placement)


def apply_children(
    ctx: ReconcileContext, spec: DriftMonitorSpec, resolved: Resolved
) -> list[Observation]:
    """The drift service (ConfigMap, Deployment, Service), then its ServiceMonitor and, with
    alerts on, its PrometheusRule; the MonitoringConfigured condition says which went in."""
    interval = parse_duration(spec.window.interval).total_seconds()
    config = monitor_config(ctx.namespace, ctx.name, spec, resolved.reference)
    deployment = build_deployment(
        ctx.obj, config, ctx.settings.drift_image, resolved.secret, resolved.placement
    )
    for manifest in (
        build_config_map(ctx.obj, config),
        with_pull_policy(deployment, ctx.settings.image_pull_policy),
        build_service(ctx.obj),
        build_network_policy(
            ctx.obj, ctx.settings.api_namespace, ctx.settings.monitoring_namespaces
        ),
    ):
        ctx.kube.apply(manifest)
    try:
        ctx.kube.apply(build_service_monitor(ctx.obj, interval))
        if spec.actions.alert.enabled:
            ctx.kube.apply(build_prometheus_rule(ctx.obj, spec.actions.alert.severity, interval))
    except ResourceNotFoundError:
        return [
            Observation(
                MONITORING_READY,
                ConditionStatus.FALSE,
                "PrometheusOperatorNotInstalled",
                "monitoring.coreos.com/v1 (ServiceMonitor, PrometheusRule) is not served by this "
                "cluster; the scores are still on the drift service's /metrics and in this status",
            )
        ]
    applied = "ServiceMonitor" + (" and PrometheusRule" if spec.actions.alert.enabled else "")
    return [Observation(MONITORING_READY, ConditionStatus.TRUE, "Applied", applied)]


def service_pod_problem(ctx: ReconcileContext) -> PodProblem | None:
    selector = ",".join(f"{k}={v}" for k, v in drift_selector(ctx.name).items())
    pods = ctx.kube.list_children("v1", "Pod", ctx.namespace, selector)
    return first_problem(pods) or next(filter(None, map(running_not_ready, pods)), None)


def read_service(
    ctx: ReconcileContext, reference: str
) -> tuple[Observation, dict[str, Any] | None]:
    """The drift service's status body when it is ready, with the ServiceReady condition; an
    unreachable service or an unusable reference gives the condition and no body."""
    body = fetch_status(status_url(ctx))
    if isinstance(body, str):
        problem = service_pod_problem(ctx)
        if problem is not None:  # the kubelet's reason: a bad image, a crash loop, an OOM kill
            return Observation(
                SERVICE_READY, ConditionStatus.FALSE, problem.reason, problem.message
            ), None
        return Observation(
            SERVICE_READY,
            ConditionStatus.FALSE,
            "ServiceUnreachable",
            f"the drift service does not answer: {body}",
        ), None
    if not body.get("ready"):
        error = str(body.get("error") or "the reference is loading")
        reason = "ReferenceMismatch" if "column" in error else "ReferenceUnavailable"
        return Observation(SERVICE_READY, ConditionStatus.FALSE, reason, error), None
    rows = (body.get("reference") or {}).get("rows")
    ready = Observation(
        SERVICE_READY, ConditionStatus.TRUE, "Ready", f"reference {reference}: {rows} rows"
    )
    return ready, body
