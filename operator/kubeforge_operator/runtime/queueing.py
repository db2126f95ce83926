"""Where a workload waits for quota: Kueue's own account of a pod it holds back, read from its
Workload object and its visibility API, as kubeforge's ``status.queue`` and a ``Queued``
observation.

Kueue holds a pod of a queued workload (the pod, StatefulSet and Deployment integrations) with a
scheduling gate until it admits the workload; the pod's labels name the Workload. Its position is
only in Kueue's visibility API (an aggregated API, ``visibility.kueue.x-k8s.io``); where that is
not served the position is left out, never guessed.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.utils.quantity import parse_quantity

from kubeforge_crds import ConditionStatus
from kubeforge_crds.common import QueueStatus
from kubeforge_operator.runtime.conditions import Observation
from kubeforge_operator.runtime.kube import Kube
from kubeforge_operator.runtime.placement import QUEUE_LABEL

log = logging.getLogger(__name__)

ADMISSION_GATE = "kueue.x-k8s.io/admission"
# the Workload of a pod group (StatefulSet, pod groups); a plain pod's is found by its uid
WORKLOAD_LABELS = ("kueue.x-k8s.io/prebuilt-workload-name", "kueue.x-k8s.io/pod-group-name")
KUEUE = "kueue.x-k8s.io/v1beta2"
JOB_UID = "kueue.x-k8s.io/job-uid"  # the label on a job's Workload
VISIBILITY = "/apis/visibility.kueue.x-k8s.io/v1beta2"
QUEUED = "Queued"
QUEUE_POLL_SECONDS = 10.0  # how often a queued workload's position is read again
# Kueue's reason when the LocalQueue or its ClusterQueue is missing or stopped
INADMISSIBLE = "Inadmissible"
# ours: the workload asks for more than its ClusterQueue can ever give; Kueue keeps it pending
# (its quota may grow), but nobody should wait for that unknowingly
EXCEEDS_QUOTA = "ExceedsQuota"


def held_by_kueue(pod: dict[str, Any] | None) -> bool:
    """Whether Kueue holds the pod back (its admission scheduling gate)."""
    gates = ((pod or {}).get("spec") or {}).get("schedulingGates") or []
    return any(g.get("name") == ADMISSION_GATE for g in gates)


def workload_name(pod: dict[str, Any]) -> str | None:
    labels = pod["metadata"].get("labels") or {}
    return next((labels[k] for k in WORKLOAD_LABELS if labels.get(k)), None)


def _quota_condition(workload: dict[str, Any] | None) -> dict[str, Any]:
    for cond in ((workload or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "QuotaReserved":
            return dict(cond)
    return {}


def _requests(workload: dict[str, Any]) -> dict[str, float]:
    """What the Workload asks for in all, per resource."""
    total: dict[str, float] = {}
    for podset in (workload.get("status") or {}).get("resourceRequests") or []:
        for resource, quantity in (podset.get("resources") or {}).items():
            total[resource] = total.get(resource, 0.0) + float(parse_quantity(quantity))
    return total


def _ceilings(cluster_queue: dict[str, Any]) -> dict[str, float | None]:
    """The most a ClusterQueue can ever give of each resource it covers, in its largest
    flavor: its nominal quota, plus its borrowing limit when in a cohort (None: no limit)."""
    spec = cluster_queue.get("spec") or {}
    in_cohort = bool(spec.get("cohortName"))
    ceilings: dict[str, float | None] = {}
    for group in spec.get("resourceGroups") or []:
        for flavor in group.get("flavors") or []:
            for res in flavor.get("resources") or []:
                nominal = float(parse_quantity(res.get("nominalQuota", "0")))
                limit = res.get("borrowingLimit")
                most: float | None = nominal
                if in_cohort:  # no borrowing limit in a cohort: all the cohort has unused
                    most = None if limit is None else nominal + float(parse_quantity(limit))
                before = ceilings.get(res["name"], 0.0)
                unbounded = most is None or before is None
                ceilings[res["name"]] = None if unbounded else max(before or 0.0, most or 0.0)
    return ceilings


def exceeds_quota(workload: dict[str, Any], cluster_queue: dict[str, Any]) -> str | None:
    """Pure: why the workload can never be admitted by this ClusterQueue as it is (a request
    above what it can ever give), or None."""
    name = cluster_queue["metadata"]["name"]
    ceilings = _ceilings(cluster_queue)
    for resource, wanted in sorted(_requests(workload).items()):
        if resource not in ceilings:
            return (
                f"asks for {resource}, which ClusterQueue {name} does not cover: ask the "
                "platform team to add it, or do not request it"
            )
        most = ceilings[resource]
        if most is not None and wanted > most:
            return (
                f"asks for {wanted:g} {resource}, more than ClusterQueue {name} can ever give "
                f"({most:g}, with what it may borrow): ask for less, or for a larger quota"
            )
    return None


def queue_status(
    local_queue: str,
    workload_name: str | None,
    workload: dict[str, Any] | None,
    cluster_queue: dict[str, Any] | None,
    pending: dict[str, Any] | None,
) -> QueueStatus:
    """Pure: the status of a queued workload from Kueue's objects. ``cluster_queue`` is the
    ClusterQueue behind the LocalQueue (None when either is missing); ``pending`` the workload's
    entry in the visibility API's pending list (None when not listed)."""
    cond = _quota_condition(workload)
    reason = cond.get("reason")
    message = cond.get("message")
    never = exceeds_quota(workload, cluster_queue) if workload and cluster_queue else None
    if workload is None:
        reason, message = "Pending", "Kueue has not created the Workload yet"
    elif not cond:  # queued, not yet tried by Kueue's scheduler (it writes QuotaReserved then)
        reason, message = "Pending", "Kueue's scheduler has not considered the Workload yet"
    elif cluster_queue is None:
        reason = INADMISSIBLE
        message = (
            f"LocalQueue {local_queue} or its ClusterQueue does not exist: fix the queue name, "
            "or ask the platform team for one"
        )
    elif never is not None:
        reason, message = EXCEEDS_QUOTA, never
    position = in_cq = None
    if pending is not None:
        position = int(pending.get("positionInLocalQueue", 0)) + 1
        in_cq = int(pending.get("positionInClusterQueue", 0)) + 1
    return QueueStatus(
        local_queue=local_queue,
        cluster_queue=(cluster_queue or {}).get("metadata", {}).get("name"),
        workload=workload_name,
        position=position,
        position_in_cluster_queue=in_cq,
        reason=reason,
        message=message,
    )


