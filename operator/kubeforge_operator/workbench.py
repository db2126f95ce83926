"""Workbench controller: a notebook server as a StatefulSet (0 or 1 replica), its Service and a
home PersistentVolumeClaim that outlives stops, and a NetworkPolicy that admits only the same
namespace and the kubeforge API.

Children come from pure ``build_*`` functions; their state is read back into conditions by pure
policies (``observe_*``). The home PVC is owned by the Workbench, not by the StatefulSet, so
stopping (replicas 0) keeps it and deleting the Workbench lets the garbage collector remove it.
Still to come with issue #3: idle culling, hardware profiles and the portal.
"""

from __future__ import annotations

from typing import Any

from kubeforge_crds import ConditionStatus
from kubeforge_crds.workbench import WorkbenchPhase, WorkbenchSpec
from kubeforge_operator.conditions import Observation
from kubeforge_operator.constants import (
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    MANAGED_BY,
    PART_OF,
    SCHEDULED,
)
from kubeforge_operator.reconcile import Outcome, ReconcileContext, accepted
from kubeforge_operator.settings import get_settings

WORKBENCH_LABEL = "kubeforge.io/workbench"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
NOTEBOOK_PORT = 8888
HOME = "/home/jovyan"
SERVER_READY = "ServerReady"


def selector_labels(name: str) -> dict[str, str]:
    return {WORKBENCH_LABEL: name}


def labels(name: str) -> dict[str, str]:
    return {
        LABEL_NAME: "workbench",
        LABEL_INSTANCE: name,
        LABEL_COMPONENT: "notebook",
        LABEL_PART_OF: PART_OF,
        LABEL_MANAGED_BY: MANAGED_BY,
        **selector_labels(name),
    }


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(owner: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": labels(owner["metadata"]["name"]),
        "ownerReferences": [owner_reference(owner)],
    }


def home_pvc_name(name: str) -> str:
    return f"{name}-home"


def gpu_count(spec: WorkbenchSpec) -> int:
    acc = spec.resources.accelerator
    return acc.count or 0 if acc else 0


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


