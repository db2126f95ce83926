"""Reading what the drift service and the target say (pure): the reference to compare with,
and the service's status as status fields and conditions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubeforge_crds import ConditionStatus
from kubeforge_crds.driftmonitor import (
    REGRESSION_METRICS,
    AnomalousRequest,
    AnomalyStatus,
    DriftMonitorSpec,
    FeatureScore,
    QualityScore,
    QualityStatus,
    ReferenceSource,
)
from kubeforge_operator.driftmonitor.conditions import (
    ANOMALIES_DETECTED,
    BIAS_DETECTED,
    DRIFT_DETECTED,
    QUALITY_DEGRADED,
    REFERENCE_RESOLVED,
)
from kubeforge_operator.runtime.conditions import Observation


@dataclass(frozen=True)
class Reading:
    """What the drift service's status says, as status fields and conditions."""

    fields: dict[str, Any]
    drift: Observation
    bias: Observation
    crossed: list[str]  # "feature metric value > threshold" of every crossed check
    quality: Observation = field(
        default_factory=lambda: Observation(
            QUALITY_DEGRADED, ConditionStatus.FALSE, "NotConfigured", NO_GROUND_TRUTH
        )
    )
    anomalies: Observation = field(
        default_factory=lambda: Observation(
            ANOMALIES_DETECTED, ConditionStatus.FALSE, "NotConfigured", NO_ANOMALIES
        )
    )

    @property
    def degraded(self) -> bool:
        return self.quality.status == ConditionStatus.TRUE

    @property
    def retrain_worthy(self) -> bool:
        """Drift, bias or degraded quality: what retraining can answer (a surge of strange
        requests is for people and the rollback to look at, not for new training data)."""
        return any(o.status == ConditionStatus.TRUE for o in (self.drift, self.bias, self.quality))

    @property
    def detected(self) -> bool:
        return self.retrain_worthy or self.anomalies.status == ConditionStatus.TRUE


NO_GROUND_TRUTH = "spec.groundTruth is not set"
NO_ANOMALIES = "spec.anomalies is not set"


def _anomalous(item: dict[str, Any]) -> AnomalousRequest:
    """One of the strangest requests, cut to what the status holds (the service cuts them too;
    a longer one must not stop the reconcile)."""
    return AnomalousRequest(
        score=float(item.get("score") or 0.0),
        reasons=[str(r)[:256] for r in (item.get("reasons") or [])[:16]],
        request=str(item.get("request") or "")[:600],
        id=str(item["id"])[:256] if item.get("id") else None,
        instance=item["instance"] if isinstance(item.get("instance"), int) else None,
    )


def read_anomalies(
    latest: dict[str, Any] | None, configured: bool, filling: str
) -> tuple[Observation, list[str], dict[str, Any] | None]:
    """The AnomaliesDetected condition, the crossed check and the status field, from the latest
    evaluation's ``anomalies``."""
    if not configured:
        return (
            Observation(ANOMALIES_DETECTED, ConditionStatus.FALSE, "NotConfigured", NO_ANOMALIES),
            [],
            None,
        )
    if latest is None:
        return (
            Observation(ANOMALIES_DETECTED, ConditionStatus.UNKNOWN, "WindowFilling", filling),
            [],
            None,
        )
    found = latest.get("anomalies")
    if found is None:
        return (
            Observation(
                ANOMALIES_DETECTED,
                ConditionStatus.UNKNOWN,
                "NotReported",
                "the drift service reported no anomaly scores (an image older than "
                "spec.anomalies?)",
            ),
            [],
            None,
        )
    status = AnomalyStatus(
        rate=found["rate"],
        threshold=found["threshold"],
        rows=found["rows"],
        top=[_anomalous(t) for t in (found.get("top") or [])[:50]],
    )
    share = f"{found['rate']:.1%} of the latest {found['rows']} requests are anomalous"
    if not found["detected"]:
        return (
            Observation(
                ANOMALIES_DETECTED,
                ConditionStatus.FALSE,
                "NoAnomalies",
                f"{share}, within {found['threshold']:.1%}",
            ),
            [],
            status.to_wire(),
        )
    strangest = "; ".join((found.get("top") or [{}])[0].get("reasons") or [])
    message = f"{share}, above {found['threshold']:.1%}" + (
        f"; the strangest: {strangest}" if strangest else ""
    )
    crossed = f"anomaly rate {found['rate']:.3g} > {found['threshold']:g}"
    return (
        Observation(ANOMALIES_DETECTED, ConditionStatus.TRUE, "AnomaliesDetected", message[:1024]),
        [crossed],
        status.to_wire(),
    )


