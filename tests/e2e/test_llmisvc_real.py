"""ModelServers served as KServe LLMInferenceServices (``spec.runtime.servedAs``), reconciled by
KServe's own LLMInferenceService controller: v0.20's ``cmd/llmisvc``, built from KServe's Go
module and run as a pod on the real node with its webhooks and its ten presets
(``localcluster.py llmisvc up``).

vLLM needs a GPU: the vLLM pods KServe makes go to kwok's GPU nodes, which run no container, and
Traefik, the Gateway API implementation here, takes no InferencePool backends, so no request is
answered. What is real: the members the chart's operator writes as KServe's webhooks and
controller take them, the Deployments, scheduler, InferencePool and HTTPRoutes KServe makes of
them, and KServe's conditions as the ModelServer reports them. Two faults this found by hand
(vLLM's pods without the GPU taint's toleration, and labels that took KServe's Deployment out
of its controller's cache) are asserted here."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from tests.e2e.conftest import KEEP, condition, get, node_control, wait_for_condition
from tests.integration.conftest import LOCALCLUSTER, Cluster, wait_until

from kubeforge_crds import MODELSERVER

pytestmark = pytest.mark.slow

NAME = "support"
# KServe's conditions of a member whose workloads it made and saw
UP = ("MainWorkloadReady", "SchedulerWorkloadReady", "PresetsCombined")


@pytest.fixture(scope="module")
def llmisvc(cluster: Cluster, kserve: None) -> Iterator[None]:
    """KServe's LLMInferenceService controller beside its manager (``kserve``)."""
    subprocess.run([*LOCALCLUSTER, "llmisvc", "up"], check=True, timeout=600)
    yield
    if not KEEP:
        subprocess.run([*LOCALCLUSTER, "llmisvc", "down"], check=True, timeout=600)


def llmisvc_cluster() -> ModuleType:
    """hack/kfcluster/llmisvc.py (what ``localcluster.py llmisvc`` runs)."""
    return node_control("llmisvc")


def model_server(tickets: str) -> dict[str, Any]:
    return {
        "apiVersion": MODELSERVER.api_version,
        "kind": "ModelServer",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"uri": "hf://sshleifer/tiny-gpt2"},
            "runtime": {"servedAs": "LLMInferenceService"},
            "adapters": [
                {"name": "tickets", "uri": tickets},
                {"name": "faq", "uri": "hf://org/faq-lora"},
            ],
            "resources": {"cpu": "1", "memory": "2Gi", "accelerator": {"count": 1}},
            "rollout": {"steps": [10, 100], "interval": "10s"},
        },
    }


def workload(cluster: Cluster, ns: str, member: str) -> dict[str, Any]:
    """KServe's Deployment of a member's vLLM pods, once it and its pod are there."""

    def made() -> dict[str, Any] | None:
        deployment = get(cluster, "deployment", ns, f"{member}-kserve")
        return deployment if (deployment.get("status") or {}).get("readyReplicas") else None

    return wait_until(made, 120, 1, f"KServe's Deployment {member}-kserve ready")


