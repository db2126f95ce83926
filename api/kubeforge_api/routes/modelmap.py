"""The AI model map (``kubeforge_api.modelmap``) of a namespace, or of every namespace the
caller may read: the objects listed as the caller, usage measured in Prometheus, prices from
the API's settings. As JSON, or as CSV (``?format=csv``) for a spreadsheet."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from kubeforge_api.cluster import ApiserverError
from kubeforge_api.deps import AsCaller, Namespace, Settings
from kubeforge_api.errors import ERRORS, Problem, ProblemError
from kubeforge_api.modelmap import (
    Prices,
    Usage,
    compute_costs,
    namespace_map,
    price_warnings,
    to_csv,
)
from kubeforge_api.models import ModelMap
from kubeforge_api.routes.catalog import prometheus_query, usage_query
from kubeforge_api.routes.identity import MAX_NAMESPACES_REVIEWED
from kubeforge_api.settings import ApiSettings
from kubeforge_crds import DRIFTMONITOR, FINETUNEJOB, MODELSERVER

router = APIRouter(prefix="/api/v1", tags=["modelmap"], responses=ERRORS)
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
PARALLEL_LISTS = 8  # namespaces listed at once: the apiserver and the API's thread pool
Hours = Annotated[
    float, Query(gt=0, le=24 * 366, description="The period costs are measured over, to now.")
]
Format = Annotated[Literal["json", "csv"], Query(description="json, or csv: one row a model.")]
ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}},
    502: {"model": Problem},
}


@router.get("/namespaces/{namespace}/modelmap", response_model=ModelMap, responses=ANSWERS)
async def namespace_model_map(
    namespace: Namespace,
    api: AsCaller,
    settings: Settings,
    hours: Hours = 720,
    format: Format = "json",
) -> Response:
    """Every model and version in the namespace: its card, evaluation, live quality and
    drift, serving state, lineage and cost over the last ``hours``."""
    listed = await _objects(api, namespace)
    if listed is None:
        raise ProblemError(
            403, f"{api.user.name} may not list FineTuneJobs and ModelServers in {namespace}"
        )
    return await _answer(settings, {namespace: listed}, 0, hours, format)


@router.get("/modelmap", response_model=ModelMap, responses=ANSWERS)
async def model_map(
    api: AsCaller, settings: Settings, hours: Hours = 720, format: Format = "json"
) -> Response:
    """The map across every namespace the caller may read (its ``partial`` is true, and
    ``hiddenNamespaces`` counts them, when there are namespaces it may not read; the
    Kubernetes system namespaces are not counted)."""
    everywhere = await _cluster_wide(api)
    if everywhere is not None:  # the caller may list the kinds in every namespace
        return await _answer(settings, everywhere, 0, hours, format)
    try:
        listed = await api.call("GET", "/api/v1/namespaces")
        candidates = [n["metadata"]["name"] for n in listed.get("items") or []]
    except ApiserverError as err:
        if err.status != 403:
            raise
        candidates = await api.own_namespaces()
    candidates = sorted(n for n in candidates if n not in SYSTEM_NAMESPACES)
    looked_at = candidates[:MAX_NAMESPACES_REVIEWED]
    gate = asyncio.Semaphore(PARALLEL_LISTS)

    async def listed_in(namespace: str) -> dict[str, list[Any]] | None:
        async with gate:
            return await _objects(api, namespace)

    found = await asyncio.gather(*(listed_in(ns) for ns in looked_at))
    readable = {ns: objs for ns, objs in zip(looked_at, found, strict=True) if objs is not None}
    return await _answer(settings, readable, len(candidates) - len(readable), hours, format)


async def _cluster_wide(api: AsCaller) -> dict[str, dict[str, list[Any]]] | None:
    """Every namespace's objects in one list per kind, when the caller may list them all."""
    by_namespace: dict[str, dict[str, list[Any]]] = {}
    for key, kind in (("ftjs", FINETUNEJOB), ("servers", MODELSERVER), ("monitors", DRIFTMONITOR)):
        try:
            items = await api.call("GET", f"/apis/{kind.group}/{kind.version}/{kind.plural}")
        except ApiserverError as err:
            if err.status in (401, 403):
                return None
            raise
        for obj in items.get("items") or []:
            ns = obj["metadata"]["namespace"]
            by_namespace.setdefault(ns, {"ftjs": [], "servers": [], "monitors": []})[key].append(
                obj
            )
    return by_namespace


