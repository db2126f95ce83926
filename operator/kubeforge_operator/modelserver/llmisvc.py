"""A ModelServer as KServe's LLMInferenceService (``serving.kserve.io/v1alpha2``, KServe v0.20):
the vLLM path (llm-d), where KServe runs vLLM with its scheduler and routes through the Gateway.

The stable version is the LLMInferenceService ``<name>``; during a rollout the canary is a
second one, ``<name>-canary``. Both are members of one routing group (``router.route.group``,
the ModelServer's name) with the split as their ``router.route.weight``s: KServe's controller
writes one HTTPRoute for the group, sending each member its share (weights are proportional, as
Gateway API backendRef weights are). Adapters are ``model.lora.adapters`` (vLLM's
``--lora-modules``), each under the name requests give as ``model``; the revision is a label
on the workloads (``spec.labels``), so the canary's metrics can be told from the stable's by a
PodMonitor that keeps it.

Pure. Checked against KServe's own CRD schema on the apiserver
(tests/integration/test_llmisvc_schema.py); vLLM needs a GPU, so no LLMInferenceService has
been served here, and the ModelServer reconcile does not write these yet (docs/llm-serving.md)."""

from __future__ import annotations

from typing import Any

from kubeforge_crds.contracts.labels import REVISION_LABEL
from kubeforge_crds.modelserver import ModelServerSpec, Revision
from kubeforge_operator.runtime.children import child_metadata, standard_labels

LLMISVC_API = "serving.kserve.io/v1alpha2"
LLMISVC_KIND = "LLMInferenceService"
CANARY_SUFFIX = "-canary"
GPU_RESOURCE = "nvidia.com/gpu"  # vLLM's; a hardware profile's other resources are not mapped yet


def _member(
    owner: dict[str, Any],
    spec: ModelServerSpec,
    rev: Revision,
    name: str,
    weight: int,
    gateway: tuple[str, str],
) -> dict[str, Any]:
    group = owner["metadata"]["name"]
    labels = standard_labels("modelserver", group, "inference")
    model: dict[str, Any] = {"uri": rev.uri, "name": group}
    if rev.adapters:
        model["lora"] = {
            "adapters": [{"name": a, "uri": uri} for a, uri in sorted(rev.adapters.items())]
        }
    res = spec.resources
    count = res.accelerator.count if res.accelerator and res.accelerator.count else 0
    gpus = {GPU_RESOURCE: str(count)} if count else {}
    container = {
        "name": "main",
        "resources": {
            "requests": {"cpu": res.cpu, "memory": res.memory} | gpus,
            "limits": {"memory": res.memory} | gpus,
        },
    }
    return {
        "apiVersion": LLMISVC_API,
        "kind": LLMISVC_KIND,
        "metadata": child_metadata(owner, name, labels | {REVISION_LABEL: rev.revision}),
        "spec": {
            "model": model,
            "replicas": spec.replicas.min,
            "labels": {REVISION_LABEL: rev.revision},
            "template": {"containers": [container]},
            "router": {
                "route": {"group": group, "weight": weight, "http": {}},
                "gateway": {"refs": [{"namespace": gateway[0], "name": gateway[1]}]},
                "scheduler": {},
            },
        },
    }


def build_llm_inference_services(
    owner: dict[str, Any],
    spec: ModelServerSpec,
    stable: Revision,
    canary: Revision | None,
    canary_percent: int,
    gateway: tuple[str, str],
) -> list[dict[str, Any]]:
    """The stable member (all the traffic without a canary) and, during a rollout, the canary
    member with ``canary_percent`` of it (0 while it is evaluated)."""
    name = owner["metadata"]["name"]
    if canary is None:
        return [_member(owner, spec, stable, name, 100, gateway)]
    return [
        _member(owner, spec, stable, name, 100 - canary_percent, gateway),
        _member(owner, spec, canary, name + CANARY_SUFFIX, canary_percent, gateway),
    ]
