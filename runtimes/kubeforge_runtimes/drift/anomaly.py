"""Anomalous requests: an isolation forest (scikit-learn's ``IsolationForest``) learns what the
reference's rows look like; each request of the live window gets an anomaly score (how easily
it is isolated: higher is stranger). The cut-off is calibrated on reference rows the forest did
not train on: a request is anomalous when it is stranger than ``quantile`` of them, so on data
like the reference about ``1 - quantile`` of requests are, whatever the features' scales. The
window's anomaly rate against ``rate_threshold`` is the verdict; the strangest requests are
kept to show.

Numeric features are used as they are (missing values: the reference's median), categorical
ones one-hot. An isolation forest cannot see past the values it was trained on (a priority of
40 lands in the same leaf as the largest the reference had, an unknown category with the
commonest), so two plain rules come first: a number outside the reference's range and a category
the reference never had make a request anomalous (score 1), with that reason. The forest then
finds what is rare within those bounds (the far tails, rare categories together); its splits
follow one feature at a time, so a correlation between features (x and y rising together) is
not learned: a request that breaks one is not found unless its values are rare too."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kubeforge_crds.contracts.drift import AnomalyConfig, FeatureConfig

SEED = 0
MAX_TRAINING_ROWS = 20_000  # plenty for 100 trees of 256 samples; bounds the start-up time
REQUEST_CHARS = 512  # a request as kept in the status, at most
VALUE_CHARS = 60  # a value quoted in a reason, at most
MAX_REASONS = 8  # reasons per request, at most (the CRD allows 16 of 256 characters)
MIN_REFERENCE_ROWS = 20
RARE = "values rare in the reference (isolation forest)"


@dataclass(frozen=True)
class AnomalyResult:
    rows: int
    anomalous: int
    threshold: float
    cutoff: float
    top: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.anomalous / self.rows if self.rows else 0.0

    @property
    def detected(self) -> bool:
        return self.rate > self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "anomalous": self.anomalous,
            "rate": self.rate,
            "threshold": self.threshold,
            "cutoff": self.cutoff,
            "detected": self.detected,
            "top": self.top,
        }


def _frame(
    rows: Sequence[Mapping[str, Any]] | pd.DataFrame, features: list[FeatureConfig]
) -> pd.DataFrame:
    """The features as the encoder reads them: numbers as floats, categories as text."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    out = {}
    for f in features:
        column = frame[f.name] if f.name in frame else pd.Series([None] * len(frame))
        if f.type == "numeric":
            out[f.name] = pd.to_numeric(column, errors="coerce").astype(float)
        else:
            out[f.name] = column.map(_category).astype(object)
    return pd.DataFrame(out)


def _category(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class AnomalyModel:
    """Trained once on the reference (at the service's start)."""

    def __init__(
        self, config: AnomalyConfig, features: list[FeatureConfig], reference: pd.DataFrame
    ) -> None:
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import IsolationForest
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder

        self.config = config
        # free text is not a category (every new prompt would be "never seen"): text drift is
        # embeddingDrift's job
        features = [f for f in features if f.type != "text"]
        self.features = features
        numeric = [f.name for f in features if f.type == "numeric"]
        categorical = [f.name for f in features if f.type == "categorical"]
        encoder = ColumnTransformer(
            [
                ("numeric", SimpleImputer(strategy="median"), numeric),
                ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
            ]
        )
        whole = _frame(reference, features)
        if len(whole) < MIN_REFERENCE_ROWS:
            raise ValueError(
                f"anomaly scores need a reference of at least {MIN_REFERENCE_ROWS} rows; it has "
                f"{len(whole)}"
            )
        # the plain rules know every reference row; the forest learns from a sample
        self.ranges = {n: (whole[n].min(), whole[n].max()) for n in numeric}
        self.categories = {n: set(whole[n].dropna()) for n in categorical}
        frame = whole.sample(frac=1.0, random_state=SEED).iloc[: 2 * MAX_TRAINING_ROWS]
        half = len(frame) // 2
        train, held_out = frame.iloc[:half], frame.iloc[half:]
        forest = IsolationForest(n_estimators=100, random_state=SEED)
        self.pipeline = make_pipeline(encoder, forest).fit(train)
        self.cutoff = float(np.quantile(self.forest_scores(held_out), config.quantile))

    def forest_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Anomaly scores in (0, 1] (higher: stranger), as the isolation forest's paper defines
        them."""
        return -np.asarray(self.pipeline.score_samples(frame))

    def reasons(self, frame: pd.DataFrame) -> list[list[str]]:
        """Per row, the values the reference never had (at most ``MAX_REASONS``, each short:
        they go into the DriftMonitor's status, and a value is whatever a client sent)."""
        out: list[list[str]] = [[] for _ in range(len(frame))]
        for name, (low, high) in self.ranges.items():
            for i, v in enumerate(frame[name]):
                if pd.notna(v) and not low <= v <= high:
                    out[i].append(
                        f"{_short(name)} {v:g} is outside the reference's {low:g} to {high:g}"
                    )
        for name, known in self.categories.items():
            for i, v in enumerate(frame[name]):
                if v not in known:
                    out[i].append(f"{_short(name)} {_short(v)!r} never appears in the reference")
        return [
            r
            if len(r) <= MAX_REASONS
            else [*r[: MAX_REASONS - 1], f"and {len(r) - MAX_REASONS + 1} more"]
            for r in out
        ]

    def evaluate(
        self,
        rows: Sequence[Mapping[str, Any]],
        ids: Sequence[tuple[str, int]] | None = None,
    ) -> AnomalyResult:
        """The window's anomaly rate and its strangest requests; with ``ids`` (each row's
        inference id and instance index), each of those says which request it was, so that it
        can be explained."""
        if not rows:
            return AnomalyResult(0, 0, self.config.rate_threshold, self.cutoff)
        frame = _frame(rows, self.features)
        reasons = self.reasons(frame)
        scores = np.where([bool(r) for r in reasons], 1.0, self.forest_scores(frame))
        anomalous = np.flatnonzero(scores > self.cutoff)
        strangest = anomalous[np.argsort(-scores[anomalous], kind="stable")][: self.config.top]
        top = [
            {
                "score": round(float(scores[i]), 4),
                "reasons": reasons[i] or [RARE],
                "request": _shown({f.name: rows[i].get(f.name) for f in self.features}),
                **({"id": ids[i][0][:256], "instance": ids[i][1]} if ids else {}),
            }
            for i in strangest
        ]
        return AnomalyResult(
            len(rows), len(anomalous), self.config.rate_threshold, self.cutoff, top
        )


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _shown(row: Mapping[str, Any]) -> str:
    """The request's monitored features (not every field the client sent: ids, names, free
    text stay out of the status), as JSON, cut to ``REQUEST_CHARS``."""
    text = json.dumps(row, default=str, sort_keys=True)
    return text if len(text) <= REQUEST_CHARS else text[: REQUEST_CHARS - 1] + "…"
