"""A real Gateway API data plane on the real node: Traefik (built from its Go module, pinned in
hack/tools/traefik) is both the controller of GatewayClass ``traefik`` and the proxy; it runs as
a pod in namespace ``kserve`` and programs the Gateway ``kserve/kserve-ingress-gateway`` (where
KServe's configuration and kubeforge's operator attach their routes). The weights of an
HTTPRoute's backendRefs are what its proxy sends (weighted round robin), and it writes the
routes' status (Accepted, ResolvedRefs), which KServe and kubeforge read.

Traefik because it is the one implementation whose every module is served here and that needs
no other binary: Envoy-based ones need an Envoy binary no registry here ships; see
docs/serving.md. Installed with KServe (kfcluster.kserve).
"""

from __future__ import annotations

from typing import Any

from kfcluster.binaries import module_dir, tool_version
from kfcluster.files import cluster_role_binding, system_deployment
from kfcluster.images import TRAEFIK_IMAGE

MODULE = "github.com/traefik/traefik/v3"
NAMESPACE = "kserve"
NAME = "kserve-ingress-gateway"  # KServe's default ingress Gateway
CLASS = "traefik"
CONTROLLER = "traefik.io/gateway-controller"
PORT = 8000  # the Gateway listener's port is the proxy's entry point, not the Service's
SERVICE = "kserve-ingress-gateway"  # port 80 to the proxy


def rbac() -> list[dict[str, Any]]:
    """Traefik's documented ClusterRole for its Gateway API provider, from its module."""
    import yaml

    path = (
        module_dir(MODULE, tool_version("traefik", MODULE))
        / "docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml"
    )
    role = next(d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "ClusterRole")
    role["metadata"]["name"] = "kubeforge-traefik-gateway"
    subject = {"kind": "ServiceAccount", "name": "traefik", "namespace": NAMESPACE}
    return [
        role,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "traefik", "namespace": NAMESPACE},
        },
        cluster_role_binding(role["metadata"]["name"], subject, "kubeforge-traefik-gateway"),
    ]


def manifests() -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "traefik"}
    return [
        *rbac(),
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": CLASS},
            "spec": {"controllerName": CONTROLLER},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "spec": {
                "gatewayClassName": CLASS,
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": PORT,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
        system_deployment("traefik", NAMESPACE, labels, proxy()),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": 80, "targetPort": PORT}],
            },
        },
    ]


def proxy() -> dict[str, Any]:
    """Traefik's container: the Gateway API provider, the Gateway's listener as its entry
    point, its ping for readiness, and the Service it writes into routes' status."""
    return {
        "name": "traefik",
        "image": TRAEFIK_IMAGE,
        "args": [
            "--providers.kubernetesgateway=true",
            f"--entrypoints.web.address=:{PORT}",
            "--entrypoints.ping.address=:8082",
            "--ping.entrypoint=ping",
            "--global.checknewversion=false",
            "--global.sendanonymoususage=false",
            f"--providers.kubernetesgateway.statusaddress.service.name={SERVICE}",
            f"--providers.kubernetesgateway.statusaddress.service.namespace={NAMESPACE}",
            "--log.level=INFO",
        ],
        "ports": [{"name": "web", "containerPort": PORT}, {"name": "ping", "containerPort": 8082}],
        "readinessProbe": {"httpGet": {"path": "/ping", "port": 8082}, "periodSeconds": 2},
        "resources": {
            "requests": {"cpu": "100m", "memory": "100Mi"},
            "limits": {"memory": "300Mi"},
        },
    }


def down_objects() -> list[tuple[str, str]]:
    """What ``kserve.down`` removes beyond the namespace: the cluster-scoped objects."""
    return [
        ("gatewayclass", CLASS),
        ("clusterrolebinding", "kubeforge-traefik-gateway"),
        ("clusterrole", "kubeforge-traefik-gateway"),
    ]
