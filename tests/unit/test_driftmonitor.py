"""DriftMonitor controller, pure parts: the service configuration and children, the alert rules,
reading the drift service's status into conditions, the retraining decision, and the
ModelServer side (logger, rollback on request)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeforge_crds.contracts.labels import ROLLBACK_ANNOTATION, ROLLBACK_REASON_ANNOTATION
from kubeforge_crds.driftmonitor import DriftMonitorSpec
from kubeforge_crds.modelserver import ModelFormat, Revision
from kubeforge_operator.driftmonitor.actions import plan_retrain
from kubeforge_operator.driftmonitor.alerts import alert_rules
from kubeforge_operator.driftmonitor.builders import (
    build_deployment,
    build_network_policy,
    build_service,
    build_service_monitor,
    monitor_config,
)
from kubeforge_operator.driftmonitor.reading import read_service_status, resolve_reference
from kubeforge_operator.driftmonitor.reconcile import phase
from kubeforge_operator.modelserver.rollout import drift_rollback, rollback_reason

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OWNER = {
    "apiVersion": "kubeforge.io/v1alpha1",
    "kind": "DriftMonitor",
    "metadata": {"name": "bot-drift", "namespace": "team-a", "uid": "u-1"},
}


def spec(**over: Any) -> DriftMonitorSpec:
    base: dict[str, Any] = {"target": {"modelServer": "bot"}}
    base.update(over)
    return DriftMonitorSpec.model_validate(base)


def test_monitor_config_from_spec() -> None:
    s = spec(
        features=[{"name": "product", "type": "categorical"}],
        metrics=[{"name": "psi", "threshold": 0.3}, {"name": "spd", "threshold": 0.1}],
        bias={"protectedAttribute": "tier", "privilegedValues": ["gold"], "favourableOutcome": "1"},
        window={"size": 200, "interval": "30s"},
    )
    cfg = monitor_config("team-a", "bot-drift", s, "s3://data/tickets.jsonl")
    assert cfg.metrics == {"psi": 0.3, "spd": 0.1}
    assert cfg.window_size == 200
    assert cfg.interval_seconds == 30
    assert cfg.features[0].type == "categorical"
    assert cfg.bias is not None
    assert cfg.bias.privileged_values == ["gold"]


def test_deployment_mounts_config_and_pvc_reference_and_restarts_on_change() -> None:
    s = spec()
    a = build_deployment(
        OWNER,
        monitor_config("team-a", "bot-drift", s, "pvc://data/ref.jsonl"),
        "img:1",
        "s3-creds",
    )
    b = build_deployment(
        OWNER, monitor_config("team-a", "bot-drift", s, "pvc://data/other.jsonl"), "img:1"
    )
    pod = a["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][-2:] == ["drift", "serve"]
    assert {"name": "reference", "mountPath": "/mnt/pvc/data", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    # liveness waits for the start (a slow import is not killed), readiness follows it at once
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    digest = "kubeforge.io/config-digest"
    assert (
        a["spec"]["template"]["metadata"]["annotations"][digest]
        != b["spec"]["template"]["metadata"]["annotations"][digest]
    )
    assert a["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_only_the_namespace_kubeforge_and_prometheus_reach_the_drift_service() -> None:
    """The service port (events, labels, logged requests, reports): the monitor's namespace
    and kubeforge's; the metrics port: Prometheus's namespaces too."""
    policy = build_network_policy(OWNER, "kubeforge-system", ["monitoring", "kubeforge-system"])
    service, metrics = policy["spec"]["ingress"]
    kubeforge = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeforge-system"}}
    }
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert service["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert service["from"] == [{"podSelector": {}}, kubeforge]
    assert metrics["ports"] == [{"protocol": "TCP", "port": 9091}]
    assert metrics["from"] == [{"podSelector": {}}, kubeforge, monitoring]
    ports = {p["name"]: p["port"] for p in build_service(OWNER)["spec"]["ports"]}
    assert ports == {"http": 8080, "metrics": 9091}
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert selected == build_service(OWNER)["spec"]["selector"]


def test_service_monitor_selects_the_service() -> None:
    svc = build_service(OWNER)
    mon = build_service_monitor(OWNER, 300)
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert mon["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][1]["name"] == "metrics"
    assert mon["spec"]["endpoints"][0]["interval"] == "60s"


def test_alert_rules_select_this_monitor_only() -> None:
    groups = alert_rules("team-a", "bot-drift", "critical", 60)
    rules = {r["alert"]: r for r in groups[0]["rules"]}
    assert set(rules) == {
        "KubeforgeDriftDetected",
        "KubeforgeBiasDetected",
        "KubeforgeDriftEvaluationStale",
        "KubeforgeDriftMalformedPayloads",
        "KubeforgeModelQualityLow",
        "KubeforgeAnomalyRateHigh",
        "KubeforgeGroundTruthUnmatched",
    }
    drift = rules["KubeforgeDriftDetected"]
    assert 'namespace="team-a", monitor="bot-drift"' in drift["expr"]
    assert drift["labels"]["severity"] == "critical"
    assert "for" not in drift  # a window score is already an aggregate: fire at once
    assert "> 300" in rules["KubeforgeDriftEvaluationStale"]["expr"]  # at least 5 minutes


def _status(latest: dict[str, Any] | None, rows: int = 100) -> dict[str, Any]:
    return {
        "ready": True,
        "window": {"size": 100, "rows": rows},
        "payloads": {"ok": 7, "malformed": 1},
        "latest": latest,
    }


def test_reading_a_filling_window() -> None:
    r = read_service_status(_status(None, rows=40), bias_configured=False)
    assert r.drift.status == "Unknown"
    assert r.drift.reason == "WindowFilling"
    assert "40 of 100" in r.drift.message
    assert r.bias.reason == "NotConfigured"
    assert r.fields["payloads"] == {"ok": 7, "malformed": 1}
    assert not r.detected


def test_reading_drift_and_bias() -> None:
    latest = {
        "time": NOW.timestamp(),
        "rows": 100,
        "scores": [
            {
                "feature": "product",
                "metric": "psi",
                "value": 0.41,
                "threshold": 0.2,
                "crossed": True,
            },
            {
                "feature": "priority",
                "metric": "ks",
                "value": 0.05,
                "threshold": 0.1,
                "crossed": False,
            },
            {"feature": "tier", "metric": "dir", "value": 0.5, "threshold": 0.8, "crossed": True},
            {"feature": "age", "metric": "ks", "value": None, "threshold": 0.1, "crossed": False},
        ],
    }
    r = read_service_status(_status(latest), bias_configured=True)
    assert r.drift.status == "True"
    assert r.drift.message == "product psi 0.41 > 0.2"
    assert r.bias.status == "True"
    assert r.bias.message == "tier dir 0.5 < 0.8"
    assert r.detected
    assert r.fields["lastEvaluation"] == "2026-11-23T12:00:00Z"
    assert [s["feature"] for s in r.fields["scores"]] == [
        "product",
        "priority",
        "tier",
    ]  # no-data dropped


def _truth(latest: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "task": "regression",
        "pendingPredictions": 12,
        "windowLabels": (latest or {}).get("labels", 0),
        "labels": {"accepted": 40, "replaced": 2, "unknown_id": 3},
        "latest": latest,
    }


def test_reading_quality_insufficient_degraded_and_ok() -> None:
    body = _status(None, rows=40)
    assert read_service_status(body, False).quality.reason == "NotConfigured"
    few = {"time": NOW.timestamp(), "labels": 5, "minLabels": 30, "sufficient": False}
    r = read_service_status(body | {"groundTruth": _truth(few | {"scores": []})}, False, True)
    assert (r.quality.status, r.quality.reason) == ("Unknown", "InsufficientLabels")
    assert r.quality.message.startswith("insufficient labels: 5 labelled predictions")
    assert "(12 predictions waiting for their label)" in r.quality.message
    assert not r.detected  # no verdict, no action
    scores = [
        {"metric": "mae", "value": 2.5, "threshold": 1.0, "crossed": True},
        {"metric": "rmse", "value": 3.0, "threshold": 5.0, "crossed": False},
    ]
    bad = few | {"labels": 40, "sufficient": True, "scores": scores}
    r = read_service_status(body | {"groundTruth": _truth(bad)}, False, True)
    assert (r.quality.status, r.quality.message) == ("True", "mae 2.5 > 1")
    assert r.detected
    assert r.degraded
    assert r.crossed == ["mae 2.5 > 1"]
    assert phase(r) == "Degraded"  # outranks the drift window's filling
    quality = r.fields["quality"]
    assert (quality["labels"], quality["pending"], quality["minLabels"]) == (40, 12, 30)
    assert quality["received"]["replaced"] == 2
    assert quality["lastEvaluation"] == "2026-11-23T12:00:00Z"
    good = bad | {"scores": [dict(scores[0], value=0.5, crossed=False)]}
    r = read_service_status(body | {"groundTruth": _truth(good)}, False, True)
    assert (r.quality.status, r.quality.reason) == ("False", "QualityOK")
    assert phase(r) == "Monitoring"


def test_reading_anomalies_alerts_and_rolls_back_but_does_not_retrain() -> None:
    body = _status(None, rows=40)
    r = read_service_status(body, False, anomalies_configured=True)
    assert (r.anomalies.status, r.anomalies.reason) == ("Unknown", "WindowFilling")
    top = [
        {
            "score": 1.0,
            "reasons": ["product 'quantum' never appears in the reference"],
            "request": '{"product": "quantum"}',
        }
    ]
    found = {"rows": 200, "anomalous": 30, "rate": 0.15, "threshold": 0.05, "detected": True}
    latest = {"time": NOW.timestamp(), "rows": 200, "scores": [], "anomalies": found | {"top": top}}
    r = read_service_status(_status(latest), False, anomalies_configured=True)
    assert (r.anomalies.status, r.anomalies.reason) == ("True", "AnomaliesDetected")
    assert r.anomalies.message == (
        "15.0% of the latest 200 requests are anomalous, above 5.0%; the strangest: "
        "product 'quantum' never appears in the reference"
    )
    assert r.detected
    assert not r.retrain_worthy  # strange requests are no training data
    assert phase(r) == "Drifted"
    assert r.fields["anomalies"]["top"][0]["request"] == '{"product": "quantum"}'
    calm = latest | {"anomalies": found | {"anomalous": 2, "rate": 0.01, "detected": False}}
    r = read_service_status(_status(calm), False, anomalies_configured=True)
    assert (r.anomalies.status, r.anomalies.reason) == ("False", "NoAnomalies")
    assert read_service_status(_status(calm), False).anomalies.reason == "NotConfigured"
    # whatever an older or foreign service sends, the status gets what it can hold
    long = found | {"top": [{"score": 1.0, "reasons": ["r" * 400] * 20, "request": "q" * 900}]}
    r = read_service_status(_status(latest | {"anomalies": long}), False, anomalies_configured=True)
    (shown,) = r.fields["anomalies"]["top"]
    assert (len(shown["reasons"]), len(shown["reasons"][0]), len(shown["request"])) == (
        16,
        256,
        600,
    )
    # a section the spec no longer has is removed from the status
    assert read_service_status(_status(calm), False).fields["anomalies"] is None
    assert read_service_status(_status(calm), False).fields["quality"] is None


def _ftj(name: str, created: datetime, phase: str | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")}
    }
    if phase:
        obj["status"] = {"phase": phase}
    return obj


def test_plan_retrain_first_running_cooldown_and_next() -> None:
    cool = timedelta(hours=1)
    first = plan_retrain("m", [], cool, NOW)
    assert (first.action, first.name) == ("create", "m-retrain-1")
    running = plan_retrain(
        "m", [_ftj("m-retrain-1", NOW - timedelta(hours=5), "Running")], cool, NOW
    )
    assert running.action == "running"
    fresh = plan_retrain(
        "m", [_ftj("m-retrain-1", NOW - timedelta(minutes=10), "Succeeded")], cool, NOW
    )
    assert fresh.action == "cooldown"
    assert "until 2026-11-23T12:50:00Z" in fresh.detail
    later = plan_retrain(
        "m",
        [
            _ftj("m-retrain-1", NOW - timedelta(hours=3), "Failed"),
            _ftj("m-retrain-2", NOW - timedelta(hours=2), "Succeeded"),
        ],
        cool,
        NOW,
    )
    assert (later.action, later.name) == ("create", "m-retrain-3")


def test_resolve_reference() -> None:
    ms_uri = {"metadata": {"name": "bot"}, "spec": {"model": {"uri": "s3://m/v1"}}}
    got = resolve_reference(spec(), ms_uri, None, None)
    assert not isinstance(got, tuple)
    assert got.reason == "NoTrainingData"
    assert "set spec.reference.source to uri" in got.message
    assert resolve_reference(
        spec(reference={"source": "uri", "uri": "s3://r/x.csv"}), ms_uri, None, None
    ) == ("s3://r/x.csv", None)
    ftj = {
        "spec": {"dataset": {"uri": "s3://d/spec.jsonl", "dataConnection": "creds"}},
        "status": {"lineage": {"datasetUri": "s3://d/used.jsonl"}},
    }
    ms_ftj = {"metadata": {"name": "bot"}, "spec": {"model": {"fineTuneJob": "tune"}}}
    assert resolve_reference(spec(), ms_ftj, ftj, "tune") == ("s3://d/used.jsonl", "creds")
    missing = resolve_reference(spec(), ms_ftj, None, "tune")
    assert not isinstance(missing, tuple)
    assert missing.reason == "FineTuneJobNotFound"


def test_drift_rollback_only_for_the_canary_named() -> None:
    rev = Revision(
        revision="rabc", uri="s3://m/v2", model_format=ModelFormat.SKLEARN, traffic_percent=10
    )
    obj = {
        "metadata": {
            "annotations": {
                ROLLBACK_ANNOTATION: "rabc",
                ROLLBACK_REASON_ANNOTATION: "DriftMonitor d: product psi 0.4 > 0.2",
            }
        }
    }
    decision = drift_rollback(obj, rev)
    assert decision is not None
    assert decision.action == "rollback"
    assert rollback_reason(decision) == "DriftDetected"
    assert "product psi" in decision.reason
    stale = {"metadata": {"annotations": {ROLLBACK_ANNOTATION: "rold"}}}
    assert drift_rollback(stale, rev) is None
    assert drift_rollback({"metadata": {}}, rev) is None


@pytest.mark.parametrize("url", [None, "http://bot-drift-drift.team-a.svc.cluster.local:8080/"])
def test_inference_service_logger(url: str | None) -> None:
    from kubeforge_crds.modelserver import ModelServerSpec
    from kubeforge_operator.modelserver.builders import build_inference_service
    from kubeforge_operator.modelserver.revisions import desired_revision
    from kubeforge_operator.runtime.placement import Placement

    ms_spec = ModelServerSpec.model_validate({"model": {"uri": "s3://m/v1"}})
    rev = desired_revision("s3://m/v1", ms_spec, None)
    owner = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": "bot", "namespace": "team-a", "uid": "u"},
    }
    isvc = build_inference_service(owner, ms_spec, Placement(), rev, None, url)
    predictor = isvc["spec"]["predictor"]
    if url:
        assert predictor["logger"] == {"mode": "all", "url": url}
    else:
        assert "logger" not in predictor


def test_live_data_export_location_and_mount() -> None:
    from kubeforge_crds.driftmonitor import DriftMonitorSpec
    from kubeforge_operator.driftmonitor.actions import with_live_data
    from kubeforge_operator.driftmonitor.builders import (
        build_deployment,
        export_dir,
        monitor_config,
    )

    def spec(uri: str, include: bool = True) -> DriftMonitorSpec:
        return DriftMonitorSpec.model_validate(
            {
                "target": {"modelServer": "bot"},
                "actions": {
                    "retrain": {"enabled": True, "includeLiveData": include, "exportUri": uri}
                },
            }
        )

    assert export_dir(spec("pvc://data/exports/bot")) == "/mnt/export/data/exports/bot"
    assert export_dir(spec("file:///srv/exports")) == "/srv/exports"
    assert export_dir(spec("pvc://data/x", include=False)) is None
    owner = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "DriftMonitor",
        "metadata": {"name": "watch", "namespace": "team-a", "uid": "u1"},
    }
    config = monitor_config("team-a", "watch", spec("pvc://data/exports"), "pvc://data/ref.jsonl")
    assert (config.export_dir, config.export_uri) == (
        "/mnt/export/data/exports",
        "pvc://data/exports",
    )
    # the reference and the exports on one claim: one volume, mounted read-only and writable
    pod = build_deployment(owner, config, "img")["spec"]["template"]["spec"]
    mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "reference"]
    assert mounts == [
        {"name": "reference", "mountPath": "/mnt/pvc/data", "readOnly": True},
        {"name": "reference", "mountPath": "/mnt/export/data"},
    ]
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"name": "reference", "persistentVolumeClaim": {"claimName": "data"}}]
    # on two claims: the reference's read-only, the exports' writable
    config = monitor_config("team-a", "watch", spec("pvc://data/exports"), "pvc://ref/ref.jsonl")
    pod = build_deployment(owner, config, "img")["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["export"] == {"name": "export", "mountPath": "/mnt/export/data"}
    assert mounts["reference"]["readOnly"] is True
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert {v["name"]: v["persistentVolumeClaim"] for v in claims} == {
        "reference": {"claimName": "ref", "readOnly": True},
        "export": {"claimName": "data"},
    }
    manifest = {"metadata": {"name": "watch-retrain-1"}, "spec": {"dataset": {"uri": "pvc://d/a"}}}
    with_live_data(
        manifest,
        {
            "uri": "pvc://data/exports/watch-retrain-1.jsonl",
            "referenceRows": 600,
            "liveRows": 150,
            "sha256": "ab" * 32,
        },
    )
    assert manifest["spec"]["dataset"]["uri"] == "pvc://data/exports/watch-retrain-1.jsonl"
    assert manifest["metadata"]["annotations"]["kubeforge.io/live-data"] == (
        "600 training rows + 150 live rows, sha256 " + "ab" * 32
    )
