"""Kueue's own controller on the real node: the manager of ``sigs.k8s.io/kueue`` (the version
pinned in hack/tools/kueue), built from its Go module into a local image, installed by rendering
the Helm chart the same module publishes (``charts/kueue``) with ``helm template``.

Only what this cluster needs is set in the chart's values: the image built here (imported, never
pulled), the pod on the real node with smaller requests, and the integrations kubeforge's
workloads use. The rest is upstream's install as released: its CRDs (v1beta2 stored, with the
conversion webhook), RBAC, webhooks, and its internal certificate management (Kueue's own
cert-controller makes the webhook certificate and fills in the webhooks' and CRDs' caBundle, as it
does on any cluster without cert-manager). Its visibility API (queue positions of pending
workloads) is served through the control plane's aggregation layer.

On demand (``localcluster.py kueue up|down``, the e2e tests' ``kueue`` fixture): with Kueue's
pod webhook installed, a pod with a queue label cannot be created while Kueue is down, so the
cluster does not carry it unless asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kfcluster.binaries import module_dir, tool_version
from kfcluster.files import ON_REAL_NODE
from kfcluster.images import BINARY_IMAGES, KUEUE_IMAGE, binary_image
from kfcluster.settings import ClusterError, log
from kubeforge_labs import kit

NAMESPACE = "kueue-system"
MODULE = "sigs.k8s.io/kueue"
RELEASE = "kueue"
MANAGER = f"{RELEASE}-controller-manager"
CHART_SELECTOR = f"app.kubernetes.io/name=kueue,app.kubernetes.io/instance={RELEASE}"
# Kueue's finalizers: on what it manages (pods of the pod integration, Workloads) and on the
# queue objects in use; nothing removes them once Kueue is gone
FINALIZERS = ("kueue.x-k8s.io/managed", "kueue.x-k8s.io/resource-in-use")
# the workload types kubeforge creates: Workbenches (StatefulSet), single-node FineTuneJobs
# (Job), multi-node ones (Kubeflow Trainer's TrainJob: the cluster installs all of Trainer's CRDs,
# without which this integration refuses to start), ModelServer predictors (Deployment) and
# plain pods
FRAMEWORKS = ["batch/job", "pod", "statefulset", "deployment", "trainer.kubeflow.org/trainjob"]


def version() -> str:
    return tool_version("kueue", MODULE)


def chart() -> Path:
    return module_dir(MODULE, version()) / "charts" / "kueue"


def manager_config() -> dict[str, Any]:
    """controller_manager_config.yaml: upstream's defaults with kubeforge's integrations."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": ":8081"},
        "metrics": {"bindAddress": ":8443"},
        "webhook": {"port": 9443},
        "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
        "clientConnection": {"qps": 50, "burst": 100},
        "integrations": {"frameworks": FRAMEWORKS},
    }


def values() -> dict[str, Any]:
    repository, tag = KUEUE_IMAGE.rsplit(":", 1)
    return {
        "controllerManager": {
            "manager": {
                "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"memory": "512Mi"},
                },
            },
            "nodeSelector": ON_REAL_NODE["nodeSelector"],
            "tolerations": ON_REAL_NODE["tolerations"],
            "readinessProbe": {"initialDelaySeconds": 1, "periodSeconds": 2},
        },
        "managerConfig": {"controllerManagerConfigYaml": json.dumps(manager_config())},
    }


def manifests() -> list[dict[str, Any]]:
    """``helm template`` of Kueue's chart with ``values()``, as objects."""
    from kfcluster.components import helm_template

    return helm_template(RELEASE, chart(), NAMESPACE, values())


def is_up() -> bool:
    """Whether Kueue's controller is installed (``up`` ran and ``down`` did not)."""
    from kfcluster.components import deployment_exists

    return deployment_exists(NAMESPACE, MANAGER)


