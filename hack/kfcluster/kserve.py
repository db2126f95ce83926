"""KServe's own controller on the real node: the manager of ``github.com/kserve/kserve`` (the
version pinned in hack/tools/kserve, whose CRDs hack/thirdparty-crds.txt installs), built from
its Go module into a local image, runs as a pod in namespace ``kserve`` with its webhooks; its
agent (the request logger sidecar its pod mutator injects) is an image from the same module.

What is upstream's is taken from the module: the ClusterRole, the ServiceAccount and binding,
the webhook Service and the webhook configurations (``config/``), and the
``inferenceservice-config`` ConfigMap of its rendered install (``install/<version>/kserve.yaml``),
of which only what a cluster without Knative, Istio and cert-manager must change is changed:
Standard deployment mode, Gateway API ingress, the images built here. cert-manager's part (a
serving certificate and the webhooks' caBundle) is done with openssl and a CA of this cluster.

On demand (``localcluster.py kserve up|down``, the e2e tests' ``kserve`` fixture): the tests of
the process labs still use a stand-in of KServe (kubeforge_labs.kserve) on the same cluster, and
the real controller would answer for the same InferenceServices.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

from kfcluster import gateway
from kfcluster.binaries import module_dir, tool_version
from kfcluster.files import system_deployment
from kfcluster.images import (
    BINARY_IMAGES,
    KSERVE_AGENT_IMAGE,
    KSERVE_CONTROLLER_IMAGE,
    TRAEFIK_IMAGE,
    binary_image,
)
from kfcluster.settings import STATE, ClusterError, log
from kubeforge_labs import kit

NAMESPACE = "kserve"
MODULE = "github.com/kserve/kserve"
WEBHOOK_SERVICE = "kserve-webhook-server-service"
CERT_SECRET = "kserve-webhook-server-cert"  # noqa: S105 (a Secret's name)
MANAGER = "kserve-controller-manager"
# The Gateway KServe's routes (and kubeforge's) attach to, in upstream's default place.
GATEWAY = ("kserve", "kserve-ingress-gateway")
INGRESS_DOMAIN = "example.com"
FINALIZER = "inferenceservice.finalizers"


def version() -> str:
    return tool_version("kserve", MODULE)


def source() -> Path:
    return module_dir(MODULE, version())


def yaml_documents(path: Path, substitutions: dict[str, str] | None = None) -> list[Any]:
    import yaml  # PyYAML: KServe's manifests are YAML; the e2e tests and `make kserve` have it

    text = path.read_text()
    for key, value in (substitutions or {}).items():
        text = text.replace(key, value)
    return [d for d in yaml.safe_load_all(text) if d]


def upstream_config() -> dict[str, str]:
    """The ``inferenceservice-config`` data of KServe's rendered install, as released."""
    install = source() / "install" / version() / "kserve.yaml"
    for doc in yaml_documents(install):
        if doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "inferenceservice-config":
            return {k: v for k, v in doc["data"].items() if k != "_example"}
    raise ClusterError(f"{install}: no ConfigMap inferenceservice-config")


def config_data() -> dict[str, str]:
    """Upstream's configuration with what this cluster needs changed: Standard mode (no
    Knative), Gateway API ingress to ``GATEWAY`` (no Istio), the images built here, and no
    Istio virtual hosts."""
    data = upstream_config()

    def patch(key: str, **changes: Any) -> None:
        data[key] = json.dumps(json.loads(data[key]) | changes, indent=2)

    patch("deploy", defaultDeploymentMode="Standard")
    patch(
        "ingress",
        enableGatewayApi=True,
        kserveIngressGateway="/".join(GATEWAY),
        ingressDomain=INGRESS_DOMAIN,
        disableIstioVirtualHost=True,
    )
    for key in ("agent", "logger", "batcher"):
        patch(key, image=KSERVE_AGENT_IMAGE)
    patch("metricsAggregator", enablePrometheusScraping="true")
    return data


