"""What a ModelServer reconcile reads of its children and neighbours, each once per reconcile,
into one typed observation that the decisions and the status are computed from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client

from kubeforge_crds import DRIFTMONITOR
from kubeforge_crds.contracts.drift import logger_url
from kubeforge_crds.contracts.serving import ISVC_API
from kubeforge_operator.runtime.reconcile import ReconcileContext


@dataclass(frozen=True)
class Observed:
    """The InferenceService as it is (None: not created yet), and where its logger should post
    (the drift service of the first DriftMonitor by name that targets this ModelServer)."""

    isvc: dict[str, Any] | None
    logger_url: str | None


def observe(ctx: ReconcileContext) -> Observed:
    return Observed(
        isvc=ctx.kube.get_child(ISVC_API, "InferenceService", ctx.namespace, ctx.name),
        logger_url=drift_logger(ctx),
    )


def drift_logger(ctx: ReconcileContext) -> str | None:
    """The logger URL of the first DriftMonitor (by name) that targets this ModelServer."""
    try:
        listed = ctx.kube.custom.list_namespaced_custom_object(
            DRIFTMONITOR.group, DRIFTMONITOR.version, ctx.namespace, DRIFTMONITOR.plural
        )
    except client.ApiException as exc:
        if exc.status == 404:  # the DriftMonitor CRD is not installed
            return None
        raise
    names = sorted(
        item["metadata"]["name"]
        for item in listed.get("items") or []
        if ((item.get("spec") or {}).get("target") or {}).get("modelServer") == ctx.name
        and not item["metadata"].get("deletionTimestamp")
    )
    return logger_url(ctx.namespace, names[0]) if names else None
