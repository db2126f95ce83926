"""ModelServer: a model served through a KServe InferenceService, rolled out as a canary whose
steps are gated on Prometheus metrics and promoted or rolled back automatically."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from kubeforge_crds.base import (
    CelRule,
    Duration,
    KubeModel,
    ObjectName,
    ResourceStatus,
    Timestamp,
    UriString,
    min_duration_rule,
    nested,
)
from kubeforge_crds.common import ComputeResources
from kubeforge_crds.kind import KindInfo


class ModelRef(KubeModel):
    """What to serve: a storage URI, or the output of a FineTuneJob in the same namespace."""

    uri: UriString | None = Field(default=None, description="Storage URI of the model.")
    fine_tune_job: ObjectName | None = Field(
        default=None, description="Name of a FineTuneJob whose registered model to serve."
    )

    cel_rules = (
        CelRule(
            rule="has(self.uri) != has(self.fineTuneJob)",
            message="set exactly one of uri or fineTuneJob",
            check=lambda s: (s.uri is None) != (s.fine_tune_job is None),
            field_path=".uri",
            reason="FieldValueRequired",
        ),
    )


class ModelFormat(StrEnum):
    TRANSFORMERS = "transformers"
    PEFT = "peft"
    SKLEARN = "sklearn"


class Runtime(KubeModel):
    """How the model is served."""

    model_format: ModelFormat = Field(
        default=ModelFormat.TRANSFORMERS,
        description="Format of the model, for kubeforge's built-in runtime.",
    )
    serving_runtime: ObjectName | None = Field(
        default=None,
        description="Name of a KServe ServingRuntime (e.g. a vLLM runtime) to use instead of the "
        "built-in runtime.",
    )


class Replicas(KubeModel):
    """Autoscaling bounds of the predictor."""

    min: int = Field(default=1, ge=0, le=100, description="Minimum replicas (0: scale to zero).")
    max: int = Field(default=1, ge=1, le=100, description="Maximum replicas.")

    cel_rules = (
        CelRule(
            rule="self.min <= self.max",
            message="min must not exceed max",
            check=lambda s: s.min <= s.max,
            field_path=".min",
        ),
    )


class MetricType(StrEnum):
    ERROR_RATE = "errorRate"
    LATENCY_P95 = "latencyP95"
    PROMQL = "promql"


class AnalysisMetric(KubeModel):
    """A metric checked at every analysis interval of a rollout."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-zA-Z][a-zA-Z0-9_-]*$",
        description="Name of the check, shown in status and Events.",
    )
    type: MetricType = Field(
        description="errorRate (share of 5xx responses), latencyP95 (seconds), or promql (a "
        "query template returning one number)."
    )
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="PromQL template for type promql; {{namespace}}, {{name}} and {{revision}} "
        "are substituted.",
    )
    max: float = Field(
        ge=0,
        description="The check fails when the measured value exceeds this. With "
        "relativeToStable, the ratio canary/stable is compared instead.",
    )
    relative_to_stable: bool = Field(
        default=False, description="Compare the canary with the stable version, not absolutely."
    )

    cel_rules = (
        CelRule(
            rule="(self.type == 'promql') == has(self.query)",
            message="query is required for type promql and not allowed otherwise",
            check=lambda s: (s.type == MetricType.PROMQL) == (s.query is not None),
            field_path=".query",
        ),
    )


class FailureAction(StrEnum):
    ROLLBACK = "rollback"
    HOLD = "hold"


def _default_metrics() -> list[AnalysisMetric]:
    return [
        AnalysisMetric(name="error-rate", type=MetricType.ERROR_RATE, max=0.05),
        AnalysisMetric(
            name="latency-p95", type=MetricType.LATENCY_P95, max=1.5, relative_to_stable=True
        ),
    ]


_MIN_INTERVAL = "10s"