def read_quality(body: dict[str, Any] | None, configured: bool) -> tuple[Observation, list[str]]:
    """The QualityDegraded condition from the service's ``groundTruth`` status, and the crossed
    checks; puts ``quality`` into ``fields``. Too few labels is no verdict (Unknown)."""
    if not configured:
        return Observation(
            QUALITY_DEGRADED, ConditionStatus.FALSE, "NotConfigured", NO_GROUND_TRUTH
        ), []
    latest = (body or {}).get("latest")
    if body is None or latest is None:
        labels = (body or {}).get("windowLabels", 0)
        return Observation(
            QUALITY_DEGRADED,
            ConditionStatus.UNKNOWN,
            "NotEvaluated",
            f"waiting for the drift service's first evaluation ({labels} labels so far)",
        ), []
    if not latest["sufficient"]:
        return Observation(
            QUALITY_DEGRADED,
            ConditionStatus.UNKNOWN,
            "InsufficientLabels",
            f"insufficient labels: {latest['labels']} labelled predictions in the window, "
            f"{latest['minLabels']} needed for a verdict ({body.get('pendingPredictions', 0)} "
            "predictions waiting for their label)",
        ), []
    crossed = [
        f"{s['metric']} {s['value']:.4g} {'>' if s['metric'] in REGRESSION_METRICS else '<'} "
        f"{s['threshold']:g}"
        for s in latest["scores"]
        if s["crossed"]
    ]
    if crossed:
        return Observation(
            QUALITY_DEGRADED, ConditionStatus.TRUE, "QualityDegraded", "; ".join(crossed)
        ), crossed
    return Observation(
        QUALITY_DEGRADED,
        ConditionStatus.FALSE,
        "QualityOK",
        f"every quality metric within its threshold over the latest {latest['labels']} "
        "labelled predictions",
    ), []


def quality_fields(body: dict[str, Any]) -> dict[str, Any]:
    latest = body.get("latest") or {}
    status = QualityStatus(
        labels=int(body.get("windowLabels") or 0),
        min_labels=int(latest.get("minLabels") or 0),
        pending=int(body.get("pendingPredictions") or 0),
        scores=[
            QualityScore(
                metric=s["metric"], value=s["value"], threshold=s["threshold"], crossed=s["crossed"]
            )
            for s in latest.get("scores") or []
            if s.get("value") is not None
        ],
        received={k: int(v) for k, v in (body.get("labels") or {}).items()},
        last_evaluation=datetime.fromtimestamp(latest["time"], UTC) if latest.get("time") else None,
    )
    return status.to_wire()


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(score: dict[str, Any]) -> str:
    side = "<" if score["metric"] in ("dir", "chiSquare") else ">"
    return (
        f"{score['feature']} {score['metric']} {score['value']:.4g} {side} {score['threshold']:g}"
    )


def read_service_status(
    body: dict[str, Any],
    bias_configured: bool,
    ground_truth_configured: bool = False,
    anomalies_configured: bool = False,
) -> Reading:
    """Drift, bias and (with spec.groundTruth and spec.anomalies) model quality and anomalous
    requests, as status fields and conditions."""
    reading = _read_drift(body, bias_configured)
    truth = body.get("groundTruth")
    quality, bad_answers = read_quality(truth, ground_truth_configured)
    fields = dict(reading.fields)
    # a section the spec no longer has leaves the status (None: removed by the status patch)
    fields["quality"] = (
        quality_fields(truth) if ground_truth_configured and truth is not None else None
    )
    anomalies, strange, anomaly_fields = read_anomalies(
        body.get("latest"), anomalies_configured, reading.drift.message
    )
    if anomaly_fields is not None or not anomalies_configured:
        fields["anomalies"] = anomaly_fields
    crossed = reading.crossed + bad_answers + strange
    return Reading(fields, reading.drift, reading.bias, crossed, quality, anomalies)


