"""The drift service's contract: its configuration (what the operator renders from a DriftMonitor
into the service's ConfigMap ``config.json``, or what a user passes to ``drift serve --config``)
and where the service is reached. Only pydantic here: the operator imports it without the
data-plane libraries, and the drift service (``kubeforge_runtimes.drift``) reads it."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from kubeforge_crds.driftmonitor import REGRESSION_METRICS

SERVICE_PORT: Final = 8080
# /metrics alone, for the monitoring namespaces' Prometheus: the service port also serves the
# logged requests, labels and reports, which only the team's and kubeforge's namespaces reach
METRICS_PORT: Final = 9091
CONFIG_FILE: Final = "/etc/kubeforge-drift/config.json"
EXPORT_MOUNT: Final = "/mnt/export"  # where a pvc:// export location is mounted


def service_name(monitor: str) -> str:
    """The drift service's Service, Deployment and ConfigMap of a DriftMonitor."""
    return f"{monitor}-drift"


def logger_url(namespace: str, monitor: str) -> str:
    """Where an InferenceService's logger posts: the monitor's drift service, in the cluster."""
    return f"http://{service_name(monitor)}.{namespace}.svc.cluster.local:{SERVICE_PORT}/"


# Metrics per feature type, and the bias metrics (computed on the protected attribute).
NUMERIC_METRICS = ("psi", "ks", "jensenShannon", "wasserstein", "meanShift", "outOfRange")
CATEGORICAL_METRICS = ("psi", "chiSquare", "jensenShannon", "unseenCategory")
BIAS_METRICS = ("spd", "dir")
TEXT_METRICS = ("embeddingDrift",)
ALL_METRICS = tuple(
    dict.fromkeys(NUMERIC_METRICS + CATEGORICAL_METRICS + BIAS_METRICS + TEXT_METRICS)
)


def quality_crossed(metric: str, value: float, threshold: float) -> bool:
    """Whether a quality metric is past its threshold: a score below it, an error above it."""
    return value > threshold if metric in REGRESSION_METRICS else value < threshold


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class FeatureConfig(_Model):
    name: str
    type: Literal["numeric", "categorical", "text"]
    source: Literal["request", "response"] = "request"


class BiasConfig(_Model):
    protected_attribute: str
    privileged_values: list[str]
    favourable_outcome: str


class GroundTruthConfig(_Model):
    """Model quality from labels sent after the predictions (``POST /groundtruth``)."""

    task: Literal["classification", "regression"]
    metrics: dict[str, float] = Field(description="Quality metric -> threshold.")
    window_size: int = Field(default=500, ge=1, description="Labelled predictions scored.")
    min_labels: int = Field(default=30, ge=1, description="Fewer labels: no verdict.")
    retention_seconds: float = Field(
        default=86400, gt=0, description="How long a logged prediction waits for its label."
    )
    max_pending: int = Field(default=100_000, ge=1, description="Predictions kept waiting.")
    positive_class: str | None = Field(
        default=None,
        description="Precision, recall and F1 of this class; unset: macro-averaged over classes.",
    )


class AnomalyConfig(_Model):
    """Anomalous requests: an isolation forest trained on the reference."""

    quantile: float = Field(
        default=0.99,
        ge=0.5,
        lt=1,
        description="A request is anomalous when stranger than this share of reference rows.",
    )
    rate_threshold: float = Field(
        default=0.05, gt=0, le=1, description="Alert above this share of anomalous requests."
    )
    top: int = Field(default=5, ge=0, le=50, description="The strangest requests kept.")


class MonitorConfig(_Model):
    namespace: str = "default"
    name: str
    reference_uri: str
    reference_format: str | None = None
    features: list[FeatureConfig] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=lambda: {"psi": 0.2, "ks": 0.1})
    bias: BiasConfig | None = None
    ground_truth: GroundTruthConfig | None = None
    anomalies: AnomalyConfig | None = None
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


# Ground truth as clients send it: to the drift service (POST /groundtruth) or through the REST
# API, which first reviews the caller's ``create`` on this subresource of the DriftMonitor.
GROUND_TRUTH_SUBRESOURCE: Final = "groundtruth"
MAX_LABELS_PER_REQUEST: Final = 10_000
Label = str | int | float | bool


class GroundTruthLabel(BaseModel):
    """The true outcome of one logged prediction, or of each instance of its request."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        min_length=1,
        max_length=256,
        description="The inference's id: the ce-id header its request carried.",
    )
    label: Label | None = Field(
        default=None,
        description="The true class (classification) or value (regression); for a request of "
        "several instances, with index.",
    )
    labels: list[Label] | None = Field(
        default=None,
        max_length=MAX_LABELS_PER_REQUEST,
        description="One label per instance of the request, in order (instead of label).",
    )
    index: int | None = Field(
        default=None, ge=0, description="The instance of a batch request that label is for."
    )

    @model_validator(mode="after")
    def _one_of(self) -> GroundTruthLabel:
        if (self.label is None) == (self.labels is None):
            raise ValueError("give exactly one of label and labels")
        return self


class GroundTruthLabels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[GroundTruthLabel] = Field(min_length=1, max_length=MAX_LABELS_PER_REQUEST)


class RejectedLabel(BaseModel):
    item: int = Field(description="Position of the label in the request.")
    id: str
    reason: Literal["unknown_id", "expired", "invalid_label"]
    message: str


class GroundTruthAnswer(BaseModel):
    accepted: int = Field(description="Labels joined with their prediction.")
    replaced: int = Field(description="Labels that replaced an earlier one (the last wins).")
    rejected: list[RejectedLabel] = Field(description="Labels refused, each with its reason.")
    window_labels: int = Field(
        alias="windowLabels", description="Labelled predictions now in the window."
    )

    model_config = ConfigDict(populate_by_name=True)
