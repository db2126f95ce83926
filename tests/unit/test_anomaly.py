"""Anomalous requests (the drift service's ``anomaly``): on windows resampled from the reference
the anomaly rate stays near 1 - quantile (no alarm over fixed seeds); injected outliers raise it
past the threshold and are the strangest shown, with their reasons: values the reference never
had, and, found by the isolation forest, values within its range where it has few rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kubeforge_crds.contracts.drift import AnomalyConfig, FeatureConfig
from kubeforge_pipelines.tinymodel import support_tickets
from kubeforge_runtimes.drift.anomaly import AnomalyModel

TICKETS = [
    FeatureConfig(name="product", type="categorical"),
    FeatureConfig(name="tier", type="categorical"),
    FeatureConfig(name="priority", type="numeric"),
]


def test_ordinary_windows_do_not_alarm_and_outliers_do() -> None:
    model = AnomalyModel(AnomalyConfig(), TICKETS, pd.DataFrame(support_tickets(3000, seed=1)))
    rates = [model.evaluate(support_tickets(200, seed=seed)).rate for seed in range(2, 42)]
    assert max(rates) <= 0.05  # no false alarm in 40 windows
    assert np.mean(rates) <= 0.03
    strange = [
        {"product": "quantum", "tier": "gold", "priority": 2},
        {"product": "vpn", "tier": "gold", "priority": 40},
    ] * 15
    found = model.evaluate(support_tickets(170, seed=99) + strange)
    assert found.rate >= 30 / 200
    assert found.detected
    assert found.top[0]["score"] == 1.0
    reasons = {r for t in found.top for r in t["reasons"]}
    assert "product 'quantum' never appears in the reference" in reasons
    assert "priority 40 is outside the reference's 1 to 4" in reasons
    assert (
        '"product": "quantum"' in found.top[0]["request"]
        or '"priority": 40' in found.top[0]["request"]
    )
    assert found.to_json()["detected"] is True
    # with each row's inference id and instance, the strangest say which request they were
    ids = [(f"ordinary-{i}", 0) for i in range(170)] + [(f"odd-{i // 2}", i % 2) for i in range(30)]
    named = model.evaluate(support_tickets(170, seed=99) + strange, ids)
    assert all(t["id"].startswith("odd-") for t in named.top)
    assert {t["instance"] for t in named.top} == {0, 1}


def test_rare_values_within_the_reference_range_are_found_by_the_forest() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=4000)
    reference = pd.DataFrame({"x": x, "y": x + rng.normal(scale=0.1, size=4000)})
    features = [FeatureConfig(name="x", type="numeric"), FeatureConfig(name="y", type="numeric")]
    model = AnomalyModel(AnomalyConfig(top=3), features, reference)
    assert model.ranges["x"][1] > 3.0  # 3 is inside the reference's range
    ordinary = [{"x": v, "y": v} for v in rng.normal(size=180)]
    tails = [{"x": 3.0, "y": 3.1}] * 20  # in range, but where the reference has few rows
    found = model.evaluate(ordinary + tails)
    assert found.anomalous >= 20
    assert found.detected
    assert found.top[0]["reasons"] == ["values rare in the reference (isolation forest)"]
    assert found.top[0]["request"] == '{"x": 3.0, "y": 3.1}'
    assert found.cutoff < found.top[0]["score"] < 1.0


def test_reasons_stay_short_whatever_a_client_sends_and_text_is_left_to_embeddings() -> None:
    features = [
        *TICKETS,
        *(FeatureConfig(name=f"f{i}", type="numeric") for i in range(20)),
        FeatureConfig(name="text", type="text"),
    ]
    reference = pd.DataFrame(support_tickets(400, seed=1))
    for i in range(20):
        reference[f"f{i}"] = np.linspace(0, 1, len(reference))
    model = AnomalyModel(AnomalyConfig(), features, reference)
    assert "text" not in {f.name for f in model.features}
    ordinary = reference.drop(columns=["id"]).to_dict("records")[:50]
    assert model.evaluate(ordinary).rate <= 0.1  # new prompts are not "unseen categories"
    strange = {**ordinary[0], "product": "x" * 10_000, "id": 7, "secret": "s3cr3t"}
    strange |= {f"f{i}": 99.0 for i in range(20)}
    found = model.evaluate([strange])
    (top,) = found.top
    assert len(top["reasons"]) == 8
    assert top["reasons"][-1] == "and 14 more"
    assert all(len(r) <= 256 for r in top["reasons"])
    assert "secret" not in top["request"]
    assert '"id"' not in top["request"]
    assert len(top["request"]) <= 512
