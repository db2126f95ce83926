"""Why a workload's pod is not running, in the kubelet's own words: the reason of a container that
waits (ErrImageNeverPull, InvalidImageName, ImagePullBackOff, CrashLoopBackOff, ...) or that was
killed (OOMKilled), and a pod whose node stopped answering. Every kind that runs pods reports these
in its status instead of a silent Pending.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Waiting reasons that mean the container will not start without a change (of the image, the
# spec or the program): anything else (ContainerCreating, PodInitializing) is on its way.
STUCK_REASONS = frozenset(
    {
        "ErrImageNeverPull",
        "InvalidImageName",
        "ErrImagePull",
        "ImagePullBackOff",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
# The image cannot be had at all: retrying without a new image is pointless.
IMAGE_REASONS = frozenset({"ErrImageNeverPull", "InvalidImageName"})


@dataclass(frozen=True)
class PodProblem:
    reason: str
    message: str

    @property
    def permanent(self) -> bool:
        """Whether only a change of the spec (a new image) can fix it."""
        return self.reason in IMAGE_REASONS


def pod_problem(pod: dict[str, Any] | None) -> PodProblem | None:
    """The first container of ``pod`` that is stuck or was OOM-killed, or the pod's node gone."""
    if not pod:
        return None
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason not in STUCK_REASONS:
            continue
        last = ((cs.get("lastState") or {}).get("terminated") or {}).get("reason")
        if reason == "CrashLoopBackOff" and last == "OOMKilled":
            return PodProblem(
                "OOMKilled",
                f"container {cs.get('name')} of pod {name} was killed at its memory limit "
                "(OOMKilled) and is restarting: raise its memory limit",
            )
        detail = (waiting.get("message") or "").strip()
        return PodProblem(
            reason,
            f"container {cs.get('name')} of pod {name}: {reason}"
            + (f": {detail}" if detail else ""),
        )
    for cs in statuses:
        terminated = (cs.get("state") or {}).get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            return PodProblem(
                "OOMKilled",
                f"container {cs.get('name')} of pod {name} was killed at its memory limit "
                "(OOMKilled): raise its memory limit",
            )
    if status.get("reason") in ("NodeLost", "Evicted", "Terminated"):
        return PodProblem(
            status["reason"], status.get("message") or f"pod {name}: {status['reason']}"
        )
    for cond in status.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return PodProblem(cond.get("reason") or "Disrupted", cond.get("message") or "")
    return None


def node_problem(pod: dict[str, Any] | None, node: dict[str, Any] | None) -> PodProblem | None:
    """The pod's node is gone or has stopped reporting (its kubelet stopped): the pod's state is
    no longer known."""
    node_name = ((pod or {}).get("spec") or {}).get("nodeName")
    if not node_name:
        return None
    if node is None:
        return PodProblem("NodeLost", f"node {node_name}, where pod {pod_name(pod)} ran, is gone")
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") != "True":
            return PodProblem(
                "NodeNotReady",
                f"node {node_name}, where pod {pod_name(pod)} runs, is not ready: "
                f"{cond.get('message') or cond.get('reason') or 'no heartbeat'}",
            )
    return None


def unready_node(
    pod: dict[str, Any] | None, get_node: Callable[[str], dict[str, Any] | None]
) -> PodProblem | None:
    """For a scheduled pod that is not ready, whether its node is the cause (gone, or its kubelet
    silent): ``get_node`` reads the node, only then (a ready pod costs no read)."""
    node_name = ((pod or {}).get("spec") or {}).get("nodeName")
    if not node_name or pod_ready(pod):
        return None
    return node_problem(pod, get_node(str(node_name)))


def pod_ready(pod: dict[str, Any] | None) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in ((pod or {}).get("status") or {}).get("conditions") or []
    )


def running_not_ready(pod: dict[str, Any] | None) -> PodProblem | None:
    """A pod whose containers run but that is not ready: its readiness probe fails, and only the
    program's own log says why (an unreadable file, a bad configuration)."""
    status = (pod or {}).get("status") or {}
    statuses = status.get("containerStatuses") or []
    running = statuses and all("running" in (cs.get("state") or {}) for cs in statuses)
    if status.get("phase") != "Running" or not running or pod_ready(pod):
        return None
    meta = (pod or {}).get("metadata") or {}
    name, namespace = meta.get("name", ""), meta.get("namespace", "")
    return PodProblem(
        "PodNotReady",
        f"pod {name} runs but is not ready (its readiness probe fails); its log says why: "
        f"kubectl logs -n {namespace} {name}",
    )


def pod_name(pod: dict[str, Any] | None) -> str:
    return str(((pod or {}).get("metadata") or {}).get("name", ""))


def unscheduled(pods: Iterable[dict[str, Any]]) -> PodProblem | None:
    """The first pod the scheduler could not place, with its reason (e.g. "0/5 nodes are
    available: 1 Insufficient cpu"): a Job counts such a pod as active, yet nothing runs."""
    for pod in pods:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                name = (pod.get("metadata") or {}).get("name", "")
                reason = cond.get("reason") or "Unschedulable"
                detail = (cond.get("message") or "").strip()
                return PodProblem(
                    reason,
                    f"pod {name} is not scheduled ({reason})" + (f": {detail}" if detail else ""),
                )
    return None


def first_problem(pods: Iterable[dict[str, Any]]) -> PodProblem | None:
    for pod in pods:
        problem = pod_problem(pod)
        if problem is not None:
            return problem
    return None


def termination_result(pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON a step left as its termination message, from the newest terminated container
    (``{}`` if none left one, e.g. on a simulated node)."""
    found: list[tuple[str, str]] = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term.get("message"):
                found.append((str(term.get("finishedAt") or ""), str(term["message"])))
    for _, message in sorted(found, reverse=True):
        try:
            value = json.loads(message)
        except json.JSONDecodeError:
            return {"error": message.strip()[-1000:]}  # FallbackToLogsOnError: the log's tail
        if isinstance(value, dict):
            return value
    return {}


def true_condition(obj: dict[str, Any], *types: str) -> dict[str, Any] | None:
    """The first of ``types`` among the object's conditions that is True (a Job's Complete or
    Failed, a TrainJob's Complete), or None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") in types and cond.get("status") == "True":
            return dict(cond)
    return None
