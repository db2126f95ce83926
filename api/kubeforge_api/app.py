"""The kubeforge REST API (FastAPI).

Every route that touches the cluster authenticates the caller's bearer token with a TokenReview
and then calls the apiserver *as the caller* (impersonation): Kubernetes RBAC decides, and the
API never uses its own privileges on a user's behalf. Request bodies are the CRDs' own pydantic
spec models, so this OpenAPI and the CRD schemas agree.

Errors: 401 (no or bad token, saying which), 403 (the apiserver's reason), 404, 409 (exists, or a
stale resourceVersion), 422 (field paths, from our validation or the apiserver's), 502/503 when
the apiserver fails or cannot be reached. No input produces a 500.
"""

# No `from __future__ import annotations`: the per-kind body models are local classes that
# FastAPI must resolve from the route functions' annotations at runtime.

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path as FsPath
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool

from kubeforge_api.catalog import catalog, gpu_use, lineage, model_sources
from kubeforge_api.cluster import ApiserverError, Cluster, UnauthenticatedError, User
from kubeforge_api.settings import ApiSettings, get_settings
from kubeforge_crds import DRIFTMONITOR, FINETUNEJOB, KINDS, MODELSERVER, WORKBENCH, KindInfo

log = logging.getLogger(__name__)

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
Namespace = Annotated[str, Path(pattern=DNS_LABEL, max_length=63, description="Namespace.")]
Name = Annotated[str, Path(pattern=DNS_SUBDOMAIN, max_length=253, description="Object name.")]

MAX_NAMESPACES_REVIEWED = 500

REQUESTS = Counter(
    "kubeforge_api_requests_total", "API requests by route and status code.", ["route", "code"]
)
LATENCY = Histogram("kubeforge_api_request_duration_seconds", "API request latency.", ["route"])


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CreateMeta(_Wire):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253, description="Object name.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class UpdateMeta(_Wire):
    name: str | None = Field(default=None, description="If given, the name in the URL.")
    resource_version: str | None = Field(
        default=None,
        description="The version the change is based on; a newer object answers 409.",
    )
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class Problem(BaseModel):
    detail: Any


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No or invalid bearer token."},
    403: {"model": Problem, "description": "Kubernetes RBAC does not allow it for the caller."},
    422: {"model": Problem, "description": "Invalid input; field paths in detail."},
}


def _path(kind: KindInfo, namespace: str, name: str | None = None) -> str:
    base = f"/apis/{kind.group}/{kind.version}/namespaces/{namespace}/{kind.plural}"
    return f"{base}/{name}" if name else base


