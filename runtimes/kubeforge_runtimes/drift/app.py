"""The drift service's HTTP app: its start-up (load the reference, evaluate periodically) and
its routes: KServe logger CloudEvents in, evaluation, live-data export,
status, health, metrics and HTML reports. The service itself is a dependency
(``app.state.service``), so a test can hand the routes its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from kubeforge_crds.contracts.drift import GroundTruthLabels, MonitorConfig
from kubeforge_runtimes.drift.kept import KEPT_REQUEST_BYTES, KEPT_TOTAL_BYTES
from kubeforge_runtimes.drift.service import DriftService, ExportError, json_safe

router = APIRouter()
log = logging.getLogger(__name__)


async def get_service(request: Request) -> DriftService:
    """The app's service. A coroutine on purpose: FastAPI runs a plain function dependency in
    its thread pool, a hand-off per request that cost the ingest route 60% of its throughput
    and put 100 ms into its p99 (bench/drift_ingest.py)."""
    service: DriftService = request.app.state.service
    return service


Service = Annotated[DriftService, Depends(get_service)]


class ExportRequest(BaseModel):
    name: str = Field(description="File name (without .jsonl): the retraining run's name.")


def _ready(service: DriftService) -> None:
    if service.monitor is None:
        raise HTTPException(503, f"not ready: {service.error or 'the reference is loading'}")


@router.post("/")
async def receive(request: Request, service: Service) -> JSONResponse:
    code, body = service.ingest(dict(request.headers), await request.body())
    return JSONResponse(body, status_code=code)


@router.post("/groundtruth")
async def ground_truth(body: GroundTruthLabels, service: Service) -> JSONResponse:
    """Labels for logged predictions, joined by inference id (last label wins)."""
    _ready(service)
    items = [label.model_dump() for label in body.labels]
    code, answer = service.add_labels(items)
    return JSONResponse(answer, status_code=code)


@router.get("/requests/{event_id}")
async def logged_request(event_id: str, service: Service) -> JSONResponse:
    """A request still in the window, as its client sent it (to explain it); 404 for an id
    never seen, one whose rows have left the window, or a body too large to keep."""
    _ready(service)
    assert service.monitor is not None
    body = service.monitor.request(event_id)
    if body is None:
        raise HTTPException(
            404,
            f"no request {event_id!r} in the window: never received, its rows have left the "
            f"window, or its body was over {KEPT_REQUEST_BYTES} bytes (or the oldest when the "
            f"kept bodies reached {KEPT_TOTAL_BYTES} bytes)",
        )
    return JSONResponse({"id": event_id, "body": json_safe(body)})


@router.post("/evaluate")
async def evaluate_now(service: Service) -> JSONResponse:
    _ready(service)
    evaluation = await asyncio.to_thread(service.evaluate, True)
    truth = service.ground_truth
    if evaluation is None and truth is None:
        raise HTTPException(409, "the window is empty: no inference has been received yet")
    body: dict[str, Any] = evaluation.to_json() if evaluation else {"rows": 0}
    if truth is not None and truth.latest is not None:
        body["groundTruth"] = truth.latest.to_json()
    return JSONResponse(json_safe(body))


@router.post("/export")
async def export(body: ExportRequest, service: Service) -> JSONResponse:
    try:
        return JSONResponse(await asyncio.to_thread(service.export, body.name))
    except ExportError as err:
        raise HTTPException(err.code, str(err)) from err


@router.get("/status")
async def status(service: Service) -> JSONResponse:
    return JSONResponse(json_safe(service.status()))


@router.get("/history")
async def history(service: Service) -> JSONResponse:
    return JSONResponse(json_safe(service.history()))


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(service: Service) -> JSONResponse:
    if service.monitor is None:
        return JSONResponse({"ready": False, "error": service.error}, status_code=503)
    return JSONResponse({"ready": True})


@router.get("/metrics")
async def metrics(service: Service) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/report", response_class=HTMLResponse)
async def window_report(service: Service) -> HTMLResponse:
    from kubeforge_runtimes.drift.report import monitor_report

    _ready(service)
    assert service.monitor is not None
    if service.monitor.rows() == 0:
        raise HTTPException(409, "the window is empty: no inference has been received yet")
    html = await asyncio.to_thread(
        monitor_report, service.monitor, service.config.reference_uri, service.ground_truth
    )
    return HTMLResponse(html)


@router.post("/report", response_class=HTMLResponse)
async def files_report(
    reference: Annotated[UploadFile, File(description="Reference (JSONL, CSV or Parquet).")],
    current: Annotated[UploadFile, File(description="Current dataset, same columns.")],
    service: Service,
) -> HTMLResponse:
    from kubeforge_runtimes.drift.report import ReportError, files_report_html

    with tempfile.TemporaryDirectory(prefix="kubeforge-report-") as tmp:
        paths = []
        for upload, role in ((reference, "reference"), (current, "current")):
            name = Path(upload.filename or role).name
            path = Path(tmp) / f"{role}-{name}"
            path.write_bytes(await upload.read())
            paths.append(path)
        try:
            html = await asyncio.to_thread(
                files_report_html, paths[0], paths[1], service.config.metrics, None
            )
        except (ReportError, ReferenceError) as err:
            raise HTTPException(422, str(err)) from err
    return HTMLResponse(html)


def create_app(config: MonitorConfig) -> FastAPI:
    """The drift service: loads the reference on start-up and evaluates the window every
    ``interval_seconds``; the routes are below."""
    service = DriftService(config)

    async def evaluate_periodically() -> None:
        while True:
            await asyncio.sleep(config.interval_seconds)
            try:
                await asyncio.to_thread(service.evaluate)
            except Exception:  # a failed evaluation must not stop the loop
                log.exception("evaluation failed")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(service.load)
        task = asyncio.create_task(evaluate_periodically())
        yield
        task.cancel()

    app = FastAPI(title="kubeforge drift service", lifespan=lifespan)
    app.state.service = service
    app.include_router(router)
    return app
