"""How a ModelServer's traffic is split between its stable and its canary version (pure).

KServe splits traffic itself only in Serverless (Knative) mode, with
``predictor.canaryTrafficPercent``. In Standard mode (RawDeployment before v0.15: the default
on Open Data Hub and Red Hat OpenShift AI, where Serverless is deprecated) it ignores that
field; since v0.20 ``spec.canary[]`` deploys a canary predictor beside the stable one, with its
own Deployment and Service, but routes no traffic to it. So in Standard mode kubeforge owns the
route: one Gateway API HTTPRoute per ModelServer whose weighted ``backendRefs`` are the stable
and the canary predictor Services, and the InferenceService is cluster-local (KServe makes no
route of its own for it).

The mode comes from the operator's setting, or, with ``auto``, from KServe's own configuration
(``deploy.defaultDeploymentMode`` of its ``inferenceservice-config``); KServe is told with the
``serving.kserve.io/deploymentMode`` annotation, so what the operator assumed is what KServe
does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from kubeforge_crds import ConditionStatus
from kubeforge_crds.contracts.serving import ENV_REVISION
from kubeforge_operator.modelserver.conditions import TRAFFIC_ROUTED
from kubeforge_operator.runtime.children import child_metadata
from kubeforge_operator.runtime.conditions import Observation

MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
VISIBILITY_LABEL = "networking.kserve.io/visibility"
ROUTE_API = "gateway.networking.k8s.io/v1"
GATEWAY_GROUP = "gateway.networking.k8s.io"
CANARY_NAME = "canary"  # spec.canary[0].predictor.name
DEFAULT_DOMAIN = "example.com"  # KServe's default ingressDomain
# when the route's weights last changed: an analysis judges an interval of the step's traffic
# from then (kept on the route itself, written with the weights, so a restarted operator knows)
WEIGHTS_SINCE = "kubeforge.io/weights-since"
# how long a canary that lost its traffic is kept before KServe is told to remove it: a
# Gateway applies a route change a moment after it is written (Traefik batches changes for
# 2 s), and requests still on their way to the canary's pods must find them there
DRAIN_SECONDS = 10


class Mode(StrEnum):
    STANDARD = "Standard"
    SERVERLESS = "Serverless"


# KServe's names for its modes, old and new (pkg/constants ParseDeploymentMode)
_MODES = {
    "standard": Mode.STANDARD,
    "rawdeployment": Mode.STANDARD,
    "serverless": Mode.SERVERLESS,
    "knative": Mode.SERVERLESS,
}


@dataclass(frozen=True)
class KServeDefaults:
    """What the operator reads of KServe's ``inferenceservice-config``."""

    mode: Mode | None
    domain: str | None
    domain_template: str | None


def kserve_defaults(data: dict[str, str] | None) -> KServeDefaults:
    """The deployment mode and ingress domain of KServe's configuration (None where it is
    missing or cannot be read: the defaults apply)."""

    def section(key: str) -> dict[str, Any]:
        try:
            parsed = json.loads((data or {}).get(key) or "{}")
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    mode = _MODES.get(str(section("deploy").get("defaultDeploymentMode", "")).lower())
    ingress = section("ingress")
    return KServeDefaults(mode, ingress.get("ingressDomain"), ingress.get("domainTemplate"))


def deployment_mode(setting: str, defaults: KServeDefaults) -> Mode:
    """The operator's setting when it names a mode; with ``auto`` KServe's default mode, and
    Standard where KServe's configuration does not say (KServe's own default since v0.15,
    and the one where a canary never receives traffic it was not given)."""
    if setting.lower() != "auto":
        mode = _MODES.get(setting.lower())
        if mode is None:
            raise ValueError(f"unknown KServe deployment mode {setting!r}")
        return mode
    return defaults.mode or Mode.STANDARD


def predictor_service(isvc: str, canary: bool = False) -> str:
    """The Service KServe (Standard mode) creates for a predictor."""
    return f"{isvc}-{CANARY_NAME}-predictor" if canary else f"{isvc}-predictor"


def hostname(name: str, namespace: str, domain: str) -> str:
    """The host KServe's default domain template would give the InferenceService."""
    return f"{name}-{namespace}.{domain}"


def parse_gateway(ref: str) -> tuple[str, str]:
    """``namespace/name`` of a Gateway."""
    namespace, _, name = ref.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"gateway {ref!r} is not namespace/name")
    return namespace, name


def canary_weight(
    isvc: dict[str, Any] | None,
    deployment: dict[str, Any] | None,
    revision: str,
    planned: int | None,
) -> int:
    """The canary's share the route may carry now: the planned one once the canary runs
    ``revision`` on all its pods (``canary_ready``), none before (a Service without ready pods
    would fail requests, and older pods would answer for a version they are not)."""
    if not planned:
        return 0
    return planned if canary_ready(isvc, deployment, revision) else 0


def route_canary_weight(route: dict[str, Any] | None) -> int:
    """The canary's weight in an HTTPRoute as it is (0 without one)."""
    rules = ((route or {}).get("spec") or {}).get("rules") or []
    return sum(
        int(b.get("weight", 1))
        for rule in rules
        for b in rule.get("backendRefs") or []
        if str(b.get("name", "")).endswith(f"-{CANARY_NAME}-predictor")
    )


def weights_since(route: dict[str, Any] | None) -> datetime | None:
    """When the route's current weights were applied (None: unknown)."""
    value = (((route or {}).get("metadata") or {}).get("annotations") or {}).get(WEIGHTS_SINCE)
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def canary_revision(isvc: dict[str, Any] | None) -> str | None:
    """The revision of the canary predictor the InferenceService has (None: no canary)."""
    for canary in ((isvc or {}).get("spec") or {}).get("canary") or []:
        model = (canary.get("predictor") or {}).get("model") or {}
        for env in model.get("env") or []:
            if env.get("name") == ENV_REVISION:
                return str(env.get("value"))
    return None


