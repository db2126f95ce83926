"""The conditions a ModelServer reports, declared once, and the pure functions that compute
them from what was observed."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from kubernetes.client import ApiException

from kubeforge_crds import ConditionStatus
from kubeforge_crds.common import QueueStatus
from kubeforge_crds.modelserver import ModelServerPhase, ModelServerStatus
from kubeforge_operator.modelserver.conditions import (
    CANARY_READY,
    ISVC_READY,
    MODEL_RESOLVED,
    ROLLED_BACK,
    TRAFFIC_ROUTED,
)
from kubeforge_operator.modelserver.rollout import KEEP_DECISIONS, Plan
from kubeforge_operator.modelserver.traffic import Mode, deployment_serves
from kubeforge_operator.runtime.conditions import Observation
from kubeforge_operator.runtime.kube import api_refusal
from kubeforge_operator.runtime.queueing import QUEUE_POLL_SECONDS, queued_observation
from kubeforge_operator.runtime.reconcile import Outcome, accepted


def isvc_ready(isvc: dict[str, Any] | None, mode: Mode = Mode.SERVERLESS) -> Observation:
    """KServe's Ready condition for the spec we last applied; when not ready, the reason of the
    first of KServe's own conditions that is not (PredictorReady, IngressReady, ...).

    In Serverless mode status.observedGeneration is the InferenceService's; in Standard mode
    KServe (v0.20) copies the predictor Deployment's there, so it says nothing about the
    InferenceService's generation and is not compared."""
    if isvc is None:
        return Observation(ISVC_READY, ConditionStatus.UNKNOWN, "Creating", "")
    status = isvc.get("status") or {}
    if mode == Mode.SERVERLESS and status.get("observedGeneration") != isvc["metadata"].get(
        "generation"
    ):
        return Observation(
            ISVC_READY,
            ConditionStatus.UNKNOWN,
            "WaitingForKServe",
            f"KServe has not reported on InferenceService {isvc['metadata']['name']} generation "
            f"{isvc['metadata'].get('generation')} yet",
        )
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready")
    if ready is None:
        return Observation(ISVC_READY, ConditionStatus.UNKNOWN, "WaitingForKServe", "no Ready yet")
    state = ConditionStatus(ready.get("status", "Unknown"))
    if state == ConditionStatus.TRUE:
        return Observation(ISVC_READY, state, ready.get("reason") or "Ready", "")
    for type_ in KSERVE_CONDITIONS:
        cond = conditions.get(type_)
        if cond is not None and cond.get("status") != "True":
            reason = cond.get("reason") or f"{type_}{cond.get('status')}"
            said = f"KServe {type_}={cond.get('status')}: {reason}"
            if cond.get("message"):
                said += f": {cond['message']}"
            return Observation(ISVC_READY, state, _camel(reason), said)
    return Observation(
        ISVC_READY, state, ready.get("reason") or "NotReady", ready.get("message") or ""
    )


# KServe's conditions that Ready summarises, in the order a failure is looked for
KSERVE_CONDITIONS = ("PredictorReady", "IngressReady", "TransformerReady", "ExplainerReady")


def _camel(reason: str) -> str:
    """KServe's reasons are sometimes phrases ("predictor Deployment NotReady"): a condition
    reason is CamelCase."""
    if " " not in reason:
        return reason
    return "".join(w[:1].upper() + w[1:] for w in reason.replace("-", " ").split())


