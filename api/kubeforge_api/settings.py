"""API settings, from environment variables prefixed KUBEFORGE_API_."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubeforge_crds.contracts.drift import SERVICE_PORT


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBEFORGE_API_", extra="ignore")

    kubeconfig: Path | None = Field(
        default=None,
        description="Kubeconfig of the API's own identity (which may only review tokens and "
        "impersonate). Unset: the in-cluster service account, else $KUBECONFIG.",
    )
    host: str = Field(default="0.0.0.0", description="Listen address.")  # noqa: S104
    port: int = Field(default=8000, ge=1, le=65535, description="Listen port.")
    token_cache_seconds: float = Field(
        default=30, ge=0, description="How long a reviewed token's identity is reused."
    )
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus that scrapes the operator (kubeforge_gpus): GPU-hours come "
        "from it. Unset: the GPU-hours route answers 503 saying so.",
    )
    gpu_prices: dict[str, float] = Field(
        default_factory=dict,
        description="Price of a GPU-hour per GPU product (the nvidia.com/gpu.product label, "
        "e.g. NVIDIA-A100-SXM4-80GB), and under 'default' for GPUs of any other product: the "
        "model map's costs. JSON in the environment.",
    )
    currency: str = Field(
        default="USD", max_length=8, description="What gpu_prices are in (shown, not converted)."
    )

    @field_validator("gpu_prices")
    @classmethod
    def _prices(cls, prices: dict[str, float]) -> dict[str, float]:
        for product, price in prices.items():
            if not math.isfinite(price) or price < 0:
                raise ValueError(f"gpu_prices[{product!r}]: {price} is not a price (0 or more)")
        return prices

    request_timeout: float = Field(default=30, gt=0, description="Apiserver request timeout.")
    drift_url_template: str = Field(
        default=f"http://{{service}}.{{namespace}}.svc.cluster.local:{SERVICE_PORT}",
        description="Where the API reaches a DriftMonitor's drift service to pass ground truth "
        "on; {service}, {name} and {namespace} are filled in.",
    )
    model_url_template: str = Field(
        default="http://{inference_service}-predictor.{namespace}.svc.cluster.local",
        description="Where the API reaches a ModelServer's predictor to explain a logged "
        "request (KServe's :explain verb); {inference_service}, {name} and {namespace} are "
        "filled in.",
    )
    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, description="Larger request bodies are refused (413)."
    )
    max_header_bytes: int = Field(
        default=16 << 10, ge=1024, description="Larger request headers are refused (431)."
    )
    failed_token_cache_seconds: float = Field(
        default=10,
        ge=0,
        description="How long a token the cluster rejected is refused without asking again.",
    )


@cache
def get_settings() -> ApiSettings:
    return ApiSettings()
