"""The LLMInferenceServices a ModelServer becomes on KServe's vLLM path
(``modelserver/llmisvc.py``) against KServe v0.20's own CRD (installed into the local control
plane from KServe's Go module): a stable version with two LoRA adapters and its canary at 10%,
admitted by the apiserver (server-side dry run: schema, defaults, CEL); and the operator writing
them for a ModelServer with ``spec.runtime.servedAs: LLMInferenceService``. vLLM needs a GPU and
KServe's LLMInferenceService controller is not run here, so nothing serves them: the ModelServer
says it waits for that controller. What the schema cannot say (KServe's webhook: a weight needs
a group) is checked on the manifests themselves."""

from __future__ import annotations

import json
import uuid
from typing import Any

from kubeforge_crds import MODELSERVER
from kubeforge_crds.platform import PlatformConfig
from kubeforge_operator.modelserver.llmisvc import build_llm_inference_services
from kubeforge_operator.modelserver.revisions import desired_revision
from kubeforge_operator.runtime.placement import Placement, resolve_placement
from tests.integration.conftest import Cluster, OperatorProcess, wait_until

OWNER = {
    "apiVersion": MODELSERVER.api_version,
    "kind": "ModelServer",
    "metadata": {
        "name": "support",
        "namespace": "team-a",
        "uid": "2c1f6f0e-0000-4000-8000-000000000001",
    },
}
SPEC = MODELSERVER.parse_spec(
    {
        "model": {"uri": "hf://meta-llama/Llama-3.2-1B-Instruct"},
        "adapters": [
            {"name": "tickets", "uri": "pvc://models/tickets/v3"},
            {"name": "faq", "uri": "pvc://models/faq/v1"},
        ],
        "resources": {"cpu": "4", "memory": "16Gi", "accelerator": {"count": 1}},
    }
)
# the placement the operator resolves for SPEC (an accelerator count: the GPU taint tolerated)
PLACEMENT = resolve_placement(SPEC.resources.accelerator, None, PlatformConfig())
assert isinstance(PLACEMENT, Placement)


def manifests(canary_percent: int) -> list[dict[str, object]]:
    stable = desired_revision(
        "hf://meta-llama/Llama-3.2-1B-Instruct", SPEC, None, None,
        {"tickets": "pvc://models/tickets/v3", "faq": "pvc://models/faq/v1"},
    )  # fmt: skip
    canary = desired_revision(
        "hf://meta-llama/Llama-3.2-1B-Instruct", SPEC, None, None,
        {"tickets": "pvc://models/tickets/v4", "faq": "pvc://models/faq/v1"},
    )  # fmt: skip
    return build_llm_inference_services(
        OWNER, SPEC, stable, canary, canary_percent, ("kserve", "kserve-ingress-gateway"),
        PLACEMENT,
    )  # fmt: skip


def dry_run(cluster: Cluster, namespace: str, objects: list[dict[str, object]]) -> object:
    body = {"apiVersion": "v1", "kind": "List", "items": objects}
    return cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
        stdin=json.dumps(body), check=False,
    )  # fmt: skip


def documents(text: str) -> list[dict[str, object]]:
    """The JSON objects kubectl printed one after another."""
    decoder, out, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        obj, end = decoder.raw_decode(text, at + len(text[at:]) - len(text[at:].lstrip()))
        out.append(obj)
        at = end
    return out


