"""One monitor's state: the sliding window of live feature rows (and of protected attribute and
outcome pairs, joined from request and response events by their CloudEvent id), and the
evaluation of that window against the reference summary. No I/O here; the service feeds it."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kubeforge_crds.contracts.drift import (
    BIAS_METRICS,
    CATEGORICAL_METRICS,
    NUMERIC_METRICS,
    TEXT_METRICS,
    FeatureConfig,
    MonitorConfig,
)
from kubeforge_runtimes.drift import stats, text
from kubeforge_runtimes.drift.anomaly import AnomalyModel, AnomalyResult
from kubeforge_runtimes.drift.kept import KeptRequests
from kubeforge_runtimes.drift.payloads import PayloadError, request_rows
from kubeforge_runtimes.drift.reference import Summary

PENDING_LIMIT = 10_000  # request/response halves waiting for their other half


@dataclass(frozen=True)
class Score:
    feature: str
    metric: str
    value: float
    threshold: float
    crossed: bool


@dataclass(frozen=True)
class Evaluation:
    time: float
    rows: int
    scores: list[Score]
    anomalies: AnomalyResult | None = None

    @property
    def drift(self) -> bool:
        return any(s.crossed for s in self.scores if s.metric not in BIAS_METRICS)

    @property
    def bias(self) -> bool:
        return any(s.crossed for s in self.scores if s.metric in BIAS_METRICS)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "rows": self.rows,
            "driftDetected": self.drift,
            "biasDetected": self.bias,
            "scores": [
                {**asdict(s), "value": None if math.isnan(s.value) else s.value}
                for s in self.scores
            ],
            "anomalies": self.anomalies.to_json() if self.anomalies else None,
        }


def _label(value: Any) -> str:
    """Outcome and category values as text; 1.0 and 1 are the same class."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(feature: str, value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError("bad_value", f"feature {feature!r}: {value!r} is not a number")
    return float(value)


