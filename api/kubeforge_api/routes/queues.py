"""Quota a team can see: its Kueue LocalQueues with the ClusterQueue's quota and usage, the
workloads waiting with their positions, and a dry run of whether a request fits now (the views
themselves are pure: ``kubeforge_api.queues``).

The LocalQueues and their pending workloads are read as the caller (RBAC decides). The
ClusterQueue is cluster-scoped, which a team's roles do not reach: the API reads it with its own
identity, and only the one a LocalQueue the caller could read names."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kubernetes.utils.quantity import parse_quantity

from kubeforge_api.cluster import ApiserverError
from kubeforge_api.deps import AsCaller, Name, Namespace
from kubeforge_api.errors import ERRORS, NOT_FOUND, ProblemError
from kubeforge_api.models import FitAnswer, FitRequest, Queues
from kubeforge_api.queues import fit, queue_view

router = APIRouter(prefix="/api/v1/namespaces/{namespace}", tags=["queues"], responses=ERRORS)
KUEUE = "/apis/kueue.x-k8s.io/v1beta2"
VISIBILITY = "/apis/visibility.kueue.x-k8s.io/v1beta2"


async def _pending(api: AsCaller, namespace: str, name: str) -> list[dict[str, Any]] | None:
    path = f"{VISIBILITY}/namespaces/{namespace}/localqueues/{name}/pendingworkloads"
    try:
        return list((await api.call("GET", path)).get("items") or [])
    except ApiserverError:  # not served (no Kueue, or an older one), or not allowed
        return None


@router.get("/queues", response_model=Queues)
async def queues(namespace: Namespace, api: AsCaller) -> JSONResponse:
    """The namespace's Kueue LocalQueues: each ClusterQueue's nominal quota, borrowing limit,
    used and borrowed per flavor and resource (Kueue's own figures), the workloads admitted and
    pending, and the pending ones with their positions (``pending`` is null when Kueue's
    visibility API does not answer)."""
    listed = await api.call("GET", f"{KUEUE}/namespaces/{namespace}/localqueues")
    views = []
    for lq in listed.get("items") or []:
        name = lq["metadata"]["name"]
        cq = await api.cluster_object(f"{KUEUE}/clusterqueues/{lq['spec']['clusterQueue']}")
        views.append(queue_view(lq, cq, await _pending(api, namespace, name)))
    return JSONResponse({"namespace": namespace, "queues": views})


@router.post(
    "/queues/{name}/fit",
    response_model=FitAnswer,
    response_model_exclude_none=True,
    responses=NOT_FOUND,
)
async def fits_now(namespace: Namespace, name: Name, body: FitRequest, api: AsCaller) -> FitAnswer:
    """Would a workload of these requests be admitted now by the queue's ClusterQueue within its
    nominal quota, and if not, what is short (the cohort's unused quota is not counted)."""
    try:
        lq = await api.call("GET", f"{KUEUE}/namespaces/{namespace}/localqueues/{name}")
    except ApiserverError as err:
        if err.status == 404:
            raise ProblemError(404, f"LocalQueue {name} does not exist in {namespace}") from err
        raise
    cq_name = lq["spec"]["clusterQueue"]
    cq = await api.cluster_object(f"{KUEUE}/clusterqueues/{cq_name}")
    if cq is None:
        raise ProblemError(404, f"ClusterQueue {cq_name} (of LocalQueue {name}) does not exist")
    request = {r: float(parse_quantity(q)) for r, q in body.requests.items()}
    return FitAnswer.model_validate(fit(request, cq) | {"clusterQueue": cq_name})
