"""The children a DriftMonitor becomes (pure): the drift service's ConfigMap, Deployment and
Service, and its ServiceMonitor."""

from __future__ import annotations

import hashlib
import urllib.parse
from typing import Any

from kubeforge_crds import GROUP
from kubeforge_crds.base import parse_duration
from kubeforge_crds.contracts.drift import (
    CONFIG_FILE,
    EXPORT_MOUNT,
    METRICS_PORT,
    SERVICE_PORT,
    AnomalyConfig,
    BiasConfig,
    FeatureConfig,
    GroundTruthConfig,
    MonitorConfig,
    service_name,
)
from kubeforge_crds.driftmonitor import (
    DriftMonitorSpec,
)
from kubeforge_operator.runtime.children import (
    child_metadata,
    container_security_context,
    pod_security_context,
    standard_labels,
    startup_probe,
)
from kubeforge_operator.runtime.placement import Placement

MONITORING_API = "monitoring.coreos.com/v1"


def monitor_config(
    namespace: str, name: str, spec: DriftMonitorSpec, reference: str
) -> MonitorConfig:
    bias = spec.bias
    return MonitorConfig(
        namespace=namespace,
        name=name,
        reference_uri=reference,
        features=[
            FeatureConfig(name=f.name, type=str(f.type), source=str(f.source))  # type: ignore[arg-type]
            for f in spec.features
        ],
        metrics={str(m.name): m.threshold for m in spec.metrics},
        bias=(
            BiasConfig(
                protected_attribute=bias.protected_attribute,
                privileged_values=list(bias.privileged_values),
                favourable_outcome=bias.favourable_outcome,
            )
            if bias
            else None
        ),
        ground_truth=ground_truth_config(spec),
        anomalies=(
            AnomalyConfig(
                quantile=spec.anomalies.quantile,
                rate_threshold=spec.anomalies.rate_threshold,
                top=spec.anomalies.top,
            )
            if spec.anomalies
            else None
        ),
        window_size=spec.window.size,
        interval_seconds=parse_duration(spec.window.interval).total_seconds(),
        export_dir=export_dir(spec),
        export_uri=spec.actions.retrain.export_uri if export_dir(spec) else None,
    )


def ground_truth_config(spec: DriftMonitorSpec) -> GroundTruthConfig | None:
    truth = spec.ground_truth
    if truth is None:
        return None
    return GroundTruthConfig(
        task=str(truth.task),  # type: ignore[arg-type]
        metrics={str(m.name): m.threshold for m in truth.metrics},
        window_size=truth.window,
        min_labels=truth.min_labels,
        retention_seconds=parse_duration(truth.retention).total_seconds(),
        positive_class=truth.positive_class,
    )


def export_dir(spec: DriftMonitorSpec) -> str | None:
    """Where the drift service writes live-data datasets: a pvc://<claim>/<dir> is mounted at
    /mnt/export/<claim>; a file:// location is a path of the service's own machine."""
    retrain = spec.actions.retrain
    if not (retrain.enabled and retrain.include_live_data and retrain.export_uri):
        return None
    uri = retrain.export_uri
    if uri.startswith("pvc://"):
        return f"{EXPORT_MOUNT}/{uri.removeprefix('pvc://').strip('/')}"
    return urllib.parse.urlparse(uri).path


def drift_labels(name: str) -> dict[str, str]:
    return standard_labels("driftmonitor", name, "drift-service")


def drift_selector(name: str) -> dict[str, str]:
    """The labels that pick a DriftMonitor's drift service pods (Deployment, Service,
    NetworkPolicy, ServiceMonitor)."""
    labels = drift_labels(name)
    return {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}


def build_config_map(owner: dict[str, Any], config: MonitorConfig) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, service_name(name), drift_labels(name)),
        "data": {"config.json": config.model_dump_json(by_alias=True, indent=2)},
    }