def deployment_serves(deployment: dict[str, Any] | None, revision: str) -> bool:
    """Whether a predictor Deployment has rolled out ``revision`` to all its replicas."""
    if deployment is None:
        return False
    containers = deployment["spec"]["template"]["spec"].get("containers") or []
    revisions = {
        env.get("value")
        for c in containers
        for env in c.get("env") or []
        if env.get("name") == ENV_REVISION
    }
    return revisions == {revision} and rolled_out(deployment)


def rolled_out(deployment: dict[str, Any]) -> bool:
    """Whether a Deployment's current template runs on all its replicas, and nothing else does
    (a rolling update keeps old pods available while new ones fail to start)."""
    status = deployment.get("status") or {}
    replicas = int(deployment["spec"].get("replicas") or 1)
    return (
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and int(status.get("updatedReplicas") or 0) >= replicas
        and int(status.get("availableReplicas") or 0) >= replicas
        and not status.get("unavailableReplicas")
    )


def hands_over(
    isvc: dict[str, Any] | None,
    stable_deployment: dict[str, Any] | None,
    served: str,
    canary_percent: int | None,
) -> bool:
    """After a promotion, whether the canary's pods must keep all the traffic a while: the
    stable predictor now names the promoted revision, but its Deployment has not rolled it
    out yet (its pods would answer with the old version)."""
    return (
        canary_percent is None
        and canary_revision(isvc) == served
        and not deployment_serves(stable_deployment, served)
    )


def drained(route: dict[str, Any] | None, now: datetime) -> bool:
    """Whether the route has sent the canary nothing for ``DRAIN_SECONDS``."""
    since = weights_since(route)
    if route_canary_weight(route) != 0 or since is None:
        return False
    return (now - since).total_seconds() >= DRAIN_SECONDS


def canary_ready(
    isvc: dict[str, Any] | None, deployment: dict[str, Any] | None, revision: str
) -> bool:
    """KServe reports the canary predictor ready and its Deployment has rolled ``revision`` out
    to every pod (KServe's report alone can be about the canary's previous version)."""
    reported = any(
        canary.get("name") == CANARY_NAME and canary.get("ready")
        for canary in ((isvc or {}).get("status") or {}).get("canaryStatuses") or []
    )
    return reported and deployment_serves(deployment, revision)


def build_route(
    owner: dict[str, Any],
    labels: dict[str, str],
    gateway: tuple[str, str],
    host: str,
    canary_percent: int,
    since: str,
) -> dict[str, Any]:
    """The ModelServer's HTTPRoute: every request for ``host`` to the stable predictor, and
    ``canary_percent`` of them to the canary's (a weight of 0 keeps the canary out), with the
    time these weights were first applied (``since``, RFC 3339)."""
    name = owner["metadata"]["name"]
    backends = [
        {"name": predictor_service(name), "port": 80, "weight": 100 - canary_percent},
    ]
    if canary_percent > 0:
        backends.append(
            {"name": predictor_service(name, canary=True), "port": 80, "weight": canary_percent}
        )
    meta = child_metadata(owner, name, labels)
    meta["annotations"] = {WEIGHTS_SINCE: since}
    return {
        "apiVersion": ROUTE_API,
        "kind": "HTTPRoute",
        "metadata": meta,
        "spec": {
            "parentRefs": [
                {
                    "group": GATEWAY_GROUP,
                    "kind": "Gateway",
                    "namespace": gateway[0],
                    "name": gateway[1],
                }
            ],
            "hostnames": [host],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": backends,
                }
            ],
        },
    }


def route_observation(
    route: dict[str, Any] | None, gateway: tuple[str, str], gateway_exists: bool | None
) -> Observation:
    """Whether the Gateway accepted the route and resolved its backends, from the route's
    status for our parent (Gateway API's Accepted and ResolvedRefs), with the Gateway's own
    reason where it refused."""
    ref = "/".join(gateway)
    if gateway_exists is False:
        return Observation(
            TRAFFIC_ROUTED,
            ConditionStatus.FALSE,
            "GatewayNotFound",
            f"Gateway {ref} does not exist: create it, or point the operator's gateway setting "
            "(KUBEFORGE_OPERATOR_GATEWAY, Helm value operator.gateway) at one",
        )
    if route is None:
        return Observation(TRAFFIC_ROUTED, ConditionStatus.UNKNOWN, "Creating", "")
    for parent in (route.get("status") or {}).get("parents") or []:
        pref = parent.get("parentRef") or {}
        if (pref.get("namespace"), pref.get("name")) != gateway:
            continue
        conditions = {c.get("type"): c for c in parent.get("conditions") or []}
        for type_ in ("Accepted", "ResolvedRefs"):
            cond = conditions.get(type_)
            if cond is not None and cond.get("status") != "True":
                return Observation(
                    TRAFFIC_ROUTED,
                    ConditionStatus.FALSE,
                    str(cond.get("reason") or f"Not{type_}"),
                    f"Gateway {ref}: HTTPRoute {type_}={cond.get('status')}: "
                    f"{cond.get('message') or ''}".rstrip(": "),
                )
        if "Accepted" in conditions:
            return Observation(
                TRAFFIC_ROUTED, ConditionStatus.TRUE, "Accepted", f"through Gateway {ref}"
            )
    return Observation(
        TRAFFIC_ROUTED,
        ConditionStatus.UNKNOWN,
        "WaitingForGateway",
        f"the controller of Gateway {ref} has not accepted the HTTPRoute yet",
    )
