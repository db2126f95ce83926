"""The drift service's Prometheus metrics, in a registry of its own: drift and bias scores,
the window, payloads, anomalies, and the model's quality from ground truth."""

from __future__ import annotations

import contextlib
import math

from prometheus_client import CollectorRegistry, Counter, Gauge

from kubeforge_crds.contracts.drift import MonitorConfig
from kubeforge_runtimes.drift.groundtruth import RESULTS, Quality
from kubeforge_runtimes.drift.monitor import Evaluation


class Metrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self, config: MonitorConfig) -> None:
        self.registry = CollectorRegistry()
        self.base = {"namespace": config.namespace, "monitor": config.name}
        labels = ["namespace", "monitor"]
        per_score = [*labels, "feature", "metric"]
        self.score = Gauge(
            "kubeforge_drift_score",
            "Latest score of a feature for a metric.",
            per_score,
            registry=self.registry,
        )
        self.threshold = Gauge(
            "kubeforge_drift_threshold",
            "The metric's threshold.",
            per_score,
            registry=self.registry,
        )
        self.detected = Gauge(
            "kubeforge_drift_detected",
            "1 when the latest score is past its threshold.",
            per_score,
            registry=self.registry,
        )
        self.rows = Gauge(
            "kubeforge_drift_window_rows",
            "Rows in the sliding window.",
            labels,
            registry=self.registry,
        )
        self.last = Gauge(
            "kubeforge_drift_last_evaluation_timestamp_seconds",
            "Time of the latest evaluation.",
            labels,
            registry=self.registry,
        )
        self.payloads = Counter(
            "kubeforge_drift_payloads",
            "Payloads received, by result (ok, malformed, not_ready).",
            [*labels, "result"],
            registry=self.registry,
        )
        self.malformed = Counter(
            "kubeforge_drift_malformed_payloads",
            "Malformed payloads by reason.",
            [*labels, "reason"],
            registry=self.registry,
        )
        self.reference_ready = Gauge(
            "kubeforge_drift_reference_ready",
            "1 when the reference was loaded.",
            labels,
            registry=self.registry,
        )
        for result in ("ok", "malformed", "not_ready"):
            self.payloads.labels(**self.base, result=result)
        self._quality_metrics(labels, config)
        self._anomaly_metrics(labels)

    def _anomaly_metrics(self, labels: list[str]) -> None:
        self.anomaly_rate = Gauge(
            "kubeforge_anomaly_rate",
            "Share of the window's requests stranger than the reference's anomaly cut-off.",
            labels,
            registry=self.registry,
        )
        self.anomaly_threshold = Gauge(
            "kubeforge_anomaly_rate_threshold",
            "The anomaly rate's threshold.",
            labels,
            registry=self.registry,
        )
        self.anomaly_detected = Gauge(
            "kubeforge_anomaly_detected",
            "1 when the anomaly rate is above its threshold.",
            labels,
            registry=self.registry,
        )

    def _quality_metrics(self, labels: list[str], config: MonitorConfig) -> None:
        """The model's quality from ground truth, and the labels received."""
        self.quality = Gauge(
            "kubeforge_model_quality",
            "Latest quality of the model's predictions against their ground truth (accuracy, "
            "precision, recall, f1, mae, rmse); absent while too few labels arrived.",
            [*labels, "metric"],
            registry=self.registry,
        )
        self.quality_threshold = Gauge(
            "kubeforge_model_quality_threshold",
            "The quality metric's threshold.",
            [*labels, "metric"],
            registry=self.registry,
        )
        self.quality_degraded = Gauge(
            "kubeforge_model_quality_degraded",
            "1 when the quality metric is past its threshold (a score below, an error above).",
            [*labels, "metric"],
            registry=self.registry,
        )
        self.labelled = Gauge(
            "kubeforge_ground_truth_window_labels",
            "Labelled predictions in the quality window.",
            labels,
            registry=self.registry,
        )
        self.labels_received = Counter(
            "kubeforge_ground_truth_labels",
            "Ground-truth labels received, by result (accepted, replaced, unknown_id, expired, "
            "invalid_label).",
            [*labels, "result"],
            registry=self.registry,
        )
        self.quality_metrics = list(config.ground_truth.metrics) if config.ground_truth else []
        if config.ground_truth:
            for result in RESULTS:
                self.labels_received.labels(**self.base, result=result)

    def record(self, evaluation: Evaluation) -> None:
        for s in evaluation.scores:
            labels = {**self.base, "feature": s.feature, "metric": s.metric}
            self.score.labels(**labels).set(s.value)
            self.threshold.labels(**labels).set(s.threshold)
            self.detected.labels(**labels).set(1.0 if s.crossed else 0.0)
        self.last.labels(**self.base).set(evaluation.time)
        found = evaluation.anomalies
        if found is not None:
            self.anomaly_rate.labels(**self.base).set(found.rate)
            self.anomaly_threshold.labels(**self.base).set(found.threshold)
            self.anomaly_detected.labels(**self.base).set(1.0 if found.detected else 0.0)

    def record_quality(self, quality: Quality) -> None:
        """The scored metrics' series; a metric with no verdict now (too few labels, or
        undefined: NaN) loses its series, so nothing alerts on it. Series are set before stale
        ones go, so a scrape never sees a gap."""
        self.labelled.labels(**self.base).set(quality.labels)
        scored = {s.metric for s in quality.scores if math.isfinite(s.value)}
        for s in quality.scores:
            if s.metric in scored:
                labels = {**self.base, "metric": s.metric}
                self.quality.labels(**labels).set(s.value)
                self.quality_threshold.labels(**labels).set(s.threshold)
                self.quality_degraded.labels(**labels).set(1.0 if s.crossed else 0.0)
        for metric in set(self.quality_metrics) - scored:
            for gauge in (self.quality, self.quality_threshold, self.quality_degraded):
                with contextlib.suppress(KeyError):
                    gauge.remove(self.base["namespace"], self.base["monitor"], metric)
