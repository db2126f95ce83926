"""The model catalog, lineage, GPU use and GPU-hours of a namespace, from what the caller may
list (the views themselves are pure: ``kubeforge_api.catalog``)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from kubeforge_api.catalog import catalog, gpu_use, lineage, model_sources
from kubeforge_api.cluster import ApiserverError
from kubeforge_api.deps import AsCaller, Name, Namespace, Settings, object_path
from kubeforge_api.errors import ERRORS, NOT_FOUND, Problem, ProblemError
from kubeforge_api.models import Catalog, GpuHours, GpuUse, Lineage
from kubeforge_crds import DRIFTMONITOR, FINETUNEJOB, MODELSERVER, WORKBENCH

router = APIRouter(prefix="/api/v1/namespaces/{namespace}", tags=["catalog"], responses=ERRORS)
Hours = Annotated[float, Query(gt=0, le=24 * 366, description="Period ending now.")]


def usage_query(selector: str, by: str, hours: float) -> str:
    """PromQL for GPU-hours over the last ``hours``: the GPUs the series of ``selector`` held,
    summed ``by`` those labels, sampled every ``step`` seconds (a thousandth of the period, at
    least one; a gap, such as before an object existed, counts as zero), summed over time and
    turned into hours."""
    seconds = max(1, round(hours * 3600))
    step = max(1, -(-seconds // 1000))  # at most 1000 samples, whatever the period
    inner = f"sum by ({by}) ({selector})"
    return f"sum_over_time(({inner})[{seconds}s:{step}s]) * {step} / 3600"


def gpu_hours_query(namespace: str, hours: float) -> str:
    """GPU-hours by kind in ``namespace`` (a validated DNS label, safe inside the quotes)."""
    return usage_query(f'kubeforge_gpus{{namespace="{namespace}"}}', "kind", hours)


@router.get("/catalog", response_model=Catalog)
async def model_catalog(namespace: Namespace, api: AsCaller) -> JSONResponse:
    """Every model in the namespace: FineTuneJob outputs and ModelServers, with metrics,
    lineage, serving state, traffic split and drift status."""
    ftjs = await api.items(FINETUNEJOB, namespace)
    servers = await api.items(MODELSERVER, namespace)
    monitors = await api.items(DRIFTMONITOR, namespace)
    return JSONResponse(catalog(ftjs, servers, monitors))


@router.get("/modelservers/{name}/lineage", response_model=Lineage, responses=NOT_FOUND)
async def model_lineage(namespace: Namespace, name: Name, api: AsCaller) -> JSONResponse:
    """A ModelServer's lineage: its FineTuneJob, dataset digest, base model and run."""
    server = await api.call("GET", object_path(MODELSERVER, namespace, name))
    _, source, versions = model_sources(server)
    ftjs = {}
    for ftj_name in sorted({n for n in (source, *versions.values()) if n}):
        try:
            ftjs[ftj_name] = await api.call("GET", object_path(FINETUNEJOB, namespace, ftj_name))
        except ApiserverError as err:
            if err.status != 404:
                raise
    return JSONResponse(lineage(server, ftjs))


@router.get("/gpus", response_model=GpuUse)
async def gpus(namespace: Namespace, api: AsCaller) -> JSONResponse:
    """GPUs held now in the namespace, by kind and object."""
    objects = {k.kind: await api.items(k, namespace) for k in (WORKBENCH, FINETUNEJOB, MODELSERVER)}
    return JSONResponse(gpu_use(objects))


@router.get(
    "/gpu-hours",
    response_model=GpuHours,
    responses={502: {"model": Problem}, 503: {"model": Problem}},
)
async def gpu_hours(
    namespace: Namespace, api: AsCaller, settings: Settings, hours: Hours = 24
) -> GpuHours:
    """GPU-hours used in the namespace over the last ``hours``, by kind, from the operator's
    ``kubeforge_gpus`` metric in Prometheus. The caller must be allowed to list the
    namespace's Workbenches (checked as the caller first)."""
    await api.call("GET", object_path(WORKBENCH, namespace), params={"limit": "1"})
    if not settings.prometheus_url:
        raise ProblemError(
            503, "GPU-hours need Prometheus: set KUBEFORGE_API_PROMETHEUS_URL on the API"
        )
    query = gpu_hours_query(namespace, hours)
    found = await prometheus_query(settings.prometheus_url, query, settings.request_timeout)
    by_kind = {labels.get("kind", ""): value for labels, value in found}
    return GpuHours(
        namespace=namespace,
        hours=hours,
        by_kind=by_kind,
        total=sum(by_kind.values()),
        query=query,
    )


async def prometheus_query(
    prometheus_url: str, query: str, timeout: float
) -> list[tuple[dict[str, str], float]]:
    """An instant query's series: (labels, value) each; 503 when Prometheus cannot be reached,
    502 when it answers something else than a result."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as prom:
            answer = await prom.get(
                f"{prometheus_url.rstrip('/')}/api/v1/query", params={"query": query}
            )
    except httpx.HTTPError as err:
        # the message names the failure, not the internal address
        raise ProblemError(503, f"Prometheus cannot be reached: {type(err).__name__}") from err
    if answer.status_code != 200:
        raise ProblemError(502, f"Prometheus answered HTTP {answer.status_code}")
    try:
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return [(dict(r["metric"]), float(r["value"][1])) for r in result]
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise ProblemError(502, "Prometheus answered with something other than a result") from err
