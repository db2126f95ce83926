"""Model quality from delayed ground truth: the predictions KServe's logger reported, kept by
their inference id (the CloudEvent ``ce-id`` of the request and its response) until the true
outcome arrives (``POST /groundtruth``), joined into a window of (prediction, label) pairs and
scored with scikit-learn's metrics: accuracy, precision, recall, F1 for a classifier, MAE and
RMSE for a regressor.

Rules a client can rely on (docs/drift.md says them too):

- a label is for one prediction: ``{"id": <ce-id>, "label": y}`` for a request of one
  instance, ``"index": i`` for instance i of a batch, or ``"labels": [...]`` for all of them;
- a second label for the same prediction replaces the first (**last wins**: a correction), and
  is counted as ``replaced``;
- a label for an id never logged, or logged longer ago than the retention, is counted
  (``unknown_id`` / ``expired``) and answered, never dropped silently;
- a label whose type does not fit the task (a class for a regressor, a number with a fraction
  for a classifier) is refused (``invalid_label``) with the reason.

No I/O here; the service feeds it and exports what it computes."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kubeforge_crds.contracts.drift import GroundTruthConfig, quality_crossed

EXPIRED_MEMORY = 10_000  # ids recently expired, so that a late label is told "expired"
RESULTS = ("accepted", "replaced", "unknown_id", "expired", "invalid_label")


class LabelError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class QualityScore:
    metric: str
    value: float
    threshold: float
    crossed: bool


@dataclass(frozen=True)
class Quality:
    """One scoring of the labelled window."""

    time: float
    labels: int
    min_labels: int
    scores: list[QualityScore] = field(default_factory=list)

    @property
    def sufficient(self) -> bool:
        return self.labels >= self.min_labels

    @property
    def degraded(self) -> bool:
        return any(s.crossed for s in self.scores)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "labels": self.labels,
            "minLabels": self.min_labels,
            "sufficient": self.sufficient,
            "degraded": self.degraded,
            "scores": [
                {
                    "metric": s.metric,
                    "value": s.value,
                    "threshold": s.threshold,
                    "crossed": s.crossed,
                }
                for s in self.scores
            ],
        }


def as_class(value: Any) -> str:
    """A class label as text, the same for a label and a prediction whatever JSON type either
    came in: 1, 1.0, "1" and "1.0" are one class, True, "true" and "True" another; refuses what
    is not a class."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.lower() in ("true", "false"):
            return text.lower()
        try:
            number = float(text)
        except ValueError:
            return text
        return str(int(number)) if number.is_integer() else text
    raise LabelError(
        "invalid_label",
        f"{value!r} is not a class: a classifier's label is a string, an integer or a boolean",
    )


def as_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LabelError(
            "invalid_label", f"{value!r} is not a finite number: a regressor's label is a number"
        )
    return float(value)


def score_pairs(
    config: GroundTruthConfig, predictions: Sequence[Any], labels: Sequence[Any]
) -> list[QualityScore]:
    """The configured metrics of (prediction, label) pairs, with scikit-learn's definitions."""
    from sklearn import metrics as skm

    values: dict[str, float] = {}
    if config.task == "classification":
        values["accuracy"] = float(skm.accuracy_score(labels, predictions))
        # a metric with nothing to count (no positive label or prediction in the window) is
        # undefined, not 0: NaN, which never crosses a threshold
        if config.positive_class is not None:  # that class against the rest (any number)
            positive = as_class(config.positive_class)
            p, r, f, _ = skm.precision_recall_fscore_support(
                labels, predictions, labels=[positive], zero_division=np.nan
            )
            precision, recall, f1 = p[0], r[0], f[0]
        else:
            precision, recall, f1, _ = skm.precision_recall_fscore_support(
                labels, predictions, average="macro", zero_division=np.nan
            )
        values.update(precision=float(precision), recall=float(recall), f1=float(f1))
    else:
        values["mae"] = float(skm.mean_absolute_error(labels, predictions))
        values["rmse"] = float(skm.root_mean_squared_error(labels, predictions))
    return [
        QualityScore(m, values[m], t, math.isfinite(values[m]) and quality_crossed(m, values[m], t))
        for m, t in config.metrics.items()
        if m in values
    ]


