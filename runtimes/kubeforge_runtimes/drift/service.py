"""The drift service (``python -m kubeforge_runtimes drift serve``): one per DriftMonitor.

- ``POST /`` takes the CloudEvents KServe's logger sends (the InferenceService's
  ``spec.predictor.logger.url`` points here); a payload it cannot read is answered 400 with the
  reason, counted in ``kubeforge_drift_payloads_total{result="malformed"}`` and listed in the
  status, never raised.
- every ``intervalSeconds`` the full window is scored against the reference; the scores are
  Prometheus gauges on ``/metrics`` and JSON on ``/status`` (``POST /evaluate`` scores now).
- ``GET /report`` is the HTML report of the window against the reference; ``POST /report`` takes a
  reference and a current file (multipart) and returns their report.

It holds nothing it cannot rebuild: the reference is re-read at start, the window refills."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from kubeforge_crds.contracts.drift import MonitorConfig
from kubeforge_runtimes.drift.anomaly import AnomalyModel
from kubeforge_runtimes.drift.groundtruth import GroundTruth, LabelError
from kubeforge_runtimes.drift.metrics import Metrics
from kubeforge_runtimes.drift.monitor import Evaluation, Monitor
from kubeforge_runtimes.drift.payloads import PayloadError, parse_event, response_outputs
from kubeforge_runtimes.drift.reference import (
    ReferenceError,
    check_columns,
    infer_features,
    read_table,
    summarise,
)

log = logging.getLogger(__name__)
RECENT_ERRORS = 10


class DriftService:
    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.metrics = Metrics(config)
        self.monitor: Monitor | None = None
        truth = config.ground_truth
        self.ground_truth = GroundTruth(truth) if truth else None
        self._evaluating = threading.Lock()
        self.error: str | None = None
        self.skipped_columns: list[str] = []
        self.errors: deque[dict[str, Any]] = deque(maxlen=RECENT_ERRORS)
        self.counts = {"ok": 0, "malformed": 0, "not_ready": 0}

    def load(self) -> None:
        """Read and summarise the reference; on failure the service reports why and is not
        ready (it does not exit, so the reason stays visible in its status)."""
        try:
            frame = read_table(self.config.reference_uri, self.config.reference_format)
            features = list(self.config.features)
            if not features:
                features, self.skipped_columns = infer_features(frame)
                if not features:
                    raise ReferenceError(
                        f"the reference {self.config.reference_uri} has no column usable as a "
                        "feature; list spec.features"
                    )
            check_columns(frame, features, self.config.reference_uri)
            bias = self.config.bias
            if bias and bias.protected_attribute not in frame.columns:
                raise ReferenceError(
                    f"the protected attribute {bias.protected_attribute!r} is not a column of "
                    f"the reference (its columns: {', '.join(map(str, frame.columns))})"
                )
            anomalies = self.config.anomalies
            asked = [f for f in features if f.source == "request"]  # anomalies are requests'
            model = AnomalyModel(anomalies, asked, frame) if anomalies and asked else None
            self.monitor = Monitor(self.config, features, summarise(frame, features), model)
            self.error = None
            self.metrics.reference_ready.labels(**self.metrics.base).set(1)
            log.info("reference loaded: %d rows, %d features", len(frame), len(features))
        except (ReferenceError, ValueError, OSError) as err:
            # a reference too small for the anomaly model or with no texts (ValueError), the
            # embedding model's files (OSError): said in the status, not a crash loop
            self.error = str(err)
            self.metrics.reference_ready.labels(**self.metrics.base).set(0)
            log.error("reference not usable: %s", err)

    def ingest(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Handle one CloudEvent: (HTTP status, response body)."""
        monitor = self.monitor
        if monitor is None:
            self._count("not_ready")
            return 503, {"error": f"not ready: {self.error or 'the reference is loading'}"}
        try:
            event = parse_event(headers, body)
            if event.kind == "request":
                n = monitor.add_request(event.id, event.body, len(body))
            else:
                outputs = response_outputs(event.body)
                if self.ground_truth is not None:  # first: a bias join may refuse the response
                    self.ground_truth.record_predictions(event.id, outputs)
                n = monitor.add_response(event.id, outputs)
        except PayloadError as err:
            self._count("malformed")
            self.metrics.malformed.labels(**self.metrics.base, reason=err.reason).inc()
            self.errors.append({"time": time.time(), "reason": err.reason, "message": str(err)})
            return 400, {"error": str(err), "reason": err.reason}
        self._count("ok")
        self.metrics.rows.labels(**self.metrics.base).set(monitor.rows())
        return 202, {"accepted": n}

    def _count(self, result: str) -> None:
        self.counts[result] += 1
        self.metrics.payloads.labels(**self.metrics.base, result=result).inc()

    def evaluate(self, force: bool = False) -> Evaluation | None:
        """Score the drift window (once full, or now with ``force``) and the labelled
        predictions."""
        if self.monitor is None:
            return None
        with self._evaluating:  # the periodic loop and POST /evaluate, one at a time
            if self.ground_truth is not None:
                self.metrics.record_quality(self.ground_truth.evaluate())
            evaluation = self.monitor.evaluate(force=force)
            if evaluation is not None:
                self.metrics.record(evaluation)
            return evaluation

    def add_labels(self, items: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        """Ground truth for logged predictions (``POST /groundtruth``): each item joined or
        refused with its reason. 200 when any was taken, 422 when none was."""
        truth = self.ground_truth
        if truth is None:
            return 409, {
                "error": "this monitor takes no ground truth: set spec.groundTruth on the "
                "DriftMonitor (the task and the quality metrics)"
            }
        results = dict.fromkeys(("accepted", "replaced"), 0)
        rejected: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            label = item["labels"] if item.get("labels") is not None else item.get("label")
            try:
                results[truth.add_label(item["id"], label, item.get("index"))] += 1
            except LabelError as err:
                rejected.append(
                    {"item": i, "id": item["id"], "reason": err.reason, "message": str(err)}
                )
                self.metrics.labels_received.labels(**self.metrics.base, result=err.reason).inc()
        for result, n in results.items():
            self.metrics.labels_received.labels(**self.metrics.base, result=result).inc(n)
        body = {**results, "rejected": rejected, "windowLabels": truth.labelled()}
        return (200 if results["accepted"] + results["replaced"] else 422), body

    def export(self, name: str) -> dict[str, Any]:
        """Write the reference (the training data) followed by the live window's requests as one
        JSONL dataset, ``<export_dir>/<name>.jsonl``: the data a retraining run learns the new
        traffic from. Live rows keep the reference's columns they have (a client does not send
        ids or labels); other fields are dropped. Returns where it went and what it holds."""
        monitor = self.monitor
        if monitor is None:
            raise ExportError(503, f"not ready: {self.error or 'the reference is loading'}")
        if not self.config.export_dir or not self.config.export_uri:
            raise ExportError(
                501, "no export location: set spec.actions.retrain.exportUri on the DriftMonitor"
            )
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
            raise ExportError(422, f"name {name!r} is not a DNS-1123 name")
        live = monitor.live_rows()
        if not live:
            raise ExportError(409, "the window is empty: no inference has been received yet")
        frame = read_table(self.config.reference_uri, self.config.reference_format)
        columns = [str(c) for c in frame.columns]
        target = Path(self.config.export_dir) / f"{name}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        partial = target.with_suffix(".jsonl.partial")
        with partial.open("w", encoding="utf-8") as out:
            for line in frame.to_json(orient="records", lines=True).splitlines():
                out.write(line + "\n")
                digest.update(line.encode() + b"\n")
            for row in live:
                line = json.dumps({c: row[c] for c in columns if c in row})
                out.write(line + "\n")
                digest.update(line.encode() + b"\n")
        partial.replace(target)  # readers never see half a dataset
        return {
            "uri": f"{self.config.export_uri.rstrip('/')}/{name}.jsonl",
            "referenceRows": len(frame),
            "liveRows": len(live),
            "sha256": digest.hexdigest(),
        }

    def status(self) -> dict[str, Any]:
        monitor = self.monitor
        latest = monitor.history[-1] if monitor and monitor.history else None
        return {
            "namespace": self.config.namespace,
            "monitor": self.config.name,
            "ready": monitor is not None,
            "error": self.error,
            "reference": {
                "uri": self.config.reference_uri,
                "rows": monitor.summary.rows if monitor else None,
                "skippedColumns": self.skipped_columns,
            },
            "features": [f.model_dump() for f in monitor.features] if monitor else [],
            "window": {
                "size": self.config.window_size,
                "rows": monitor.rows() if monitor else 0,
                "biasPairs": len(monitor.bias_pairs) if monitor else 0,
            },
            "payloads": dict(self.counts),
            "recentErrors": list(self.errors),
            "latest": latest.to_json() if latest else None,
            "groundTruth": self._ground_truth_status(),
        }

    def history(self) -> dict[str, Any]:
        """Every evaluation the monitor keeps (``spec.window``'s history: time, rows, whether
        drift or bias was found, each score against its threshold) and every scoring of the
        ground truth's window, oldest first: what the portal draws over time."""
        monitor, truth = self.monitor, self.ground_truth
        drift = [
            {k: v for k, v in e.to_json().items() if k != "anomalies"}
            for e in (monitor.history if monitor else [])
        ]
        quality = [q.to_json() for q in (truth.history if truth else [])]
        return {"drift": drift, "quality": quality}

    def _ground_truth_status(self) -> dict[str, Any] | None:
        truth = self.ground_truth
        if truth is None:
            return None
        return {
            "task": truth.config.task,
            "pendingPredictions": truth.pending(),
            "windowLabels": truth.labelled(),
            "labels": dict(truth.counts),
            "latest": truth.latest.to_json() if truth.latest else None,
        }


class ExportError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value