def build_deployment(
    owner: dict[str, Any],
    config: MonitorConfig,
    image: str,
    secret: str | None = None,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """The drift service's Deployment: its config, reference and export volumes, probes and
    the restricted security context.

    Long on purpose: one literal manifest, read top to bottom as kubectl would show it."""
    name = owner["metadata"]["name"]
    labels = drift_labels(name)
    selector = drift_selector(name)
    digest = hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": service_name(name)}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_FILE.rsplit("/", 1)[0], "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the reference is fetched here
    ]
    # one volume per claim: a claim that holds both the reference and the exports is mounted
    # twice from the same volume (read-only and writable), not declared as two volumes
    claims: dict[str, str] = {}
    if config.reference_uri.startswith("pvc://"):
        claim = config.reference_uri.removeprefix("pvc://").split("/", 1)[0]
        claims[claim] = "reference"
        mounts.append({"name": "reference", "mountPath": f"/mnt/pvc/{claim}", "readOnly": True})
    if config.export_dir and config.export_dir.startswith(EXPORT_MOUNT + "/"):
        claim = config.export_dir.removeprefix(EXPORT_MOUNT + "/").split("/", 1)[0]
        volume = claims.setdefault(claim, "export")
        mounts.append({"name": volume, "mountPath": f"{EXPORT_MOUNT}/{claim}"})
    written = {mount["name"] for mount in mounts if not mount.get("readOnly")}
    volumes += [
        {
            "name": volume,
            "persistentVolumeClaim": {"claimName": claim}
            | ({} if volume in written else {"readOnly": True}),
        }
        for claim, volume in claims.items()
    ]
    container: dict[str, Any] = {
        "name": "drift",
        "image": image,
        "command": ["python", "-m", "kubeforge_runtimes", "drift", "serve"],
        "args": [
            "--config",
            CONFIG_FILE,
            "--port",
            str(SERVICE_PORT),
            "--metrics-port",
            str(METRICS_PORT),
        ],
        "ports": [
            {"name": "http", "containerPort": SERVICE_PORT},
            {"name": "metrics", "containerPort": METRICS_PORT},
        ],
        "startupProbe": startup_probe("/healthz", "http"),
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 20},
        "resources": {
            "requests": {"cpu": "100m", "memory": "512Mi"},
            "limits": {"memory": "2Gi"},
        },
        "securityContext": {**container_security_context(), "readOnlyRootFilesystem": True},
        "volumeMounts": mounts,
        # the root filesystem is read-only: matplotlib's cache goes to the /tmp emptyDir
        "env": [{"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"}],  # noqa: S108
    }
    if secret:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(owner, service_name(name), labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": labels,
                    # a new configuration restarts the service (its window refills)
                    "annotations": {f"{GROUP}/config-digest": digest},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": volumes,
                    **(placement.pod_fields() if placement else {}),
                },
            },
        },
    }


def build_service(owner: dict[str, Any]) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    labels = drift_labels(name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, service_name(name), labels),
        "spec": {
            "selector": drift_selector(name),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def build_network_policy(
    owner: dict[str, Any], api_namespace: str, monitoring_namespaces: list[str]
) -> dict[str, Any]:
    """Who may reach the drift service: on its service port, pods of its own namespace
    (KServe's agent beside the predictor posts the inference events; the team's own pods) and
    kubeforge's namespace (the operator reads its status, the API passes ground truth on and
    reads logged requests after its RBAC review); on its metrics port, the monitoring
    namespaces' Prometheus too. Nothing else may post it events or labels, or read the
    requests it keeps."""
    name = owner["metadata"]["name"]
    labels = drift_labels(name)
    peers: list[dict[str, Any]] = [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": api_namespace}}},
    ]
    scrapers = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        for ns in dict.fromkeys([api_namespace, *monitoring_namespaces])
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(owner, service_name(name), labels),
        "spec": {
            "podSelector": {"matchLabels": drift_selector(name)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": peers, "ports": [{"protocol": "TCP", "port": SERVICE_PORT}]},
                {
                    "from": [{"podSelector": {}}, *scrapers],
                    "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
                },
            ],
        },
    }


def build_service_monitor(owner: dict[str, Any], interval_seconds: float) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    labels = drift_labels(name)
    scrape = max(10, min(60, int(interval_seconds)))
    return {
        "apiVersion": MONITORING_API,
        "kind": "ServiceMonitor",
        "metadata": child_metadata(owner, service_name(name), labels),
        "spec": {
            "selector": {"matchLabels": drift_selector(name)},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": f"{scrape}s"}],
        },
    }
