"""DriftMonitor: drift, bias and model quality (from ground truth) on a ModelServer's live
traffic, exported to Prometheus, with alerts and actions (retrain, roll back)."""

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
    StatusPart,
    Timestamp,
    UriString,
    nested,
)
from kubeforge_crds.finetunejob import FineTuneJobSpec
from kubeforge_crds.health import PhaseHealth
from kubeforge_crds.kind import KindInfo, NameRule


class TargetRef(KubeModel):
    """The ModelServer whose traffic is watched."""

    model_server: ObjectName = Field(description="Name of a ModelServer in the same namespace.")


class ReferenceSource(StrEnum):
    TRAINING_DATA = "trainingData"
    URI = "uri"


class Reference(KubeModel):
    """The data that live traffic is compared with."""

    source: ReferenceSource = Field(
        default=ReferenceSource.TRAINING_DATA,
        description="trainingData: the dataset of the FineTuneJob the served model came from "
        "(found through lineage); uri: a file given in uri.",
    )
    uri: UriString | None = Field(default=None, description="Reference dataset for source uri.")

    cel_rules = (
        CelRule(
            rule="(self.source == 'uri') == has(self.uri)",
            message="uri is required for source uri and not allowed otherwise",
            check=lambda s: (s.source == ReferenceSource.URI) == (s.uri is not None),
            field_path=".uri",
        ),
    )


