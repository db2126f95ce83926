"""Workbench controller: a notebook server as a StatefulSet (0 or 1 replica), its Service and a
home PersistentVolumeClaim that outlives stops, and a NetworkPolicy that admits only the same
namespace and the kubeforge API.

Children come from pure ``build_*`` functions; their state is read back into conditions by pure
policies (``observe_*``). The home PVC is owned by the Workbench, not by the StatefulSet, so
stopping (replicas 0) keeps it and deleting the Workbench lets the garbage collector remove it.
Idle culling (``culling``) reads the server's activity once it is ready and stops it after the
idle timeout. GPUs, node selector, tolerations and queue come from ``placement`` (an explicit
count, or a hardware profile of the platform config).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from kubeforge_crds import WORKBENCH, ConditionStatus
from kubeforge_crds.base import parse_duration, serialize_datetime
from kubeforge_crds.platform import PlatformConfig
from kubeforge_crds.workbench import WorkbenchPhase, WorkbenchSpec, WorkbenchStatus
from kubeforge_operator.children import (
    child_metadata,
    container_security_context,
    pod_security_context,
    standard_labels,
)
from kubeforge_operator.conditions import Observation
from kubeforge_operator.constants import SCHEDULED
from kubeforge_operator.culling import (
    CULLED,
    CULLED_ANNOTATION,
    DEFAULT_PROBE_PATH,
    ActivityReport,
    culled_observation,
    decide_cull,
    parse_timestamp,
    read_activity,
)
from kubeforge_operator.placement import Placement, SpecProblem, resolve_placement
from kubeforge_operator.platform import PlatformConfigError, load_platform_config
from kubeforge_operator.reconcile import ACCEPTED, Outcome, ReconcileContext, accepted
from kubeforge_operator.settings import get_settings

WORKBENCH_LABEL = "kubeforge.io/workbench"
NOTEBOOK_PORT = 8888
HOME = "/home/jovyan"
SERVER_READY = "ServerReady"


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
    container: dict[str, Any] = {
        "name": "notebook",
        "image": image,
        "ports": [{"name": "http", "containerPort": NOTEBOOK_PORT}],
        "env": _env(spec),
        "resources": resources,
        "volumeMounts": [{"name": "home", "mountPath": HOME}],
        "readinessProbe": {
            "httpGet": {"path": spec.culling.probe_path or DEFAULT_PROBE_PATH, "port": "http"},
            "periodSeconds": 10,
        },
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
    stopped: bool | None = None,
) -> dict[str, Any]:
    """The notebook StatefulSet; ``stopped`` overrides spec.stopped (the culler stops too)."""
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
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(owner, name),
        "spec": {
            "replicas": 0 if (spec.stopped if stopped is None else stopped) else 1,
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


# --- policies: observed pod -> conditions and phase ----------------------------------------------


def _pod_condition(pod: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    if not pod:
        return None
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def ready_since(pod: dict[str, Any] | None) -> datetime | None:
    """When the pod last became Ready, if it is."""
    cond = _pod_condition(pod, "Ready")
    if not cond or cond.get("status") != "True" or not cond.get("lastTransitionTime"):
        return None
    return parse_timestamp(str(cond["lastTransitionTime"]))


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


DATA_CONNECTIONS = "DataConnectionsReady"


def missing_secrets(ctx: ReconcileContext, spec: WorkbenchSpec) -> Observation | None:
    """Data connections whose Secret does not exist: the pod would not start, so it is not
    created, and the condition names each one."""
    gone = [
        f"spec.dataConnections[{i}].secretName: Secret {d.secret_name!r} not found"
        for i, d in enumerate(spec.data_connections)
        if ctx.kube.get_child("v1", "Secret", ctx.namespace, d.secret_name) is None
    ]
    if not gone:
        return None
    return Observation(DATA_CONNECTIONS, ConditionStatus.FALSE, "SecretNotFound", "; ".join(gone))


def reconcile_workbench(ctx: ReconcileContext, spec: WorkbenchSpec) -> Outcome:
    settings = get_settings()
    try:
        platform = load_platform_config(settings.platform_config)
    except PlatformConfigError as err:
        return Outcome(
            phase=WorkbenchPhase.PENDING,
            dependents=[
                Observation(ACCEPTED, ConditionStatus.UNKNOWN, "PlatformConfigInvalid", str(err))
            ],
        )
    image = resolve_image(spec, platform)
    placement = resolve_placement(spec.resources.accelerator, spec.queue_name, platform)
    if isinstance(image, SpecProblem):
        return Outcome(phase=WorkbenchPhase.FAILED, dependents=[image.observation()])
    if isinstance(placement, SpecProblem):
        return Outcome(phase=WorkbenchPhase.FAILED, dependents=[placement.observation()])
    missing = missing_secrets(ctx, spec)
    if missing:
        return Outcome(phase=WorkbenchPhase.PENDING, dependents=[accepted(), missing])
    obj = ctx.obj
    culled_at = (obj["metadata"].get("annotations") or {}).get(CULLED_ANNOTATION)
    stopped = spec.stopped or culled_at is not None
    for child in (
        build_home_pvc(obj, spec),
        build_service(obj),
        build_network_policy(obj, settings.api_namespace),
        build_statefulset(obj, spec, image, placement, stopped=stopped),
    ):
        ctx.kube.apply(child)
    pod = ctx.kube.get_child("v1", "Pod", ctx.namespace, f"{ctx.name}-0")
    server = observe_server(pod, stopped)
    fields: dict[str, Any] = {"url": f"http://{ctx.name}.{ctx.namespace}.svc/"}

    if culled_at is not None:
        culled = culled_observation(culled_at)
    elif spec.stopped:
        culled = Observation(CULLED, ConditionStatus.FALSE, "Stopped", "stopped by spec.stopped")
    elif server.status != ConditionStatus.TRUE:
        culled = Observation(
            CULLED, ConditionStatus.FALSE, "NotRunning", "activity is read once the server is ready"
        )
    else:
        url = settings.activity_url_template.format(
            name=ctx.name,
            namespace=ctx.namespace,
            path=spec.culling.probe_path or DEFAULT_PROBE_PATH,
        )
        status = cast(WorkbenchStatus, WORKBENCH.parse_status(obj.get("status")))
        # a server that has just become ready counts as active then, so a restarted Workbench
        # is never culled on the strength of the activity it had before it was stopped
        floor = [t for t in (status.last_activity, ready_since(pod)) if t is not None]
        decision = decide_cull(
            spec.culling.enabled,
            parse_duration(spec.culling.idle_timeout),
            read_activity(url) if spec.culling.enabled else ActivityReport(),
            max(floor) if floor else None,
            ctx.now,
        )
        if decision.last_activity is not None:
            fields["lastActivity"] = serialize_datetime(decision.last_activity)
        culled = decision.observation
        if decision.cull:
            culled_at = serialize_datetime(ctx.now)
            ctx.kube.annotate(WORKBENCH, ctx.namespace, ctx.name, CULLED_ANNOTATION, culled_at)
            ctx.kube.record_event(obj, "Normal", "Culled", decision.observation.message)
            stopped = True
            ctx.kube.apply(build_statefulset(obj, spec, image, placement, stopped=True))
            culled = culled_observation(culled_at)
            server = observe_server(pod, stopped)

    scheduled = observe_scheduled(pod, stopped)
    phase = decide_phase(pod, stopped, scheduled, server)
    holds_gpus = pod is not None and bool((pod.get("spec") or {}).get("nodeName"))
    fields["gpus"] = placement.gpus if holds_gpus and not stopped else 0
    return Outcome(
        phase=phase, dependents=[accepted(), scheduled, server], fields=fields, info=[culled]
    )
