"""What a ModelServer reconcile reads of its children and neighbours, each once per reconcile,
into one typed observation that the decisions and the status are computed from."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from kubernetes import client
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from kubeforge_crds import DRIFTMONITOR
from kubeforge_crds.contracts.drift import logger_url
from kubeforge_crds.contracts.serving import ISVC_API
from kubeforge_operator.modelserver.llmisvc import Members
from kubeforge_operator.modelserver.traffic import (
    DEFAULT_DOMAIN,
    ROUTE_API,
    KServeDefaults,
    Mode,
    deployment_mode,
    kserve_defaults,
    parse_gateway,
    predictor_service,
)
from kubeforge_operator.runtime.reconcile import ReconcileContext

KSERVE_CONFIG = "inferenceservice-config"
# KServe's configuration, read at most once per resync interval (a change to it is what no
# event of ours tells, as the resync is for), not on every reconcile: {namespace: (read at, it)}
_kserve_config: dict[str, tuple[float, KServeDefaults]] = {}


@dataclass(frozen=True)
class Observed:
    """The InferenceService as it is (None: not created yet), and where its logger should post
    (the drift service of the first DriftMonitor by name that targets this ModelServer)."""

    isvc: dict[str, Any] | None
    logger_url: str | None
    mode: Mode = Mode.SERVERLESS
    domain: str = DEFAULT_DOMAIN
    gateway: tuple[str, str] = ("", "")
    # Standard mode: the ModelServer's HTTPRoute (None: not created yet), whether the cluster
    # serves Gateway API's HTTPRoute at all, and whether the Gateway exists (None: unknown)
    route: dict[str, Any] | None = None
    route_api: bool = True
    gateway_exists: bool | None = None
    # Standard mode: KServe's Deployment of the stable predictor (is a promotion rolled out?)
    stable_deployment: dict[str, Any] | None = None
    canary_deployment: dict[str, Any] | None = None
    # served as LLMInferenceService: its members (no InferenceService, Deployment or route)
    members: Members | None = None


def observe(ctx: ReconcileContext) -> Observed:
    defaults = kserve_config(ctx)
    mode = deployment_mode(ctx.settings.kserve_mode, defaults)
    seen = Observed(
        isvc=ctx.kube.get_child(ISVC_API, "InferenceService", ctx.namespace, ctx.name),
        logger_url=drift_logger(ctx),
        mode=mode,
        domain=ctx.settings.ingress_domain or defaults.domain or DEFAULT_DOMAIN,
        gateway=parse_gateway(ctx.settings.gateway),
    )
    if mode != Mode.STANDARD:
        return seen
    seen = replace(
        seen,
        stable_deployment=ctx.kube.get_child(
            "apps/v1", "Deployment", ctx.namespace, predictor_service(ctx.name)
        ),
        canary_deployment=ctx.kube.get_child(
            "apps/v1", "Deployment", ctx.namespace, predictor_service(ctx.name, canary=True)
        ),
    )
    try:
        route = ctx.kube.get_child(ROUTE_API, "HTTPRoute", ctx.namespace, ctx.name)
        gateway = ctx.kube.get_child(ROUTE_API, "Gateway", *seen.gateway)
    except ResourceNotFoundError:  # Gateway API's CRDs are not installed
        return replace(seen, route_api=False)
    return replace(seen, route=route, gateway_exists=gateway is not None)


def kserve_config(ctx: ReconcileContext) -> KServeDefaults:
    """KServe's default mode and domain, from its ConfigMap (read again once per resync
    interval); nothing when it is not there or not readable (the operator's settings and
    defaults apply)."""
    namespace = ctx.settings.kserve_namespace
    cached = _kserve_config.get(namespace)
    if cached is not None and time.monotonic() - cached[0] < ctx.settings.resync_seconds:
        return cached[1]
    try:
        cm = ctx.kube.get_child("v1", "ConfigMap", namespace, KSERVE_CONFIG)
    except client.ApiException as exc:
        if exc.status not in (401, 403):
            raise
        cm = None  # not allowed to read it: the defaults
    defaults = kserve_defaults((cm or {}).get("data"))
    _kserve_config[namespace] = (time.monotonic(), defaults)
    return defaults


def drift_logger(ctx: ReconcileContext) -> str | None:
    """The logger URL of the first DriftMonitor (by name) that targets this ModelServer."""
    try:
        listed = ctx.kube.custom.list_namespaced_custom_object(
            DRIFTMONITOR.group, DRIFTMONITOR.version, ctx.namespace, DRIFTMONITOR.plural
        )
    except client.ApiException as exc:
        if exc.status == 404:  # the DriftMonitor CRD is not installed
            return None
        raise
    names = sorted(
        item["metadata"]["name"]
        for item in listed.get("items") or []
        if ((item.get("spec") or {}).get("target") or {}).get("modelServer") == ctx.name
        and not item["metadata"].get("deletionTimestamp")
    )
    return logger_url(ctx.namespace, names[0]) if names else None
