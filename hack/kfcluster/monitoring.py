"""Prometheus the way clusters run it, on the real node: prometheus-operator (built from its Go
module, the version whose CRDs the cluster has) runs as a pod in ``monitoring`` and manages a
Prometheus (built from its Go module with Kubernetes service discovery) that reads every
ServiceMonitor and PrometheusRule in the cluster, such as those the chart and DriftMonitors create.

Their images are the binaries on the base image (images.py); their ClusterRoles are taken from the
operator's module (``example/rbac``), so they grant what upstream grants.
"""

from __future__ import annotations

import urllib.request
from typing import Any

from kfcluster.binaries import module_dir, tool_version
from kfcluster.files import ON_REAL_NODE, RESTRICTED, cluster_role_binding, system_deployment
from kfcluster.images import OPERATOR_IMAGE, PROMETHEUS_IMAGE, PROMETHEUS_VERSION, RELOADER_IMAGE
from kfcluster.settings import ClusterError, log
from kubeforge_labs import kit

NAMESPACE = "monitoring"
OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"


def up() -> None:
    from kfcluster.components import apply_objects, kubectl  # (components imports node)

    version = tool_version("prometheus-operator", OPERATOR_MODULE)
    rbac = module_dir(OPERATOR_MODULE, version) / "example" / "rbac"
    kubectl(
        "apply", "--server-side", "--field-manager=localcluster",
        "-f", str(rbac / "prometheus-operator" / "prometheus-operator-cluster-role.yaml"),
        "-f", str(rbac / "prometheus" / "prometheus-cluster-role.yaml"),
    )  # fmt: skip
    apply_objects(manifests())
    try:
        kit.wait_for("Prometheus in namespace monitoring", prometheus_ready, 180, interval=1)
    except kit.WaitTimeoutError as err:
        raise ClusterError(
            f"{err}; see kubectl -n {NAMESPACE} get pods,prometheus and kubectl -n {NAMESPACE} "
            "logs deploy/prometheus-operator"
        ) from None
    log(f"prometheus-operator and Prometheus {PROMETHEUS_VERSION} running in {NAMESPACE}")


def prometheus_ready() -> bool:
    """Prometheus answers on its pod's address (reachable from the host over the bridge)."""
    ip = pod_ip()
    if not ip:
        return False
    with urllib.request.urlopen(f"http://{ip}:9090/-/ready", timeout=2) as resp:
        return bool(resp.status == 200)


def pod_ip() -> str:
    from kfcluster.components import kubectl

    out = kubectl(
        "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=prometheus",
        "-o", "jsonpath={.items[0].status.podIP}", check=False,
    )  # fmt: skip
    return out.strip()


def api_url() -> str:
    return f"http://{pod_ip()}:9090"


def manifests() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        _service_account("prometheus-operator"),
        _service_account("prometheus"),
        _cluster_role_binding("prometheus-operator"),
        _cluster_role_binding("prometheus"),
        operator_deployment(),
        prometheus(),
    ]


def _service_account(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": NAMESPACE},
    }


def _cluster_role_binding(name: str) -> dict[str, object]:
    subject = {"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}
    return cluster_role_binding(name, subject, f"localcluster-{name}")


def operator_deployment() -> dict[str, Any]:
    container = {
        "name": "prometheus-operator",
        "image": OPERATOR_IMAGE,
        "args": [
            f"--prometheus-config-reloader={RELOADER_IMAGE}",
            "--kubelet-service=",
            "--log-level=warn",
        ],
        "resources": {"limits": {"memory": "200Mi"}},
    }
    labels = {"app.kubernetes.io/name": "prometheus-operator"}
    return system_deployment("prometheus-operator", NAMESPACE, labels, container)


def prometheus() -> dict[str, Any]:
    """Every ServiceMonitor and PrometheusRule of every namespace, scraped and evaluated every
    5 s (the e2e tests wait on alerts); an hour of data in memory-backed storage."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": "kubeforge", "namespace": NAMESPACE},
        "spec": {
            **ON_REAL_NODE,
            "image": PROMETHEUS_IMAGE,
            "version": PROMETHEUS_VERSION,
            "imagePullPolicy": "Never",
            "replicas": 1,
            "serviceAccountName": "prometheus",
            "securityContext": RESTRICTED,
            "serviceMonitorSelector": {},
            "serviceMonitorNamespaceSelector": {},
            "podMonitorSelector": {},
            "podMonitorNamespaceSelector": {},
            "ruleSelector": {},
            "ruleNamespaceSelector": {},
            "scrapeInterval": "5s",
            "evaluationInterval": "5s",
            "retention": "1h",
            "resources": {"requests": {"memory": "200Mi"}, "limits": {"memory": "1Gi"}},
        },
    }
