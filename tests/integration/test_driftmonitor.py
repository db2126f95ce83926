"""DriftMonitor on the local control plane, with its own operator.

The operator renders the drift service's ConfigMap, Deployment and Service, a ServiceMonitor and
a PrometheusRule (accepted by prometheus-operator's CRD schemas), and points the ModelServer's
InferenceService logger at the service. No kubelet runs pods here, so the test plays the
Deployment's pod: it starts the real drift service with the very config.json the operator wrote
into the ConfigMap, on the address the operator reads (``drift_status_url_template``), and posts
inference events to it as KServe's logger would. Drift then rolls back the ModelServer's canary
and creates exactly one retraining FineTuneJob, and the cool-down holds off a second.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubeforge_crds.contracts.drift import MonitorConfig, logger_url
from kubeforge_crds.contracts.labels import DRIFT_MONITOR_LABEL, TRIGGER_ANNOTATION
from kubeforge_labs.drift import log_inference, start_drift_service, write_jsonl
from kubeforge_labs.kit import Proc, free_port
from kubeforge_pipelines.tinymodel import support_tickets
from tests.integration.conftest import (
    ISOLATED_PREFIX,
    Cluster,
    OperatorProcess,
    start_operator,
    stop_operator,
    wait_until,
)

# its own operator in a namespace of its own, and no latency gate that a busy CPU could trip: run
# beside the other cluster tests (tests/conftest.py)
pytestmark = [pytest.mark.usefixtures("local_cluster"), pytest.mark.own_operator]

MS, DM = "bot", "bot-watch"
WINDOW = 100
TEMPLATE = {
    "baseModel": {"uri": "pvc://models/tiny-gpt2"},
    "dataset": {"uri": "pvc://datasets/tickets.jsonl"},
    "backend": "job",
    "resources": {"cpu": "1", "memory": "2Gi"},
    "output": {"uri": "pvc://models/bot", "modelName": "bot"},
}


def _model_server(version: str) -> dict[str, Any]:
    return {
        "model": {"uri": f"s3://models/bot/{version}"},
        "runtime": {"modelFormat": "sklearn"},
        "resources": {"cpu": "500m", "memory": "1Gi"},
        # no metrics and a long interval: the canary waits at 50 % until something acts
        "rollout": {"steps": [50, 100], "interval": "1h", "metrics": []},
    }


class Env:
    def __init__(self, cluster: Cluster, ns: str, work: Path, op: OperatorProcess, port: int):
        self.cluster, self.ns, self.work, self.op, self.port = cluster, ns, work, op, port
        self.services: list[Proc] = []

    def get(self, what: str) -> dict[str, Any] | None:
        proc = self.cluster.kubectl("get", what, "-n", self.ns, "-o", "json", check=False)
        return dict(json.loads(proc.stdout)) if proc.returncode == 0 else None

    def apply(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        obj = {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }
        self.cluster.kubectl("apply", "-n", self.ns, "-f", "-", stdin=json.dumps(obj))

    def status(self, what: str) -> dict[str, Any]:
        return dict((self.get(what) or {}).get("status") or {})

    def condition(self, what: str, type_: str) -> dict[str, Any]:
        return next((c for c in self.status(what).get("conditions", []) if c["type"] == type_), {})

    def wait_condition(
        self, what: str, type_: str, status: str, reason: str | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            c = self.condition(what, type_)
            ok = c.get("status") == status and (reason is None or c.get("reason") == reason)
            return c if ok else None

        return dict(wait_until(check, timeout, what=f"{what} {type_}={status} {reason or ''}"))

    def retrain_jobs(self, monitor: str = DM) -> list[dict[str, Any]]:
        proc = self.cluster.kubectl(
            "get",
            "finetunejobs",
            "-n",
            self.ns,
            "-l",
            f"{DRIFT_MONITOR_LABEL}={monitor}",
            "-o",
            "json",
        )
        return list(json.loads(proc.stdout)["items"])


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    ns = f"{ISOLATED_PREFIX}dm-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", ns)
    work = tmp_path_factory.mktemp("driftmonitor")
    port = free_port()
    op = start_operator(
        cluster,
        work,
        namespaces=json.dumps([ns]),
        drift_status_url_template=f"http://127.0.0.1:{port}",
    )
    e = Env(cluster, ns, work, op, port)
    yield e
    stop_operator(op)
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "operator-driftmonitor.log").write_bytes(op.log.read_bytes())
    for s in e.services:
        s.stop()
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _logger_url(env: Env) -> str | None:
    """Where the ModelServer's InferenceService logs to, if anywhere."""
    isvc = env.get(f"inferenceservice/{MS}") or {}
    logger = isvc.get("spec", {}).get("predictor", {}).get("logger") or {}
    return logger.get("url")


def _send(url: str, rows: list[dict[str, Any]]) -> None:
    with httpx.Client(timeout=10) as client:
        for start in range(0, len(rows), 10):
            batch = rows[start : start + 10]
            for answer in log_inference(
                client, url, {"instances": batch}, {"predictions": [1] * len(batch)}
            ):
                assert answer.status_code == 202, answer.text


