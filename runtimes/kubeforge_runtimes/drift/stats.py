"""Drift, bias and anomaly statistics of a current sample against a reference (pure functions).

The reference is summarised once (:class:`NumericReference`, :class:`CategoricalReference`): sorted
values, quantile bins, category counts. Every window is then compared with that summary, so the
100k-row reference is never sorted or binned again; this is what makes the service fast.

From scipy: Jensen-Shannon (``scipy.spatial.distance.jensenshannon``) and the chi-square test of
homogeneity (``scipy.stats.chi2_contingency``). Written here, because no library takes a
pre-summarised reference: the Kolmogorov-Smirnov statistic and the Wasserstein-1 distance from one
merge of the sorted samples (equal to ``scipy.stats.ks_2samp(...).statistic`` and
``scipy.stats.wasserstein_distance``, which re-sort both samples on every call; tested against
them), PSI (a closed form no library exports), mean shift, SPD and DIR (closed forms).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

from kubeforge_crds.contracts.drift import CATEGORICAL_METRICS, NUMERIC_METRICS

FloatArray = npt.NDArray[np.float64]

# Bin proportions are floored at this value in PSI, so that an empty bin gives a large, finite
# score instead of infinity (the usual convention; Evidently and NannyML use the same order).
PSI_FLOOR = 1e-4
DEFAULT_BINS = 10

# Metrics whose alert fires when the value falls *below* the threshold.
LOWER_IS_WORSE = frozenset({"dir", "chiSquare"})


def crossed(metric: str, value: float, threshold: float) -> bool:
    """Whether ``value`` is past ``threshold``: below it for dir and chiSquare (a p-value), in
    absolute value above it for spd (either group may be the disadvantaged one), above it for
    every other metric. NaN (no data) never counts as crossed."""
    if math.isnan(value):
        return False
    if metric in LOWER_IS_WORSE:
        return value < threshold
    if metric == "spd":
        return abs(value) > threshold
    return value > threshold


@dataclass(frozen=True)
class NumericReference:
    """A numeric feature's reference, summarised once."""

    sorted_values: FloatArray
    mean: float
    std: float
    low: float
    high: float
    edges: FloatArray  # inner bin edges: quantiles of the reference, strictly increasing
    proportions: FloatArray  # share of the reference in each bin

    @classmethod
    def build(cls, values: Iterable[float], bins: int = DEFAULT_BINS) -> NumericReference:
        data = np.sort(
            np.asarray(
                list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64
            )
        )
        data = data[~np.isnan(data)]
        if data.size == 0:
            raise ValueError("the reference has no numeric values")
        quantiles = np.quantile(data, np.linspace(0, 1, bins + 1)[1:-1])
        edges = np.unique(quantiles)
        counts = np.bincount(np.searchsorted(edges, data, side="right"), minlength=edges.size + 1)
        return cls(
            sorted_values=data,
            mean=float(data.mean()),
            std=float(data.std()),
            low=float(data[0]),
            high=float(data[-1]),
            edges=edges,
            proportions=counts / data.size,
        )

    def histogram(self, values: FloatArray) -> FloatArray:
        """Share of ``values`` in each of the reference's bins."""
        counts = np.bincount(
            np.searchsorted(self.edges, values, side="right"), minlength=self.edges.size + 1
        )
        return counts / max(values.size, 1)


@dataclass(frozen=True)
class CategoricalReference:
    """A categorical feature's reference: its categories and their counts."""

    categories: tuple[str, ...]
    counts: npt.NDArray[np.int64]

    @classmethod
    def build(cls, values: Iterable[object]) -> CategoricalReference:
        counts = _value_counts(values)
        if not counts:
            raise ValueError("the reference has no values")
        names = sorted(counts)
        return cls(
            categories=tuple(names),
            counts=np.array([counts[n] for n in names], dtype=np.int64),
        )

    def count(self, values: Sequence[object]) -> tuple[npt.NDArray[np.int64], int]:
        """Counts of ``values`` per reference category, and how many are unseen categories."""
        found = _value_counts(values)
        counts = np.array([found.pop(c, 0) for c in self.categories], dtype=np.int64)
        return counts, sum(found.values())


def _value_counts(values: Iterable[object]) -> dict[str, int]:
    """Occurrences of each value, as text (pandas' hash-based count: far faster than sorting
    Python objects)."""
    series = pd.Series(list(values) if not isinstance(values, pd.Series) else values, dtype=object)
    counts = series.astype(str).value_counts(sort=False)
    return {str(k): int(v) for k, v in counts.items()}


def psi(expected: FloatArray, actual: FloatArray, floor: float = PSI_FLOOR) -> float:
    """Population stability index: sum over bins of (a - e) * ln(a / e), proportions floored."""
    e = np.clip(expected, floor, None)
    a = np.clip(actual, floor, None)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(p: FloatArray, q: FloatArray) -> float:
    """Jensen-Shannon distance in base 2 (0 = same distribution, 1 = disjoint)."""
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    return float(jensenshannon(p, q, base=2))


