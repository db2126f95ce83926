"""The DriftMonitor reconcile: target and reference -> apply the drift service and its
monitoring -> read the service -> act -> status."""

from __future__ import annotations

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
    build_service,
    build_service_monitor,
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
from kubeforge_operator.driftmonitor.reading import read_service_status, resolve_reference
from kubeforge_operator.runtime.conditions import Observation
from kubeforge_operator.runtime.reconcile import Outcome, ReconcileContext, accepted
from kubeforge_operator.runtime.settings import get_settings

MAX_RECHECK_SECONDS = 60.0


def reconcile_driftmonitor(ctx: ReconcileContext, spec: DriftMonitorSpec) -> Outcome:
    status = cast(DriftMonitorStatus, ctx.kind.parse_status(ctx.obj.get("status")))
    settings = get_settings()
    interval = parse_duration(spec.window.interval).total_seconds()
    recheck = min(interval, MAX_RECHECK_SECONDS)
    phase = str(status.phase or DriftMonitorPhase.PENDING)
    target = spec.target.model_server
    model_server = ctx.kube.get(MODELSERVER, ctx.namespace, target)
    if model_server is None:
        missing = Observation(
            TARGET_FOUND,
            ConditionStatus.FALSE,
            "ModelServerNotFound",
            f"ModelServer {target} does not exist in namespace {ctx.namespace}",
        )
        return Outcome(
            phase=DriftMonitorPhase.PENDING, dependents=[accepted(), missing], requeue_after=recheck
        )
    found = Observation(TARGET_FOUND, ConditionStatus.TRUE, "Found", f"ModelServer {target}")
    ftj, ftj_name = source_fine_tune_job(ctx, model_server)
    resolved = resolve_reference(spec, model_server, ftj, ftj_name)
    if isinstance(resolved, Observation):
        return Outcome(
            phase=DriftMonitorPhase.PENDING,
            dependents=[accepted(), found, resolved],
            requeue_after=recheck,
        )
    reference, secret = resolved
    reference_ok = Observation(REFERENCE_RESOLVED, ConditionStatus.TRUE, "Resolved", reference)

    config = monitor_config(ctx.namespace, ctx.name, spec, reference)
    for manifest in (
        build_config_map(ctx.obj, config),
        build_deployment(ctx.obj, config, settings.drift_image, secret),
        build_service(ctx.obj),
    ):
        ctx.kube.apply(manifest)
    info: list[Observation] = []
    try:
        ctx.kube.apply(build_service_monitor(ctx.obj, interval))
        if spec.actions.alert.enabled:
            ctx.kube.apply(build_prometheus_rule(ctx.obj, spec.actions.alert.severity, interval))
        info.append(
            Observation(
                MONITORING_READY,
                ConditionStatus.TRUE,
                "Applied",
                "ServiceMonitor" + (" and PrometheusRule" if spec.actions.alert.enabled else ""),
            )
        )
    except ResourceNotFoundError:
        info.append(
            Observation(
                MONITORING_READY,
                ConditionStatus.FALSE,
                "PrometheusOperatorNotInstalled",
                "monitoring.coreos.com/v1 (ServiceMonitor, PrometheusRule) is not served by this "
                "cluster; the scores are still on the drift service's /metrics and in this status",
            )
        )

    logger = logger_observation(ctx, target)
    if logger.reason == "Waiting":
        nudge(ctx, model_server)
    fields: dict[str, Any] = {
        "referenceUri": reference,
        "service": logger_url(ctx.namespace, ctx.name),
    }
    body = fetch_status(status_url(ctx.namespace, ctx.name))
    if isinstance(body, str):
        service = Observation(
            SERVICE_READY,
            ConditionStatus.FALSE,
            "ServiceUnreachable",
            f"the drift service does not answer: {body}",
        )
        return Outcome(
            phase=DriftMonitorPhase.PENDING,
            dependents=[accepted(), found, reference_ok, service, logger],
            fields=fields,
            info=info,
            requeue_after=recheck,
        )
    if not body.get("ready"):
        error = str(body.get("error") or "the reference is loading")
        reason = "ReferenceMismatch" if "column" in error else "ReferenceUnavailable"
        service = Observation(SERVICE_READY, ConditionStatus.FALSE, reason, error)
        return Outcome(
            phase=DriftMonitorPhase.FAILED
            if reason == "ReferenceMismatch"
            else DriftMonitorPhase.PENDING,
            dependents=[accepted(), found, reference_ok, service, logger],
            fields=fields,
            info=info,
            requeue_after=recheck,
        )
    service = Observation(
        SERVICE_READY,
        ConditionStatus.TRUE,
        "Ready",
        f"reference {reference}: {(body.get('reference') or {}).get('rows')} rows",
    )

    reading = read_service_status(body, spec.bias is not None)
    fields.update(reading.fields)
    info += [reading.drift, reading.bias]
    actions = list(status.actions)
    before = len(actions)
    if reading.detected:
        act(ctx, spec, status, model_server, ftj, reading, actions)
    if len(actions) != before:
        fields["actions"] = [a.to_wire() for a in actions[-KEEP_ACTIONS:]]
    phase = DriftMonitorPhase.DRIFTED if reading.detected else DriftMonitorPhase.MONITORING
    return Outcome(
        phase=phase,
        dependents=[accepted(), found, reference_ok, service, logger],
        fields=fields,
        info=info,
        requeue_after=recheck,
    )