def queued_observation(condition_type: str, status: QueueStatus) -> Observation:
    """The condition a queued workload reports: False, reason Queued (Inadmissible when it
    never can be admitted as it stands), with the queue, the position and Kueue's message."""
    where = f"LocalQueue {status.local_queue}"
    if status.cluster_queue:
        where += f" (ClusterQueue {status.cluster_queue})"
    if status.position is not None:
        where += f", position {status.position}"
    detail = f": {status.message}" if status.message else ""
    reason = status.reason if status.reason in (INADMISSIBLE, EXCEEDS_QUOTA) else QUEUED
    return Observation(
        condition_type, ConditionStatus.FALSE, reason, f"waiting for quota in {where}{detail}"
    )


def preemptions(workload: dict[str, Any] | None) -> int:
    """How many times Kueue preempted the workload (its scheduling statistics)."""
    stats = ((workload or {}).get("status") or {}).get("schedulingStats") or {}
    return sum(
        int(e.get("count", 0))
        for e in stats.get("evictions") or []
        if e.get("reason") == "Preempted"
    )


def job_workload(kube: Kube, job: dict[str, Any]) -> dict[str, Any] | None:
    """The Workload Kueue made for a Job (or another job kind it integrates); None for a job
    without a queue, or on a cluster without Kueue's CRDs."""
    meta = job["metadata"]
    if not (meta.get("labels") or {}).get(QUEUE_LABEL):
        return None
    selector = f"{JOB_UID}={meta['uid']}"
    try:
        found = kube.list_children(KUEUE, "Workload", meta["namespace"], selector)
    except ResourceNotFoundError:  # Kueue is not installed
        return None
    return found[0] if found else None


def read_queue(kube: Kube, pod: dict[str, Any]) -> QueueStatus | None:
    """Kueue's account of a pod it holds back; None when it holds it not."""
    if not held_by_kueue(pod):
        return None
    name = workload_name(pod)
    namespace = pod["metadata"]["namespace"]
    if name:
        workload = kube.get_child(KUEUE, "Workload", namespace, name)
    else:
        # a plain pod (a Deployment's: each replica a Workload of its own) names no Workload;
        # its Workload carries the pod's uid, as a job's does
        workload = job_workload(kube, pod)
        name = (workload or {}).get("metadata", {}).get("name")
    local_queue = (pod["metadata"].get("labels") or {}).get(QUEUE_LABEL, "")
    return read_workload_queue(kube, namespace, local_queue, name, workload)


def read_workload_queue(
    kube: Kube,
    namespace: str,
    local_queue: str,
    name: str | None,
    workload: dict[str, Any] | None,
) -> QueueStatus:
    """Kueue's account of a workload waiting in ``local_queue``."""
    lq = kube.get_child(KUEUE, "LocalQueue", namespace, local_queue) if local_queue else None
    cq_name = (lq or {}).get("spec", {}).get("clusterQueue")
    cluster_queue = kube.get_child(KUEUE, "ClusterQueue", "", cq_name) if cq_name else None
    pending = _pending_entry(kube, namespace, local_queue, name) if lq and name else None
    return queue_status(local_queue, name, workload, cluster_queue, pending)


def _pending_entry(
    kube: Kube, namespace: str, local_queue: str, workload: str
) -> dict[str, Any] | None:
    path = f"{VISIBILITY}/namespaces/{namespace}/localqueues/{local_queue}/pendingworkloads"
    try:
        listed = kube.get_path(path)
    except client.ApiException as exc:  # the visibility API is not served (503), or denied
        log.debug("Kueue's visibility API did not answer", extra={"status": exc.status})
        return None
    for item in (listed or {}).get("items") or []:
        if item.get("metadata", {}).get("name") == workload:
            return dict(item)
    return None
