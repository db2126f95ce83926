"""The InferenceService a ModelServer becomes (pure)."""

from __future__ import annotations

from typing import Any

from kubeforge_crds.contracts.serving import BUILTIN_RUNTIME, ISVC_API
from kubeforge_crds.modelserver import (
    ModelServerSpec,
    Revision,
)
from kubeforge_operator.runtime.children import child_metadata, standard_labels
from kubeforge_operator.runtime.placement import Placement


def _env(rev: Revision) -> list[dict[str, str]]:
    env = [
        {"name": "KUBEFORGE_RUNTIME_REVISION", "value": rev.revision},
        {"name": "KUBEFORGE_RUNTIME_MODEL_FORMAT", "value": str(rev.model_format)},
    ]
    if rev.fault_injection:
        env += [
            {
                "name": "KUBEFORGE_RUNTIME_ERROR_RATE",
                "value": f"{rev.fault_injection.error_rate:g}",
            },
            {
                "name": "KUBEFORGE_RUNTIME_EXTRA_LATENCY_SECONDS",
                "value": f"{rev.fault_injection.extra_latency_seconds:g}",
            },
        ]
    return env


def build_inference_service(
    owner: dict[str, Any],
    spec: ModelServerSpec,
    placement: Placement,
    served: Revision,
    canary_percent: int | None,
    logger_url: str | None = None,
) -> dict[str, Any]:
    """The InferenceService serving ``served``; with ``canary_percent``, as KServe's canary of
    the last rolled-out revision; with ``logger_url``, logging every request and response there
    (a DriftMonitor's drift service)."""
    name = owner["metadata"]["name"]
    resources = {"cpu": spec.resources.cpu, "memory": spec.resources.memory} | placement.limits()
    model: dict[str, Any] = {
        "modelFormat": {"name": str(served.model_format)},
        "runtime": served.serving_runtime or BUILTIN_RUNTIME,
        "storageUri": served.uri,
        "env": _env(served),
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }
    predictor: dict[str, Any] = {
        "minReplicas": spec.replicas.min,
        "maxReplicas": spec.replicas.max,
        "model": model,
        **placement.pod_fields(),
    }
    if canary_percent is not None and canary_percent < 100:
        predictor["canaryTrafficPercent"] = canary_percent
    if logger_url:
        predictor["logger"] = {"mode": "all", "url": logger_url}
    meta = child_metadata(owner, name, standard_labels("modelserver", name, "inference"))
    meta["annotations"] = {"serving.kserve.io/enable-prometheus-scraping": "true"}
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": predictor},
    }
