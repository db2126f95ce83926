"""What a DriftMonitor does about drift or degraded quality: an alert record, a rollback request
on the target's canary, a retraining FineTuneJob (planned purely: never while one runs, never
within the cool-down), trained on the reference plus the exported live window."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from kubernetes import client

from kubeforge_crds import FINETUNEJOB, MODELSERVER, ConditionStatus
from kubeforge_crds.base import parse_duration
from kubeforge_crds.contracts.drift import (
    service_name,
)
from kubeforge_crds.contracts.labels import (
    DRIFT_MONITOR_LABEL,
    LIVE_DATA_ANNOTATION,
    ROLLBACK_ANNOTATION,
    ROLLBACK_REASON_ANNOTATION,
    TRIGGER_ANNOTATION,
)
from kubeforge_crds.driftmonitor import (
    ActionRecord,
    DriftMonitorSpec,
    DriftMonitorStatus,
)
from kubeforge_crds.finetunejob import FineTuneJobSpec
from kubeforge_operator.driftmonitor.conditions import (
    ANOMALIES_DETECTED,
    BIAS_DETECTED,
    DRIFT_DETECTED,
    QUALITY_DEGRADED,
)
from kubeforge_operator.driftmonitor.observe import status_url
from kubeforge_operator.driftmonitor.reading import Reading
from kubeforge_operator.runtime.conditions import get_condition
from kubeforge_operator.runtime.reconcile import ReconcileContext

log = logging.getLogger(__name__)


KEEP_ACTIONS = 100


EXPORT_TIMEOUT_SECONDS = 60.0  # the reference is re-read and written out with the window


@dataclass(frozen=True)
class RetrainPlan:
    action: str  # create | running | cooldown
    detail: str
    name: str | None = None


def _created(obj: dict[str, Any]) -> datetime:
    return datetime.strptime(obj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC
    )


def plan_retrain(
    monitor: str, existing: list[dict[str, Any]], cooldown: timedelta, now: datetime
) -> RetrainPlan:
    """Whether to start a retraining FineTuneJob, given the ones this monitor started: never
    while one runs, never within ``cooldown`` of the newest; the name is numbered so that two
    reconciles racing create one object."""
    running = [
        o for o in existing if ((o.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
    ]
    if running:
        return RetrainPlan("running", f"{running[0]['metadata']['name']} is still running")
    if existing:
        newest = max(existing, key=_created)
        until = _created(newest) + cooldown
        if now < until:
            return RetrainPlan(
                "cooldown",
                f"cool-down after {newest['metadata']['name']} until {until:%Y-%m-%dT%H:%M:%SZ}",
            )
    numbers = [
        int(o["metadata"]["name"].rsplit("-", 1)[-1])
        for o in existing
        if o["metadata"]["name"].rsplit("-", 1)[-1].isdigit()
    ]
    name = f"{monitor}-retrain-{max(numbers, default=0) + 1}"
    return RetrainPlan("create", "drift or degraded quality", name)


def retrain_manifest(
    monitor: dict[str, Any], name: str, template: FineTuneJobSpec, trigger: str
) -> dict[str, Any]:
    meta = monitor["metadata"]
    return {
        "apiVersion": FINETUNEJOB.api_version,
        "kind": FINETUNEJOB.kind,
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {DRIFT_MONITOR_LABEL: meta["name"], "app.kubernetes.io/part-of": "kubeforge"},
            "annotations": {TRIGGER_ANNOTATION: trigger[:1024]},
        },
        "spec": template.to_wire(),
    }


def _record(
    ctx: ReconcileContext, actions: list[ActionRecord], type_: str, target: str | None, reason: str
) -> None:
    actions.append(
        ActionRecord(
            time=ctx.now,
            type=type_,
            target=target,
            reason=reason[:1024],
        )
    )
    ctx.kube.record_event(
        ctx.obj,
        "Warning" if type_ != "alert" else "Normal",
        f"Action{type_.title()}",
        f"{target or ''}: {reason}",
    )


def act(
    ctx: ReconcileContext,
    spec: DriftMonitorSpec,
    status: DriftMonitorStatus,
    model_server: dict[str, Any],
    ftj: dict[str, Any] | None,
    reading: Reading,
    actions: list[ActionRecord],
) -> None:
    summary = "; ".join(reading.crossed[:3])
    newly = not any(
        (previous := get_condition(status.conditions, type_)) is not None
        and previous.status == ConditionStatus.TRUE
        for type_ in (DRIFT_DETECTED, BIAS_DETECTED, QUALITY_DEGRADED, ANOMALIES_DETECTED)
    )
    if spec.actions.alert.enabled and newly:
        _record(ctx, actions, "alert", service_name(ctx.name), f"PrometheusRule fires: {summary}")
    if spec.actions.rollback:
        _rollback(ctx, model_server, summary, actions)
    if spec.actions.retrain.enabled and reading.retrain_worthy:
        # what the retraining run's trigger says started it: the model's measured quality, or
        # the drift (or bias) of its inputs
        _retrain(ctx, spec, ftj, "quality" if reading.degraded else "drift", summary, actions)


def _rollback(
    ctx: ReconcileContext, model_server: dict[str, Any], summary: str, actions: list[ActionRecord]
) -> None:
    canary = ((model_server.get("status") or {}).get("canary") or {}).get("revision")
    annotations = model_server["metadata"].get("annotations") or {}
    if not canary or annotations.get(ROLLBACK_ANNOTATION) == canary:
        return  # no rollout in progress, or already asked
    name = model_server["metadata"]["name"]
    reason = f"DriftMonitor {ctx.name}: {summary}"
    ctx.kube.custom.patch_namespaced_custom_object(
        MODELSERVER.group,
        MODELSERVER.version,
        ctx.namespace,
        MODELSERVER.plural,
        name,
        {
            "metadata": {
                "annotations": {
                    ROLLBACK_ANNOTATION: canary,
                    ROLLBACK_REASON_ANNOTATION: reason[:1024],
                }
            }
        },
    )
    _record(
        ctx, actions, "rollback", f"ModelServer/{name}", f"rolled back canary {canary}: {summary}"
    )


def _retrain(
    ctx: ReconcileContext,
    spec: DriftMonitorSpec,
    ftj: dict[str, Any] | None,
    cause: str,
    summary: str,
    actions: list[ActionRecord],
) -> None:
    template = spec.actions.retrain.template
    if template is None:
        if ftj is None:
            log.warning(
                "retrain: no template and no source FineTuneJob",
                extra={"object": f"{ctx.namespace}/{ctx.name}"},
            )
            return
        template = FineTuneJobSpec.model_validate(ftj["spec"])
    existing = ctx.kube.list_children(
        FINETUNEJOB.api_version,
        FINETUNEJOB.kind,
        ctx.namespace,
        f"{DRIFT_MONITOR_LABEL}={ctx.name}",
    )
    plan = plan_retrain(ctx.name, existing, parse_duration(spec.actions.retrain.cooldown), ctx.now)
    if plan.action != "create" or plan.name is None:
        return
    trigger = f"{cause}:{ctx.namespace}/{ctx.name}: {summary}"
    manifest = retrain_manifest(ctx.obj, plan.name, template, trigger)
    if spec.actions.retrain.include_live_data:
        try:
            exported = export_live_data(status_url(ctx), plan.name)
        except ExportFailedError as err:
            # no run without its data; the next reconcile tries again
            log.warning(
                "retrain: live data export failed",
                extra={"object": f"{ctx.namespace}/{ctx.name}", "error": str(err)},
            )
            _record(ctx, actions, "retrain", f"FineTuneJob/{plan.name}", f"not started: {err}")
            return
        with_live_data(manifest, exported)
    try:
        ctx.kube.custom.create_namespaced_custom_object(
            FINETUNEJOB.group,
            FINETUNEJOB.version,
            ctx.namespace,
            FINETUNEJOB.plural,
            manifest,
        )
    except client.ApiException as exc:
        if exc.status == 409:
            return  # a concurrent reconcile created it
        raise
    _record(ctx, actions, "retrain", f"FineTuneJob/{plan.name}", summary)


class ExportFailedError(Exception):
    pass


def export_live_data(service_url: str, run: str) -> dict[str, Any]:
    """Ask the monitor's drift service to write the reference plus its live window as the
    dataset ``<exportUri>/<run>.jsonl``; what it wrote (uri, row counts, sha256)."""
    url = service_url.rstrip("/") + "/export"
    try:
        response = httpx.post(url, json={"name": run}, timeout=EXPORT_TIMEOUT_SECONDS)
    except httpx.HTTPError as err:
        raise ExportFailedError(f"drift service unreachable at {url}: {err}") from err
    if response.status_code != 200:
        detail = response.text[:300]
        with contextlib.suppress(ValueError):
            detail = str(response.json().get("detail", detail))
        raise ExportFailedError(f"drift service answered {response.status_code}: {detail}")
    return dict(response.json())


def with_live_data(manifest: dict[str, Any], exported: dict[str, Any]) -> None:
    """Point the retraining run at the exported dataset and say what it holds."""
    manifest["spec"]["dataset"]["uri"] = exported["uri"]
    manifest["metadata"].setdefault("annotations", {})[LIVE_DATA_ANNOTATION] = (
        f"{exported['referenceRows']} training rows + {exported['liveRows']} live rows, "
        f"sha256 {exported['sha256']}"
    )
