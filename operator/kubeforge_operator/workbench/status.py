"""The conditions a Workbench reports, declared once, and the pure functions that compute them
and the phase from the notebook pod."""

from __future__ import annotations

from datetime import datetime, timedelta
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


# The scheduler's words (PodScheduled False, reason Unschedulable) for a pod whose claims are not
# bound yet: with a StorageClass that binds Immediately, a new Workbench's pod is often made
# before its home volume is provisioned and waits for it. That is progress, not a failure, for
# as long as a provisioner takes; after VOLUME_WAIT it is the failure it would be.
UNBOUND_CLAIMS = "unbound immediate PersistentVolumeClaims"
VOLUME_WAIT = timedelta(minutes=2)
WAITING_FOR_VOLUME = "WaitingForVolume"
# ... and for the first VOLUME_QUIET of that wait it is what the pod not made yet is: pending.
# With an Immediate StorageClass nearly every new Workbench's pod waits for its volume, seconds
# to tens of seconds as provisioners go (cloud disks: 5-30 s); saying so at once cost a status
# write for each (half of bench/workbench_scale.py's Workbenches, 2.5 status writes each), for
# a state that is normal and over before anyone reads it. Longer is worth saying (the default;
# the operator's volume_quiet_seconds).
VOLUME_QUIET = timedelta(seconds=30)
POD_PENDING = Observation(SCHEDULED, ConditionStatus.UNKNOWN, "PodPending", "waiting for the pod")


def observe_scheduled(
    pod: dict[str, Any] | None,
    stopped: bool,
    now: datetime | None = None,
    quiet: timedelta = VOLUME_QUIET,
) -> Observation:
    """Whether the notebook pod is placed; ``now`` tells how long a pod has waited for its
    volume (without it, a pod waiting for its volume is still waiting), ``quiet`` how long it
    may before that is said."""
    if stopped:
        return Observation(
            SCHEDULED, ConditionStatus.UNKNOWN, "Stopped", "the Workbench is stopped"
        )
    cond = _pod_condition(pod, "PodScheduled")
    if cond is None:
        return POD_PENDING
    if cond.get("status") == "True":
        node = (pod or {}).get("spec", {}).get("nodeName", "")
        return Observation(SCHEDULED, ConditionStatus.TRUE, "Scheduled", f"on node {node}")
    message = str(cond.get("message") or "")
    if UNBOUND_CLAIMS in message:
        since = cond.get("lastTransitionTime")
        waited = now - parse_timestamp(str(since)) if now is not None and since else None
        if waited is not None and waited < quiet:
            return POD_PENDING
        if waited is None or waited < VOLUME_WAIT:
            return Observation(
                SCHEDULED,
                ConditionStatus.UNKNOWN,
                WAITING_FOR_VOLUME,
                f"waiting for the home volume's claim to be bound: {message}",
            )
        return Observation(
            SCHEDULED,
            ConditionStatus.FALSE,
            "VolumeNotBound",
            # no count of seconds in it: a message that changes on every pass is a status write
            # on every pass, for as long as the claim stays unbound
            f"the pod's volume claims have not been bound within {int(VOLUME_WAIT.total_seconds())}"
            f" s (is the StorageClass's provisioner running? kubectl describe pvc): {message}",
        )
    return Observation(
        SCHEDULED, ConditionStatus.FALSE, cond.get("reason") or "Unschedulable", message
    )


def volume_wait_left(
    pod: dict[str, Any] | None, now: datetime, quiet: timedelta = VOLUME_QUIET
) -> float | None:
    """Seconds until a pod waiting for its volume has waited ``quiet``, then VOLUME_WAIT, so
    that the Workbench says so then, whether or not anything else happens. None: not waiting,
    or waited both out (VolumeNotBound is said; the resync and the pod's events re-read it)."""
    cond = _pod_condition(pod, "PodScheduled")
    if not cond or cond.get("status") != "False" or not cond.get("lastTransitionTime"):
        return None
    if UNBOUND_CLAIMS not in str(cond.get("message") or ""):
        return None
    since = parse_timestamp(str(cond["lastTransitionTime"]))
    for mark in (quiet, VOLUME_WAIT):
        left = (since + mark - now).total_seconds()
        if left > 0:
            return max(1.0, left)
    return None


def observe_server(
    pod: dict[str, Any] | None, stopped: bool, node: PodProblem | None = None
) -> Observation:
    """``node``: the pod's node is gone or not ready (``unready_node``)."""
    if stopped:
        return Observation(
            SERVER_READY, ConditionStatus.FALSE, "Stopped", "the Workbench is stopped"
        )
    if pod is None or not (pod.get("spec") or {}).get("nodeName"):
        # one message for both: a pod made but not placed yet is no news worth a status write
        return Observation(
            SERVER_READY, ConditionStatus.UNKNOWN, "PodPending", "waiting for the pod to be placed"
        )
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
