"""A DriftMonitor's drift service as a real pod on the real node: it loads its reference from a
PVC, receives inference events the way KServe's logger posts them (from another pod, through the
Service's DNS name), and the operator, itself a pod, reads its verdict."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.e2e.conftest import (
    apply,
    condition,
    get,
    node_control,
    volume_with_client,
    wait_for_condition,
)
from tests.integration.conftest import Cluster, wait_until

from kubeforge_labs.drift import in_pod_json_post, in_pod_sender
from kubeforge_pipelines.tinymodel import support_tickets

WINDOW = 60


def jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_drift_service_pod_detects_drift(cluster: Cluster, e2e_namespace: str) -> None:
    ns = e2e_namespace
    # the reference data on a volume, written by a pod of the base image
    volume_with_client(cluster, ns, "data", "/data")
    cluster.kubectl(
        "exec",
        "-i",
        "-n",
        ns,
        "client",
        "--",
        "sh",
        "-c",
        # the volume is the pod user's (root here); the drift service runs as another user
        "cat > /data/reference.jsonl && chmod a+rx /data && chmod a+r /data/reference.jsonl",
        stdin=jsonl(support_tickets(1500, seed=1)),
    )
    model_server = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": "bot"},
        "spec": {"model": {"uri": "pvc://data/model"}, "runtime": {"modelFormat": "transformers"}},
    }
    monitor = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "DriftMonitor",
        "metadata": {"name": "bot-drift"},
        "spec": {
            "target": {"modelServer": "bot"},
            "reference": {"source": "uri", "uri": "pvc://data/reference.jsonl"},
            "metrics": [
                {"name": "psi", "threshold": 0.2},
                {"name": "chiSquare", "threshold": 0.001},
            ],
            "window": {"size": WINDOW, "interval": "5s"},
            "groundTruth": {
                "task": "classification",
                "metrics": [{"name": "accuracy", "threshold": 0.8}],
                "minLabels": 20,
            },
        },
    }
    apply(cluster, ns, model_server, monitor)
    ready = wait_for_condition(
        cluster, "driftmonitor", ns, "bot-drift", "ServiceReady", status="True", timeout=240
    )
    assert "1500 rows" in condition(ready, "ServiceReady")["message"]
    pods = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance=bot-drift", "-o", "json"
        ).stdout
    )["items"]
    assert [p["spec"]["nodeName"] for p in pods] == ["kf-node-0"]

    url = f"http://bot-drift-drift.{ns}.svc:8080/"
    send = ["exec", "-i", "-n", ns, "client", "--", *in_pod_sender(url, "bot", ns)]
    first = ["exec", "-i", "-n", ns, "client", "--", *in_pod_sender(url, "bot", ns, ids="q")]
    cluster.kubectl(*first, stdin=jsonl(support_tickets(WINDOW, seed=2)))
    wait_for_condition(cluster, "driftmonitor", ns, "bot-drift", "DriftDetected", reason="NoDrift")
    cluster.kubectl(*send, stdin=jsonl(support_tickets(WINDOW, seed=3, products=["vpn", "email"])))
    drifted = wait_for_condition(
        cluster, "driftmonitor", ns, "bot-drift", "DriftDetected", reason="DriftDetected"
    )
    assert drifted["status"]["phase"] == "Drifted"
    wait_until(
        lambda: get(cluster, "driftmonitor", ns, "bot-drift")["status"].get("scores"),
        60,
        1,
        "per-feature scores in the status",
    )
    # the Prometheus that prometheus-operator runs read the monitor's ServiceMonitor and
    # PrometheusRule: it scrapes the service's pod and the drift alert fires
    prometheus = node_control("monitoring").api_url()

    def firing() -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{prometheus}/api/v1/alerts", timeout=5) as resp:  # noqa: S310
            alerts = json.loads(resp.read())["data"]["alerts"]
        return [
            a
            for a in alerts
            if a["labels"].get("alertname") == "KubeforgeDriftDetected"
            and a["labels"].get("namespace") == ns
            and a["state"] == "firing"
        ]

    alerts = wait_until(firing, 120, 2, "KubeforgeDriftDetected firing in Prometheus")
    assert alerts[0]["labels"]["kubeforge_monitor"] == "bot-drift"

    # the true outcomes of the first inferences, sent later (from a pod of the namespace: the
    # drift service's NetworkPolicy admits it): ten predictions of class 1 each, 3 of 30 right
    labels = [{"id": f"q-{i}", "labels": [1] * 1 + [0] * 9} for i in range(3)]
    post = ["exec", "-i", "-n", ns, "client", "--", *in_pod_json_post(f"{url}groundtruth")]
    answer = cluster.kubectl(*post, stdin=json.dumps({"labels": labels})).stdout
    assert answer.startswith("200 "), answer
    assert json.loads(answer[4:])["windowLabels"] == 30
    degraded = wait_for_condition(
        cluster, "driftmonitor", ns, "bot-drift", "QualityDegraded", reason="QualityDegraded"
    )
    assert condition(degraded, "QualityDegraded")["message"] == "accuracy 0.1 < 0.8"
    assert degraded["status"]["phase"] == "Degraded"
    assert degraded["status"]["quality"]["labels"] == 30
