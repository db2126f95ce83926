"""Per-prediction explanations (``kubeforge_runtimes.explain``): on a synthetic model whose label
depends on one feature only, SHAP's attributions name that feature first for every row; they add
up to the model's output; a model SHAP cannot explain without data says what to save."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from kubeforge_runtimes.explain import (
    NotExplainableError,
    Target,
    build_explainer,
    explain_rows,
    in_words,
)

FEATURES = ["age", "income", "noise1", "noise2"]


def _data(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(n, 4)), columns=FEATURES)


def test_a_tree_classifier_is_explained_by_the_feature_it_depends_on(tmp_path: Path) -> None:
    x = _data()
    model = RandomForestClassifier(n_estimators=40, random_state=0).fit(x, x["income"] > 0)
    rows = x.to_numpy()[:20]
    explained = explain_rows(model, build_explainer(model, tmp_path), rows)
    assert {e["attributions"][0]["feature"] for e in explained} == {"income"}
    first = explained[0]
    assert first["prediction"] == bool(rows[0, 1] > 0)
    assert first["explained"] == f"the probability of class {first['prediction']}"
    # SHAP's efficiency: the base value plus the contributions is the probability explained
    proba = model.predict_proba(x.iloc[:1])[0][list(model.classes_).index(first["prediction"])]
    total = first["baseValue"] + sum(a["contribution"] for a in first["attributions"])
    assert total == pytest.approx(proba, abs=1e-6)
    assert first["summary"].startswith(f"Predicted {first['prediction']}. Most of it: income = ")


def test_a_regressor_is_explained_in_its_own_unit(tmp_path: Path) -> None:
    x = _data()
    model = GradientBoostingRegressor(random_state=0).fit(x, 3 * x["age"])
    explained = explain_rows(model, build_explainer(model, tmp_path), x.to_numpy()[:5])
    assert all(e["attributions"][0]["feature"] == "age" for e in explained)
    assert explained[0]["explained"] == "the predicted value"
    total = explained[0]["baseValue"] + sum(a["contribution"] for a in explained[0]["attributions"])
    assert total == pytest.approx(explained[0]["prediction"], abs=1e-6)


def test_other_models_need_a_background_sample_and_say_so(tmp_path: Path) -> None:
    x = _data()
    model = LogisticRegression().fit(x, x["income"] > 0)
    with pytest.raises(NotExplainableError, match="save a sample of its training rows there"):
        build_explainer(model, tmp_path)
    np.save(tmp_path / "background.npy", x.to_numpy()[:100])
    explained = explain_rows(model, build_explainer(model, tmp_path), x.to_numpy()[:10])
    assert {e["attributions"][0]["feature"] for e in explained} == {"income"}


def test_the_words_name_the_inputs_that_moved_the_prediction() -> None:
    contributions = [
        {"feature": "income", "input": 52000.0, "contribution": -0.31},
        {"feature": "age", "input": 63.0, "contribution": 0.12},
        {"feature": "tenure", "input": 2.0, "contribution": 0.0},
    ]
    target = Target(1, "the probability of class churn")
    assert in_words("churn", target, contributions) == (
        "Predicted churn. Most of it: income = 52000 lowered the probability of class churn by "
        "0.31; age = 63 raised the probability of class churn by 0.12."
    )
    assert "No input moved it" in in_words(1, target, contributions[2:])