async def _objects(api: AsCaller, namespace: str) -> dict[str, list[Any]] | None:
    """The namespace's FineTuneJobs, ModelServers and DriftMonitors as the caller may list
    them; None when they may not list the first two (monitors are optional)."""
    try:
        ftjs = await api.items(FINETUNEJOB, namespace)
        servers = await api.items(MODELSERVER, namespace)
    except ApiserverError as err:
        if err.status in (401, 403):
            return None
        raise
    try:
        monitors = await api.items(DRIFTMONITOR, namespace)
    except ApiserverError as err:
        if err.status != 403:
            raise
        monitors = []
    return {"ftjs": ftjs, "servers": servers, "monitors": monitors}


async def _usage(
    settings: ApiSettings, namespaces: list[str], hours: float
) -> tuple[Usage, list[str]]:
    if not settings.prometheus_url:
        return Usage(measured=False), [
            "costs need Prometheus: set KUBEFORGE_API_PROMETHEUS_URL on the API (GPU-hours "
            "come from the operator's kubeforge_object_gpus)"
        ]
    if not namespaces:
        return Usage(), []
    # namespaces are validated DNS labels: safe inside the regular expression's quotes
    selector = f'namespace=~"{"|".join(namespaces)}"'
    gpus = usage_query(
        f"kubeforge_object_gpus{{{selector}}}", "namespace, kind, name, product", hours
    )
    seconds = max(1, round(hours * 3600))
    tokens = (
        f"sum by (namespace, model_name) "
        # vLLM's name, with ":" (Prometheus 3 may keep it as written, or as "_")
        f'(increase({{__name__=~"vllm[:_]generation_tokens_total", {selector}}}[{seconds}s]))'
    )
    url, timeout = settings.prometheus_url, settings.request_timeout
    try:
        held, generated = await asyncio.gather(
            prometheus_query(url, gpus, timeout), prometheus_query(url, tokens, timeout)
        )
    except ProblemError as err:  # the map without costs, rather than no map
        return Usage(measured=False), [f"costs are unknown: {err.detail}"]
    return (
        Usage(
            gpu_hours={
                (
                    m.get("namespace", ""),
                    m.get("kind", ""),
                    m.get("name", ""),
                    m.get("product", ""),
                ): v
                for m, v in held
            },
            tokens={(m.get("namespace", ""), m.get("model_name", "")): v for m, v in generated},
        ),
        [],
    )


async def _answer(
    settings: ApiSettings,
    readable: dict[str, dict[str, list[Any]]],
    hidden: int,
    hours: float,
    format: str,
) -> Response:
    usage, warnings = await _usage(settings, sorted(readable), hours)
    prices = Prices(settings.gpu_prices, settings.currency)
    costs = compute_costs(usage, prices)
    warnings += price_warnings(usage, prices) if usage.measured else []
    models = [
        entry
        for ns in sorted(readable)
        for entry in namespace_map(
            ns,
            readable[ns]["ftjs"],
            readable[ns]["servers"],
            readable[ns]["monitors"],
            costs,
            usage,
        )
    ]
    if format == "csv":
        return Response(
            to_csv(models),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="modelmap.csv"'},
        )
    answer = {
        "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "hours": hours,
        "currency": settings.currency,
        "namespaces": sorted(readable),
        "partial": hidden > 0,
        "hiddenNamespaces": hidden,
        "warnings": warnings,
        "models": models,
        "compute": costs,
    }
    return JSONResponse(answer)