def webhook_pki(service: str = WEBHOOK_SERVICE) -> tuple[bytes, bytes, bytes]:
    """A CA for this cluster's webhooks and the serving certificate of webhook Service
    ``service`` in ``NAMESPACE`` from it (what cert-manager's Issuer and Certificate do in
    upstream's install): CA, cert, key."""
    pki = STATE / "pki" / "webhooks"
    pki.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = pki / "ca.key", pki / "ca.crt"
    key, crt = pki / f"{service}.key", pki / f"{service}.crt"
    host = f"{service}.{NAMESPACE}.svc"
    if not crt.exists():
        ca = [] if ca_crt.exists() else [
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
             "-keyout", str(ca_key), "-out", str(ca_crt), "-subj", "/CN=kubeforge-webhook-ca"],
        ]  # fmt: skip
        for cmd in (
            *ca,
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
             "-CA", str(ca_crt), "-CAkey", str(ca_key), "-keyout", str(key), "-out", str(crt),
             "-subj", f"/CN={host}",
             "-addext", f"subjectAltName=DNS:{host},DNS:{host}.cluster.local",
             "-addext", "basicConstraints=critical,CA:FALSE",
             "-addext", "extendedKeyUsage=serverAuth"],
        ):  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise ClusterError(f"openssl failed: {proc.stderr.strip()}")
        for f in (ca_key, key):
            f.chmod(0o600)
    return ca_crt.read_bytes(), crt.read_bytes(), key.read_bytes()


def webhook_configurations(
    ca: bytes, folder: str = "config/webhook", service: str = WEBHOOK_SERVICE
) -> list[dict[str, Any]]:
    """Upstream's webhook configurations (``folder``/manifests.yaml) with the Service's name and
    namespace and the CA filled in."""
    docs = yaml_documents(
        source() / folder / "manifests.yaml",
        {"$(webhookServiceName)": service, "$(kserveNamespace)": NAMESPACE},
    )
    bundle = base64.b64encode(ca).decode()
    for doc in docs:
        doc["metadata"].pop("creationTimestamp", None)
        for hook in doc.get("webhooks") or []:
            hook["clientConfig"]["caBundle"] = bundle
    return docs


def rbac() -> list[dict[str, Any]]:
    folder = source() / "config" / "rbac"
    docs = []
    for name in ("role.yaml", "service_account.yaml", "role_binding.yaml"):
        for doc in yaml_documents(folder / name):
            if doc["kind"] == "ServiceAccount":
                doc["metadata"]["namespace"] = NAMESPACE
            for subject in doc.get("subjects") or []:
                subject["namespace"] = NAMESPACE
            docs.append(doc)
    return docs


def cert_secret(name: str, service: str) -> dict[str, Any]:
    """The Secret of webhook Service ``service``'s serving certificate (cert-manager's part)."""
    _, crt, key = webhook_pki(service)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {
            "tls.crt": base64.b64encode(crt).decode(),
            "tls.key": base64.b64encode(key).decode(),
        },
    }


def manifests() -> list[dict[str, Any]]:
    service = yaml_documents(source() / "config" / "webhook" / "service.yaml")[0]
    service["metadata"]["namespace"] = NAMESPACE
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            # upstream's label: the pod mutator leaves this namespace's pods alone
            "metadata": {"name": NAMESPACE, "labels": {"control-plane": MANAGER}},
        },
        *rbac(),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "inferenceservice-config", "namespace": NAMESPACE},
            "data": config_data(),
        },
        cert_secret(CERT_SECRET, WEBHOOK_SERVICE),
        service,
        manager_deployment(),
    ]


def manager_deployment() -> dict[str, Any]:
    return controller_deployment(
        MANAGER,
        KSERVE_CONTROLLER_IMAGE,
        ["--metrics-addr=:8080", "--health-probe-addr=:8081"],
        [{"name": "metrics", "containerPort": 8080}],
        CERT_SECRET,
    )


def controller_deployment(
    name: str, image: str, args: list[str], ports: list[dict[str, Any]], cert: str
) -> dict[str, Any]:
    """A KServe controller as upstream deploys it: its namespace in ``POD_NAMESPACE``, its
    webhook server's certificate from Secret ``cert``, ready when controller-runtime's
    ``/readyz`` on 8081 says so, labelled ``control-plane: <name>`` (which its webhook
    Service selects)."""
    container = {
        "name": "manager",
        "image": image,
        "args": args,
        "env": [
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            }
        ],
        "ports": [{"name": "webhook-server", "containerPort": 9443}, *ports],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8081}, "periodSeconds": 2},
        # controller-runtime's default: $TMPDIR/k8s-webhook-server/serving-certs
        "volumeMounts": [
            {
                "name": "cert",
                "mountPath": "/tmp/k8s-webhook-server/serving-certs",  # noqa: S108
                "readOnly": True,
            }
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "200Mi"},
            "limits": {"memory": "500Mi"},
        },
    }
    labels = {"control-plane": name, "app.kubernetes.io/name": name}
    volumes = [{"name": "cert", "secret": {"secretName": cert}}]
    selector = {"control-plane": name}
    return system_deployment(name, NAMESPACE, labels, container, volumes=volumes, selector=selector)