class GroundTruth:
    """Thread-safe: responses arrive in request handlers, labels in theirs, scoring in a
    worker."""

    def __init__(self, config: GroundTruthConfig, clock: Callable[[], float] = time.time):
        self.config = config
        self.clock = clock
        self._classes = config.task == "classification"
        # id -> (logged at, the predictions of the request's instances)
        self._predictions: OrderedDict[str, tuple[float, list[Any]]] = OrderedDict()
        self._expired: OrderedDict[str, None] = OrderedDict()
        # (id, instance) -> (prediction, label, when the prediction was logged); the newest
        # label last
        self._pairs: OrderedDict[tuple[str, int], tuple[Any, Any, float]] = OrderedDict()
        self.counts = dict.fromkeys(RESULTS, 0)
        self._lock = threading.Lock()
        self.latest: Quality | None = None
        self.history: deque[Quality] = deque(maxlen=288)

    # -- predictions ----------------------------------------------------------------------------

    def record_predictions(self, event_id: str, outputs: Sequence[Any]) -> None:
        """A response's predictions, waiting for their labels (a newer response with the same
        id replaces them)."""
        with self._lock:
            self._predictions.pop(event_id, None)
            self._predictions[event_id] = (self.clock(), list(outputs))
            while len(self._predictions) > self.config.max_pending:
                self._forget(self._predictions.popitem(last=False)[0])
            self._expire()

    def pending(self) -> int:
        with self._lock:
            self._expire()
            return len(self._predictions)

    def _expire(self) -> None:
        horizon = self.clock() - self.config.retention_seconds
        while self._predictions:
            event_id, (logged, _) = next(iter(self._predictions.items()))
            if logged >= horizon:
                break
            del self._predictions[event_id]
            self._forget(event_id)

    def _forget(self, event_id: str) -> None:
        self._expired[event_id] = None
        while len(self._expired) > EXPIRED_MEMORY:
            self._expired.popitem(last=False)

    # -- labels ---------------------------------------------------------------------------------

    def add_label(self, event_id: str, label: Any, index: int | None = None) -> str:
        """Join one label (or, as a list, one per instance) with its prediction. Returns
        ``accepted`` or ``replaced``; raises :class:`LabelError` (and counts it) otherwise."""
        try:
            with self._lock:
                result = self._join(event_id, label, index)
        except LabelError as err:
            self.counts[err.reason] += 1
            raise
        self.counts[result] += 1
        return result

    def _join(self, event_id: str, label: Any, index: int | None) -> str:
        self._expire()
        logged = self._predictions.get(event_id)
        if logged is None:
            if event_id in self._expired:
                raise LabelError(
                    "expired",
                    f"the prediction of {event_id!r} was logged more than "
                    f"{self.config.retention_seconds:g}s ago (or pushed out by newer ones): its "
                    "label comes too late to be scored",
                )
            raise LabelError(
                "unknown_id",
                f"no prediction logged with id {event_id!r}: the id is the ce-id header the "
                "client set on its inference request, which KServe's logger passes on",
            )
        logged_at, outputs = logged
        wanted = self._wanted(event_id, outputs, label, index)
        checked = [(i, self._check(outputs[i]), self._value(y)) for i, y in wanted]
        replaced = False
        for i, prediction, value in checked:
            key = (event_id, i)
            replaced |= self._pairs.pop(key, None) is not None
            self._pairs[key] = (prediction, value, logged_at)
        while len(self._pairs) > self.config.window_size:
            self._pairs.popitem(last=False)
        return "replaced" if replaced else "accepted"

    def _wanted(
        self, event_id: str, outputs: list[Any], label: Any, index: int | None
    ) -> list[tuple[int, Any]]:
        n = len(outputs)
        if isinstance(label, list):
            if index is not None or len(label) != n:
                raise LabelError(
                    "invalid_label",
                    f"{len(label)} labels for {event_id!r}, whose request had {n} instances"
                    + (" (a list of labels takes no index)" if index is not None else ""),
                )
            return list(enumerate(label))
        if index is None:
            if n != 1:
                raise LabelError(
                    "invalid_label",
                    f"the request {event_id!r} had {n} instances: give index (0 to {n - 1}) or "
                    "labels, a list of all of them",
                )
            index = 0
        if not 0 <= index < n:
            raise LabelError(
                "invalid_label",
                f"index {index} is out of range: the request {event_id!r} had {n} instances",
            )
        return [(index, label)]

    def _value(self, label: Any) -> Any:
        return as_class(label) if self._classes else as_number(label)

    def _check(self, prediction: Any) -> Any:
        try:
            return self._value(prediction)
        except LabelError as err:
            raise LabelError(
                "invalid_label",
                f"the model's prediction {prediction!r} cannot be scored as "
                f"{self.config.task}: {err}",
            ) from None

    # -- scoring --------------------------------------------------------------------------------

    def labelled(self) -> int:
        with self._lock:
            return len(self._pairs)

    def evaluate(self, now: float | None = None) -> Quality:
        """Score the labelled window; below ``min_labels`` labels, no scores (no verdict)."""
        now = now if now is not None else self.clock()
        with self._lock:
            # predictions older than the retention leave the window too: after a rollback the
            # old version's answers must not be judged for ever
            horizon = now - self.config.retention_seconds
            for key in [k for k, (_, _, at) in self._pairs.items() if at < horizon]:
                del self._pairs[key]
            pairs = [(p, y) for p, y, _ in self._pairs.values()]
        quality = Quality(
            time=now,
            labels=len(pairs),
            min_labels=self.config.min_labels,
        )
        if quality.sufficient:
            predictions = [p for p, _ in pairs]
            labels = [y for _, y in pairs]
            quality = Quality(
                quality.time,
                quality.labels,
                quality.min_labels,
                score_pairs(self.config, predictions, labels),
            )
        self.latest = quality
        self.history.append(quality)
        return quality
