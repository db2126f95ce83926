"""The kubeforge REST API (FastAPI): the app, its lifespan and middleware; the routes are in
``routes/`` (one module per concern), their dependencies in ``deps``, the errors mapped once in
``errors``.

Every route that touches the cluster authenticates the caller's bearer token with a TokenReview
and then calls the apiserver *as the caller* (impersonation): Kubernetes RBAC decides, and the
API never uses its own privileges on a user's behalf. Request bodies are the CRDs' own pydantic
spec models, so this OpenAPI and the CRD schemas agree.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import Counter, Histogram

from kubeforge_api import errors
from kubeforge_api.cluster import Cluster
from kubeforge_api.guard import Guard
from kubeforge_api.routes import (
    catalog,
    driftservice,
    identity,
    modelmap,
    objects,
    operations,
    queues,
    teams,
)
from kubeforge_api.settings import ApiSettings, get_settings

REQUESTS = Counter(
    "kubeforge_api_requests_total", "API requests by route and status code.", ["route", "code"]
)
LATENCY = Histogram("kubeforge_api_request_duration_seconds", "API request latency.", ["route"])


def create_app(settings: ApiSettings | None = None, cluster: Cluster | None = None) -> FastAPI:
    """The API. Without ``cluster`` it connects on start-up (``settings.kubeconfig``) and closes
    the connection on shutdown; a given one stays its owner's."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = getattr(app.state, "cluster", None) is None
        if own:
            app.state.cluster = Cluster(
                settings.kubeconfig,
                settings.request_timeout,
                settings.token_cache_seconds,
                failed_token_cache_seconds=settings.failed_token_cache_seconds,
            )
        yield
        if own:  # a connection someone else made (or an outer lifespan) stays theirs
            await app.state.cluster.aclose()
            app.state.cluster = None

    # the docs' assets are served from here, not a CDN: they work on an offline cluster and
    # load no third-party script on the origin where the portal keeps its token
    app = FastAPIOffline(
        title="kubeforge API",
        version="v1",
        description="Workbenches, FineTuneJobs, ModelServers and DriftMonitors per namespace, "
        "as the caller (Kubernetes RBAC decides).",
        lifespan=lifespan,
        redirect_slashes=False,  # a redirect would echo the Host header into Location
    )
    app.state.settings = settings
    app.state.cluster = cluster
    errors.install(app)
    app.middleware("http")(_measure)
    app.add_middleware(
        Guard, max_body_bytes=settings.max_body_bytes, max_header_bytes=settings.max_header_bytes
    )
    app.mount("/portal", StaticFiles(directory=operations.PORTAL), name="portal")
    routers = (
        operations.router,
        identity.router,
        *objects.ROUTERS,
        driftservice.router,
        catalog.router,
        modelmap.router,
        queues.router,
        teams.router,
    )
    for router in routers:
        app.include_router(router)
    return app


async def _measure(request: Request, call_next: Callable[[Request], Any]) -> Response:
    """Count and time each request by route (the route's template, not the raw path)."""
    started = time.perf_counter()
    response: Response = await call_next(request)
    name = getattr(request.scope.get("route"), "path", "unmatched")
    REQUESTS.labels(name, str(response.status_code)).inc()
    LATENCY.labels(name).observe(time.perf_counter() - started)
    return response