def is_up() -> bool:
    """Whether KServe's controller is installed (``up`` ran and ``down`` did not)."""
    from kfcluster.components import deployment_exists

    return deployment_exists(NAMESPACE, MANAGER)


def up() -> None:
    """Install KServe's controller and wait until its webhooks answer (no-op when running)."""
    from kfcluster import node
    from kfcluster.components import apply_objects, kubectl, wait_rollout  # (imports node)

    # a node started before these images existed imports them now (each once per node)
    tags = (KSERVE_CONTROLLER_IMAGE, KSERVE_AGENT_IMAGE, TRAEFIK_IMAGE)
    node.import_images([binary_image(tag, *BINARY_IMAGES[tag]) for tag in tags])
    apply_objects(manifests())
    # the webhooks only once their server is ready: until then they would refuse every write
    wait_rollout(NAMESPACE, MANAGER, "KServe's controller", timeout="120s")
    apply_objects(webhook_configurations(webhook_pki()[0]))
    kit.wait_for("KServe's webhooks", _webhooks_answer, 60, interval=1)
    apply_objects(gateway.manifests())
    try:
        kubectl("rollout", "status", "deployment/traefik", "-n", NAMESPACE, "--timeout=120s")
        kubectl(
            "wait", "--for=condition=Programmed", "--timeout=60s", "-n", NAMESPACE,
            f"gateway/{gateway.NAME}",
        )  # fmt: skip
    except ClusterError as err:
        raise ClusterError(
            f"the Gateway {NAMESPACE}/{gateway.NAME} is not programmed: {err}; see kubectl -n "
            f"{NAMESPACE} logs deploy/traefik"
        ) from None
    log(
        f"KServe {version()} controller running in {NAMESPACE} (Standard mode), Gateway "
        f"{NAMESPACE}/{gateway.NAME} programmed by Traefik"
    )


def _webhooks_answer() -> bool:
    """A server-side dry run of an InferenceService passes through the validating webhook."""
    from kfcluster.components import admitted

    probe = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "webhook-probe", "namespace": NAMESPACE},
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://probe/m"}
            }
        },
    }
    return admitted(probe)


def down() -> None:
    """Remove the webhooks first (their server goes next), then the controller, and KServe's
    finalizer from InferenceServices left behind (nothing would ever remove it: their
    children go with them by owner reference). KServe's CRDs stay (the cluster installs them)."""
    from kfcluster import llmisvc
    from kfcluster.components import kubectl

    llmisvc.down()  # its presets' finalizers would hold the namespace's deletion
    for doc in webhook_configurations(b""):
        kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found")
    kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=120s")
    for doc in rbac():
        if doc["kind"] != "ServiceAccount":
            kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found")
    for kind, name in gateway.down_objects():
        kubectl("delete", kind, name, "--ignore-not-found")
    drop_finalizer("inferenceservices", FINALIZER)
    log("KServe's controller removed")


def drop_finalizer(resource: str, finalizer: str) -> None:
    """Remove ``finalizer`` from every object of ``resource`` (none when its CRD is missing):
    its controller is gone and would never remove it."""
    from kfcluster.components import kubectl

    try:
        listed = json.loads(kubectl("get", resource, "-A", "-o", "json"))
    except ClusterError:
        return
    for obj in listed["items"]:
        meta = obj["metadata"]
        kept = [f for f in meta.get("finalizers") or [] if f != finalizer]
        if kept != (meta.get("finalizers") or []):
            kubectl(
                "patch", resource, meta["name"], "-n", meta["namespace"], "--type=merge",
                "-p", json.dumps({"metadata": {"finalizers": kept or None}}),
            )  # fmt: skip
