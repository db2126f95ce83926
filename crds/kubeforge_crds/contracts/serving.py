"""Serving: the KServe APIs the ModelServer writes, the built-in runtime and what it reads from
its environment, and the names of the metrics the canary analysis queries (the runtime exports
them, the operator's Prometheus queries read them)."""

from __future__ import annotations

from typing import Final

ISVC_API: Final = "serving.kserve.io/v1beta1"
# KServe's label on every pod of an InferenceService (its name)
ISVC_POD_LABEL: Final = "serving.kserve.io/inferenceservice"
RUNTIME_API: Final = "serving.kserve.io/v1alpha1"
# The ClusterServingRuntimes of kubeforge_runtimes (the chart's kserve.servingRuntime), one per
# image as KServe ships its own: scikit-learn from the slim runtime image, causal LMs and PEFT
# adapters from the ML image (torch, transformers, peft).
BUILTIN_RUNTIME: Final = "kubeforge"
BUILTIN_LLM_RUNTIME: Final = "kubeforge-llm"
LLM_FORMATS: Final = frozenset({"transformers", "peft"})


def builtin_runtime(model_format: str) -> str:
    """The built-in ClusterServingRuntime that serves ``model_format``."""
    return BUILTIN_LLM_RUNTIME if model_format in LLM_FORMATS else BUILTIN_RUNTIME


# The built-in runtime's settings are environment variables with this prefix
# (kubeforge_runtimes.server.RuntimeSettings); the operator sets these on the predictor.
RUNTIME_ENV_PREFIX: Final = "KUBEFORGE_RUNTIME_"
ENV_REVISION: Final = f"{RUNTIME_ENV_PREFIX}REVISION"
ENV_MODEL_FORMAT: Final = f"{RUNTIME_ENV_PREFIX}MODEL_FORMAT"
ENV_ERROR_RATE: Final = f"{RUNTIME_ENV_PREFIX}ERROR_RATE"
ENV_EXTRA_LATENCY: Final = f"{RUNTIME_ENV_PREFIX}EXTRA_LATENCY_SECONDS"
ENV_TOKEN_LATENCY: Final = f"{RUNTIME_ENV_PREFIX}TOKEN_LATENCY_SECONDS"
# The CPUs the predictor's container requests, in millicores (as the downward API's requests.cpu
# with divisor 1m): the operator sets no CPU limit, so the runtime sizes torch's threads by it
# (kubeforge_runtimes.threads). Not an option of the runtime's, so not under the prefix.
ENV_CPU_REQUEST: Final = "KUBEFORGE_CPU_REQUEST_MILLICORES"

# The runtime's inference metrics (labels: namespace, model, revision, code).
REQUESTS_METRIC: Final = "kubeforge_inference_requests_total"
DURATION_BUCKET_METRIC: Final = "kubeforge_inference_request_duration_seconds_bucket"
# The runtime's token metrics for causal LMs, named as vLLM names them (labels: namespace,
# model_name, revision): kubeforge_runtimes.generation exports them.
TTFT_METRIC: Final = "vllm:time_to_first_token_seconds"
ITL_METRIC: Final = "vllm:inter_token_latency_seconds"
GENERATION_TOKENS_METRIC: Final = "vllm:generation_tokens_total"
E2E_METRIC: Final = "vllm:e2e_request_latency_seconds"
