"""What a DriftMonitor reconcile reads: the source FineTuneJob, the drift service's status,
the target's InferenceService logger, and the nudge that makes the ModelServer set it."""

from __future__ import annotations

from typing import Any, cast

import httpx

from kubeforge_crds import FINETUNEJOB, MODELSERVER, ConditionStatus
from kubeforge_crds.contracts.drift import (
    logger_url,
    service_name,
)
from kubeforge_crds.contracts.labels import LOGGER_REQUEST_ANNOTATION
from kubeforge_crds.contracts.serving import ISVC_API
from kubeforge_operator.driftmonitor.conditions import LOGGER_CONFIGURED
from kubeforge_operator.runtime.conditions import Observation
from kubeforge_operator.runtime.reconcile import ReconcileContext

STATUS_TIMEOUT_SECONDS = 5.0


def status_url(ctx: ReconcileContext) -> str:
    """Where the operator reads the drift service's status (settings can redirect it)."""
    template = ctx.settings.drift_status_url_template
    return template.format(namespace=ctx.namespace, name=ctx.name, service=service_name(ctx.name))


def source_fine_tune_job(
    ctx: ReconcileContext, model_server: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    ftj_name = ((model_server.get("spec") or {}).get("model") or {}).get("fineTuneJob")
    if not ftj_name:  # spec.model.modelName: the FineTuneJob of the version serving now
        stable = (model_server.get("status") or {}).get("stable") or {}
        ftj_name = stable.get("fineTuneJob")
    if not ftj_name:
        return None, None
    return ctx.kube.get(FINETUNEJOB, ctx.namespace, ftj_name), ftj_name


def fetch_status(url: str) -> dict[str, Any] | str:
    try:
        response = httpx.get(url.rstrip("/") + "/status", timeout=STATUS_TIMEOUT_SECONDS)
        response.raise_for_status()
        return cast(dict[str, Any], response.json())
    except (httpx.HTTPError, ValueError) as err:
        return f"{type(err).__name__}: {err}"


def logger_observation(ctx: ReconcileContext, target: str) -> Observation:
    isvc = ctx.kube.get_child(ISVC_API, "InferenceService", ctx.namespace, target)
    want = logger_url(ctx.namespace, ctx.name)
    if isvc is None:
        return Observation(
            LOGGER_CONFIGURED,
            ConditionStatus.FALSE,
            "InferenceServiceNotFound",
            f"ModelServer {target} has no InferenceService yet",
        )
    logger = (((isvc.get("spec") or {}).get("predictor") or {}).get("logger")) or {}
    if logger.get("url") == want:
        return Observation(
            LOGGER_CONFIGURED,
            ConditionStatus.TRUE,
            "Configured",
            f"InferenceService {target} logs to {want}",
        )
    if logger.get("url"):
        return Observation(
            LOGGER_CONFIGURED,
            ConditionStatus.FALSE,
            "LoggerTaken",
            f"InferenceService {target} already logs to {logger['url']}: KServe has one logger per "
            "InferenceService, so one DriftMonitor per ModelServer (the first by name wins)",
        )
    return Observation(
        LOGGER_CONFIGURED,
        ConditionStatus.FALSE,
        "Waiting",
        f"waiting for the ModelServer controller to point the logger of InferenceService "
        f"{target} at {want}",
    )


def nudge(ctx: ReconcileContext, model_server: dict[str, Any]) -> None:
    """Annotate the ModelServer so that its watch event reconciles it now (it sets the logger)
    instead of at its next resync; written once per monitor."""
    annotations = model_server["metadata"].get("annotations") or {}
    if annotations.get(LOGGER_REQUEST_ANNOTATION) != ctx.name:
        ctx.kube.annotate(
            MODELSERVER,
            ctx.namespace,
            model_server["metadata"]["name"],
            LOGGER_REQUEST_ANNOTATION,
            ctx.name,
        )