def ks_and_wasserstein(sorted_ref: FloatArray, sorted_cur: FloatArray) -> tuple[float, float]:
    """The two-sample Kolmogorov-Smirnov statistic and the Wasserstein-1 distance, from one
    stable merge of two sorted samples.

    After the merge, the running counts of elements from each sample are the two empirical CDFs.
    They are exact wherever the next merged value is strictly larger (the end of a block of equal
    values); KS is the largest gap there, and Wasserstein-1 integrates the gap over each step."""
    n, m = sorted_ref.size, sorted_cur.size
    merged = np.concatenate([sorted_ref, sorted_cur])
    order = np.argsort(merged, kind="stable")
    # running count of reference elements; the rest of each prefix is from the current sample
    ref_seen = np.cumsum(order < n)[:-1]
    cur_seen = np.arange(1, n + m) - ref_seen
    gap = np.abs(ref_seen / n - cur_seen / m)
    step = np.diff(merged[order])
    ends = step > 0
    ks = float(gap[ends].max()) if ends.any() else 0.0
    return ks, float(np.dot(gap, step))


def numeric_scores(
    ref: NumericReference, values: FloatArray, metrics: Iterable[str] = NUMERIC_METRICS
) -> dict[str, float]:
    """Scores of a numeric window against its reference. NaNs in ``values`` are dropped; an
    empty window scores NaN (no data)."""
    wanted = set(metrics) & set(NUMERIC_METRICS)
    cur = values[~np.isnan(values)]
    if cur.size == 0:
        return dict.fromkeys(wanted, math.nan)
    out: dict[str, float] = {}
    if wanted & {"psi", "jensenShannon"}:
        hist = ref.histogram(cur)
        if "psi" in wanted:
            out["psi"] = psi(ref.proportions, hist)
        if "jensenShannon" in wanted:
            out["jensenShannon"] = js_distance(ref.proportions, hist)
    if wanted & {"ks", "wasserstein"}:
        ks, wasserstein = ks_and_wasserstein(ref.sorted_values, np.sort(cur))
        if "ks" in wanted:
            out["ks"] = ks
        if "wasserstein" in wanted:
            out["wasserstein"] = wasserstein
    if "meanShift" in wanted:
        # shift of the mean in units of the reference's standard deviation
        diff = abs(float(cur.mean()) - ref.mean)
        out["meanShift"] = diff / ref.std if ref.std > 0 else (0.0 if diff == 0 else math.inf)
    if "outOfRange" in wanted:
        out["outOfRange"] = float(np.count_nonzero((cur < ref.low) | (cur > ref.high)) / cur.size)
    return out


def categorical_scores(
    ref: CategoricalReference,
    values: Sequence[object],
    metrics: Iterable[str] = CATEGORICAL_METRICS,
) -> dict[str, float]:
    """Scores of a categorical window against its reference. Unseen categories count in
    unseenCategory and as one extra category (absent from the reference) in psi, jensenShannon and
    chiSquare."""
    wanted = set(metrics) & set(CATEGORICAL_METRICS)
    if len(values) == 0:
        return dict.fromkeys(wanted, math.nan)
    counts, unseen = ref.count(values)
    ref_counts = np.append(ref.counts, 0).astype(np.float64)
    cur_counts = np.append(counts, unseen).astype(np.float64)
    p, q = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    out: dict[str, float] = {}
    if "psi" in wanted:
        out["psi"] = psi(p, q)
    if "jensenShannon" in wanted:
        out["jensenShannon"] = js_distance(p, q)
    if "chiSquare" in wanted:
        out["chiSquare"] = chi_square_pvalue(ref_counts, cur_counts)
    if "unseenCategory" in wanted:
        out["unseenCategory"] = unseen / len(values)
    return out


def chi_square_pvalue(ref_counts: FloatArray, cur_counts: FloatArray) -> float:
    """p-value of the chi-square test that both samples come from one categorical distribution
    (a 2 x k contingency table; categories empty in both are left out)."""
    keep = (ref_counts + cur_counts) > 0
    table = np.vstack([ref_counts[keep], cur_counts[keep]])
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table, correction=False).pvalue)


def bias_scores(
    protected: Sequence[object],
    outcomes: Sequence[object],
    privileged: Iterable[str],
    favourable: str,
) -> dict[str, float]:
    """Statistical parity difference and disparate impact ratio of the favourable outcome:
    spd = P(fav | unprivileged) - P(fav | privileged), dir = P(fav | unprivileged) /
    P(fav | privileged). NaN when a group is empty (or dir's denominator is 0)."""
    group = np.isin(np.asarray([str(v) for v in protected], dtype=object), list(privileged))
    fav = np.asarray([str(v) == favourable for v in outcomes], dtype=bool)
    if group.size == 0 or group.all() or not group.any():
        return {"spd": math.nan, "dir": math.nan}
    p_priv = float(fav[group].mean())
    p_unpriv = float(fav[~group].mean())
    ratio = p_unpriv / p_priv if p_priv > 0 else math.nan
    return {"spd": p_unpriv - p_priv, "dir": ratio}