class FeatureType(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    TEXT = "text"


class FeatureSource(StrEnum):
    REQUEST = "request"
    RESPONSE = "response"


class Feature(KubeModel):
    """One feature of the model's traffic: an input, or its answer."""

    name: str = Field(min_length=1, max_length=256, description="Feature (column) name.")
    type: FeatureType = Field(
        description="numeric, categorical, or text (free text such as a prompt: compared "
        "by its sentence embeddings, metric embeddingDrift, and described in the report)."
    )
    source: FeatureSource = Field(
        default=FeatureSource.REQUEST,
        description="request: a field of each instance the client sent. response: the "
        "model's answer to each instance (a generated text, a predicted class or value), "
        "compared with the reference's column of that name; at most one feature.",
    )


class DriftMetricName(StrEnum):
    PSI = "psi"
    KS = "ks"
    JENSEN_SHANNON = "jensenShannon"
    WASSERSTEIN = "wasserstein"
    MEAN_SHIFT = "meanShift"
    CHI_SQUARE = "chiSquare"
    SPD = "spd"
    DIR = "dir"
    OUT_OF_RANGE = "outOfRange"
    UNSEEN_CATEGORY = "unseenCategory"
    EMBEDDING_DRIFT = "embeddingDrift"


# Metrics whose values lie in [0, 1] (spd in [-1, 1], compared in absolute value), so a
# threshold above 1 could never be crossed.
UNIT_RANGE_METRICS = (
    "ks",
    "jensenShannon",
    "chiSquare",
    "spd",
    "dir",
    "outOfRange",
    "unseenCategory",
    "embeddingDrift",
)


class MetricThreshold(KubeModel):
    """A metric and the value past which it counts as drift (or bias, or anomaly).

    Numeric features: psi, ks, jensenShannon, wasserstein, meanShift (in reference standard
    deviations), outOfRange (share outside the reference's range). Categorical features: psi,
    chiSquare (p-value of the chi-square test), jensenShannon, unseenCategory (share of categories
    the reference lacks). Text features: embeddingDrift (ROC AUC of a classifier telling the
    window's texts from the reference's by their sentence embeddings: 0.5 alike, 1 apart). Bias
    (needs spec.bias): spd, dir."""

    name: DriftMetricName = Field(description="Which metric.")
    threshold: float = Field(
        ge=0,
        le=1000,
        description="Alert when the metric crosses this value. For dir and chiSquare (a p-value) "
        "the alert fires below it; for spd when its absolute value is above it; for every other "
        "metric above it. ks, jensenShannon, chiSquare, spd, dir, outOfRange and unseenCategory "
        "take thresholds from 0 to 1.",
    )

    cel_rules = (
        CelRule(
            rule="!(self.name in ["
            + ", ".join(f"'{m}'" for m in UNIT_RANGE_METRICS)
            + "]) || self.threshold <= 1.0",
            message="this metric lies between 0 and 1: a threshold above 1 could never be crossed",
            check=lambda s: s.name not in UNIT_RANGE_METRICS or s.threshold <= 1.0,
            field_path=".threshold",
        ),
        CelRule(
            rule="self.name != 'embeddingDrift' || self.threshold > 0.5",
            message="embeddingDrift is a ROC AUC: 0.5 means no difference at all, so its "
            "threshold must be above 0.5 (0.7 is a good start)",
            check=lambda s: s.name != DriftMetricName.EMBEDDING_DRIFT or s.threshold > 0.5,
            field_path=".threshold",
        ),
    )


class Bias(KubeModel):
    """Fairness metrics for a protected attribute."""

    protected_attribute: str = Field(min_length=1, max_length=256, description="Feature name.")
    privileged_values: list[Annotated[str, Field(max_length=256)]] = Field(
        min_length=1,
        max_length=64,
        description="Values of the privileged group.",
    )
    favourable_outcome: str = Field(
        min_length=1, max_length=256, description="The prediction counted as favourable."
    )


class QualityMetricName(StrEnum):
    ACCURACY = "accuracy"
    PRECISION = "precision"
    RECALL = "recall"
    F1 = "f1"
    MAE = "mae"
    RMSE = "rmse"


# Model quality from ground truth, per task; the classification metrics alert below their
# threshold, the regression errors above it.
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1")
REGRESSION_METRICS = ("mae", "rmse")


class QualityThreshold(KubeModel):
    """A quality metric and its threshold: accuracy, precision, recall and f1 (task
    classification) alert below it; mae and rmse (task regression) above it."""

    name: QualityMetricName = Field(description="Which metric.")
    threshold: float = Field(
        ge=0,
        le=1e12,
        description="accuracy, precision, recall and f1: the lowest acceptable value (0 to 1); "
        "mae and rmse: the highest acceptable error, in the model's output unit.",
    )

    cel_rules = (
        CelRule(
            rule="!(self.name in ["
            + ", ".join(f"'{m}'" for m in CLASSIFICATION_METRICS)
            + "]) || self.threshold <= 1.0",
            message="accuracy, precision, recall and f1 lie between 0 and 1",
            check=lambda s: s.name not in CLASSIFICATION_METRICS or s.threshold <= 1.0,
            field_path=".threshold",
        ),
    )


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class GroundTruth(KubeModel):
    """Model quality from the true outcomes of logged predictions: sent later, by inference id
    (the ce-id header the client sets on its inference request, which KServe's logger passes
    on), to the REST API's ``.../driftmonitors/<name>/groundtruth``."""

    task: Task = Field(
        description="classification (accuracy, precision, recall, f1) or regression (mae, rmse)."
    )
    metrics: list[QualityThreshold] = Field(
        min_length=1,
        max_length=6,
        description="Quality metrics and thresholds; crossing one is acted on like drift.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    window: int = Field(
        default=500,
        ge=10,
        le=100_000,
        description="Labelled predictions the metrics are computed over (the newest).",
    )
    min_labels: int = Field(
        default=30,
        ge=1,
        le=100_000,
        description="Below this many labelled predictions in the window there is no verdict "
        "(status says the labels are insufficient): no alert, no action.",
    )
    retention: Duration = Field(
        default="24h",
        description="How long a logged prediction waits for its label; a later label is "
        "counted as expired.",
    )
    positive_class: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Classification: precision, recall and f1 of this class against the rest. "
        "Omitted: their average over the classes (macro).",
    )

    cel_rules = (
        CelRule(
            rule="self.metrics.all(m, (m.name in ["
            + ", ".join(f"'{m}'" for m in CLASSIFICATION_METRICS)
            + "]) == (self.task == 'classification'))",
            message="accuracy, precision, recall and f1 are for task classification; mae and "
            "rmse for task regression",
            check=lambda s: all(
                (m.name in CLASSIFICATION_METRICS) == (s.task == Task.CLASSIFICATION)
                for m in s.metrics
            ),
            field_path=".metrics",
        ),
        CelRule(
            rule="self.minLabels <= self.window",
            message="minLabels cannot exceed window: the window would never hold enough labels",
            check=lambda s: s.min_labels <= s.window,
            field_path=".minLabels",
        ),
        CelRule(
            rule="!has(self.positiveClass) || self.task == 'classification'",
            message="positiveClass is for task classification",
            check=lambda s: s.positive_class is None or s.task == Task.CLASSIFICATION,
            field_path=".positiveClass",
        ),
    )


