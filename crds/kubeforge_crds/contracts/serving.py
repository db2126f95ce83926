"""Serving: the KServe APIs the ModelServer writes, the built-in runtime and what it reads from
its environment, and the names of the metrics the canary analysis queries (the runtime exports
them, the operator's Prometheus queries read them)."""

from __future__ import annotations

from typing import Final

ISVC_API: Final = "serving.kserve.io/v1beta1"
RUNTIME_API: Final = "serving.kserve.io/v1alpha1"
BUILTIN_RUNTIME: Final = "kubeforge"  # the ClusterServingRuntime of kubeforge_runtimes

# The built-in runtime's settings are environment variables with this prefix
# (kubeforge_runtimes.server.RuntimeSettings); the operator sets these on the predictor.
RUNTIME_ENV_PREFIX: Final = "KUBEFORGE_RUNTIME_"
ENV_REVISION: Final = f"{RUNTIME_ENV_PREFIX}REVISION"
ENV_MODEL_FORMAT: Final = f"{RUNTIME_ENV_PREFIX}MODEL_FORMAT"
ENV_ERROR_RATE: Final = f"{RUNTIME_ENV_PREFIX}ERROR_RATE"
ENV_EXTRA_LATENCY: Final = f"{RUNTIME_ENV_PREFIX}EXTRA_LATENCY_SECONDS"

# The runtime's inference metrics (labels: namespace, model, revision, code).
REQUESTS_METRIC: Final = "kubeforge_inference_requests_total"
DURATION_BUCKET_METRIC: Final = "kubeforge_inference_request_duration_seconds_bucket"