def _read_drift(body: dict[str, Any], bias_configured: bool) -> Reading:
    latest = body.get("latest")
    window = body.get("window") or {}
    fields: dict[str, Any] = {
        "windowRows": int(window.get("rows") or 0),
        "payloads": {k: int(v) for k, v in (body.get("payloads") or {}).items()},
    }
    no_bias = Observation(
        BIAS_DETECTED, ConditionStatus.FALSE, "NotConfigured", "spec.bias is not set"
    )
    if not latest:
        filling = Observation(
            DRIFT_DETECTED,
            ConditionStatus.UNKNOWN,
            "WindowFilling",
            f"collecting inferences: {fields['windowRows']} of {window.get('size')} in the window",
        )
        bias = (
            no_bias
            if not bias_configured
            else Observation(
                BIAS_DETECTED, ConditionStatus.UNKNOWN, "WindowFilling", filling.message
            )
        )
        return Reading(fields, filling, bias, [])
    scores = [s for s in latest.get("scores") or [] if s.get("value") is not None]
    fields["scores"] = [
        FeatureScore(
            feature=s["feature"],
            metric=s["metric"],
            value=s["value"],
            threshold=s["threshold"],
            crossed=s["crossed"],
        ).to_wire()
        for s in scores
    ]
    fields["lastEvaluation"] = _timestamp(latest["time"])
    drifted = [_describe(s) for s in scores if s["crossed"] and s["metric"] not in ("spd", "dir")]
    biased = [_describe(s) for s in scores if s["crossed"] and s["metric"] in ("spd", "dir")]
    rows = latest.get("rows")

    def obs(type_: str, crossed: list[str], yes: str, no: str) -> Observation:
        if crossed:
            more = f" (and {len(crossed) - 5} more)" if len(crossed) > 5 else ""
            return Observation(type_, ConditionStatus.TRUE, yes, "; ".join(crossed[:5]) + more)
        return Observation(
            type_,
            ConditionStatus.FALSE,
            no,
            f"every check within its threshold over the latest {rows} inferences",
        )

    drift = obs(DRIFT_DETECTED, drifted, "DriftDetected", "NoDrift")
    bias = obs(BIAS_DETECTED, biased, "BiasDetected", "NoBias") if bias_configured else no_bias
    return Reading(fields, drift, bias, drifted + biased)


def resolve_reference(
    spec: DriftMonitorSpec,
    model_server: dict[str, Any],
    ftj: dict[str, Any] | None,
    ftj_name: str | None,
) -> tuple[str, str | None] | Observation:
    """The reference URI (and the data connection Secret needed to read it)."""
    if spec.reference.source == ReferenceSource.URI:
        return str(spec.reference.uri), None
    ms_name = model_server["metadata"]["name"]
    if ftj_name is None:
        return Observation(
            REFERENCE_RESOLVED,
            ConditionStatus.FALSE,
            "NoTrainingData",
            f"ModelServer {ms_name} serves spec.model.uri, not a FineTuneJob's model, so there is "
            "no training data to compare with; set spec.reference.source to uri and "
            "spec.reference.uri",
        )
    if ftj is None:
        return Observation(
            REFERENCE_RESOLVED,
            ConditionStatus.FALSE,
            "FineTuneJobNotFound",
            f"FineTuneJob {ftj_name} (the source of ModelServer {ms_name}) does not exist",
        )
    status = ftj.get("status") or {}
    dataset = (ftj.get("spec") or {}).get("dataset") or {}
    uri = (status.get("lineage") or {}).get("datasetUri") or dataset.get("uri")
    if not uri:
        return Observation(
            REFERENCE_RESOLVED,
            ConditionStatus.FALSE,
            "NoTrainingData",
            f"FineTuneJob {ftj_name} names no dataset",
        )
    return str(uri), dataset.get("dataConnection")
