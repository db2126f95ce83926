"""The drift service's configuration: what the operator renders from a DriftMonitor into the
service's ConfigMap (``config.json``), or what a user passes to ``drift serve --config``. Only
pydantic here, so the operator can import it without the data-plane libraries."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# Metrics per feature type, and the bias metrics (computed on the protected attribute).
NUMERIC_METRICS = ("psi", "ks", "jensenShannon", "wasserstein", "meanShift", "outOfRange")
CATEGORICAL_METRICS = ("psi", "chiSquare", "jensenShannon", "unseenCategory")
BIAS_METRICS = ("spd", "dir")
ALL_METRICS = tuple(dict.fromkeys(NUMERIC_METRICS + CATEGORICAL_METRICS + BIAS_METRICS))


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class FeatureConfig(_Model):
    name: str
    type: Literal["numeric", "categorical"]


class BiasConfig(_Model):
    protected_attribute: str
    privileged_values: list[str]
    favourable_outcome: str


class MonitorConfig(_Model):
    namespace: str = "default"
    name: str
    reference_uri: str
    reference_format: str | None = None
    features: list[FeatureConfig] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=lambda: {"psi": 0.2, "ks": 0.1})
    bias: BiasConfig | None = None
    window_size: int = Field(default=1000, ge=10)
    interval_seconds: float = Field(default=300, gt=0)
    history: int = Field(default=288, ge=1, description="Evaluations kept for reports.")
    export_dir: str | None = Field(
        default=None,
        description="Where POST /export writes the reference plus the live window (a "
        "directory of this process); unset: no export.",
    )
    export_uri: str | None = Field(
        default=None, description="The URI export_dir is known by outside (file:// or pvc://)."
    )
