"""Fault injection for tests and demos: a share of inference requests answered with HTTP 500,
extra latency added to each, and latency added to each generated token. Changing it while the
runtime serves (``PUT /kubeforge/faults``, when enabled) is how ``bench/canary_rollback.py`` and
the canary tests make a healthy canary go bad at a known moment."""

from __future__ import annotations

import asyncio
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
    models: tuple[str, ...] = Field(
        default=(),
        max_length=64,
        description="Only requests naming one of these models get the faults (an adapter's "
        "name, as the OpenAI-compatible API's `model`, or the served model's, also in the v1 "
        "and v2 URLs): one adapter of several going bad; empty, every request.",
    )

    def applies_to(self, model: str) -> bool:
        return not self.models or model in self.models


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

    async def delay_then_fail(self, model: str) -> bool:
        """The faults of a request naming ``model``: waits its extra latency, then says whether
        it is one of the share that fails. A request the faults do not apply to neither waits
        nor fails."""
        faults = self._faults  # one set of faults for the whole request, whatever a PUT does
        if not faults.applies_to(model):
            return False
        if faults.extra_latency_seconds:
            await asyncio.sleep(faults.extra_latency_seconds)
        return self._draw(faults.error_rate)

    def _draw(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate
