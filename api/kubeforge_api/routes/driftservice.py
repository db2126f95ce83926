"""What the REST API asks a DriftMonitor's drift service, for its callers:

- **ground truth**: the true outcomes of logged predictions, sent after the fact by inference
  id, which the drift service joins with the predictions KServe's logger reported to score the
  model's quality (accuracy, F1, MAE, ...). Who may send labels is RBAC's decision: ``create``
  on the DriftMonitor's ``groundtruth`` subresource, reviewed as the caller (kubeforge's
  aggregated edit role grants it);
- **the report**: the monitor's page for people, for whoever may read the DriftMonitor;
- **explanations** of logged requests: the request as the drift service kept it, sent to the
  ModelServer's ``:explain`` verb, for whoever may read both.

The apiserver serves neither, so the API reaches the drift service itself, as the operator does
to read its status."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse

from kubeforge_api.cluster import ApiserverError
from kubeforge_api.deps import AsCaller, Name, Namespace, Settings, object_path
from kubeforge_api.errors import NOT_FOUND, ProblemError
from kubeforge_api.settings import ApiSettings
from kubeforge_crds import DRIFTMONITOR, MODELSERVER
from kubeforge_crds.contracts.drift import (
    GROUND_TRUTH_SUBRESOURCE,
    GroundTruthAnswer,
    GroundTruthLabels,
    service_name,
)

router = APIRouter(prefix="/api/v1/namespaces/{namespace}", tags=["driftmonitors"])
FORWARD_TIMEOUT_SECONDS = 30.0
EXPLAIN_TIMEOUT_SECONDS = 120.0  # a text model's explanation costs a forward pass per token
# any ce-id without a slash but "." and "..", which a URL would resolve away (no look-ahead:
# the schema's regex engine has none)
INFERENCE_ID = r"^([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)$"


@router.post(
    "/driftmonitors/{name}/groundtruth",
    response_model=GroundTruthAnswer,
    responses={**NOT_FOUND, 409: {"model": None}, 503: {"model": None}},
)
async def ground_truth(
    namespace: Namespace, name: Name, body: GroundTruthLabels, api: AsCaller, settings: Settings
) -> JSONResponse:
    """The true outcomes of logged predictions, by inference id (the ce-id KServe's logger gave
    the request): each joined with its prediction or refused with its reason (unknown_id,
    expired, invalid_label). A later label for the same prediction replaces the earlier one.
    200 when any label was taken, 422 when none was."""
    if not await api.may("create", namespace, DRIFTMONITOR, GROUND_TRUTH_SUBRESOURCE, name):
        raise ProblemError(
            403,
            f"{api.user.name} may not send ground truth to DriftMonitor {name} in {namespace}: "
            f"that takes create on driftmonitors/{GROUND_TRUTH_SUBRESOURCE} (kubeforge's "
            "aggregated edit role has it)",
        )
    monitor = await _monitor(api, namespace, name)
    if not (monitor.get("spec") or {}).get("groundTruth"):
        raise ProblemError(
            409,
            f"DriftMonitor {name} takes no ground truth: set its spec.groundTruth (the task and "
            "the quality metrics with their thresholds)",
        )
    return await _forward(_service_url(settings, namespace, name, "groundtruth"), name, body)


def _service_url(settings: ApiSettings, namespace: str, name: str, path: str) -> str:
    base = settings.drift_url_template.format(
        namespace=namespace, name=name, service=service_name(name)
    )
    return f"{base.rstrip('/')}/{path}"


async def _monitor(api: AsCaller, namespace: str, name: str) -> dict[str, Any]:
    try:
        return dict(await api.call("GET", object_path(DRIFTMONITOR, namespace, name)))
    except ApiserverError as err:
        if err.status == 404:
            raise ProblemError(404, f"DriftMonitor {name} does not exist in {namespace}") from err
        raise


async def _ask(
    name: str,
    url: str,
    body: Any = None,
    who: str = "the drift service of DriftMonitor",
    timeout: float = FORWARD_TIMEOUT_SECONDS,
) -> httpx.Response:
    """A GET (or, with ``body``, a POST of it) to a service; 503 when it does not answer."""
    if isinstance(body, GroundTruthLabels):
        body = body.model_dump(exclude_none=True)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            if body is None:
                return await client.get(url)
            return await client.post(url, json=body)
    except httpx.HTTPError as err:
        raise ProblemError(503, f"{who} {name} does not answer at {url}: {err}") from err


def _detail(answer: httpx.Response) -> Any:
    try:
        content = answer.json()
    except ValueError:
        return answer.text[:500]
    if isinstance(content, dict):
        return content.get("detail") or content.get("error") or content
    return content


async def _forward(url: str, name: str, body: GroundTruthLabels) -> JSONResponse:
    answer = await _ask(name, url, body)
    if answer.status_code in (200, 422):
        content = answer.json()
        if isinstance(content, dict) and "accepted" in content:
            return JSONResponse(content, status_code=answer.status_code)
    # not ready (the reference is loading), or not configured yet (an older config)
    raise ProblemError(
        503 if answer.status_code >= 500 else answer.status_code,
        f"the drift service of DriftMonitor {name} answered {answer.status_code}: "
        f"{_detail(answer)}",
    )


@router.get(
    "/driftmonitors/{name}/report",
    response_class=HTMLResponse,
    responses={**NOT_FOUND, 409: {"model": None}, 503: {"model": None}},
)
async def report(
    namespace: Namespace, name: Name, api: AsCaller, settings: Settings
) -> HTMLResponse:
    """The monitor's page (HTML, no scripts): the verdict in words, the model's quality over
    time, the anomalous requests, each feature's drift with plots. For whoever may read the
    DriftMonitor; 409 while its window is empty, 503 while its drift service does not answer."""
    await _monitor(api, namespace, name)
    answer = await _ask(name, _service_url(settings, namespace, name, "report"))
    if answer.status_code != 200:
        raise ProblemError(
            409 if answer.status_code == 409 else 503,
            f"the drift service of DriftMonitor {name} has no report: {_detail(answer)}",
        )
    # the drift service's own HTML: the API's Content-Security-Policy (guard.py) lets no script
    # of it run, wherever it is opened
    return HTMLResponse(answer.text)


@router.get(
    "/driftmonitors/{name}/history",
    responses={**NOT_FOUND, 503: {"model": None}},
)
async def history(namespace: Namespace, name: Name, api: AsCaller, settings: Settings) -> Any:
    """The monitor's scores over time, from its drift service: ``drift`` (each evaluation of the
    window: time, rows, driftDetected, biasDetected, every score with its threshold) and
    ``quality`` (each scoring of the labelled window against its thresholds), oldest first. For
    whoever may read the DriftMonitor; 503 while its drift service does not answer."""
    await _monitor(api, namespace, name)
    answer = await _ask(name, _service_url(settings, namespace, name, "history"))
    if answer.status_code != 200:
        raise ProblemError(
            503, f"the drift service of DriftMonitor {name} has no history: {_detail(answer)}"
        )
    return _object(answer, f"the drift service of DriftMonitor {name}")


@router.get(
    "/driftmonitors/{name}/requests/{inference_id}/explanation",
    responses={**NOT_FOUND, 409: {"model": None}, 501: {"model": None}, 503: {"model": None}},
)
async def explanation(
    namespace: Namespace,
    name: Name,
    inference_id: Annotated[str, Path(min_length=1, max_length=256, pattern=INFERENCE_ID)],
    api: AsCaller,
    settings: Settings,
    instance: Annotated[
        int | None,
        Query(ge=0, description="Explain this instance of the request only (from 0)."),
    ] = None,
) -> JSONResponse:
    """Why the model answered a logged request as it did: the request, as the DriftMonitor's
    drift service kept it (by the inference id, while its rows are in the window), sent to the
    monitored ModelServer's ``:explain`` verb, whole or one ``instance`` of it. Each instance's
    explanation has the prediction, every input's contribution (largest first) and a sentence
    a non-specialist can read. For whoever may read both the DriftMonitor and the ModelServer;
    404 for a request no longer kept, 422 for an instance it does not have or that the model
    refuses, 501 with the reason for a model that cannot be explained."""
    monitor = await _monitor(api, namespace, name)
    target = ((monitor.get("spec") or {}).get("target") or {}).get("modelServer")
    server = await _model_server(api, namespace, name, str(target))
    isvc = (server.get("status") or {}).get("inferenceService")
    if not isvc:
        raise ProblemError(
            409, f"ModelServer {target} has no InferenceService yet: nothing can explain"
        )
    path = f"requests/{quote(inference_id, safe='')}"
    logged = await _ask(name, _service_url(settings, namespace, name, path))
    if logged.status_code != 200:
        raise ProblemError(
            404 if logged.status_code == 404 else 503,
            f"the drift service of DriftMonitor {name}: {_detail(logged)}",
        )
    body = _object(logged, f"the drift service of DriftMonitor {name}").get("body") or {}
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list):
        raise ProblemError(
            409,
            f"request {inference_id} was sent with KServe's v2 protocol; explanations take v1 "
            "requests (KServe's :explain verb is v1 only)",
        )
    if instance is not None:
        if instance >= len(instances):
            raise ProblemError(
                422, f"request {inference_id} has {len(instances)} instance(s): no {instance}"
            )
        body = {**body, "instances": [instances[instance]]}
    base = settings.model_url_template.format(
        inference_service=isvc, name=target, namespace=namespace
    )
    url = f"{base.rstrip('/')}/v1/models/{isvc}:explain"
    who = "the predictor of ModelServer"
    answer = await _ask(str(target), url, body, who=who, timeout=EXPLAIN_TIMEOUT_SECONDS)
    if answer.status_code == 200:
        explained = _object(answer, f"{who} {target}")
        return JSONResponse({"id": inference_id, "modelServer": target, **explained})
    code = {400: 422, 422: 422, 404: 409, 501: 501}.get(answer.status_code, 502)
    raise ProblemError(
        code,
        f"ModelServer {target} cannot explain request {inference_id}: {_detail(answer)}",
    )


def _object(answer: httpx.Response, who: str) -> dict[str, Any]:
    """A JSON object answered by a service, or 502 saying it answered something else."""
    try:
        content = answer.json()
    except ValueError:
        content = None
    if not isinstance(content, dict):
        raise ProblemError(502, f"{who} answered something other than a JSON object")
    return content


async def _model_server(api: AsCaller, namespace: str, monitor: str, name: str) -> dict[str, Any]:
    try:
        return dict(await api.call("GET", object_path(MODELSERVER, namespace, name)))
    except ApiserverError as err:
        if err.status == 404:
            raise ProblemError(
                409,
                f"DriftMonitor {monitor} watches ModelServer {name}, which does not exist in "
                f"{namespace} (any more)",
            ) from err
        raise
