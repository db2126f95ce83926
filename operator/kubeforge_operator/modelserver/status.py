"""The conditions a ModelServer reports, declared once, and the pure functions that compute
them from what was observed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubeforge_crds import ConditionStatus
from kubeforge_crds.modelserver import ModelServerPhase, ModelServerStatus
from kubeforge_operator.modelserver.conditions import ISVC_READY, MODEL_RESOLVED, ROLLED_BACK
from kubeforge_operator.modelserver.rollout import KEEP_DECISIONS, Plan
from kubeforge_operator.runtime.conditions import Observation
from kubeforge_operator.runtime.reconcile import Outcome, accepted


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


def served_outcome(
    status: ModelServerStatus,
    planned: Plan,
    isvc: dict[str, Any] | None,
    model_uri: str,
    gpus: int,
    now: datetime,
) -> Outcome:
    """The status after the InferenceService was applied: the plan's fields and decisions (the
    last ``KEEP_DECISIONS`` kept), KServe's readiness and URL, the rollback condition, and when
    to come back for the next analysis. Pure."""
    ready = isvc_ready(isvc)
    fields: dict[str, Any] = dict(planned.status)
    fields["inferenceService"] = isvc["metadata"]["name"] if isvc else None
    fields["gpus"] = gpus
    url = ((isvc or {}).get("status") or {}).get("url")
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
    phase = planned.phase
    if phase == ModelServerPhase.READY and ready.status != ConditionStatus.TRUE:
        phase = ModelServerPhase.PENDING
    requeue = None
    if planned.next_analysis is not None:
        requeue = max(0.5, (planned.next_analysis - now).total_seconds())
    model_ok = Observation(MODEL_RESOLVED, ConditionStatus.TRUE, "Resolved", model_uri)
    return Outcome(
        phase=phase,
        dependents=[accepted(), model_ok, ready],
        fields=fields,
        info=info,
        requeue_after=requeue,
        kept=kept,
    )