class Anomalies(KubeModel):
    """Anomalous requests: each request of the window scored by an isolation forest trained on
    the reference; a number outside the reference's range or a category it never had is
    anomalous whatever the forest says."""

    quantile: float = Field(
        default=0.99,
        ge=0.5,
        lt=1,
        description="A request is anomalous when it is stranger than this share of the "
        "reference's own rows: 0.99 counts about 1% of requests like the reference's.",
    )
    rate_threshold: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Alert when more than this share of the window's requests are anomalous.",
    )
    top: int = Field(
        default=5, ge=0, le=50, description="The strangest recent requests shown in status."
    )

    cel_rules = (
        CelRule(
            rule="self.rateThreshold > 1.0 - self.quantile",
            message="rateThreshold must be above 1 - quantile, the share of ordinary requests "
            "counted as anomalous, or ordinary traffic would alert",
            check=lambda s: s.rate_threshold > 1.0 - s.quantile,
            field_path=".rateThreshold",
        ),
    )


class Window(KubeModel):
    """The sliding window of live traffic compared with the reference."""

    size: int = Field(default=1000, ge=10, le=1_000_000, description="Inferences in the window.")
    interval: Duration = Field(default="5m", description="How often the scores are computed.")


class AlertAction(KubeModel):
    enabled: bool = Field(default=True, description="Create a PrometheusRule for the monitor.")
    severity: str = Field(
        default="warning", pattern=r"^(info|warning|critical)$", description="Alert severity."
    )


class RetrainAction(KubeModel):
    enabled: bool = Field(default=False, description="Start a FineTuneJob when drift is found.")
    template: FineTuneJobSpec | None = Field(
        default=None,
        description="Spec of the retraining FineTuneJob. Omitted: a copy of the spec of the "
        "FineTuneJob that produced the served model.",
    )
    cooldown: Duration = Field(default="24h", description="Minimum time between retrainings.")
    include_live_data: bool = Field(
        default=False,
        description="Train on the reference (the training data) plus the drifted live window: "
        "the drift service writes both as one JSONL dataset under exportUri, and the "
        "retraining run's spec.dataset.uri names it. Live rows keep the reference's columns "
        "the requests carry.",
    )
    export_uri: UriString | None = Field(
        default=None,
        description="Where the drift service writes those datasets: pvc://<claim>/<dir> "
        "(mounted read-write into the drift service) or file://<dir>.",
    )

    cel_rules = (
        CelRule(
            rule="!self.includeLiveData || (has(self.exportUri) && "
            "(self.exportUri.startsWith('pvc://') || self.exportUri.startsWith('file://')))",
            message="includeLiveData needs exportUri, a pvc:// or file:// location",
            check=lambda s: (
                not s.include_live_data
                or (s.export_uri is not None and s.export_uri.startswith(("pvc://", "file://")))
            ),
            field_path=".exportUri",
            reason="FieldValueRequired",
        ),
    )


class Actions(KubeModel):
    """What to do when drift is detected."""

    alert: AlertAction = nested(AlertAction, "Prometheus alerting.")
    retrain: RetrainAction = nested(RetrainAction, "Automatic retraining.")
    rollback: bool = Field(
        default=False, description="Roll back the ModelServer's rollout in progress on drift."
    )


def _default_metrics() -> list[MetricThreshold]:
    return [
        MetricThreshold(name=DriftMetricName.PSI, threshold=0.2),
        MetricThreshold(name=DriftMetricName.KS, threshold=0.1),
    ]


