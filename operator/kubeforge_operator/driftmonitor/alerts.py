"""The monitor's alerts (pure): Prometheus rule groups as a PrometheusRule."""

from __future__ import annotations

from typing import Any

from kubeforge_crds.contracts.drift import (
    service_name,
)
from kubeforge_operator.driftmonitor.builders import MONITORING_API, drift_labels
from kubeforge_operator.runtime.children import (
    child_metadata,
)


def alert_rules(
    namespace: str, name: str, severity: str, interval_seconds: float
) -> list[dict[str, Any]]:
    """The monitor's Prometheus rule groups (a PrometheusRule's ``spec.groups``, which is also
    the rule file format ``promtool test rules`` reads).

    Long on purpose: the rules as literal data, each read as Prometheus will evaluate it."""
    sel = f'namespace="{namespace}", monitor="{name}"'
    detected = "kubeforge_drift_detected"
    by_check = "max by (namespace, monitor, feature, metric)"
    by_monitor = "sum by (namespace, monitor)"
    who = "DriftMonitor {{ $labels.namespace }}/{{ $labels.monitor }}"
    check = "{{ $labels.metric }} of {{ $labels.feature }}"
    labels = {"severity": severity, "kubeforge_monitor": name}
    warning = {**labels, "severity": "warning"}
    stale_after = int(max(3 * interval_seconds, 300))
    payloads = f"kubeforge_drift_payloads_total{{{sel}"
    labelled = f"kubeforge_ground_truth_labels_total{{{sel}"
    return [
        {
            "name": f"kubeforge-drift-{namespace}-{name}",
            "rules": [
                {
                    "alert": "KubeforgeDriftDetected",
                    "expr": f'{by_check} ({detected}{{{sel}, metric!~"spd|dir"}}) > 0',
                    "labels": labels,
                    "annotations": {
                        "summary": "Data drift: " + check,
                        "description": f"{who}: {check} crossed its threshold.",
                    },
                },
                {
                    "alert": "KubeforgeBiasDetected",
                    "expr": f'{by_check} ({detected}{{{sel}, metric=~"spd|dir"}}) > 0',
                    "labels": labels,
                    "annotations": {
                        "summary": "Bias: " + check,
                        "description": f"{who}: {check} (protected attribute) crossed its "
                        "threshold.",
                    },
                },
                {
                    "alert": "KubeforgeModelQualityLow",
                    "expr": "max by (namespace, monitor, metric) "
                    f"(kubeforge_model_quality_degraded{{{sel}}}) > 0",
                    "labels": labels,
                    "annotations": {
                        "summary": "Model quality: {{ $labels.metric }} past its threshold",
                        "description": f"{who}: the {{{{ $labels.metric }}}} of the model's "
                        "predictions against their ground truth crossed its threshold.",
                    },
                },
                {
                    "alert": "KubeforgeAnomalyRateHigh",
                    "expr": f"{by_monitor} (kubeforge_anomaly_detected{{{sel}}}) > 0",
                    "labels": labels,
                    "annotations": {
                        "summary": "Many anomalous requests",
                        "description": f"{who}: more of the window's requests than its "
                        "threshold look like nothing in the reference; see its "
                        "status.anomalies for the strangest.",
                    },
                },
                {
                    "alert": "KubeforgeGroundTruthUnmatched",
                    "expr": f'{by_monitor} (rate({labelled}, result=~"unknown_id|expired"}}[15m]))'
                    f" / {by_monitor} (rate({labelled}}}[15m])) > 0.1",
                    "for": "15m",
                    "labels": warning,
                    "annotations": {
                        "summary": "Over 10% of ground-truth labels match no logged prediction",
                        "description": f"{who} cannot join "
                        "{{ $value | humanizePercentage }} of the labels it is sent (unknown "
                        "or expired inference ids); see its status.quality.received.",
                    },
                },
                {
                    "alert": "KubeforgeDriftEvaluationStale",
                    "expr": "time() - kubeforge_drift_last_evaluation_timestamp_seconds"
                    f"{{{sel}}} > {stale_after}",
                    "for": "5m",
                    "labels": warning,
                    "annotations": {
                        "summary": "Drift scores are stale",
                        "description": f"{who} has not evaluated for more than {stale_after}s: "
                        "too little traffic to fill the window, or the service is down.",
                    },
                },
                {
                    "alert": "KubeforgeDriftMalformedPayloads",
                    "expr": f'{by_monitor} (rate({payloads}, result="malformed"}}[5m])) / '
                    f"{by_monitor} (rate({payloads}}}[5m])) > 0.1",
                    "for": "10m",
                    "labels": warning,
                    "annotations": {
                        "summary": "Over 10% of inference payloads are malformed",
                        "description": f"{who} cannot read "
                        "{{ $value | humanizePercentage }} of payloads; see its status.",
                    },
                },
            ],
        }
    ]


def build_prometheus_rule(
    owner: dict[str, Any], severity: str, interval_seconds: float
) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": child_metadata(owner, service_name(name), drift_labels(name)),
        "spec": {
            "groups": alert_rules(owner["metadata"]["namespace"], name, severity, interval_seconds)
        },
    }
