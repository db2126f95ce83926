"""The portal's page, health and the API's own metrics."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kubeforge_api.models import Health

PORTAL = Path(__file__).resolve().parent.parent / "portal"

router = APIRouter(tags=["operations"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(PORTAL / "index.html")


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
