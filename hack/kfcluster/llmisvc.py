"""KServe's LLMInferenceService controller on the real node: ``cmd/llmisvc`` of the KServe module
pinned in hack/tools/kserve (a binary of its own upstream, beside the manager), built into a
local image and run as a pod in namespace ``kserve`` with its webhooks, as KServe's
``config/llmisvc`` install does.

What is upstream's is taken from the module: its ClusterRole, leader-election Role, bindings
and ServiceAccount (``config/rbac/llmisvc``), its webhook Service and configurations
(``config/webhook/llmisvc``), its CRDs (``LLMInferenceServiceConfig``; the Gateway API
Inference Extension's InferencePool and friends, ``config/llmisvc``) and its presets (the ten
``LLMInferenceServiceConfig`` of ``config/llmisvcconfig``, which name the llm-d images no pod
here pulls: vLLM's pods go to kwok's GPU nodes, the scheduler's to kwok's CPU nodes, none to the
real node, whose taint they do not tolerate). It shares KServe's manager's namespace, its
``inferenceservice-config`` (the Gateway its routes attach to) and the webhooks' CA, so ``up``
installs KServe's controller first.

What it does not get here: a gateway controller that accepts InferencePool backends (Traefik
reports such routes ``ResolvedRefs=False, InvalidKind``), so members with a scheduler never
become routable and are not ``Ready``.
"""

from __future__ import annotations

import json
from typing import Any

from kfcluster import kserve
from kfcluster.images import BINARY_IMAGES, KSERVE_LLMISVC_IMAGE, binary_image
from kfcluster.settings import ClusterError, log
from kubeforge_labs import kit

NAMESPACE = kserve.NAMESPACE
MANAGER = "llmisvc-controller-manager"
WEBHOOK_SERVICE = "llmisvc-webhook-server-service"
CERT_SECRET = "llmisvc-webhook-server-cert"  # noqa: S105 (a Secret's name)
WEBHOOKS = "config/webhook/llmisvc"
CRD_FILES = (
    "config/crd/full/llmisvc/serving.kserve.io_llminferenceserviceconfigs.yaml",
    "config/llmisvc/gateway-inference-extension.yaml",
)
# the ClusterRoleBindings KServe makes for each member's scheduler (system:auth-delegator),
# which its finalizer removes
SCHEDULER_BINDINGS = (
    "app.kubernetes.io/component=llminferenceservice-router-scheduler,"
    "app.kubernetes.io/part-of=llminferenceservice"
)
FINALIZERS = {
    "llminferenceservices": "serving.kserve.io/llmisvc-finalizer",
    "llminferenceserviceconfigs": "serving.kserve.io/llmisvcconfig-finalizer",
}


def crds() -> list[dict[str, Any]]:
    return [d for f in CRD_FILES for d in kserve.yaml_documents(kserve.source() / f)]


def presets() -> list[dict[str, Any]]:
    """KServe's well-known LLMInferenceServiceConfigs, in the controller's namespace (where it
    looks for the presets a member's ``baseRefs`` and its defaults name)."""
    folder = kserve.source() / "config" / "llmisvcconfig"
    names = kserve.yaml_documents(folder / "kustomization.yaml")[0]["resources"]
    docs = [d for name in names for d in kserve.yaml_documents(folder / name)]
    for doc in docs:
        doc["metadata"]["namespace"] = NAMESPACE
    return docs


def rbac() -> list[dict[str, Any]]:
    folder = kserve.source() / "config" / "rbac" / "llmisvc"
    names = kserve.yaml_documents(folder / "kustomization.yaml")[0]["resources"]
    docs = []
    for name in names:
        for doc in kserve.yaml_documents(folder / name, {"$(llmisvc-serviceAccountName)": MANAGER}):
            if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
                doc["metadata"]["namespace"] = NAMESPACE
            docs.append(doc)
    return docs


def manifests() -> list[dict[str, Any]]:
    service = kserve.yaml_documents(kserve.source() / WEBHOOKS / "service.yaml")[0]
    service["metadata"]["namespace"] = NAMESPACE
    return [
        *rbac(),
        kserve.cert_secret(CERT_SECRET, WEBHOOK_SERVICE),
        service,
        deployment(),
    ]