class DriftMonitorSpec(KubeModel):
    """The desired monitoring of a ModelServer."""

    target: TargetRef = Field(description="The ModelServer to watch.")
    reference: Reference = nested(Reference, "The data to compare with.")
    features: list[Feature] = Field(
        default_factory=list,
        max_length=1024,
        description="The model's input features. Empty: inferred from the reference.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    metrics: list[MetricThreshold] = Field(
        default_factory=_default_metrics,
        min_length=1,
        max_length=16,
        description="Metrics and thresholds. Default: psi 0.2 and ks 0.1.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "default": [m.to_wire() for m in _default_metrics()],
        },
    )
    bias: Bias | None = Field(default=None, description="Fairness metrics (spd, dir).")
    ground_truth: GroundTruth | None = Field(
        default=None,
        description="Model quality from labels sent after the predictions (accuracy, F1, MAE, "
        "...), with thresholds acted on like drift.",
    )
    anomalies: Anomalies | None = Field(
        default=None,
        description="Anomalous requests: the share of strange requests in the window, with "
        "the strangest shown; crossing rateThreshold alerts and rolls back like drift (it does "
        "not retrain).",
    )
    window: Window = nested(Window, "The sliding window.")
    actions: Actions = nested(Actions, "What to do on drift.")

    cel_rules = (
        CelRule(
            rule="has(self.bias) || !self.metrics.exists(m, m.name == 'spd' || m.name == 'dir')",
            message="metrics spd and dir need bias settings",
            check=lambda s: (
                s.bias is not None
                or not any(m.name in (DriftMetricName.SPD, DriftMetricName.DIR) for m in s.metrics)
            ),
            field_path=".bias",
            reason="FieldValueRequired",
        ),
        CelRule(
            rule="!has(self.features) || self.features.size() == 0 || "
            "self.features.exists(f, !has(f.source) || f.source == 'request')",
            message="list at least one feature with source request: the window counts requests",
            check=lambda s: (
                not s.features or any(f.source == FeatureSource.REQUEST for f in s.features)
            ),
            field_path=".features",
            reason="FieldValueInvalid",
        ),
        CelRule(
            rule="!has(self.features) || "
            "self.features.filter(f, has(f.source) && f.source == 'response').size() <= 1",
            message="at most one feature has source response: a response has one answer per "
            "instance",
            check=lambda s: sum(f.source == FeatureSource.RESPONSE for f in s.features) <= 1,
            field_path=".features",
            reason="FieldValueInvalid",
        ),
        CelRule(
            rule="!has(self.features) || !self.features.exists(f, f.type == 'text') || "
            "self.metrics.exists(m, m.name == 'embeddingDrift')",
            message="a text feature is compared by metric embeddingDrift: add it to metrics "
            "(threshold 0.7 is a good start)",
            check=lambda s: (
                not any(f.type == FeatureType.TEXT for f in s.features)
                or any(m.name == DriftMetricName.EMBEDDING_DRIFT for m in s.metrics)
            ),
            field_path=".metrics",
            reason="FieldValueRequired",
        ),
    )


class DriftMonitorPhase(StrEnum):
    PENDING = "Pending"
    MONITORING = "Monitoring"
    DRIFTED = "Drifted"
    DEGRADED = "Degraded"  # model quality past a threshold (ground truth)
    FAILED = "Failed"


class FeatureScore(StatusPart):
    feature: str = Field(max_length=256, description="Feature name.")
    metric: str = Field(max_length=64, description="Metric name.")
    value: float = Field(description="Latest value.")
    threshold: float = Field(description="Threshold it is compared with.")
    crossed: bool = Field(description="Whether the value is past the threshold.")


class QualityScore(StatusPart):
    metric: str = Field(max_length=64, description="Quality metric.")
    value: float = Field(description="Latest value.")
    threshold: float = Field(description="Threshold it is compared with.")
    crossed: bool = Field(description="Whether the value is past the threshold.")