def test_a_canary_of_one_adapter_is_two_members_of_one_routing_group(cluster: Cluster) -> None:
    ns = f"kf-llmisvc-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    try:
        objects = manifests(10)
        for obj in objects:
            obj["metadata"]["namespace"] = ns  # type: ignore[index]
            obj["metadata"]["ownerReferences"] = []  # type: ignore[index]  # no owner here
        done = dry_run(cluster, ns, objects)
        assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
        admitted = documents(done.stdout)  # type: ignore[attr-defined]
        assert [o["metadata"]["name"] for o in admitted] == ["support", "support-canary"]
        routes = [o["spec"]["router"]["route"] for o in admitted]
        assert [(r["group"], r["weight"]) for r in routes] == [("support", 90), ("support", 10)]
        lora = [o["spec"]["model"]["lora"]["adapters"] for o in admitted]
        assert lora[0] == [
            {"name": "faq", "uri": "pvc://models/faq/v1"},
            {"name": "tickets", "uri": "pvc://models/tickets/v3"},
        ]
        assert lora[1][1] == {"name": "tickets", "uri": "pvc://models/tickets/v4"}
        template = admitted[1]["spec"]["template"]
        assert template["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        # placed as the built-in runtime's predictor is: the GPU nodes' taint tolerated
        assert template["tolerations"][0]["key"] == "nvidia.com/gpu"
        # the revision is on the workloads, for the canary's metrics to be told apart
        revisions = {o["spec"]["labels"]["kubeforge.io/revision"] for o in admitted}
        assert len(revisions) == 2
        # and the schema is really enforced: a negative weight is refused naming the field
        bad = manifests(10)[:1]
        bad[0]["metadata"]["namespace"] = ns  # type: ignore[index]
        bad[0]["metadata"]["ownerReferences"] = []  # type: ignore[index]
        bad[0]["spec"]["router"]["route"]["weight"] = -1  # type: ignore[index]
        refused = dry_run(cluster, ns, bad)
        assert refused.returncode != 0  # type: ignore[attr-defined]
        assert "spec.router.route.weight" in refused.stderr  # type: ignore[attr-defined]
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_every_member_has_a_group_and_a_weight_as_kserve_s_webhook_requires() -> None:
    for percent in (0, 10, 100):
        for obj in manifests(percent):
            route = obj["spec"]["router"]["route"]  # type: ignore[index]
            assert route["group"] == "support"
            assert 0 <= route["weight"] <= 100
            assert "refs" not in route["http"]  # splitting needs a controller-managed route
    (alone,) = build_llm_inference_services(
        OWNER, SPEC, desired_revision("hf://m", SPEC, None), None, 0, ("kserve", "gw"), Placement()
    )
    assert alone["spec"]["router"]["route"]["weight"] == 100
    assert "lora" not in alone["spec"]["model"]


def test_the_operator_writes_the_stable_member_and_waits_for_kserve(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    ns = f"kf-llmisvc-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    server = {
        "apiVersion": MODELSERVER.api_version,
        "kind": "ModelServer",
        "metadata": {"name": "support", "namespace": ns},
        "spec": {
            "model": {"uri": "hf://sshleifer/tiny-gpt2"},
            "runtime": {"servedAs": "LLMInferenceService"},
            "adapters": [{"name": "tickets", "uri": "hf://org/tickets-lora"}],
        },
    }

    def get(kind: str) -> dict[str, Any] | None:
        done = cluster.kubectl("get", kind, "support", "-n", ns, "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def waiting() -> dict[str, Any] | None:
        ms = get("modelserver") or {}
        conditions = {c["type"]: c for c in (ms.get("status") or {}).get("conditions") or []}
        ready = conditions.get("InferenceServiceReady") or {}
        return conditions if ready.get("reason") == "WaitingForKServe" else None

    try:
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(server))
        conditions = wait_until(waiting, 60, what="InferenceServiceReady WaitingForKServe")
        assert "LLMInferenceService controller" in conditions["InferenceServiceReady"]["message"]
        assert conditions["Accepted"]["status"] == "True"
        member = get("llminferenceservices.serving.kserve.io")
        assert member is not None  # written by the operator, admitted by KServe's CRD
        assert member["spec"]["router"]["route"] == {"group": "support", "weight": 100, "http": {}}
        assert member["spec"]["model"]["lora"]["adapters"] == [
            {"name": "tickets", "uri": "hf://org/tickets-lora"}
        ]
        assert member["metadata"]["ownerReferences"][0]["kind"] == "ModelServer"
        assert get("inferenceservice") is None
        # the kind it is served as cannot change under it
        changed = cluster.kubectl(
            "patch", "modelserver", "support", "-n", ns, "--type=merge",
            "-p", '{"spec":{"runtime":{"servedAs":"InferenceService"}}}', check=False,
        )  # fmt: skip
        assert changed.returncode != 0
        assert "servedAs cannot change" in changed.stderr
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