def deployment() -> dict[str, Any]:
    # upstream's arguments: metrics on the pod's loopback only, one leader
    args = ["--metrics-addr=127.0.0.1:8443", "--leader-elect"]
    return kserve.controller_deployment(MANAGER, KSERVE_LLMISVC_IMAGE, args, [], CERT_SECRET)


def up() -> None:
    """KServe's controller and the Gateway (``kserve.up``), then the LLMInferenceService
    controller, its webhooks and presets; no-op for what is running."""
    from kfcluster import node
    from kfcluster.components import apply_objects, wait_rollout

    kserve.up()
    node.import_images([binary_image(KSERVE_LLMISVC_IMAGE, *BINARY_IMAGES[KSERVE_LLMISVC_IMAGE])])
    definitions = crds()
    apply_objects(definitions)
    kit.wait_for("its CRDs established", lambda: _established(definitions), 60, interval=1)
    apply_objects(manifests())
    wait_rollout(NAMESPACE, MANAGER, "KServe's LLMInferenceService controller", timeout="120s")
    apply_objects(kserve.webhook_configurations(kserve.webhook_pki()[0], WEBHOOKS, WEBHOOK_SERVICE))
    kit.wait_for("KServe's LLMInferenceService webhooks", _webhooks_answer, 60, interval=1)
    # through its own validating webhook, as upstream's install applies them
    configs = presets()
    apply_objects(configs)
    log(
        f"KServe {kserve.version()} LLMInferenceService controller running in {NAMESPACE}, "
        f"{len(configs)} presets"
    )


def _established(definitions: list[dict[str, Any]]) -> bool:
    from kfcluster.components import kubectl

    names = [f"crd/{d['metadata']['name']}" for d in definitions]
    established = "{.items[*].status.conditions[?(@.type=='Established')].status}"
    out = kubectl("get", *names, "-o", f"jsonpath={established}")
    return out.split() == ["True"] * len(names)


def _webhooks_answer() -> bool:
    """A server-side dry run of an LLMInferenceService passes through both webhooks."""
    from kfcluster.components import admitted

    probe = {
        "apiVersion": "serving.kserve.io/v1alpha2",
        "kind": "LLMInferenceService",
        "metadata": {"name": "webhook-probe", "namespace": NAMESPACE},
        "spec": {"model": {"uri": "hf://facebook/opt-125m"}},
    }
    return admitted(probe)


def down() -> None:
    """The webhooks first, then the controller (its pod gone), then what its finalizers would
    have removed: the presets and any LLMInferenceService left behind lose them, and the
    ClusterRoleBindings KServe makes for each member's scheduler (owned by nothing) go. Safe to
    run again, or on a cluster where ``up`` never ran. The CRDs stay."""
    from kfcluster.components import kubectl

    def delete(*args: str, stdin: str | None = None) -> None:
        try:
            kubectl("delete", *args, "--ignore-not-found", stdin=stdin)
        except ClusterError as err:  # the kind's CRD was never installed
            if "the server doesn't have a resource type" not in str(err) and (
                "no matches for kind" not in str(err)
            ):
                raise

    def listed(docs: list[dict[str, Any]]) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})

    delete("-f", "-", stdin=listed(kserve.webhook_configurations(b"", WEBHOOKS, WEBHOOK_SERVICE)))
    delete("-n", NAMESPACE, f"deployment/{MANAGER}", f"service/{WEBHOOK_SERVICE}",
           f"secret/{CERT_SECRET}")  # fmt: skip
    try:  # before its finalizers are dropped: a running controller adds them back
        kubectl(
            "wait", "--for=delete", "pod", "-l", f"control-plane={MANAGER}", "-n", NAMESPACE,
            "--timeout=60s",
        )  # fmt: skip
    except ClusterError as err:
        if "no matching resources" not in str(err):
            raise
    delete("-f", "-", stdin=listed(rbac()))
    for resource, finalizer in FINALIZERS.items():
        kserve.drop_finalizer(resource, finalizer)
    delete("--wait=false", "-f", "-", stdin=listed(presets()))
    delete("clusterrolebinding", "-l", SCHEDULER_BINDINGS)
    log("KServe's LLMInferenceService controller removed")