class RolloutPolicy(KubeModel):
    """How a new model version goes out."""

    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 25, 50, 100],
        min_length=1,
        max_length=20,
        description="Canary traffic percentages, strictly increasing and ending at 100.",
        json_schema_extra={"default": [10, 25, 50, 100]},
    )
    interval: Duration = Field(
        default="1m", description=f"Time between analyses. At least {_MIN_INTERVAL}."
    )
    metrics: list[AnalysisMetric] = Field(
        default_factory=_default_metrics,
        max_length=16,
        description="Checks that gate each step. Default: error rate at most 5% and p95 latency "
        "at most 1.5 times the stable version's.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "default": [m.to_wire() for m in _default_metrics()],
        },
    )
    failure_threshold: int = Field(
        default=2, ge=1, le=10, description="Failed analyses before the failure action is taken."
    )
    on_failure: FailureAction = Field(
        default=FailureAction.ROLLBACK,
        description="rollback sends all traffic back to the stable version; hold freezes the "
        "traffic split for a person to decide.",
    )

    cel_rules = (
        CelRule(
            rule="self.steps.isSorted() && self.steps.all(x, self.steps.exists_one(y, y == x))",
            message="steps must be strictly increasing",
            check=lambda s: all(a < b for a, b in zip(s.steps, s.steps[1:], strict=False)),
            field_path=".steps",
        ),
        CelRule(
            rule="self.steps[size(self.steps) - 1] == 100",
            message="the last step must be 100",
            check=lambda s: s.steps[-1] == 100,
            field_path=".steps",
        ),
        min_duration_rule("interval", "interval", _MIN_INTERVAL),
    )


class ModelServerSpec(KubeModel):
    """The desired serving endpoint."""

    model: ModelRef = Field(description="The model to serve.")
    runtime: Runtime = nested(Runtime, "How to serve it.")
    resources: ComputeResources = nested(ComputeResources, "CPU, memory and GPUs of each replica.")
    replicas: Replicas = nested(Replicas, "Autoscaling bounds.")
    rollout: RolloutPolicy = nested(RolloutPolicy, "Canary rollout of new model versions.")


class ModelServerPhase(StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    PROGRESSING = "Progressing"
    ROLLED_BACK = "RolledBack"
    HELD = "Held"
    FAILED = "Failed"


class Revision(KubeModel):
    """A served model version."""

    revision: str = Field(max_length=253, description="Revision identifier.")
    uri: str = Field(max_length=2048, description="Storage URI of the model.")
    traffic_percent: int = Field(ge=0, le=100, description="Share of traffic it receives.")


class RolloutDecision(KubeModel):
    """One analysis outcome."""

    time: Timestamp = Field(description="When the decision was made.")
    step: int = Field(ge=0, description="Index of the step in spec.rollout.steps.")
    action: str = Field(max_length=32, description="advance, hold, rollback or promote.")
    reason: str = Field(max_length=1024, description="Why.")
    measurements: dict[str, float] = Field(
        default_factory=dict, description="Measured value per metric name."
    )


class ModelServerStatus(ResourceStatus):
    """The observed state of the endpoint and its rollout."""

    phase: ModelServerPhase | None = Field(default=None, description="Lifecycle phase.")
    url: str | None = Field(default=None, description="Inference endpoint.")
    stable: Revision | None = Field(default=None, description="The stable version.")
    canary: Revision | None = Field(default=None, description="The canary, during a rollout.")
    traffic_split: str | None = Field(
        default=None, description="Traffic split as stable/canary percentages, e.g. 90/10."
    )
    gpus: int | None = Field(default=None, ge=0, description="GPUs held by the replicas now.")
    decisions: list[RolloutDecision] = Field(
        default_factory=list, max_length=100, description="The latest rollout decisions."
    )


MODELSERVER = KindInfo(
    kind="ModelServer",
    plural="modelservers",
    short_names=("ms",),
    spec_model=ModelServerSpec,
    status_model=ModelServerStatus,
    description="A KServe endpoint with metric-gated canary rollout and automatic rollback.",
    printer_columns=(
        {
            "name": "Traffic",
            "type": "string",
            "jsonPath": ".status.trafficSplit",
            "description": "stable/canary traffic percentages",
        },
        {"name": "Canary", "type": "integer", "jsonPath": ".status.canary.trafficPercent"},
        {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus"},
        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
    ),
)
