"""Drift statistics against scipy and closed forms, and their power and false-positive rate on
synthetic data with fixed seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

from kubeforge_runtimes.drift import stats

RNG_SEED = 20261123


def _rng(offset: int = 0) -> np.random.Generator:
    return np.random.default_rng(RNG_SEED + offset)


@pytest.mark.parametrize(
    ("ref", "cur"),
    [
        (_rng().normal(size=5000), _rng(1).normal(0.3, 1.2, size=700)),
        (_rng(2).exponential(size=3000), _rng(3).exponential(2.0, size=3000)),
        # ties across and within the samples: integer-valued data
        (
            _rng(4).integers(0, 5, size=2000).astype(float),
            _rng(5).integers(1, 6, 300).astype(float),
        ),
        (np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])),
        (np.array([0.0, 0.0, 1.0]), np.array([5.0])),
    ],
)
def test_ks_and_wasserstein_equal_scipy(ref: np.ndarray, cur: np.ndarray) -> None:
    ks, w = stats.ks_and_wasserstein(np.sort(ref), np.sort(cur))
    assert ks == pytest.approx(ks_2samp(ref, cur).statistic, abs=1e-12)
    assert w == pytest.approx(wasserstein_distance(ref, cur), rel=1e-9, abs=1e-12)


def test_psi_closed_form() -> None:
    e = np.array([0.25, 0.25, 0.5])
    a = np.array([0.5, 0.25, 0.25])
    want = (0.5 - 0.25) * math.log(0.5 / 0.25) + 0 + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert stats.psi(e, a) == pytest.approx(want)
    assert stats.psi(e, e) == 0.0
    # an empty bin is floored, not infinite
    assert math.isfinite(stats.psi(np.array([0.5, 0.5]), np.array([1.0, 0.0])))


def test_numeric_scores_match_their_definitions() -> None:
    ref_values = _rng(6).normal(10, 2, size=20_000)
    cur = _rng(7).normal(11, 2, size=2_000)
    ref = stats.NumericReference.build(ref_values)
    got = stats.numeric_scores(ref, cur)
    # the bins are the reference's deciles: each holds a tenth of it
    assert ref.proportions == pytest.approx(np.full(10, 0.1), abs=1e-3)
    hist = ref.histogram(cur)
    assert got["psi"] == pytest.approx(stats.psi(ref.proportions, hist))
    assert got["jensenShannon"] == pytest.approx(jensenshannon(ref.proportions, hist, base=2))
    assert got["ks"] == pytest.approx(ks_2samp(ref_values, cur).statistic)
    assert got["wasserstein"] == pytest.approx(wasserstein_distance(ref_values, cur))
    assert got["meanShift"] == pytest.approx(abs(cur.mean() - ref_values.mean()) / ref_values.std())
    want_oor = np.mean((cur < ref_values.min()) | (cur > ref_values.max()))
    assert got["outOfRange"] == pytest.approx(want_oor)


def test_numeric_scores_only_what_is_asked_and_nan_for_no_data() -> None:
    ref = stats.NumericReference.build(np.arange(100, dtype=float))
    assert set(stats.numeric_scores(ref, np.arange(10.0), ["ks"])) == {"ks"}
    empty = stats.numeric_scores(ref, np.array([np.nan, np.nan]), ["psi", "ks"])
    assert all(math.isnan(v) for v in empty.values())


def test_categorical_scores_match_scipy() -> None:
    ref = stats.CategoricalReference.build(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    cur = ["a"] * 10 + ["b"] * 20 + ["c"] * 5 + ["z"] * 5
    got = stats.categorical_scores(ref, cur)
    ref_counts = np.array([50, 30, 20, 0], dtype=float)
    cur_counts = np.array([10, 20, 5, 5], dtype=float)
    table = np.vstack([ref_counts, cur_counts])
    assert got["chiSquare"] == pytest.approx(chi2_contingency(table, correction=False).pvalue)
    p, q = ref_counts / 100, cur_counts / 40
    assert got["jensenShannon"] == pytest.approx(jensenshannon(p, q, base=2))
    assert got["psi"] == pytest.approx(stats.psi(p, q))
    assert got["unseenCategory"] == pytest.approx(5 / 40)


def test_bias_closed_form() -> None:
    protected = ["m"] * 100 + ["f"] * 100
    outcomes = ["yes"] * 60 + ["no"] * 40 + ["yes"] * 30 + ["no"] * 70
    got = stats.bias_scores(protected, outcomes, privileged=["m"], favourable="yes")
    assert got["spd"] == pytest.approx(0.30 - 0.60)
    assert got["dir"] == pytest.approx(0.30 / 0.60)
    one_group = stats.bias_scores(["m"] * 3, ["yes"] * 3, ["m"], "yes")
    assert math.isnan(one_group["spd"])
    assert math.isnan(one_group["dir"])


@pytest.mark.parametrize(
    ("metric", "value", "threshold", "want"),
    [
        ("psi", 0.3, 0.2, True),
        ("psi", 0.1, 0.2, False),
        ("dir", 0.7, 0.8, True),
        ("dir", 0.9, 0.8, False),
        ("chiSquare", 0.001, 0.01, True),
        ("spd", -0.3, 0.1, True),
        ("spd", 0.05, 0.1, False),
        ("ks", math.nan, 0.1, False),
    ],
)
def test_crossed_direction(metric: str, value: float, threshold: float, want: bool) -> None:
    assert stats.crossed(metric, value, threshold) is want


def _detection_rate(shift: float, metric: str, threshold: float, trials: int = 200) -> float:
    rng = _rng(100)
    ref = stats.NumericReference.build(rng.normal(size=100_000))
    hits = 0
    for _ in range(trials):
        window = rng.normal(loc=shift, size=1000)
        hits += stats.crossed(
            metric, stats.numeric_scores(ref, window, [metric])[metric], threshold
        )
    return hits / trials


@pytest.mark.parametrize(
    ("metric", "threshold", "found_shift"),
    # PSI is about shift**2 for a normal, so 0.2 finds 0.5 sigma only ~96 % of the time
    [("psi", 0.2, 0.75), ("ks", 0.1, 0.5), ("meanShift", 0.2, 0.5)],
)
def test_power_and_false_positive_rate(metric: str, threshold: float, found_shift: float) -> None:
    """1000-row windows against a 100k-row N(0, 1) reference, 200 trials each: with the default
    thresholds no false alarm on unshifted data, and a shift of ``found_shift`` sigma found in at
    least 99 % of windows."""
    assert _detection_rate(0.0, metric, threshold) <= 0.01
    assert _detection_rate(found_shift, metric, threshold) >= 0.99


def test_categorical_power_and_false_positive_rate() -> None:
    rng = _rng(200)
    cats = np.array(["billing", "login", "shipping", "refund"])
    base = np.array([0.4, 0.3, 0.2, 0.1])
    ref = stats.CategoricalReference.build(rng.choice(cats, size=50_000, p=base))
    shifted = np.array([0.2, 0.3, 0.2, 0.3])
    false_alarms = sum(
        stats.crossed(
            "chiSquare",
            stats.categorical_scores(ref, list(rng.choice(cats, 500, p=base)))["chiSquare"],
            0.01,
        )
        for _ in range(200)
    )
    found = sum(
        stats.crossed(
            "psi", stats.categorical_scores(ref, list(rng.choice(cats, 500, p=shifted)))["psi"], 0.2
        )
        for _ in range(200)
    )
    assert false_alarms / 200 <= 0.03  # a 1 % test: about 2 of 200
    assert found / 200 >= 0.99
