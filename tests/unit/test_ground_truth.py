"""Model quality from delayed ground truth (the drift service's pure part): predictions kept by
inference id, labels joined later, last label wins, unknown and expired ids and labels of the
wrong type refused with their reason and counted, too few labels give no verdict, and the
metrics are scikit-learn's."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pytest
from prometheus_client import generate_latest

from kubeforge_crds.contracts.drift import GroundTruthConfig, MonitorConfig
from kubeforge_runtimes.drift.groundtruth import GroundTruth, LabelError
from kubeforge_runtimes.drift.monitor import Monitor
from kubeforge_runtimes.drift.payloads import RESPONSE_TYPE
from kubeforge_runtimes.drift.reference import summarise
from kubeforge_runtimes.drift.service import DriftService


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def classifier(**overrides: Any) -> GroundTruthConfig:
    return GroundTruthConfig.model_validate(
        {"task": "classification", "metrics": {"accuracy": 0.8, "f1": 0.5}, "minLabels": 4}
        | overrides
    )


def test_labels_sent_after_the_predictions_give_accuracy_precision_recall_f1() -> None:
    truth = GroundTruth(
        classifier(metrics={"accuracy": 0.8, "precision": 0.5, "recall": 0.5, "f1": 0.5})
    )
    predictions = ["spam", "spam", "ham", "ham", "spam", "ham"]
    labels = ["spam", "ham", "ham", "ham", "spam", "spam"]
    for i, p in enumerate(predictions):
        truth.record_predictions(f"r{i}", [p])
    assert truth.evaluate().scores == []  # nothing labelled yet
    for i, y in enumerate(labels):
        assert truth.add_label(f"r{i}", y) == "accepted"
    quality = truth.evaluate(now=5.0)
    got = {s.metric: s for s in quality.scores}
    assert got["accuracy"].value == pytest.approx(4 / 6)
    assert got["accuracy"].crossed  # below 0.8
    # macro average over spam (precision 2/3, recall 2/3) and ham (2/3, 2/3)
    assert got["precision"].value == pytest.approx(2 / 3)
    assert got["f1"].value == pytest.approx(2 / 3)
    assert not got["f1"].crossed
    assert quality.degraded
    assert quality.to_json()["labels"] == 6


def test_a_positive_class_scores_that_class_against_the_rest() -> None:
    truth = GroundTruth(classifier(metrics={"precision": 0.9, "recall": 0.9}, positiveClass="1"))
    # predictions 1, 1, 0, 0 against labels 1, 0, 1, 0: one true positive of two each way
    for i, (p, y) in enumerate([(1, 1), (1, 0), (0, 1), (0, 0)]):
        truth.record_predictions(f"r{i}", [p])
        truth.add_label(f"r{i}", y)
    got = {s.metric: s.value for s in truth.evaluate().scores}
    assert got == {"precision": pytest.approx(0.5), "recall": pytest.approx(0.5)}


def test_regression_errors_alert_above_their_threshold() -> None:
    truth = GroundTruth(
        GroundTruthConfig(task="regression", metrics={"mae": 1.0, "rmse": 5.0}, min_labels=3)
    )
    truth.record_predictions("batch", [1.0, 2.0, 3.0])
    truth.add_label("batch", [2.0, 2.0, 6.0])
    got = {s.metric: s for s in truth.evaluate().scores}
    assert got["mae"].value == pytest.approx(4 / 3)
    assert got["mae"].crossed
    assert got["rmse"].value == pytest.approx((10 / 3) ** 0.5)
    assert not got["rmse"].crossed


def test_the_last_label_wins_and_says_it_replaced_one() -> None:
    truth = GroundTruth(classifier(minLabels=1))
    truth.record_predictions("r1", ["a"])
    assert truth.add_label("r1", "b") == "accepted"
    assert truth.evaluate().scores[0].value == 0.0
    assert truth.add_label("r1", "a") == "replaced"  # a correction
    assert truth.labelled() == 1
    assert truth.evaluate().scores[0].value == 1.0
    assert truth.counts["accepted"] == 1
    assert truth.counts["replaced"] == 1


def test_unknown_and_expired_ids_are_counted_with_their_reason() -> None:
    clock = Clock()
    truth = GroundTruth(classifier(retentionSeconds=60), clock=clock)
    truth.record_predictions("old", [1])
    clock.now += 61
    truth.record_predictions("new", [1])
    with pytest.raises(LabelError, match="more than 60s ago") as expired:
        truth.add_label("old", 1)
    assert expired.value.reason == "expired"
    with pytest.raises(LabelError, match="no prediction logged with id 'never'") as unknown:
        truth.add_label("never", 1)
    assert unknown.value.reason == "unknown_id"
    assert truth.add_label("new", 1) == "accepted"
    assert truth.counts == {
        "accepted": 1,
        "replaced": 0,
        "unknown_id": 1,
        "expired": 1,
        "invalid_label": 0,
    }
    assert truth.pending() == 1


def test_predictions_beyond_the_pending_limit_expire_oldest_first() -> None:
    truth = GroundTruth(classifier(maxPending=2))
    for i in range(3):
        truth.record_predictions(f"r{i}", [1])
    with pytest.raises(LabelError) as err:
        truth.add_label("r0", 1)
    assert err.value.reason == "expired"
    assert truth.add_label("r2", 1) == "accepted"


@pytest.mark.parametrize(
    ("task", "prediction", "label", "message"),
    [
        ("regression", [2.5], "cat", "'cat' is not a finite number"),
        ("regression", [2.5], True, "True is not a finite number"),
        ("classification", [1], 0.37, "0.37 is not a class"),
        ("classification", [1], {"a": 1}, "is not a class"),
        ("classification", [0.73], 1, "the model's prediction 0.73 cannot be scored"),
        ("classification", [1, 0], 1, "had 2 instances: give index"),
        ("classification", [1, 0], [1, 0, 1], "3 labels for 'r', whose request had 2"),
    ],
)
def test_labels_that_do_not_fit_are_refused_with_the_reason(
    task: str, prediction: list[Any], label: Any, message: str
) -> None:
    metrics = {"mae": 1.0} if task == "regression" else {"accuracy": 0.5}
    truth = GroundTruth(GroundTruthConfig(task=task, metrics=metrics))  # type: ignore[arg-type]
    truth.record_predictions("r", prediction)
    with pytest.raises(LabelError, match=message) as err:
        truth.add_label("r", label)
    assert err.value.reason == "invalid_label"
    assert truth.labelled() == 0
    assert truth.counts["invalid_label"] == 1


def test_one_instance_of_a_batch_by_index() -> None:
    truth = GroundTruth(classifier(minLabels=1))
    truth.record_predictions("batch", ["a", "b", "c"])
    assert truth.add_label("batch", "b", index=1) == "accepted"
    with pytest.raises(LabelError, match="index 3 is out of range"):
        truth.add_label("batch", "c", index=3)
    assert truth.evaluate().scores[0].value == 1.0


def test_too_few_labels_give_no_verdict_and_the_window_keeps_the_newest() -> None:
    truth = GroundTruth(classifier(minLabels=3, windowSize=4))
    for i in range(2):
        truth.record_predictions(f"r{i}", ["a"])
        truth.add_label(f"r{i}", "b")
    quality = truth.evaluate()
    assert (quality.sufficient, quality.degraded, quality.scores) == (False, False, [])
    for i in range(2, 8):
        truth.record_predictions(f"r{i}", ["a"])
        truth.add_label(f"r{i}", "a")
    assert truth.labelled() == 4
    assert truth.evaluate().scores[0].value == 1.0  # the four newest, all right


def _service(ground_truth: dict[str, Any] | None) -> DriftService:
    config = MonitorConfig.model_validate(
        {
            "namespace": "team-a",
            "name": "m",
            "referenceUri": "file:///nowhere.jsonl",
            "features": [{"name": "age", "type": "numeric"}],
            "groundTruth": ground_truth,
        }
    )
    service = DriftService(config)
    # the reference, as load() would summarise it from the file
    reference = pd.DataFrame({"age": [float(a) for a in range(20, 60)]})
    service.monitor = Monitor(config, config.features, summarise(reference, config.features))
    return service


def test_the_service_answers_each_label_and_exports_the_quality() -> None:
    service = _service({"task": "classification", "metrics": {"accuracy": 0.9}, "minLabels": 2})
    assert service.ground_truth is not None
    service.ground_truth.record_predictions("r1", [1])
    service.ground_truth.record_predictions("r2", [1])
    code, body = service.add_labels(
        [{"id": "r1", "label": 1}, {"id": "r2", "label": 0}, {"id": "zz", "label": 1}]
    )
    assert code == 200
    assert (body["accepted"], body["windowLabels"]) == (2, 2)
    assert body["rejected"] == [
        {
            "item": 2,
            "id": "zz",
            "reason": "unknown_id",
            "message": body["rejected"][0]["message"],
        }
    ]
    code, body = service.add_labels([{"id": "zz", "label": 1}])
    assert code == 422  # nothing taken
    service.metrics.record_quality(service.ground_truth.evaluate())
    text = generate_latest(service.metrics.registry).decode()
    assert 'kubeforge_model_quality{metric="accuracy",monitor="m",namespace="team-a"} 0.5' in text
    assert (
        'kubeforge_model_quality_degraded{metric="accuracy",monitor="m",namespace="team-a"} 1.0'
        in text
    )
    unknown = (
        'kubeforge_ground_truth_labels_total{monitor="m",namespace="team-a",result="unknown_id"}'
    )
    assert f"{unknown} 2.0" in text
    assert json.dumps(service._ground_truth_status())  # JSON as it is served


def test_a_monitor_without_ground_truth_says_how_to_set_it() -> None:
    code, body = _service(None).add_labels([{"id": "r1", "label": 1}])
    assert code == 409
    assert "spec.groundTruth" in body["error"]


def test_the_service_records_the_predictions_of_logged_responses() -> None:
    service = _service({"task": "regression", "metrics": {"mae": 1.0}})
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "abc",
        "ce-type": RESPONSE_TYPE,
        "ce-source": "http://localhost:9081/",
        "content-type": "application/json",
    }
    code, _ = service.ingest(headers, b'{"predictions": [3.5]}')
    assert code == 202
    assert service.ground_truth is not None
    assert service.ground_truth.add_label("abc", 3.0) == "accepted"


def test_classes_are_the_same_whatever_json_type_they_came_in() -> None:
    truth = GroundTruth(classifier(minLabels=1, positiveClass="1.0"))
    pairs = [("1.0", 1), (True, "True"), (" churn ", "churn"), (0, "0.0")]
    for i, (prediction, label) in enumerate(pairs):
        truth.record_predictions(f"r{i}", [prediction])
        truth.add_label(f"r{i}", label)
    got = {s.metric: s.value for s in truth.evaluate().scores}
    assert got["accuracy"] == 1.0


def test_a_metric_with_nothing_to_count_is_no_verdict_not_zero() -> None:
    # a perfect model whose window holds no positive class: precision and recall of class 1
    # are undefined, which must not read as 0 and alert
    truth = GroundTruth(
        classifier(minLabels=1, positiveClass="1", metrics={"accuracy": 0.9, "f1": 0.5})
    )
    for i in range(5):
        truth.record_predictions(f"r{i}", [0])
        truth.add_label(f"r{i}", 0)
    scores = {s.metric: s for s in truth.evaluate().scores}
    assert scores["accuracy"].value == 1.0
    assert math.isnan(scores["f1"].value)
    assert not scores["f1"].crossed
    assert not truth.latest.degraded  # type: ignore[union-attr]


def test_labelled_predictions_leave_the_window_after_the_retention() -> None:
    clock = Clock()
    truth = GroundTruth(classifier(minLabels=1, retentionSeconds=3600), clock=clock)
    truth.record_predictions("old", ["a"])
    truth.add_label("old", "b")  # the previous version got it wrong
    clock.now += 3000
    truth.record_predictions("new", ["a"])
    truth.add_label("new", "a")
    assert truth.evaluate().labels == 2
    clock.now += 1000  # "old" was logged 4000 s ago
    quality = truth.evaluate()
    assert quality.labels == 1
    assert quality.scores[0].value == 1.0
