"""KServe's ``:explain`` verb on the built-in runtime (a real ``python -m kubeforge_runtimes
serve`` process on kserve's ModelServer): a tree classifier whose label depends on one input is
explained by that input, in numbers and in words; a model that cannot be explained answers 501
with the reason, and is explained once the sample it asks for is saved beside it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from kubeforge_labs.canary import SKLEARN_BODY, start_runtime, write_sklearn_model
from kubeforge_labs.kit import Proc

pytestmark = [pytest.mark.integration, pytest.mark.no_cluster]

NAME = "churn"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    """Start the runtime on a model directory; stopped after the test."""
    started: list[Proc] = []

    def start(model_dir: Path) -> str:
        work = tmp_path / f"runtime-{len(started)}"
        started.append(start_runtime(work, model_dir, name=NAME, namespace="ns", revision="r1"))
        return started[-1].url

    yield start
    for proc in started:
        proc.stop()


def test_a_prediction_is_explained_by_the_input_it_depends_on(
    tmp_path: Path, serve: Callable[[Path], str]
) -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(400, 4)), columns=["age", "income", "tenure", "visits"])
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(x, x["income"] > 0.5)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    joblib.dump(model, model_dir / "model.joblib")
    url = serve(model_dir)
    rows = x.to_numpy()[:5].tolist()
    predicted = httpx.post(f"{url}/v1/models/{NAME}:predict", json={"instances": rows}, timeout=30)
    answer = httpx.post(f"{url}/v1/models/{NAME}:explain", json={"instances": rows}, timeout=60)
    assert answer.status_code == 200, answer.text
    explanations = answer.json()["explanations"]
    assert [e["prediction"] for e in explanations] == predicted.json()["predictions"]
    for e in explanations:
        top = e["attributions"][0]
        assert top["feature"] == "income"
        assert e["summary"].startswith(f"Predicted {e['prediction']}. Most of it: income = ")
        assert {a["feature"] for a in e["attributions"]} == {"age", "income", "tenure", "visits"}
    bad = httpx.post(f"{url}/v1/models/{NAME}:explain", json={"instances": [[1, "x"]]}, timeout=30)
    assert bad.status_code == 400


def test_a_model_that_cannot_be_explained_says_why_until_it_can(
    tmp_path: Path, serve: Callable[[Path], str]
) -> None:
    model_dir = write_sklearn_model(tmp_path / "model")  # a logistic regression, no sample
    url = serve(model_dir)
    explain = f"{url}/v1/models/{NAME}:explain"
    refused = httpx.post(explain, json=SKLEARN_BODY, timeout=30)
    assert refused.status_code == 501
    assert "LogisticRegression cannot be explained" in refused.json()["error"]
    assert "background.npy" in refused.json()["error"]
    assert (
        httpx.post(f"{url}/v1/models/{NAME}:predict", json=SKLEARN_BODY, timeout=30).status_code
        == 200
    )
    # the training rows' sample the message asks for (the model's weights are 1, -2, 0.5):
    # the next request finds it, no restart needed
    rng = np.random.default_rng(1)
    np.save(model_dir / "background.npy", rng.normal(size=(100, 3)))
    body = {"instances": [[1, 1, 1]]}
    answer = httpx.post(f"{url}/v1/models/{NAME}:explain", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    (explained,) = answer.json()["explanations"]
    assert [a["feature"] for a in explained["attributions"]] == ["x1", "x0", "x2"]