def gpu_hours_query(namespace: str, hours: float) -> str:
    """PromQL for GPU-hours over the last ``hours``: the GPUs held, sampled every ``step``
    seconds (a thousandth of the period, at least one; a gap, such as before an object existed,
    counts as zero), summed and turned into hours. ``namespace`` is a validated DNS label, safe
    inside the quotes."""
    seconds = max(1, round(hours * 3600))
    step = max(1, -(-seconds // 1000))  # at most 1000 samples, whatever the period
    inner = f'sum by (kind) (kubeforge_gpus{{namespace="{namespace}"}})'
    return f"sum_over_time(({inner})[{seconds}s:{step}s]) * {step} / 3600"


def _problem(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _field_error(error: Any) -> dict[str, str]:
    """A validation error as ``{field, message, type}``, the field in the wire's terms
    (``spec.culling.idleTimeout``, list indices in brackets; for a cross-field rule the field the
    rule names), as the apiserver would name it."""
    path = ""
    for part in error["loc"]:
        if part == "body" and not path:
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    ctx = error.get("ctx") or {}
    if error["type"] == "cel_rule" and ctx.get("field_path"):
        path += str(ctx["field_path"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "Required value"
    elif error["type"] == "extra_forbidden":
        message = "unknown field"
    return {"field": path, "message": message, "type": str(error["type"])}


async def caller(request: Request) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthenticatedError(
            "no bearer token: send 'Authorization: Bearer <token>' with a token the cluster "
            "accepts (kubectl's own, or a service account token)"
        )
    cluster: Cluster = request.app.state.cluster
    return await run_in_threadpool(cluster.authenticate, token.strip())


Caller = Annotated[User, Depends(caller)]


def create_app(settings: ApiSettings | None = None, cluster: Cluster | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = getattr(app.state, "cluster", None) is None
        if own:
            app.state.cluster = Cluster(
                settings.kubeconfig, settings.request_timeout, settings.token_cache_seconds
            )
        yield
        if own:  # a connection someone else made (or an outer lifespan) stays theirs
            app.state.cluster.close()
            app.state.cluster = None

    app = FastAPI(
        title="kubeforge API",
        version="v1",
        description="Workbenches, FineTuneJobs, ModelServers and DriftMonitors per namespace, "
        "as the caller (Kubernetes RBAC decides).",
        lifespan=lifespan,
    )
    app.state.cluster = cluster

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return _problem(422, [_field_error(e) for e in err.errors()])

    @app.exception_handler(UnauthenticatedError)
    async def unauthenticated(_: Request, err: UnauthenticatedError) -> JSONResponse:
        return _problem(401, str(err), {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ApiserverError)
    async def refused(_: Request, err: ApiserverError) -> JSONResponse:
        if err.status == 422:
            causes = (err.body.get("details") or {}).get("causes") or []
            detail: Any = [
                {
                    "field": c.get("field", ""),
                    "message": c.get("message", ""),
                    "type": c.get("reason", ""),
                }
                for c in causes
            ] or str(err)
            return _problem(422, detail)
        if err.status in (400, 401, 403, 404, 409, 410, 429):
            return _problem(err.status, str(err))
        return _problem(502, f"the apiserver failed: {err}")

    @app.exception_handler(httpx.HTTPError)
    async def unreachable(_: Request, err: httpx.HTTPError) -> JSONResponse:
        return _problem(503, f"the apiserver cannot be reached: {type(err).__name__}")

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Any]) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        REQUESTS.labels(name, str(response.status_code)).inc()
        LATENCY.labels(name).observe(time.perf_counter() - started)
        return response

    def call(request: Request, user: User, method: str, path: str, **kw: Any) -> Any:
        cluster: Cluster = request.app.state.cluster
        return run_in_threadpool(cluster.request, user, method, path, **kw)

    portal = FsPath(__file__).parent / "portal"
    app.mount("/portal", StaticFiles(directory=portal), name="portal")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(portal / "index.html")

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/whoami", tags=["identity"], responses=ERRORS)
    async def whoami(user: Caller) -> dict[str, Any]:
        """Who the bearer token belongs to, as the cluster says."""
        return {"username": user.name, "groups": list(user.groups)}

    for kind in KINDS:
        _kind_routes(app, kind, call)

    @app.get("/api/v1/namespaces", tags=["identity"], responses=ERRORS)
    async def namespaces(request: Request, user: Caller) -> dict[str, list[str]]:
        """The namespaces where the caller may list Workbenches: all they may list, if they may
        list namespaces; otherwise each namespace is checked with a SelfSubjectAccessReview made
        as the caller."""
        try:
            listed = await call(request, user, "GET", "/api/v1/namespaces")
            return {"items": [n["metadata"]["name"] for n in listed.get("items") or []]}
        except ApiserverError as err:
            if err.status != 403:
                raise
        cluster: Cluster = request.app.state.cluster
        names = await run_in_threadpool(cluster.own_namespaces)
        allowed = []
        for name in names[:MAX_NAMESPACES_REVIEWED]:
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "namespace": name,
                        "verb": "list",
                        "group": WORKBENCH.group,
                        "resource": WORKBENCH.plural,
                    }
                },
            }
            answer = await call(
                request,
                user,
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                body=review,
            )
            if (answer.get("status") or {}).get("allowed"):
                allowed.append(name)
        return {"items": allowed}

    async def list_items(request: Request, user: User, kind: KindInfo, ns: str) -> list[Any]:
        return list((await call(request, user, "GET", _path(kind, ns))).get("items") or [])

    @app.get("/api/v1/namespaces/{namespace}/catalog", tags=["catalog"], responses=ERRORS)
    async def model_catalog(request: Request, namespace: Namespace, user: Caller) -> Any:
        """Every model in the namespace: FineTuneJob outputs and ModelServers, with metrics,
        lineage, serving state, traffic split and drift status."""
        ftjs = await list_items(request, user, FINETUNEJOB, namespace)
        servers = await list_items(request, user, MODELSERVER, namespace)
        monitors = await list_items(request, user, DRIFTMONITOR, namespace)
        return catalog(ftjs, servers, monitors)

    @app.get(
        "/api/v1/namespaces/{namespace}/modelservers/{name}/lineage",
        tags=["catalog"],
        responses={**ERRORS, 404: {"model": Problem}},
    )
    async def model_lineage(
        request: Request, namespace: Namespace, name: Name, user: Caller
    ) -> Any:
        """A ModelServer's lineage: its FineTuneJob, dataset digest, base model and run."""
        server = await call(request, user, "GET", _path(MODELSERVER, namespace, name))
        _, source, versions = model_sources(server)
        ftjs = {}
        for ftj_name in sorted({n for n in (source, *versions.values()) if n}):
            try:
                ftjs[ftj_name] = await call(
                    request, user, "GET", _path(FINETUNEJOB, namespace, ftj_name)
                )
            except ApiserverError as err:
                if err.status != 404:
                    raise
        return lineage(server, ftjs)

    @app.get("/api/v1/namespaces/{namespace}/gpus", tags=["catalog"], responses=ERRORS)
    async def gpus(request: Request, namespace: Namespace, user: Caller) -> Any:
        """GPUs held now in the namespace, by kind and object."""
        objects = {
            k.kind: await list_items(request, user, k, namespace)
            for k in (WORKBENCH, FINETUNEJOB, MODELSERVER)
        }
        return gpu_use(objects)

    @app.get("/api/v1/namespaces/{namespace}/gpu-hours", tags=["catalog"], responses=ERRORS)
    async def gpu_hours(
        request: Request,
        namespace: Namespace,
        user: Caller,
        hours: Annotated[float, Query(gt=0, le=24 * 366, description="Period ending now.")] = 24,
    ) -> Any:
        """GPU-hours used in the namespace over the last ``hours``, by kind, from the operator's
        ``kubeforge_gpus`` metric in Prometheus. The caller must be allowed to list the
        namespace's Workbenches (checked as the caller first)."""
        await call(request, user, "GET", _path(WORKBENCH, namespace), params={"limit": "1"})
        if not settings.prometheus_url:
            return _problem(
                503, "GPU-hours need Prometheus: set KUBEFORGE_API_PROMETHEUS_URL on the API"
            )
        query = gpu_hours_query(namespace, hours)
        try:
            async with httpx.AsyncClient(timeout=settings.request_timeout) as prom:
                answer = await prom.get(
                    f"{settings.prometheus_url.rstrip('/')}/api/v1/query", params={"query": query}
                )
        except httpx.HTTPError as err:
            return _problem(
                503, f"Prometheus at {settings.prometheus_url} cannot be reached: {err}"
            )
        if answer.status_code != 200:
            return _problem(502, f"Prometheus answered {answer.status_code}: {answer.text[:300]}")
        by_kind = {
            r["metric"].get("kind", ""): float(r["value"][1])
            for r in answer.json()["data"]["result"]
        }
        return {
            "namespace": namespace,
            "hours": hours,
            "byKind": by_kind,
            "total": sum(by_kind.values()),
            "query": query,
        }

    return app


def _kind_routes(app: FastAPI, kind: KindInfo, call: Any) -> None:
    plural, tag = kind.plural, kind.kind
    create_body = create_model(
        f"{kind.kind}Create",
        __base__=_Wire,
        metadata=(CreateMeta, ...),
        spec=(kind.spec_model, ...),
    )
    update_body = create_model(
        f"{kind.kind}Update",
        __base__=_Wire,
        metadata=(UpdateMeta, Field(default_factory=UpdateMeta)),
        spec=(kind.spec_model, ...),
    )

    async def list_objects(request: Request, namespace: Namespace, user: Caller) -> Any:
        cluster: Cluster = request.app.state.cluster
        raw = await run_in_threadpool(cluster.passthrough, user, _path(kind, namespace))
        return Response(raw, media_type="application/json")

    async def create_object(
        request: Request,
        namespace: Namespace,
        body: create_body,
        user: Caller,
    ) -> Any:
        meta = body.metadata  # type: ignore[attr-defined]
        obj = {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "metadata": {
                "name": meta.name,
                "namespace": namespace,
                **({"labels": meta.labels} if meta.labels else {}),
                **({"annotations": meta.annotations} if meta.annotations else {}),
            },
            "spec": body.spec.to_wire(),  # type: ignore[attr-defined]
        }
        created = await call(request, user, "POST", _path(kind, namespace), body=obj)
        return JSONResponse(created, status_code=201)

    async def get_object(request: Request, namespace: Namespace, name: Name, user: Caller) -> Any:
        return await call(request, user, "GET", _path(kind, namespace, name))

    async def replace_object(
        request: Request,
        namespace: Namespace,
        name: Name,
        body: update_body,
        user: Caller,
    ) -> Any:
        meta = body.metadata  # type: ignore[attr-defined]
        if meta.name is not None and meta.name != name:
            return _problem(
                422,
                [
                    {
                        "field": "metadata.name",
                        "message": f"{meta.name!r} is not the name in the URL ({name!r}); "
                        "an object cannot be renamed",
                        "type": "value_error",
                    }
                ],
            )
        current = await call(request, user, "GET", _path(kind, namespace, name))
        current["metadata"]["resourceVersion"] = (
            meta.resource_version or current["metadata"]["resourceVersion"]
        )
        if meta.labels is not None:
            current["metadata"]["labels"] = meta.labels
        if meta.annotations is not None:
            current["metadata"]["annotations"] = meta.annotations
        current["spec"] = body.spec.to_wire()  # type: ignore[attr-defined]
        current.pop("status", None)
        return await call(request, user, "PUT", _path(kind, namespace, name), body=current)

    async def delete_object(
        request: Request, namespace: Namespace, name: Name, user: Caller
    ) -> Any:
        return await call(
            request,
            user,
            "DELETE",
            _path(kind, namespace, name),
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
        )

    async def object_events(
        request: Request, namespace: Namespace, name: Name, user: Caller
    ) -> Any:
        await call(request, user, "GET", _path(kind, namespace, name))  # 404 / 403 first
        selector = f"involvedObject.kind={kind.kind},involvedObject.name={name}"
        events = await call(
            request,
            user,
            "GET",
            f"/api/v1/namespaces/{namespace}/events",
            params={"fieldSelector": selector},
        )
        return {"items": events.get("items", [])}

    base = f"/api/v1/namespaces/{{namespace}}/{plural}"
    app.add_api_route(
        base,
        list_objects,
        methods=["GET"],
        tags=[tag],
        responses=ERRORS,
        summary=f"List {kind.kind}s",
        operation_id=f"list{kind.kind}",
    )
    app.add_api_route(
        base,
        create_object,
        methods=["POST"],
        tags=[tag],
        status_code=201,
        responses={**ERRORS, 409: {"model": Problem, "description": "Exists."}},
        summary=f"Create a {kind.kind}",
        operation_id=f"create{kind.kind}",
    )
    app.add_api_route(
        f"{base}/{{name}}",
        get_object,
        methods=["GET"],
        tags=[tag],
        responses={**ERRORS, 404: {"model": Problem}},
        summary=f"Read a {kind.kind}",
        operation_id=f"read{kind.kind}",
    )
    app.add_api_route(
        f"{base}/{{name}}",
        replace_object,
        methods=["PUT"],
        tags=[tag],
        responses={
            **ERRORS,
            404: {"model": Problem},
            409: {"model": Problem, "description": "Changed since."},
        },
        summary=f"Replace a {kind.kind}'s spec",
        operation_id=f"replace{kind.kind}",
    )
    app.add_api_route(
        f"{base}/{{name}}",
        delete_object,
        methods=["DELETE"],
        tags=[tag],
        responses={**ERRORS, 404: {"model": Problem}},
        summary=f"Delete a {kind.kind}",
        operation_id=f"delete{kind.kind}",
    )
    app.add_api_route(
        f"{base}/{{name}}/events",
        object_events,
        methods=["GET"],
        tags=[tag],
        responses={**ERRORS, 404: {"model": Problem}},
        summary=f"Events about a {kind.kind}",
        operation_id=f"events{kind.kind}",
    )
