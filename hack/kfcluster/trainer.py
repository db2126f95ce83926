"""Kubeflow Trainer v2 and JobSet on the real node: multi-node FineTuneJobs are TrainJobs, which
Trainer's controller turns into a JobSet, which JobSet's controller turns into one Job per node.
Both controllers are built from their Go modules (``github.com/kubeflow/trainer/v2``, pinned in
hack/tools/kueue beside Kueue, whose TrainJob integration is built against that version, and
``sigs.k8s.io/jobset`` in hack/tools/jobset) into local images, and installed by rendering the
Helm charts the same modules publish, in namespace ``kubeflow-system``, with upstream's RBAC,
webhooks and internal certificate management (each makes its own webhook certificate, as on any
cluster without cert-manager).

Trainer's chart declares JobSet (and LeaderWorkerSet, for its data cache) as chart dependencies
fetched from an OCI registry; Helm refuses to render a chart whose dependencies are not vendored,
even disabled ones. This machine has no registry: the chart is rendered from a copy without them,
and JobSet from its own module's chart (the version built here).

On demand (``localcluster.py trainer up|down``, the e2e tests' ``trainer`` fixture): the cluster
does not carry controllers no test uses, and the real node's two CPUs are the other tests'.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kfcluster.binaries import module_dir, tool_version
from kfcluster.files import ON_REAL_NODE
from kfcluster.images import BINARY_IMAGES, JOBSET_IMAGE, TRAINER_CONTROLLER_IMAGE, binary_image
from kfcluster.settings import log
from kubeforge_labs import kit

NAMESPACE = "kubeflow-system"
TRAINER_MODULE = "github.com/kubeflow/trainer/v2"
JOBSET_MODULE = "sigs.k8s.io/jobset"
# Trainer's Deployment as its chart names it (fullnameOverride: whatever the release)
TRAINER_MANAGER = "kubeflow-trainer-controller-manager"
IN_USE = "trainer.kubeflow.org/resource-in-use"  # Trainer's finalizer on a runtime in use
ON_NODE = {
    "nodeSelector": ON_REAL_NODE["nodeSelector"],
    "tolerations": ON_REAL_NODE["tolerations"],
}


def _image(tag: str) -> dict[str, str]:
    repository, version = tag.rsplit(":", 1)
    return {"repository": repository, "tag": version, "pullPolicy": "Never"}


def trainer_values() -> dict[str, Any]:
    registry, repository = _image(TRAINER_CONTROLLER_IMAGE)["repository"].split("/", 1)
    image = _image(TRAINER_CONTROLLER_IMAGE) | {"registry": registry, "repository": repository}
    return {
        "fullnameOverride": "kubeflow-trainer",
        "jobset": {"install": False},
        "dataCache": {"enabled": False},
        "image": image,
        "manager": ON_NODE
        | {
            "resources": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"memory": "512Mi"},
            }
        },
    }


def jobset_values() -> dict[str, Any]:
    return {
        "fullnameOverride": "jobset",
        "image": _image(JOBSET_IMAGE),
        "controller": ON_NODE
        | {
            "resources": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"memory": "512Mi"},
            },
            # one Job per node of a handful of TrainJobs
            "clientConnection": {"qps": 50, "burst": 100},
        },
    }


def manifests() -> list[dict[str, Any]]:
    """JobSet's chart, then Trainer's (from a copy without its chart dependencies), as objects."""
    import yaml

    from kfcluster.components import helm_template

    jobset_chart = module_dir(JOBSET_MODULE, tool_version("jobset", JOBSET_MODULE)) / "charts"
    docs = helm_template("jobset", jobset_chart / "jobset", NAMESPACE, jobset_values())
    trainer = module_dir(TRAINER_MODULE, tool_version("kueue", TRAINER_MODULE))
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "kubeflow-trainer"
        shutil.copytree(trainer / "charts" / "kubeflow-trainer", chart)
        chart.chmod(0o755)
        meta = chart / "Chart.yaml"
        meta.chmod(0o644)
        described = yaml.safe_load(meta.read_text())
        described.pop("dependencies", None)
        meta.write_text(yaml.safe_dump(described))
        docs += helm_template("kubeflow-trainer", chart, NAMESPACE, trainer_values())
    return docs


def is_up() -> bool:
    from kfcluster.components import deployment_exists

    return deployment_exists(NAMESPACE, TRAINER_MANAGER)


def up() -> None:
    """Install JobSet and Trainer and wait until their webhooks answer (no-op when running)."""
    from kfcluster import node
    from kfcluster.components import apply_objects, wait_rollout

    if is_up():
        kit.wait_for("Trainer's and JobSet's webhooks", _webhooks_answer, 90, interval=1)
        return
    node.import_images(
        [binary_image(t, *BINARY_IMAGES[t]) for t in (JOBSET_IMAGE, TRAINER_CONTROLLER_IMAGE)]
    )
    docs = manifests()
    apply_objects([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    apply_objects(docs)
    for doc in docs:
        if doc["kind"] == "Deployment":
            wait_rollout(
                NAMESPACE, doc["metadata"]["name"], f"the controller {doc['metadata']['name']}"
            )
    kit.wait_for("Trainer's and JobSet's webhooks", _webhooks_answer, 90, interval=1)
    log(f"Kubeflow Trainer {tool_version('kueue', TRAINER_MODULE)} and JobSet running")


def _webhooks_answer() -> bool:
    """Server-side dry runs of a ClusterTrainingRuntime and a JobSet pass through both
    webhooks (a webhook not called, or not trusted yet: its certificate made, the caBundle not
    yet injected, fails them)."""
    from kfcluster.components import admitted

    node = {"name": "node", "image": "webhook-probe"}
    replicated = {
        "name": "node",
        "template": {
            "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
            "spec": {"template": {"spec": {"containers": [node]}}},
        },
    }
    probes = [
        {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime",
         "metadata": {"name": "webhook-probe"},
         "spec": {"mlPolicy": {"numNodes": 1, "torch": {}},
                  "template": {"spec": {"replicatedJobs": [replicated]}}}},
        {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
         "metadata": {"name": "webhook-probe", "namespace": "default"}, "spec": {}},
    ]  # fmt: skip
    return admitted(*probes)


def down() -> None:
    """Remove the webhooks first, then the controllers and their cluster objects; the CRDs stay
    (the cluster installs them; TrainJobs and JobSets stay in their namespaces)."""
    from kfcluster.components import kubectl

    docs = manifests()
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        names = [d["metadata"]["name"] for d in docs if d["kind"] == kind]
        if names:
            kubectl("delete", kind.lower(), *names, "--ignore-not-found")
    for kind in ("ClusterRole", "ClusterRoleBinding"):
        names = [d["metadata"]["name"] for d in docs if d["kind"] == kind]
        if names:
            kubectl("delete", kind.lower(), *names, "--ignore-not-found", "--wait=false")
    # Trainer's finalizer on the runtimes TrainJobs name: nothing would remove it once it is gone
    found = json.loads(kubectl("get", "clustertrainingruntimes", "-o", "json"))["items"]
    for runtime in found:
        kept = [f for f in runtime["metadata"].get("finalizers") or [] if f != IN_USE]
        if kept != (runtime["metadata"].get("finalizers") or []):
            kubectl(
                "patch", "clustertrainingruntime", runtime["metadata"]["name"], "--type=merge",
                "-p", json.dumps({"metadata": {"finalizers": kept or None}}),
            )  # fmt: skip
    kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")
    log("Kubeflow Trainer's and JobSet's controllers removed")