class QualityStatus(StatusPart):
    """Model quality from ground truth, as the drift service last scored it."""

    labels: int = Field(description="Labelled predictions in the window.")
    min_labels: int = Field(description="Labels needed for a verdict.")
    pending: int = Field(description="Logged predictions still waiting for their label.")
    scores: list[QualityScore] = Field(
        default_factory=list, max_length=6, description="Latest value per metric."
    )
    received: dict[str, int] = Field(
        default_factory=dict,
        description="Labels received, by result: accepted, replaced (a later label for the "
        "same prediction: the last wins), unknown_id, expired, invalid_label.",
    )
    last_evaluation: Timestamp | None = Field(default=None, description="When it was scored.")


class AnomalousRequest(StatusPart):
    score: float = Field(description="Anomaly score, 0 to 1 (1: a value the reference lacks).")
    reasons: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=16, description="What is strange about it."
    )
    request: str = Field(max_length=600, description="The request's features, as JSON.")
    id: str | None = Field(
        default=None, max_length=256, description="The inference's id (its ce-id)."
    )
    instance: int | None = Field(
        default=None, ge=0, description="Which instance of that request it is (from 0)."
    )


class AnomalyStatus(StatusPart):
    """The window's anomalous requests, as the drift service last scored them."""

    rate: float = Field(description="Share of the window's requests that are anomalous.")
    threshold: float = Field(description="The rate's threshold.")
    rows: int = Field(description="Requests scored.")
    top: list[AnomalousRequest] = Field(
        default_factory=list, max_length=50, description="The strangest, strangest first."
    )


class ActionRecord(StatusPart):
    time: Timestamp = Field(description="When the action was taken.")
    type: str = Field(max_length=32, description="alert, retrain or rollback.")
    target: str | None = Field(default=None, max_length=253, description="Object acted on.")
    reason: str = Field(max_length=1024, description="Why.")


class DriftMonitorStatus(ResourceStatus):
    """The observed state of the monitor."""

    phase: DriftMonitorPhase | None = Field(default=None, description="Lifecycle phase.")
    last_evaluation: Timestamp | None = Field(default=None, description="Latest evaluation.")
    scores: list[FeatureScore] = Field(
        default_factory=list, max_length=4096, description="Latest score per feature and metric."
    )
    actions: list[ActionRecord] = Field(
        default_factory=list, max_length=100, description="Actions taken, newest last."
    )
    reference_uri: str | None = Field(
        default=None, max_length=2048, description="The reference dataset in use."
    )
    window_rows: int | None = Field(default=None, description="Rows in the sliding window.")
    payloads: dict[str, int] | None = Field(
        default=None, description="Payloads received by the drift service, by result."
    )
    service: str | None = Field(
        default=None, max_length=2048, description="URL of the drift service (logger target)."
    )
    quality: QualityStatus | None = Field(
        default=None, description="Model quality from ground truth (spec.groundTruth)."
    )
    anomalies: AnomalyStatus | None = Field(
        default=None, description="Anomalous requests in the window (spec.anomalies)."
    )


DRIFTMONITOR = KindInfo(
    kind="DriftMonitor",
    plural="driftmonitors",
    short_names=("dm",),
    spec_model=DriftMonitorSpec,
    status_model=DriftMonitorStatus,
    description="Drift, bias and anomaly monitoring of a ModelServer's traffic, with actions.",
    printer_columns=(
        {"name": "Target", "type": "string", "jsonPath": ".spec.target.modelServer"},
        {
            "name": "Drift",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="DriftDetected")].status',
        },
        {
            "name": "Quality",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="QualityDegraded")].reason',
        },
    ),
    name_rule=NameRule(
        36,
        "so that its drift service (<name>-drift) and the FineTuneJobs it starts to retrain "
        "(<name>-retrain-<n>, themselves at most 48) fit",
        dns1035=True,
    ),
    health=(
        PhaseHealth("Monitoring", "Healthy", "Monitoring"),
        PhaseHealth("Drifted", "Degraded", "Drift detected"),
        PhaseHealth("Degraded", "Degraded", "Model quality below its threshold"),
        PhaseHealth("Failed", "Degraded", "Failed"),
    ),
)