def up() -> None:
    """Install Kueue and wait until its webhooks and its visibility API answer (no-op when
    running)."""
    from kfcluster import node
    from kfcluster.components import apply_objects, wait_rollout

    node.import_images([binary_image(KUEUE_IMAGE, *BINARY_IMAGES[KUEUE_IMAGE])])
    docs = manifests()
    apply_objects([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    apply_objects(docs)
    wait_rollout(NAMESPACE, MANAGER, "Kueue's controller")
    kit.wait_for("Kueue's webhooks", _webhooks_answer, 90, interval=1)
    kit.wait_for("Kueue's visibility API", _visibility_answers, 90, interval=1)
    log(f"Kueue {version()} controller running in {NAMESPACE}")


def _webhooks_answer() -> bool:
    """A server-side dry run of a ResourceFlavor passes through Kueue's webhooks."""
    from kfcluster.components import admitted

    probe = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ResourceFlavor",
        "metadata": {"name": "webhook-probe"},
    }
    return admitted(probe)


def _visibility_answers() -> bool:
    from kfcluster.components import api_get

    path = "/apis/visibility.kueue.x-k8s.io/v1beta2"
    try:
        return api_get(path)[0] == 200
    except OSError:
        return False


def down() -> None:
    """Remove the webhooks and the APIServices first, then the controller and its cluster
    objects, and Kueue's finalizers from what it leaves behind (nothing would ever remove them).
    The CRDs stay, without the conversion webhook (its server is gone): the stored version
    (v1beta2) is the one the cluster's own CRDs store. For the local cluster's tests: pods it
    still gates and Jobs it suspended stay so (their namespaces are deleted with them)."""
    from kfcluster.components import kubectl

    docs = manifests()
    by_kind: dict[str, list[str]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc["metadata"]["name"])
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "APIService"):
        kubectl("delete", kind.lower(), *by_kind.get(kind, []), "--ignore-not-found")
    # the controller stops at once (its state is in the API objects), before its finalizers
    # are taken off what it would put them back on
    kubectl("delete", "deployment", MANAGER, "-n", NAMESPACE, "--ignore-not-found",
            "--grace-period=1")  # fmt: skip
    kubectl("wait", "--for=delete", "pod", "-l", CHART_SELECTOR, "-n", NAMESPACE,
            "--timeout=60s")  # fmt: skip
    # 50 of them, by the chart's labels in one call each, not one by one
    kubectl("delete", "clusterrole,clusterrolebinding", "-l", CHART_SELECTOR, "--wait=false")
    for doc in docs:  # its Roles in other namespaces (kube-system's authentication reader)
        namespace = doc["metadata"].get("namespace")
        if doc["kind"] in ("Role", "RoleBinding") and namespace not in (None, NAMESPACE):
            kubectl(
                "delete", doc["kind"].lower(), doc["metadata"]["name"], "-n", namespace,
                "--ignore-not-found",
            )  # fmt: skip
    # first what nothing else would undo: finalizers, and the CRDs' conversion webhook
    for resource in ("pods", "workloads.kueue.x-k8s.io", "localqueues.kueue.x-k8s.io"):
        _drop_finalizers(resource, namespaced=True)
    for resource in ("clusterqueues.kueue.x-k8s.io", "resourceflavors.kueue.x-k8s.io"):
        _drop_finalizers(resource, namespaced=False)
    # the CRDs as the cluster installs them: no conversion webhook (its server is gone)
    none = json.dumps({"spec": {"conversion": {"strategy": "None", "webhook": None}}})
    for name in by_kind.get("CustomResourceDefinition", []):
        kubectl("patch", "crd", name, "--type=merge", "-p", none)
    kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=90s")
    log("Kueue's controller removed")


def _drop_finalizers(resource: str, namespaced: bool) -> None:
    from kfcluster.components import kubectl

    try:
        listed = json.loads(kubectl("get", resource, *(["-A"] if namespaced else []), "-o", "json"))
    except ClusterError:  # the CRD is not there
        return
    for item in listed["items"]:
        meta = item["metadata"]
        finalizers = meta.get("finalizers") or []
        kept = [f for f in finalizers if f not in FINALIZERS]
        if kept == finalizers:
            continue
        where = ["-n", meta["namespace"]] if namespaced else []
        kubectl(
            "patch", resource, meta["name"], *where, "--type=merge",
            "-p", json.dumps({"metadata": {"finalizers": kept or None}}),
        )  # fmt: skip