def test_drift_acts_once_children_and_logger(env: Env) -> None:
    reference = write_jsonl(env.work / "reference.jsonl", support_tickets(3000, seed=1))
    env.apply("ModelServer", MS, _model_server("v1"))
    env.apply(
        "DriftMonitor",
        DM,
        {
            "target": {"modelServer": MS},
            "reference": {"source": "uri", "uri": f"file://{reference}"},
            "metrics": [
                {"name": "psi", "threshold": 0.2},
                {"name": "chiSquare", "threshold": 0.001},
            ],
            "window": {"size": WINDOW, "interval": "1s"},
            "actions": {
                "retrain": {"enabled": True, "template": TEMPLATE, "cooldown": "1h"},
                "rollback": True,
            },
        },
    )
    # the operator's children, accepted by the real CRD schemas
    cm = wait_until(
        lambda: env.get(f"configmap/{DM}-drift"), 60, what="the drift service ConfigMap"
    )
    for kind in ("deployment", "service", "networkpolicy", "servicemonitor", "prometheusrule"):
        child = wait_until(lambda k=kind: env.get(f"{k}/{DM}-drift"), 30, what=kind)
        assert child["metadata"]["ownerReferences"][0]["name"] == DM
    rule = env.get(f"prometheusrule/{DM}-drift")
    assert rule is not None
    assert {r["alert"] for r in rule["spec"]["groups"][0]["rules"]} >= {"KubeforgeDriftDetected"}

    # play the Deployment's pod: the real service with the operator's own config
    config = MonitorConfig.model_validate_json(cm["data"]["config.json"])
    assert config.reference_uri == f"file://{reference}"
    assert config.window_size == WINDOW
    service = start_drift_service(env.work, config, port=env.port)
    env.services.append(service)

    want = logger_url(env.ns, DM)
    wait_until(
        lambda: _logger_url(env) == want,
        60,
        what="the InferenceService logger pointing at the drift service",
    )
    env.wait_condition(f"driftmonitor/{DM}", "LoggerConfigured", "True")
    env.wait_condition(f"driftmonitor/{DM}", "ServiceReady", "True")
    filling = env.wait_condition(f"driftmonitor/{DM}", "DriftDetected", "Unknown", "WindowFilling")
    assert f"0 of {WINDOW}" in filling["message"]

    _send(service.url, support_tickets(WINDOW, seed=2))
    env.wait_condition(f"driftmonitor/{DM}", "DriftDetected", "False", "NoDrift")
    assert env.status(f"driftmonitor/{DM}")["phase"] == "Monitoring"
    assert env.retrain_jobs() == []

    # a canary in progress, then drift on the live traffic
    env.apply("ModelServer", MS, _model_server("v2"))
    wait_until(lambda: env.status(f"modelserver/{MS}").get("canary"), 60, what="the canary rollout")
    _send(service.url, support_tickets(WINDOW, seed=3, products=["vpn", "email"]))
    drift = env.wait_condition(f"driftmonitor/{DM}", "DriftDetected", "True", "DriftDetected")
    assert "product psi" in drift["message"]

    rolled = env.wait_condition(f"modelserver/{MS}", "RolledBack", "True", "DriftDetected")
    assert f"DriftMonitor {DM}" in rolled["message"]
    ms_status = env.status(f"modelserver/{MS}")
    assert ms_status["stable"]["uri"] == "s3://models/bot/v1"
    assert "canary" not in ms_status

    jobs = wait_until(env.retrain_jobs, 30, what="the retraining FineTuneJob")
    assert [j["metadata"]["name"] for j in jobs] == [f"{DM}-retrain-1"]
    assert jobs[0]["metadata"]["annotations"][TRIGGER_ANNOTATION].startswith(
        f"drift:{env.ns}/{DM}: product psi"
    )
    assert jobs[0]["spec"]["dataset"]["uri"] == TEMPLATE["dataset"]["uri"]

    # still drifting for several evaluations: no second job (cool-down 1h), one of each action
    time.sleep(8)
    assert len(env.retrain_jobs()) == 1
    status = env.status(f"driftmonitor/{DM}")
    assert status["phase"] == "Drifted"
    types = [a["type"] for a in status["actions"]]
    assert sorted(types) == ["alert", "retrain", "rollback"], status["actions"]
    crossed = {(s["feature"], s["metric"]) for s in status["scores"] if s["crossed"]}
    assert ("product", "psi") in crossed
    assert status["windowRows"] == WINDOW


def test_missing_target_and_no_training_data(env: Env) -> None:
    env.apply("DriftMonitor", "orphan", {"target": {"modelServer": "nope"}})
    missing = env.wait_condition(
        "driftmonitor/orphan", "TargetFound", "False", "ModelServerNotFound"
    )
    assert "ModelServer nope does not exist" in missing["message"]
    # bot serves a model URI: "the training data of its FineTuneJob" does not exist
    env.apply("DriftMonitor", "no-data", {"target": {"modelServer": MS}})
    nodata = env.wait_condition(
        "driftmonitor/no-data", "ReferenceResolved", "False", "NoTrainingData"
    )
    assert "set spec.reference.source to uri" in nodata["message"]
    assert env.get("configmap/no-data-drift") is None