def _container(spec: WorkbenchSpec, image: str) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "requests": {"cpu": spec.resources.cpu, "memory": spec.resources.memory},
        "limits": {"cpu": spec.resources.cpu, "memory": spec.resources.memory},
    }
    if gpus := gpu_count(spec):
        resources["limits"][GPU_RESOURCE] = str(gpus)
    container: dict[str, Any] = {
        "name": "notebook",
        "image": image,
        "ports": [{"name": "http", "containerPort": NOTEBOOK_PORT}],
        "env": [{"name": e.name, "value": e.value} for e in spec.env],
        "resources": resources,
        "volumeMounts": [{"name": "home", "mountPath": HOME}],
        "readinessProbe": {
            "httpGet": {"path": spec.culling.probe_path or "/api/status", "port": "http"},
            "periodSeconds": 10,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.data_connections:
        # The Secrets hold AWS_* keys; exposed as they are (the last connection wins a clash)
        container["envFrom"] = [
            {"secretRef": {"name": d.secret_name}} for d in spec.data_connections
        ]
    return container


def build_statefulset(owner: dict[str, Any], spec: WorkbenchSpec, image: str) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    pod_labels = labels(name)
    if spec.queue_name:
        pod_labels[QUEUE_LABEL] = spec.queue_name
    pod_spec: dict[str, Any] = {
        "containers": [_container(spec, image)],
        "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": home_pvc_name(name)}}],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "fsGroup": 100,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    acc = spec.resources.accelerator
    if gpu_count(spec):
        pod_spec["tolerations"] = [
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
        ]
        if acc and acc.product:
            pod_spec["nodeSelector"] = {GPU_PRODUCT_LABEL: acc.product}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(owner, name),
        "spec": {
            "replicas": 0 if spec.stopped else 1,
            "serviceName": name,
            "selector": {"matchLabels": selector_labels(name)},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def resolve_image(spec: WorkbenchSpec, catalog: dict[str, str]) -> str | None:
    if spec.image:
        return spec.image
    return catalog.get(spec.catalog_image or "")


# --- policies: observed pod -> conditions and phase ----------------------------------------------


def _pod_condition(pod: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    if not pod:
        return None
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def observe_scheduled(pod: dict[str, Any] | None, stopped: bool) -> Observation:
    if stopped:
        return Observation(
            SCHEDULED, ConditionStatus.UNKNOWN, "Stopped", "the Workbench is stopped"
        )
    cond = _pod_condition(pod, "PodScheduled")
    if cond is None:
        return Observation(SCHEDULED, ConditionStatus.UNKNOWN, "PodPending", "waiting for the pod")
    if cond.get("status") == "True":
        node = (pod or {}).get("spec", {}).get("nodeName", "")
        return Observation(SCHEDULED, ConditionStatus.TRUE, "Scheduled", f"on node {node}")
    return Observation(
        SCHEDULED,
        ConditionStatus.FALSE,
        cond.get("reason") or "Unschedulable",
        cond.get("message") or "",
    )


def observe_server(pod: dict[str, Any] | None, stopped: bool) -> Observation:
    if stopped:
        return Observation(
            SERVER_READY, ConditionStatus.FALSE, "Stopped", "the Workbench is stopped"
        )
    if pod is None:
        return Observation(SERVER_READY, ConditionStatus.UNKNOWN, "PodPending", "no pod yet")
    if not (pod.get("spec") or {}).get("nodeName"):
        return Observation(SERVER_READY, ConditionStatus.UNKNOWN, "PodPending", "not scheduled yet")
    if (pod.get("status") or {}).get("phase") == "Failed":
        return Observation(SERVER_READY, ConditionStatus.FALSE, "PodFailed", "the pod failed")
    cond = _pod_condition(pod, "Ready")
    if cond and cond.get("status") == "True":
        return Observation(SERVER_READY, ConditionStatus.TRUE, "NotebookReady", "serving")
    return Observation(SERVER_READY, ConditionStatus.UNKNOWN, "Starting", "the server is starting")


def decide_phase(
    pod: dict[str, Any] | None, stopped: bool, scheduled: Observation, server: Observation
) -> WorkbenchPhase:
    if stopped:
        return WorkbenchPhase.STOPPING if pod is not None else WorkbenchPhase.STOPPED
    if server.reason == "PodFailed":
        return WorkbenchPhase.FAILED
    if server.status == ConditionStatus.TRUE:
        return WorkbenchPhase.RUNNING
    if scheduled.status == ConditionStatus.TRUE:
        return WorkbenchPhase.STARTING
    return WorkbenchPhase.PENDING


def reconcile_workbench(ctx: ReconcileContext, spec: WorkbenchSpec) -> Outcome:
    settings = get_settings()
    catalog = settings.notebook_images
    image = resolve_image(spec, catalog)
    if image is None:
        known = ", ".join(sorted(catalog)) or "none configured"
        return Outcome(
            phase=WorkbenchPhase.FAILED,
            dependents=[
                Observation(
                    "Accepted",
                    ConditionStatus.FALSE,
                    "UnknownCatalogImage",
                    f"spec.catalogImage: {spec.catalog_image!r} is not in the notebook image "
                    f"catalog (known: {known})",
                )
            ],
        )
    obj = ctx.obj
    for child in (
        build_home_pvc(obj, spec),
        build_service(obj),
        build_network_policy(obj, settings.api_namespace),
        build_statefulset(obj, spec, image),
    ):
        ctx.kube.apply(child)
    pod = ctx.kube.get_child("v1", "Pod", ctx.namespace, f"{ctx.name}-0")
    scheduled = observe_scheduled(pod, spec.stopped)
    server = observe_server(pod, spec.stopped)
    phase = decide_phase(pod, spec.stopped, scheduled, server)
    holds_gpus = pod is not None and bool((pod.get("spec") or {}).get("nodeName"))
    return Outcome(
        phase=phase,
        dependents=[accepted(), scheduled, server],
        fields={
            "url": f"http://{ctx.name}.{ctx.namespace}.svc/",
            "gpus": gpu_count(spec) if holds_gpus else 0,
        },
    )
