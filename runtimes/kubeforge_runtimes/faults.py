"""Fault injection for tests and demos: a share of inference requests answered with HTTP 500,
extra latency added to each, and latency added to each generated token. Changing it while the
runtime serves (``PUT /kubeforge/faults``, when enabled) is how ``bench/canary_rollback.py`` and
the canary tests make a healthy canary go bad at a known moment."""

from __future__ import annotations

import random
import threading

from pydantic import BaseModel, ConfigDict, Field


class Faults(BaseModel):
    """What to inject; the default injects nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    error_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, alias="errorRate", description="Share answered with 500."
    )
    extra_latency_seconds: float = Field(
        default=0.0,
        ge=0.0,
        le=60.0,
        alias="extraLatencySeconds",
        description="Added to every inference request.",
    )
    token_latency_seconds: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        alias="tokenLatencySeconds",
        description="Added before every generated token of the OpenAI-compatible API (a slower "
        "model: time to first token and inter-token latency grow).",
    )


class FaultInjector:
    """The current faults, shared by the request handlers; decisions come from a seeded RNG so a
    run is reproducible."""

    def __init__(self, faults: Faults | None = None, seed: int = 0) -> None:
        self._faults = faults or Faults()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def faults(self) -> Faults:
        return self._faults

    def set(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults

    def fail_next(self) -> bool:
        """Whether this request is to fail."""
        rate = self._faults.error_rate
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate
