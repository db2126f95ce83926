"""The conditions a Workbench reports, declared once, and the pure functions that compute them
and the phase from the notebook pod."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubeforge_crds import ConditionStatus
from kubeforge_crds.workbench import WorkbenchPhase
from kubeforge_operator.runtime.conditions import ACCEPTED, READY, Observation
from kubeforge_operator.runtime.pods import IMAGE_REASONS, PodProblem, pod_problem
from kubeforge_operator.workbench.culling import (
    CULLED,
    parse_timestamp,
)

# The conditions the Workbench controller owns: Ready summarises Accepted, Scheduled and
# ServerReady (DataConnectionsReady while a Secret is missing); Culled is reported beside it.
SCHEDULED = "Scheduled"
SERVER_READY = "ServerReady"


DATA_CONNECTIONS = "DataConnectionsReady"  # only when the spec names data connections


def _pod_condition(pod: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    if not pod:
        return None
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def ready_since(pod: dict[str, Any] | None) -> datetime | None:
    """When the pod last became Ready, if it is."""
    cond = _pod_condition(pod, "Ready")
    if not cond or cond.get("status") != "True" or not cond.get("lastTransitionTime"):
        return None
    return parse_timestamp(str(cond["lastTransitionTime"]))


def observe_scheduled(pod: dict[str, Any] | None, stopped: bool) -> Observation:
    if stopped:
        return Observation(
            SCHEDULED, ConditionStatus.UNKNOWN, "Stopped", "the Workbench is stopped"
        )
    cond = _pod_condition(pod, "PodScheduled")
    if cond is None:
        return Observation(SCHEDULED, ConditionStatus.UNKNOWN, "PodPending", "waiting for the pod")
    if cond.get("status") == "True":
        node = (pod or {}).get("spec", {}).get("nodeName", "")
        return Observation(SCHEDULED, ConditionStatus.TRUE, "Scheduled", f"on node {node}")
    return Observation(
        SCHEDULED,
        ConditionStatus.FALSE,
        cond.get("reason") or "Unschedulable",
        cond.get("message") or "",
    )


def observe_server(
    pod: dict[str, Any] | None, stopped: bool, node: PodProblem | None = None
) -> Observation:
    """``node``: the pod's node is gone or not ready (``unready_node``)."""
    if stopped:
        return Observation(
            SERVER_READY, ConditionStatus.FALSE, "Stopped", "the Workbench is stopped"
        )
    if pod is None:
        return Observation(SERVER_READY, ConditionStatus.UNKNOWN, "PodPending", "no pod yet")
    if not (pod.get("spec") or {}).get("nodeName"):
        return Observation(SERVER_READY, ConditionStatus.UNKNOWN, "PodPending", "not scheduled yet")
    if (pod.get("status") or {}).get("phase") == "Failed":
        return Observation(SERVER_READY, ConditionStatus.FALSE, "PodFailed", "the pod failed")
    problem = node or pod_problem(pod)
    if problem is not None:  # the kubelet's reason: a bad image, a crash loop, an OOM kill
        return Observation(SERVER_READY, ConditionStatus.FALSE, problem.reason, problem.message)
    cond = _pod_condition(pod, "Ready")
    if cond and cond.get("status") == "True":
        return Observation(SERVER_READY, ConditionStatus.TRUE, "NotebookReady", "serving")
    return Observation(SERVER_READY, ConditionStatus.UNKNOWN, "Starting", "the server is starting")


def decide_phase(
    pod: dict[str, Any] | None, stopped: bool, scheduled: Observation, server: Observation
) -> WorkbenchPhase:
    if stopped:
        return WorkbenchPhase.STOPPING if pod is not None else WorkbenchPhase.STOPPED
    if server.reason == "PodFailed" or server.reason in IMAGE_REASONS:
        return WorkbenchPhase.FAILED
    if server.status == ConditionStatus.TRUE:
        return WorkbenchPhase.RUNNING
    if scheduled.status == ConditionStatus.TRUE:
        return WorkbenchPhase.STARTING
    return WorkbenchPhase.PENDING


# Set on every pass (Unknown when a pass stops before them).
OWNED = (READY, ACCEPTED, SCHEDULED, SERVER_READY, CULLED)