def settled(cluster: Cluster, ns: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The ModelServer and its stable member once KServe reports the member's workloads up and
    the ModelServer's TrafficRouted says KServe's route has a backend the Gateway cannot
    resolve (KServe first says the route is not ready while Traefik has only accepted it)."""
    ms = get(cluster, "modelserver", ns, NAME)
    member = get(cluster, "llminferenceservice", ns, NAME)
    kserve_says = {c["type"]: c["status"] for c in member.get("status", {}).get("conditions", [])}
    up = all(kserve_says.get(t) == "True" for t in UP)
    routed = condition(ms, "TrafficRouted")
    said = (routed.get("status"), routed.get("reason"), "InvalidKind" in routed.get("message", ""))
    return (ms, member) if up and said == ("False", "HTTPRoutesNotReady", True) else None


def test_kserve_s_controller_runs_each_member_on_a_gpu_node_and_its_reasons_reach_the_server(
    cluster: Cluster, llmisvc: None, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(model_server("hf://org/t-v1")))
    stable = workload(cluster, ns, NAME)
    # KServe saw the Deployment it made (kubeforge's labels no longer hide it from its cache),
    # and its Gateway here cannot resolve the InferencePool
    try:
        ms, member = wait_until(lambda: settled(cluster, ns), 120, 1, "the member settled")
    except AssertionError as err:  # say what KServe reported instead
        member = get(cluster, "llminferenceservice", ns, NAME).get("status") or {}
        server = get(cluster, "modelserver", ns, NAME).get("status") or {}
        said = json.dumps([server.get("conditions"), member.get("conditions")], indent=1)
        raise AssertionError(f"{err}\nModelServer's and KServe's conditions: {said}") from None
    assert "InferencePool" in condition(ms, "TrafficRouted")["message"]
    ready = condition(ms, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "HTTPRoutesNotReady")
    assert member["metadata"]["ownerReferences"][0]["kind"] == "ModelServer"
    get(cluster, "inferencepool", ns, f"{NAME}-inference-pool")["metadata"]  # made by KServe

    labels = stable["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "llminferenceservice"
    assert labels["kubeforge.io/modelserver"] == NAME
    pod_spec = stable["spec"]["template"]["spec"]
    (main,) = [c for c in pod_spec["containers"] if c["name"] == "main"]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec[
        "tolerations"
    ]
    revision = labels["kubeforge.io/revision"]
    listed = cluster.kubectl("get", "pods", "-n", ns, "-l", f"kubeforge.io/revision={revision}",
                             "-o", "json")  # fmt: skip
    nodes = [p["spec"]["nodeName"] for p in json.loads(listed.stdout)["items"]]
    assert nodes
    assert all(n.startswith("kwok-gpu-") for n in nodes), nodes
    # the base model and both adapters, where KServe's storage initializer fetches them
    assert initializer_uris(stable) == {
        "hf://sshleifer/tiny-gpt2", "hf://org/faq-lora", "hf://org/t-v1"
    }  # fmt: skip

    # a new version of one adapter: a canary member beside the stable one, which keeps its own
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(model_server("hf://org/t-v2")))
    canary = workload(cluster, ns, f"{NAME}-canary")
    assert initializer_uris(canary) == {
        "hf://sshleifer/tiny-gpt2", "hf://org/faq-lora", "hf://org/t-v2"
    }  # fmt: skip
    assert initializer_uris(workload(cluster, ns, NAME)) == initializer_uris(stable)
    ms = wait_for_condition(
        cluster, "modelserver", ns, NAME, "CanaryReady", "HTTPRoutesNotReady", timeout=120
    )
    assert f"on {NAME}-canary" in condition(ms, "CanaryReady")["message"]
    # a canary KServe cannot route gets no weight in the group, and no analysis
    members = {
        m["metadata"]["name"]: m["spec"]["router"]["route"]
        for m in json.loads(
            cluster.kubectl("get", "llminferenceservice", "-n", ns, "-o", "json").stdout
        )["items"]
    }
    assert members == {
        NAME: {"group": NAME, "weight": 100, "http": {}},
        f"{NAME}-canary": {"group": NAME, "weight": 0, "http": {}},
    }
    assert [d["action"] for d in ms["status"]["decisions"]] == ["start"]

    # deleted: its members go, and KServe's finalizer removes what it made outside them
    cluster.kubectl("delete", "modelserver", NAME, "-n", ns)

    def gone() -> bool:
        left = cluster.kubectl("get", "llminferenceservice", "-n", ns, "-o", "name").stdout
        bindings = cluster.kubectl(
            "get", "clusterrolebinding", "-o", "name", "-l", llmisvc_cluster().SCHEDULER_BINDINGS
        ).stdout
        return not left.strip() and f"/{ns}-" not in bindings

    wait_until(gone, 90, 1, "the members and their schedulers' ClusterRoleBindings gone")


def initializer_uris(deployment: dict[str, Any]) -> set[str]:
    """The URIs KServe's storage-initializer init container downloads (its arguments alternate
    URI and destination)."""
    (init,) = [
        c
        for c in deployment["spec"]["template"]["spec"].get("initContainers") or []
        if c["name"] == "storage-initializer"
    ]
    return set(init["args"][0::2])
