"""The drift service as real processes: inference payloads posted the way KServe's logger posts
them, the gauges scraped by a real Prometheus evaluating the operator's own alert rules, the
alerts firing on drift and bias, the rules checked by ``promtool test rules``, malformed
payloads counted and reported, a reference that does not match the features refused; model
quality from labels sent after the predictions, its alert firing when accuracy falls; the
anomaly rate rising on injected outliers, and its alert."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from kubeforge_crds.contracts.drift import MonitorConfig
from kubeforge_labs.canary import start_prometheus
from kubeforge_labs.drift import log_inference, logger_headers, start_drift_service, write_jsonl
from kubeforge_labs.kit import Proc
from kubeforge_operator.driftmonitor.alerts import alert_rules
from kubeforge_pipelines.tinymodel import support_tickets
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.no_cluster]

NS, NAME = "team-a", "bot-drift"
WINDOW = 200
PRIVILEGED = ["gold", "platinum"]
LABELS_NEEDED = 40


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("drift")
    reference = write_jsonl(work / "reference.jsonl", support_tickets(3000, seed=1))
    config = MonitorConfig(
        namespace=NS,
        name=NAME,
        reference_uri=f"file://{reference}",
        window_size=WINDOW,
        interval_seconds=1,
        metrics={
            "psi": 0.2,
            "ks": 0.15,
            "chiSquare": 0.001,
            "unseenCategory": 0.05,
            "spd": 0.3,
            "dir": 0.5,
        },
        bias={
            "protectedAttribute": "tier",
            "privilegedValues": PRIVILEGED,
            "favourableOutcome": "1",
        },
        ground_truth={
            "task": "classification",
            "metrics": {"accuracy": 0.8, "f1": 0.6},
            "minLabels": LABELS_NEEDED,
            "positiveClass": "1",
        },
        anomalies={"quantile": 0.99, "rateThreshold": 0.05},
    )
    rules = work / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": alert_rules(NS, NAME, "warning", 1)}))
    service = start_drift_service(work, config)
    prom = start_prometheus(work / "prom", [service.url.removeprefix("http://")], 1, [rules])
    try:
        yield {
            "work": work,
            "service": service,
            "prom": prom,
            "rules": rules,
            "reference": reference,
        }
    finally:
        prom.stop()
        service.stop()


def _send(url: str, rows: list[dict[str, Any]], protocol: str, fair: bool) -> None:
    with httpx.Client(timeout=10) as client:
        for start in range(0, len(rows), 10):
            batch = rows[start : start + 10]
            if protocol == "v1":
                request: dict[str, Any] = {"instances": batch}
            else:  # v2, one input per feature
                request = {
                    "inputs": [
                        {
                            "name": "product",
                            "shape": [len(batch)],
                            "datatype": "BYTES",
                            "data": [r["product"] for r in batch],
                        },
                        {
                            "name": "tier",
                            "shape": [len(batch)],
                            "datatype": "BYTES",
                            "data": [r["tier"] for r in batch],
                        },
                        {
                            "name": "priority",
                            "shape": [len(batch)],
                            "datatype": "INT64",
                            "data": [r["priority"] for r in batch],
                        },
                    ]
                }
            preds = [
                int(r["priority"] >= 3) if fair or r["tier"] in PRIVILEGED else 0 for r in batch
            ]
            response = (
                {"predictions": preds}
                if protocol == "v1"
                else {
                    "outputs": [
                        {"name": "p", "shape": [len(preds)], "datatype": "INT64", "data": preds}
                    ]
                }
            )
            for answer in log_inference(client, url, request, response):
                assert answer.status_code == 202, answer.text


def _status(service: Proc) -> dict[str, Any]:
    return dict(httpx.get(f"{service.url}/status", timeout=5).json())


def _alerts(prom: Proc) -> list[dict[str, Any]]:
    data = httpx.get(f"{prom.url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in data if a["state"] == "firing"]


def test_unshifted_traffic_raises_nothing(lab: dict[str, Any]) -> None:
    service, prom = lab["service"], lab["prom"]
    _send(service.url, support_tickets(WINDOW, seed=2), "v1", fair=True)

    def evaluated() -> dict[str, Any] | None:
        latest = _status(service)["latest"]
        return latest if latest and latest["rows"] == WINDOW else None

    latest = wait_until(evaluated, timeout=20, what="an evaluation of the full window")
    crossed = [s for s in latest["scores"] if s["crossed"]]
    assert crossed == [], crossed
    metrics = {(s["feature"], s["metric"]) for s in latest["scores"]}
    assert ("product", "chiSquare") in metrics
    assert ("priority", "ks") in metrics
    assert ("tier", "spd") in metrics
    assert not any(f == "text" for f, _ in metrics)  # free text is not a feature

    def scraped() -> bool:
        q = f'kubeforge_drift_score{{namespace="{NS}", monitor="{NAME}", feature="product", metric="psi"}}'
        result = httpx.get(f"{prom.url}/api/v1/query", params={"query": q}, timeout=5).json()
        return bool(result["data"]["result"])

    wait_until(scraped, timeout=20, what="Prometheus to scrape the drift scores")
    assert _alerts(prom) == []


def test_malformed_payloads_are_counted_and_reported(lab: dict[str, Any]) -> None:
    service = lab["service"]
    before = _status(service)["payloads"]["malformed"]
    bad = [
        ({"content-type": "application/json"}, b'{"instances": []}', "not_cloudevent"),
        (logger_headers("org.kubeflow.serving.inference.request", "x1"), b"{oops", "not_json"),
        (
            logger_headers("org.kubeflow.serving.inference.request", "x2"),
            b'{"instances": [[1, 2, 3, 4, 5]]}',
            "shape_mismatch",
        ),
        (
            logger_headers("org.kubeflow.serving.inference.request", "x3"),
            b'{"instances": [{"product": "vpn", "tier": "gold", "priority": "high"}]}',
            "bad_value",
        ),
    ]
    for headers, body, reason in bad:
        answer = httpx.post(service.url, content=body, headers=headers, timeout=5)
        assert answer.status_code == 400
        assert answer.json()["reason"] == reason
    status = _status(service)
    assert status["payloads"]["malformed"] == before + len(bad)
    assert "'priority': 'high' is not a number" in status["recentErrors"][-1]["message"]
    text = httpx.get(f"{service.url}/metrics", timeout=5).text
    assert (
        'kubeforge_drift_malformed_payloads_total{monitor="bot-drift",namespace="team-a",reason="bad_value"} 1.0'
        in text
    )
    assert service.proc.poll() is None  # still serving


def test_drift_and_bias_fire_the_alerts(lab: dict[str, Any]) -> None:
    service, prom = lab["service"], lab["prom"]
    shifted = support_tickets(WINDOW, seed=3, products=["vpn", "email"])
    _send(service.url, shifted, "v2", fair=False)

    # the window was already full: the periodic evaluations saw a mix while the events came in;
    # this one sees only the shifted traffic
    latest = httpx.post(f"{service.url}/evaluate", timeout=10).json()
    assert latest["driftDetected"]
    assert latest["biasDetected"]
    crossed = {(s["feature"], s["metric"]) for s in latest["scores"] if s["crossed"]}
    assert ("product", "psi") in crossed
    assert ("product", "chiSquare") in crossed
    assert ("tier", "spd") in crossed
    assert ("tier", "dir") in crossed
    assert ("tier", "psi") not in crossed  # only the product mix moved

    def firing() -> set[tuple[str, str, str]] | None:
        got = {
            (a["labels"]["alertname"], a["labels"]["feature"], a["labels"]["metric"])
            for a in _alerts(prom)
        }
        want = {
            ("KubeforgeDriftDetected", "product", "psi"),
            ("KubeforgeBiasDetected", "tier", "dir"),
        }
        return got if want <= got else None

    got = wait_until(firing, timeout=30, what="the alerts to fire in Prometheus")
    assert all(
        name != "KubeforgeDriftDetected" or metric not in ("spd", "dir") for name, _, metric in got
    )


def _labelled_traffic(url: str, n: int, right: float, seed: int) -> list[dict[str, Any]]:
    """``n`` inferences of one ticket each (prediction: priority >= 3), and the labels that
    make a share ``right`` of them correct, as a client sends them later."""
    labels = []
    with httpx.Client(timeout=10) as client:
        for i, row in enumerate(support_tickets(n, seed=seed)):
            event_id, predicted = f"gt-{seed}-{i}", int(row["priority"] >= 3)
            request, response = {"instances": [row]}, {"predictions": [predicted]}
            for answer in log_inference(client, url, request, response, event_id=event_id):
                assert answer.status_code == 202, answer.text
            truth = predicted if i < round(n * right) else 1 - predicted
            labels.append({"id": event_id, "label": truth})
    return labels


def test_accuracy_from_late_labels_fires_the_quality_alert(lab: dict[str, Any]) -> None:
    service, prom = lab["service"], lab["prom"]
    url = service.url
    good = _labelled_traffic(url, LABELS_NEEDED, right=1.0, seed=7)
    # too few labels for a verdict: none on the metrics, "insufficient" in the status
    answer = httpx.post(f"{url}/groundtruth", json={"labels": good[:10]}, timeout=10)
    assert (answer.status_code, answer.json()["accepted"]) == (200, 10)
    quality = httpx.post(f"{url}/evaluate", timeout=10).json()["groundTruth"]
    assert (quality["labels"], quality["sufficient"], quality["scores"]) == (10, False, [])
    assert "kubeforge_model_quality{" not in httpx.get(f"{url}/metrics", timeout=5).text

    answer = httpx.post(f"{url}/groundtruth", json={"labels": good[10:]}, timeout=10)
    assert answer.json()["windowLabels"] == LABELS_NEEDED
    quality = httpx.post(f"{url}/evaluate", timeout=10).json()["groundTruth"]
    assert quality["degraded"] is False
    assert {s["metric"]: s["value"] for s in quality["scores"]} == {"accuracy": 1.0, "f1": 1.0}

    # the model goes wrong: 40 more predictions, a quarter of them right (the window keeps 500)
    bad = _labelled_traffic(url, LABELS_NEEDED, right=0.25, seed=8)
    bad.append({"id": "never-logged", "label": 1})
    answer = httpx.post(f"{url}/groundtruth", json={"labels": bad}, timeout=10).json()
    assert answer["accepted"] == LABELS_NEEDED
    assert [(r["item"], r["reason"]) for r in answer["rejected"]] == [(40, "unknown_id")]
    quality = httpx.post(f"{url}/evaluate", timeout=10).json()["groundTruth"]
    scores = {s["metric"]: s for s in quality["scores"]}
    assert scores["accuracy"]["value"] == pytest.approx((40 + 10) / 80)
    assert scores["accuracy"]["crossed"]
    status = _status(service)["groundTruth"]
    assert status["labels"]["unknown_id"] == 1
    assert status["pendingPredictions"] >= 2 * LABELS_NEEDED

    def firing() -> list[dict[str, Any]] | None:
        got = [a for a in _alerts(prom) if a["labels"]["alertname"] == "KubeforgeModelQualityLow"]
        return got or None

    alerts = wait_until(firing, timeout=30, what="KubeforgeModelQualityLow to fire")
    assert {a["labels"]["metric"] for a in alerts} >= {"accuracy"}


def test_injected_outliers_raise_the_anomaly_rate_and_its_alert(lab: dict[str, Any]) -> None:
    service, prom = lab["service"], lab["prom"]
    _send(service.url, support_tickets(WINDOW, seed=11), "v1", fair=True)
    calm = httpx.post(f"{service.url}/evaluate", timeout=30).json()["anomalies"]
    assert calm["rate"] <= 0.05, calm
    assert not calm["detected"]
    outliers = [
        {"id": 1, "text": "?", "product": "quantum", "tier": "gold", "priority": 3},
        {"id": 2, "text": "?", "product": "vpn", "tier": "gold", "priority": 99},
    ] * 20
    _send(service.url, support_tickets(WINDOW - 40, seed=12) + outliers, "v1", fair=True)
    found = httpx.post(f"{service.url}/evaluate", timeout=30).json()["anomalies"]
    assert found["rate"] >= 40 / WINDOW
    assert found["detected"]
    reasons = {r for t in found["top"] for r in t["reasons"]}
    assert "product 'quantum' never appears in the reference" in reasons
    assert any(r.startswith("priority 99 is outside the reference's") for r in reasons)

    def firing() -> list[dict[str, Any]] | None:
        got = [a for a in _alerts(prom) if a["labels"]["alertname"] == "KubeforgeAnomalyRateHigh"]
        return got or None

    alerts = wait_until(firing, timeout=30, what="KubeforgeAnomalyRateHigh to fire")
    assert alerts[0]["labels"]["monitor"] == NAME


def test_a_prompt_topic_change_is_text_drift(lab: dict[str, Any]) -> None:
    """A monitor of the tickets' text: quiet on tickets like the reference's, drift when only
    two products are asked about; the report says what moved, with examples."""
    config = MonitorConfig(
        namespace=NS,
        name="bot-text",
        reference_uri=f"file://{lab['reference']}",
        features=[{"name": "text", "type": "text"}],
        metrics={"embeddingDrift": 0.7},
        window_size=100,
        interval_seconds=60,
    )
    service = start_drift_service(lab["work"], config)
    try:
        _send(service.url, support_tickets(100, seed=21), "v1", fair=True)
        calm = httpx.post(f"{service.url}/evaluate", timeout=30).json()
        assert not calm["driftDetected"], calm
        _send(service.url, support_tickets(100, seed=22, products=["vpn", "email"]), "v1", True)
        drifted = httpx.post(f"{service.url}/evaluate", timeout=30).json()
        (score,) = drifted["scores"]
        assert (score["feature"], score["metric"], score["crossed"]) == (
            "text",
            "embeddingDrift",
            True,
        )
        page = httpx.get(f"{service.url}/report", timeout=30).text
        assert "<h3>text (text)</h3>" in page
        assert "Current texts least like the reference" in page
        text = httpx.get(f"{service.url}/metrics", timeout=5).text
        assert 'feature="text",metric="embeddingDrift"' in text
    finally:
        service.stop()


def test_reports_from_the_window_and_from_files(lab: dict[str, Any]) -> None:
    service, work = lab["service"], lab["work"]
    page = httpx.get(f"{service.url}/report", timeout=30)
    assert page.status_code == 200
    assert "Drift found" in page.text
    # the verdict in words first: the answers (the labels sent above), the inputs, fairness and
    # the strange requests, then quality over time and the strangest requests, escaped
    in_short = page.text[page.text.index("<h2>In short</h2>") : page.text.index("</ul>")]
    assert "The answers got worse: accuracy 0.625 is below 0.8" in in_short
    assert "The inputs moved" in in_short
    assert "look like nothing in the training data" in in_short
    assert "<h2>Model quality (from the true outcomes)</h2>" in page.text
    assert "quality over time" in page.text
    assert "never appears in the reference" in page.text
    assert "<b>product</b>: psi is" in page.text
    assert "over time" in page.text  # the history of evaluations is plotted
    current = write_jsonl(work / "current.jsonl", support_tickets(300, seed=5, products=["vpn"]))
    with lab["reference"].open("rb") as ref, current.open("rb") as cur:
        answer = httpx.post(
            f"{service.url}/report", files={"reference": ref, "current": cur}, timeout=30
        )
    assert answer.status_code == 200
    assert "Drift found" in answer.text
    broken = write_jsonl(work / "broken.jsonl", [{"product": "vpn"}] * 20)
    with lab["reference"].open("rb") as ref, broken.open("rb") as cur:
        answer = httpx.post(
            f"{service.url}/report", files={"reference": ref, "current": cur}, timeout=30
        )
    assert answer.status_code == 422
    assert "has no column 'tier'" in answer.json()["detail"]


WHO = f"DriftMonitor {NS}/{NAME}"


def _quiet(at: str, alert: str) -> dict[str, Any]:
    """promtool: ``alert`` is not firing at ``at``."""
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def _fires(at: str, alert: str, summary: str, description: str, **labels: str) -> dict[str, Any]:
    """promtool: ``alert`` fires at ``at`` for this monitor, with these annotations and labels."""
    expected = {
        "exp_labels": {
            "severity": "warning",
            "kubeforge_monitor": NAME,
            "namespace": NS,
            "monitor": NAME,
            **labels,
        },
        "exp_annotations": {"summary": summary, "description": description},
    }
    return {"eval_time": at, "alertname": alert, "exp_alerts": [expected]}


def test_alert_rules_pass_promtool_tests(lab: dict[str, Any]) -> None:
    sel = f'namespace="{NS}", monitor="{NAME}"'
    tests = {
        "rule_files": [str(lab["rules"])],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'kubeforge_drift_detected{{{sel}, feature="product", metric="psi"}}',
                        "values": "0 0 1 1",
                    },
                    {
                        "series": f'kubeforge_drift_detected{{{sel}, feature="tier", metric="dir"}}',
                        "values": "0 0 0 1",
                    },
                    {
                        "series": 'kubeforge_drift_detected{namespace="other", monitor="x", feature="a", metric="psi"}',
                        "values": "1 1 1 1",
                    },
                    {
                        "series": f"kubeforge_drift_last_evaluation_timestamp_seconds{{{sel}}}",
                        "values": "0 60 120 180x20",
                    },
                    {
                        "series": f'kubeforge_model_quality_degraded{{{sel}, metric="accuracy"}}',
                        "values": "0 1 1 1",
                    },
                    {
                        "series": f'kubeforge_ground_truth_labels_total{{{sel}, result="accepted"}}',
                        "values": "0+10x30",
                    },
                    {
                        "series": f'kubeforge_ground_truth_labels_total{{{sel}, result="unknown_id"}}',
                        "values": "0+5x30",
                    },
                ],
                "alert_rule_test": [
                    _quiet("1m", "KubeforgeDriftDetected"),
                    _quiet("0m", "KubeforgeModelQualityLow"),
                    _fires(
                        "1m",
                        "KubeforgeModelQualityLow",
                        "Model quality: accuracy past its threshold",
                        f"{WHO}: the accuracy of the model's predictions against their ground "
                        "truth crossed its threshold.",
                        metric="accuracy",
                    ),
                    # a third of the labels unmatched, for 15 minutes
                    _quiet("10m", "KubeforgeGroundTruthUnmatched"),
                    _fires(
                        "25m",
                        "KubeforgeGroundTruthUnmatched",
                        "Over 10% of ground-truth labels match no logged prediction",
                        f"{WHO} cannot join 33.33% of the labels it is sent (unknown or expired "
                        "inference ids); see its status.quality.received.",
                    ),
                    _fires(
                        "2m",
                        "KubeforgeDriftDetected",
                        "Data drift: psi of product",
                        f"{WHO}: psi of product crossed its threshold.",
                        feature="product",
                        metric="psi",
                    ),
                    _fires(
                        "3m",
                        "KubeforgeBiasDetected",
                        "Bias: dir of tier",
                        f"{WHO}: dir of tier (protected attribute) crossed its threshold.",
                        feature="tier",
                        metric="dir",
                    ),
                    # last evaluation at 3m: stale from 9m (over 300 s), firing after 5 more minutes
                    _quiet("13m", "KubeforgeDriftEvaluationStale"),
                    _fires(
                        "14m",
                        "KubeforgeDriftEvaluationStale",
                        "Drift scores are stale",
                        f"{WHO} has not evaluated for more than 300s: too little traffic to fill "
                        "the window, or the service is down.",
                    ),
                ],
            }
        ],
    }
    test_file = lab["work"] / "rules_test.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    done = subprocess.run(
        ["promtool", "test", "rules", str(test_file)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_reference_that_does_not_match_the_features_is_refused(lab: dict[str, Any]) -> None:
    config = MonitorConfig(
        namespace=NS,
        name="mismatch",
        reference_uri=f"file://{lab['reference']}",
        features=[
            {"name": "region", "type": "categorical"},
            {"name": "product", "type": "categorical"},
        ],
    )
    service = start_drift_service(lab["work"], config, ready=False)
    try:
        assert httpx.get(f"{service.url}/readyz", timeout=5).status_code == 503
        status = _status(service)
        assert status["ready"] is False
        assert "has no column 'region'" in status["error"]
        answer = httpx.post(
            service.url,
            content=b'{"instances": []}',
            headers=logger_headers("org.kubeflow.serving.inference.request", "y"),
            timeout=5,
        )
        assert answer.status_code == 503
        assert _status(service)["payloads"]["not_ready"] == 1
    finally:
        service.stop()
