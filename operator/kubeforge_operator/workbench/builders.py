"""The children a Workbench becomes (pure): the home PVC, the Service, the NetworkPolicy and
the notebook StatefulSet."""

from __future__ import annotations

from typing import Any

from kubeforge_crds.contracts.labels import WORKBENCH_LABEL
from kubeforge_crds.platform import PlatformConfig
from kubeforge_crds.workbench import WorkbenchSpec
from kubeforge_operator.runtime.children import (
    child_metadata,
    container_security_context,
    pod_security_context,
    standard_labels,
    startup_probe,
)
from kubeforge_operator.runtime.placement import Placement, SpecProblem
from kubeforge_operator.workbench.culling import (
    DEFAULT_PROBE_PATH,
)

NOTEBOOK_PORT = 8888


HOME = "/home/jovyan"


def selector_labels(name: str) -> dict[str, str]:
    return {WORKBENCH_LABEL: name}


def labels(name: str) -> dict[str, str]:
    return standard_labels("workbench", name, "notebook") | selector_labels(name)


def _metadata(owner: dict[str, Any], name: str) -> dict[str, Any]:
    return child_metadata(owner, name, labels(owner["metadata"]["name"]))


def home_pvc_name(name: str) -> str:
    return f"{name}-home"


def build_home_pvc(owner: dict[str, Any], spec: WorkbenchSpec) -> dict[str, Any]:
    pvc_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage.size}},
    }
    if spec.storage.storage_class_name:
        pvc_spec["storageClassName"] = spec.storage.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(owner, home_pvc_name(owner["metadata"]["name"])),
        "spec": pvc_spec,
    }


def build_service(owner: dict[str, Any]) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, name),
        "spec": {
            "selector": selector_labels(name),
            "ports": [{"name": "http", "port": 80, "targetPort": NOTEBOOK_PORT}],
        },
    }


def build_network_policy(owner: dict[str, Any], api_namespace: str) -> dict[str, Any]:
    """Only pods of the same namespace and the kubeforge API may reach the notebook server."""
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(owner, name),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(name)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {}},
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": api_namespace}
                            }
                        },
                    ],
                    "ports": [{"protocol": "TCP", "port": NOTEBOOK_PORT}],
                }
            ],
        },
    }


# The docker-stacks images start Jupyter with $NOTEBOOK_ARGS. Jupyter's own token is turned off:
# only the namespace and the kubeforge API (which authenticates every caller) can reach the server
# (see build_network_policy), and the culler must be able to read /api/status.
NOTEBOOK_ARGS = "--IdentityProvider.token= --ServerApp.password= --ServerApp.ip=0.0.0.0"


def _env(spec: WorkbenchSpec) -> list[dict[str, str]]:
    env = [{"name": e.name, "value": e.value} for e in spec.env]
    if not any(e.name == "NOTEBOOK_ARGS" for e in spec.env):
        env.append({"name": "NOTEBOOK_ARGS", "value": NOTEBOOK_ARGS})
    return env


def _container(spec: WorkbenchSpec, image: str, placement: Placement) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "requests": {"cpu": spec.resources.cpu, "memory": spec.resources.memory},
        "limits": {
            "cpu": spec.resources.cpu,
            "memory": spec.resources.memory,
            **placement.limits(),
        },
    }
    probe = spec.culling.probe_path or DEFAULT_PROBE_PATH
    container: dict[str, Any] = {
        "name": "notebook",
        "image": image,
        "ports": [{"name": "http", "containerPort": NOTEBOOK_PORT}],
        "env": _env(spec),
        "resources": resources,
        "volumeMounts": [{"name": "home", "mountPath": HOME}],
        "startupProbe": startup_probe(probe, "http"),
        "readinessProbe": {"httpGet": {"path": probe, "port": "http"}, "periodSeconds": 10},
        "securityContext": container_security_context(),
    }
    if spec.data_connections:
        # The Secrets hold AWS_* keys; exposed as they are (the last connection wins a clash)
        container["envFrom"] = [
            {"secretRef": {"name": d.secret_name}} for d in spec.data_connections
        ]
    return container


def build_statefulset(
    owner: dict[str, Any],
    spec: WorkbenchSpec,
    image: str,
    placement: Placement,
) -> dict[str, Any]:
    """The notebook StatefulSet of a running Workbench (a stopped one has none: see
    ``workbench.reconcile.remove_notebook``)."""
    name = owner["metadata"]["name"]
    pod_labels = labels(name) | placement.pod_labels()
    pod_spec: dict[str, Any] = {
        "containers": [_container(spec, image, placement)],
        "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": home_pvc_name(name)}}],
        "securityContext": pod_security_context(),
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        **placement.pod_fields(),
    }
    metadata = _metadata(owner, name)
    # Kueue's StatefulSet integration reads the queue from the StatefulSet's own labels: it
    # then holds the pod until the workload is admitted
    metadata["labels"] = metadata["labels"] | placement.pod_labels()
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": selector_labels(name)},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def resolve_image(spec: WorkbenchSpec, platform: PlatformConfig) -> str | SpecProblem:
    if spec.image:
        return spec.image
    entry = platform.image(spec.catalog_image or "")
    if entry is None:
        known = ", ".join(i.name for i in platform.notebook_images) or "none configured"
        return SpecProblem(
            "UnknownCatalogImage",
            f"spec.catalogImage: {spec.catalog_image!r} is not in the notebook image catalog "
            f"(known: {known})",
        )
    return entry.image