def _bounded(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """A request row as the window keeps it: strings cut to ``text.MAX_TEXT_CHARS`` (the
    window's memory stays bounded whatever clients send)."""
    if not any(isinstance(v, str) and len(v) > text.MAX_TEXT_CHARS for v in row.values()):
        return row
    return {k: v[: text.MAX_TEXT_CHARS] if isinstance(v, str) else v for k, v in row.items()}


@dataclass
class Window:
    """The latest ``size`` values of each feature."""

    features: list[FeatureConfig]
    size: int
    columns: dict[str, deque[Any]] = field(default_factory=dict)
    request_features: list[FeatureConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.columns = {f.name: deque(maxlen=self.size) for f in self.features}
        self.request_features = [f for f in self.features if f.source == "request"]

    def add(
        self, rows: Sequence[Mapping[str, Any]], features: Sequence[FeatureConfig] | None = None
    ) -> None:
        """Append rows of ``features`` (the window's request features by default), all or
        none: a payload with one bad row is rejected whole."""
        features = self.request_features if features is None else features
        checked: list[list[Any]] = []
        for i, row in enumerate(rows):
            values: list[float | str] = []
            for f in features:
                if f.name not in row:
                    raise PayloadError(
                        "missing_feature",
                        f"row {i} has no feature {f.name!r} (has: {', '.join(map(str, row))})",
                    )
                raw = row[f.name]
                if f.type == "numeric":
                    values.append(_number(f.name, raw))
                elif f.type == "text":
                    values.append(text.kept(raw, f.name))
                else:
                    values.append(_label(raw))
            checked.append(values)
        for values in checked:
            for f, v in zip(features, values, strict=True):
                self.columns[f.name].append(v)

    def __len__(self) -> int:
        return window_rows(self.features, self.columns)


def window_rows(features: Sequence[FeatureConfig], columns: Mapping[str, Sequence[Any]]) -> int:
    """Rows in the window: counted on the request features (an answer feature fills only when
    the logger sends responses too), on the answer's when it is the only feature."""
    counted = [f.name for f in features if f.source == "request"] or list(columns)
    return min((len(columns[n]) for n in counted), default=0)


class Monitor:
    """Thread-safe: the service adds rows from request handlers and evaluates in a worker."""

    def __init__(
        self,
        config: MonitorConfig,
        features: list[FeatureConfig],
        summary: Summary,
        anomaly_model: AnomalyModel | None = None,
    ):
        self.config = config
        self.anomaly_model = anomaly_model
        self.features = features
        self.summary = summary
        self.window = Window(features, config.window_size)
        # the window's requests as the client sent them (every field, not only the features):
        # what a retraining run is given as live data (POST /export)
        self.raw: deque[Mapping[str, Any]] = deque(maxlen=config.window_size)
        self.raw_ids: deque[tuple[str, int]] = deque(maxlen=config.window_size)
        # the window's request bodies by inference id, to explain one later (GET /requests/{id})
        self.requests = KeptRequests(config.window_size)
        bias = config.bias
        self.bias_pairs: deque[tuple[str, str]] = deque(maxlen=config.window_size)
        self._pending: OrderedDict[str, tuple[str, list[Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self.history: deque[Evaluation] = deque(maxlen=config.history)
        self._protected = bias.protected_attribute if bias else None
        # the features a request carries; the answer's (at most one) comes with the response
        self._feature_names = [f.name for f in features if f.source == "request"]
        self._answer = next((f for f in features if f.source == "response"), None)

    # -- ingestion --------------------------------------------------------------------------

    def add_request(self, event_id: str, body: Mapping[str, Any], size: int = 0) -> int:
        """A request's feature rows into the window; its body kept by ``event_id`` while the
        window holds rows of it (``kept.KeptRequests``). ``size``: the body's bytes."""
        names = self._feature_names
        if self._protected and self._protected not in names:
            names = [*names, self._protected]
        rows = request_rows(body, names)
        with self._lock:
            self.window.add(rows)
            self.raw.extend(map(_bounded, rows))
            self.raw_ids.extend((event_id, i) for i in range(len(rows)))
            self.requests.add(event_id, body, len(rows), size)
            if self._protected:
                protected = [_label(r.get(self._protected)) for r in rows]
                self._join(event_id, "request", protected)
        return len(rows)

    def add_response(self, event_id: str, predictions: Sequence[Any]) -> int:
        """A response's predictions (``payloads.response_outputs``): the answer feature's
        values (a feature with source response), and joined with its request's protected
        attribute (first: an answer the window refuses must not strand its request's half)."""
        outputs = [_label(v) for v in predictions]
        if self._protected:
            with self._lock:
                self._join(event_id, "response", outputs)
        if self._answer is not None:
            rows = [{self._answer.name: v} for v in predictions]
            with self._lock:
                self.window.add(rows, [self._answer])
        return len(outputs)

    def _join(self, event_id: str, half: str, values: list[Any]) -> None:
        other = self._pending.pop(event_id, None)
        if other is None:
            self._pending[event_id] = (half, values)
            while len(self._pending) > PENDING_LIMIT:
                self._pending.popitem(last=False)
            return
        if other[0] == half:  # the same half twice: keep the newer
            self._pending[event_id] = (half, values)
            return
        protected, outcomes = (values, other[1]) if half == "request" else (other[1], values)
        if len(protected) != len(outcomes):
            raise PayloadError(
                "shape_mismatch",
                f"event {event_id}: {len(protected)} instances but {len(outcomes)} predictions",
            )
        self.bias_pairs.extend(zip(protected, outcomes, strict=True))

    # -- evaluation ---------------------------------------------------------------------------

    def snapshot(self) -> tuple[dict[str, list[Any]], list[tuple[str, str]]]:
        with self._lock:
            return (
                {name: list(col) for name, col in self.window.columns.items()},
                list(self.bias_pairs),
            )

    def rows(self) -> int:
        with self._lock:
            return len(self.window)

    def live_rows(self) -> list[Mapping[str, Any]]:
        with self._lock:
            return list(self.raw)

    def rows_with_ids(self) -> tuple[list[Mapping[str, Any]], list[tuple[str, int]]]:
        with self._lock:
            return list(self.raw), list(self.raw_ids)

    def request(self, event_id: str) -> Mapping[str, Any] | None:
        """The body of a request still in the window, as the client sent it."""
        with self._lock:
            return self.requests.get(event_id)

    def scored_features(
        self, columns: Mapping[str, Sequence[Any]], force: bool
    ) -> list[FeatureConfig]:
        """The features to score: every request feature; the answer's once its column is as
        full as the window (with ``force``, once it has any value), so that the first few
        answers are not judged against the whole reference."""
        least = 1 if force else self.config.window_size
        return [f for f in self.features if f.source == "request" or len(columns[f.name]) >= least]

    def evaluate(self, now: float | None = None, force: bool = False) -> Evaluation | None:
        """Scores of the window, or None while it is not yet full (unless ``force``)."""
        columns, pairs = self.snapshot()
        rows = window_rows(self.features, columns)
        if rows == 0 or (rows < self.config.window_size and not force):
            return None
        model = self.anomaly_model
        evaluation = Evaluation(
            time=now if now is not None else time.time(),
            rows=rows,
            scores=score_columns(
                self.config, self.scored_features(columns, force), self.summary, columns, pairs
            ),
            anomalies=model.evaluate(*self.rows_with_ids()) if model else None,
        )
        self.history.append(evaluation)
        return evaluation


def score_columns(
    config: MonitorConfig,
    features: list[FeatureConfig],
    summary: Summary,
    columns: Mapping[str, Sequence[Any]],
    pairs: Sequence[tuple[str, str]] = (),
) -> list[Score]:
    """Every configured metric for every feature it applies to (pure)."""
    thresholds = config.metrics
    numeric_wanted = [m for m in NUMERIC_METRICS if m in thresholds]
    categorical_wanted = [m for m in CATEGORICAL_METRICS if m in thresholds]
    scores: list[Score] = []
    text_wanted = [m for m in TEXT_METRICS if m in thresholds]
    for f in features:
        values = columns[f.name]
        if not values:  # an answer feature while the logger sends no responses
            continue
        if f.type == "text":
            got = (
                {"embeddingDrift": text.embedding_drift(summary.text[f.name], values).auc}
                if text_wanted
                else {}
            )
        elif f.type == "numeric":
            got = stats.numeric_scores(
                summary.numeric[f.name], np.asarray(values, dtype=np.float64), numeric_wanted
            )
        else:
            got = stats.categorical_scores(summary.categorical[f.name], values, categorical_wanted)
        for metric, value in got.items():
            t = thresholds[metric]
            scores.append(Score(f.name, metric, value, t, stats.crossed(metric, value, t)))
    bias = config.bias
    if bias and any(m in thresholds for m in BIAS_METRICS):
        got = stats.bias_scores(
            [p for p, _ in pairs],
            [o for _, o in pairs],
            bias.privileged_values,
            bias.favourable_outcome,
        )
        for metric in BIAS_METRICS:
            if metric in thresholds:
                t = thresholds[metric]
                value = got[metric]
                scores.append(
                    Score(
                        bias.protected_attribute, metric, value, t, stats.crossed(metric, value, t)
                    )
                )
    return scores