def test_deleting_the_monitor_removes_the_logger(env: Env) -> None:
    env.cluster.kubectl("delete", "driftmonitor", DM, "-n", env.ns)
    # "no-data" targets the same ModelServer and is next by name: the logger moves to it
    want = logger_url(env.ns, "no-data")
    wait_until(
        lambda: _logger_url(env) == want,
        60,
        what="the logger to move to the remaining DriftMonitor",
    )
    env.cluster.kubectl("delete", "driftmonitor", "no-data", "-n", env.ns)
    wait_until(
        lambda: (
            "logger"
            not in (env.get(f"inferenceservice/{MS}") or {})
            .get("spec", {})
            .get("predictor", {"logger": 1})
        ),
        60,
        what="the logger to be removed",
    )
    assert len(env.retrain_jobs()) == 1  # the retraining history stays


def test_degraded_quality_from_late_labels_retrains_once(env: Env) -> None:
    """spec.groundTruth: labels sent after the predictions, joined by inference id; too few
    give no verdict; accuracy below its threshold is Degraded and starts one retraining run."""
    for service in env.services:  # the first monitor's service held the operator's address
        service.stop()
    env.services.clear()
    name = "bot-quality"
    reference = write_jsonl(env.work / "reference-q.jsonl", support_tickets(3000, seed=1))
    env.apply(
        "DriftMonitor",
        name,
        {
            "target": {"modelServer": MS},
            "reference": {"source": "uri", "uri": f"file://{reference}"},
            "window": {"size": WINDOW, "interval": "1s"},
            "groundTruth": {
                "task": "classification",
                "metrics": [{"name": "accuracy", "threshold": 0.8}],
                "minLabels": 20,
            },
            "actions": {"retrain": {"enabled": True, "template": TEMPLATE, "cooldown": "1h"}},
        },
    )
    cm = wait_until(
        lambda: env.get(f"configmap/{name}-drift"), 60, what="the drift service ConfigMap"
    )
    config = MonitorConfig.model_validate_json(cm["data"]["config.json"])
    assert config.ground_truth is not None
    assert (config.ground_truth.min_labels, config.ground_truth.metrics) == (20, {"accuracy": 0.8})
    rule = wait_until(
        lambda: env.get(f"prometheusrule/{name}-drift"), 60, what="the drift alert rules"
    )
    assert "KubeforgeModelQualityLow" in {r["alert"] for r in rule["spec"]["groups"][0]["rules"]}
    service = start_drift_service(env.work, config, port=env.port)
    env.services.append(service)
    what = f"driftmonitor/{name}"
    waiting = env.wait_condition(what, "QualityDegraded", "Unknown", "InsufficientLabels")
    assert "0 labelled predictions in the window, 20 needed" in waiting["message"]

    # 100 predictions of class 1; a day later (here: now) the truth for 30 of them, 10 right
    ids = [f"q-{i}" for i in range(WINDOW)]
    with httpx.Client(timeout=10) as client:
        for event_id, row in zip(ids, support_tickets(WINDOW, seed=2), strict=True):
            for answer in log_inference(
                client, service.url, {"instances": [row]}, {"predictions": [1]}, event_id
            ):
                assert answer.status_code == 202, answer.text
    labels = [{"id": ids[i], "label": 1 if i < 10 else 0} for i in range(30)]
    answer = httpx.post(f"{service.url}/groundtruth", json={"labels": labels}, timeout=10)
    assert answer.status_code == 200, answer.text

    degraded = env.wait_condition(what, "QualityDegraded", "True", "QualityDegraded")
    assert degraded["message"] == "accuracy 0.3333 < 0.8"
    status = env.status(what)
    assert status["phase"] == "Degraded"
    assert status["quality"]["labels"] == 30
    assert status["quality"]["received"]["accepted"] == 30
    assert status["quality"]["pending"] == WINDOW
    jobs = wait_until(
        lambda: env.retrain_jobs(name), 30, what="the retraining FineTuneJob of the quality monitor"
    )
    assert [j["metadata"]["name"] for j in jobs] == [f"{name}-retrain-1"]
    trigger = jobs[0]["metadata"]["annotations"][TRIGGER_ANNOTATION]
    assert trigger.startswith(f"quality:{env.ns}/{name}: accuracy 0.3333 < 0.8")
    time.sleep(5)  # several evaluations later, still degraded: still one run (cool-down)
    assert len(env.retrain_jobs(name)) == 1
    assert sorted(a["type"] for a in env.status(what)["actions"]) == ["alert", "retrain"]
    env.cluster.kubectl("delete", "driftmonitor", name, "-n", env.ns)