def canary_observation(isvc: dict[str, Any] | None) -> Observation | None:
    """KServe's CanaryPredictorReady while a canary is deployed (None without one)."""
    for cond in ((isvc or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "CanaryPredictorReady" and cond.get("status") != "True":
            return Observation(
                CANARY_READY,
                ConditionStatus(cond.get("status", "Unknown")),
                _camel(cond.get("reason") or "NotReady"),
                cond.get("message") or "",
            )
    return None


# KServe's webhook refuses to change an InferenceService's deployment mode: the operator's
# (kserveMode, or KServe's default with auto) changed since the InferenceService was made
MODE_FIXED = "deploymentMode cannot be changed"
MODE_FIXED_HINT = (
    "; the deployment mode kubeforge uses (its kserveMode setting, or KServe's default "
    "deploy.defaultDeploymentMode with auto) changed since this InferenceService was created: "
    "set it back, or delete the InferenceService for kubeforge to create it again in the new "
    "mode (its traffic stops until the new one is ready)"
)


def refused_by_kserve(exc: ApiException, status: ModelServerStatus) -> Outcome:
    """KServe's webhook or schema refused what was applied: said with its message (and what to
    do, where KServe's words do not say it); the stable version, if any, keeps serving."""
    message = api_refusal(exc)
    if MODE_FIXED in message:
        message += MODE_FIXED_HINT
    refused = Observation(ISVC_READY, ConditionStatus.FALSE, "RefusedByKServe", message)
    phase = str(status.phase or ModelServerPhase.FAILED)
    return Outcome(phase=phase, dependents=[accepted(), refused])


def canary_rollout_observation(
    deployment: dict[str, Any] | None, revision: str
) -> Observation | None:
    """Standard mode: why the canary predictor's Deployment does not serve ``revision`` yet
    (None when it does). KServe's CanaryPredictorReady can be about the canary's previous
    version: a new version replacing a canary that is still there (draining after a rollback)
    is a rolling update, whose old pods keep the Deployment available while the new ones fail."""
    if deployment_serves(deployment, revision):
        return None
    if deployment is None:
        return Observation(CANARY_READY, ConditionStatus.UNKNOWN, "Creating", "")
    name = deployment["metadata"]["name"]
    status = deployment.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("status") == "False":
            return Observation(
                CANARY_READY,
                ConditionStatus.FALSE,
                str(cond.get("reason") or "NotProgressing"),
                f"Deployment {name}: {cond.get('message') or ''}".rstrip(": "),
            )
    replicas = int(deployment["spec"].get("replicas") or 1)
    return Observation(
        CANARY_READY,
        ConditionStatus.FALSE,
        "RollingOut",
        f"Deployment {name} has {int(status.get('updatedReplicas') or 0)} of {replicas} "
        f"replicas on revision {revision}, {int(status.get('availableReplicas') or 0)} "
        "available; the revision gets no traffic before all are",
    )


def served_outcome(
    status: ModelServerStatus,
    planned: Plan,
    isvc: dict[str, Any] | None,
    model_uri: str,
    gpus: int,
    now: datetime,
    mode: Mode = Mode.SERVERLESS,
    routed: Observation | None = None,
    url: str | None = None,
    canary_deployment: dict[str, Any] | None = None,
) -> Outcome:
    """The status after the InferenceService was applied: the plan's fields and decisions (the
    last ``KEEP_DECISIONS`` kept), KServe's readiness and URL, the rollback condition, and when
    to come back for the next analysis. In Standard mode the address is kubeforge's route
    (``url``) and whether the Gateway routes it (``routed``) is part of Ready. Pure."""
    ready = isvc_ready(isvc, mode)
    routed = routed or Observation(
        TRAFFIC_ROUTED, ConditionStatus.TRUE, "KServeRoutes", f"{mode} mode: KServe's own route"
    )
    fields: dict[str, Any] = dict(planned.status)
    fields["inferenceService"] = isvc["metadata"]["name"] if isvc else None
    fields["gpus"] = gpus
    url = url or ((isvc or {}).get("status") or {}).get("url")
    if url:
        fields["url"] = url
    if planned.decisions:
        decisions = [*status.decisions, *planned.decisions][-KEEP_DECISIONS:]
        fields["decisions"] = [d.to_wire() for d in decisions]
    info = []
    kept: tuple[str, ...] = ()
    if planned.rolled_back is not None:
        info.append(planned.rolled_back)
    elif planned.phase == ModelServerPhase.ROLLED_BACK:
        kept = (ROLLED_BACK,)  # a rolled-back state keeps the reason it was rolled back for
    else:
        info.append(Observation(ROLLED_BACK, ConditionStatus.FALSE, "NoRollback", ""))
    if planned.canary_percent is None:
        info.append(Observation(CANARY_READY, ConditionStatus.FALSE, "NoCanary", ""))
    else:
        rolled = None
        if mode == Mode.STANDARD:
            rolled = canary_rollout_observation(canary_deployment, planned.served.revision)
        info.append(
            canary_observation(isvc)
            or rolled
            or Observation(CANARY_READY, ConditionStatus.TRUE, "CanaryReady", "")
        )
    phase = planned.phase
    if phase == ModelServerPhase.READY and any(
        o.status != ConditionStatus.TRUE for o in (ready, routed)
    ):
        phase = ModelServerPhase.PENDING
    requeue = None
    if planned.next_analysis is not None:
        requeue = max(0.5, (planned.next_analysis - now).total_seconds())
    model_ok = Observation(MODEL_RESOLVED, ConditionStatus.TRUE, "Resolved", model_uri)
    return Outcome(
        phase=phase,
        dependents=[accepted(), model_ok, ready, routed],
        fields=fields,
        info=info,
        requeue_after=requeue,
        kept=kept,
    )


def queued(outcome: Outcome, queue: QueueStatus) -> Outcome:
    """The outcome of a ModelServer one of whose predictor pods Kueue holds back: status.queue
    says where and why; while no version serves yet (phase Pending), phase Queued and
    InferenceServiceReady says it waits for quota. It is read again while it waits (others are
    admitted or leave with no event of ours). Pure."""
    fields = {**outcome.fields, "queue": queue.to_wire()}
    again = min(outcome.requeue_after or QUEUE_POLL_SECONDS, QUEUE_POLL_SECONDS)
    if outcome.phase != ModelServerPhase.PENDING:
        return replace(outcome, fields=fields, requeue_after=again)
    dependents = [
        queued_observation(ISVC_READY, queue) if o.type == ISVC_READY else o
        for o in outcome.dependents
    ]
    return replace(
        outcome,
        phase=ModelServerPhase.QUEUED,
        dependents=dependents,
        fields=fields,
        requeue_after=again,
    )
