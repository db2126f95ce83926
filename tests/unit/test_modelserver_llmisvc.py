"""A ModelServer served as KServe's LLMInferenceService: the reconcile's own code run pass by
pass with a recording client in place of the Kubernetes calls (tests/unit/test_modelserver_reads),
KServe's reports written into the members' status by the test; and the pure member plan for the
states a pass cannot reach in one step (promotion handed over, a canary draining)."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from kubeforge_crds import MODELSERVER
from kubeforge_operator.modelserver.llmisvc import (
    Members,
    member_observation,
    member_weight,
    plan_members,
)
from kubeforge_operator.modelserver.reconcile import reconcile_modelserver
from kubeforge_operator.modelserver.revisions import desired_revision
from kubeforge_operator.modelserver.traffic import DRAIN_SECONDS, WEIGHTS_SINCE
from kubeforge_operator.runtime.conditions import Observation
from kubeforge_operator.runtime.placement import Placement
from kubeforge_operator.runtime.reconcile import ReconcileContext
from kubeforge_operator.runtime.settings import OperatorSettings
from tests.unit.test_modelserver_reads import NAME, NOW, NS, RecordingKube, _reconcile

CANARY = f"{NAME}-canary"
GATEWAY = ("kserve", "kserve-ingress-gateway")
PLACEMENT = Placement()  # no GPUs, nothing to select or tolerate


class MemberKube(RecordingKube):
    def delete_child(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.children.pop((kind, name), None)
        self.deleted = [*getattr(self, "deleted", []), name]


def _server(uri: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": MODELSERVER.api_version,
        "kind": "ModelServer",
        "metadata": {"name": NAME, "namespace": NS, "uid": "u-1", "generation": 1},
        "spec": {
            "model": {"uri": uri},
            "runtime": {"servedAs": "LLMInferenceService"},
            "adapters": [{"name": "tickets", "uri": "pvc://models/tickets/v1"}],
            "rollout": {"steps": [10, 100], "interval": "30s"},
        },
        "status": status or {},
    }


def _pass(kube: MemberKube, obj: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """One reconcile, then the ModelServer with the status it wrote."""
    outcome = _reconcile(kube, obj)
    after = copy.deepcopy(obj)
    after["status"] = {**obj["status"], **outcome.fields}
    return outcome, after


def _report(kube: MemberKube, name: str, ready: bool, **failing: str) -> None:
    """KServe's controller reports on the member's current generation."""
    member = kube.children[("LLMInferenceService", name)]
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    for type_, reason in failing.items():  # Knative's roll-up copies the part's reason
        part = {"status": "False", "reason": reason, "message": "0/1 replicas available"}
        conditions = [{**conditions[0], **part}, {"type": "RouterReady", "status": "True"},
                      {"type": type_, **part}]  # fmt: skip
    member["status"] = {
        "observedGeneration": member["metadata"]["generation"],
        "url": f"http://{NAME}.{NS}.example.com",
        "conditions": conditions,
    }
    # and its Deployment: the revision on every pod when Ready, the previous pods otherwise
    kube.children[("Deployment", f"{name}-kserve")] = _workload(member, rolled=ready)


def _workload(member: dict[str, Any], rolled: bool = True) -> dict[str, Any]:
    """KServe's Deployment of a member's vLLM pods, its template labelled as the member's
    workloads (``spec.labels``); ``rolled``: every replica runs it."""
    labels = member["spec"]["labels"]
    return {
        "metadata": {"name": f"{member['metadata']['name']}-kserve", "generation": 3},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": labels}}},
        "status": {
            "observedGeneration": 3,
            "updatedReplicas": 1,
            "availableReplicas": 1,
            **({} if rolled else {"unavailableReplicas": 1}),
        },
    }


def _condition(outcome: Any, type_: str) -> Observation:
    return next(o for o in [*outcome.dependents, *outcome.info] if o.type == type_)


def _weights(kube: MemberKube) -> dict[str, int]:
    return {
        name: member_weight(obj)
        for (kind, name), obj in kube.children.items()
        if kind == "LLMInferenceService"
    }


def test_a_version_and_its_canary_are_members_of_one_routing_group() -> None:
    kube = MemberKube({})
    outcome, ms = _pass(kube, _server("hf://org/llm-v1"))
    # no InferenceService, no route of ours: one member with all the traffic
    assert [a["kind"] for a in kube.applied] == ["LLMInferenceService"]
    assert not any(kind in ("InferenceService", "HTTPRoute") for _, kind, _ in kube.reads)
    stable = kube.applied[0]
    assert stable["spec"]["router"]["route"] == {"group": NAME, "weight": 100, "http": {}}
    assert stable["spec"]["model"]["lora"]["adapters"] == [
        {"name": "tickets", "uri": "pvc://models/tickets/v1"}
    ]
    waiting = _condition(outcome, "InferenceServiceReady")
    assert waiting.reason == "WaitingForKServe"
    assert "LLMInferenceService controller" in waiting.message
    assert outcome.phase == "Pending"

    _report(kube, NAME, ready=True)
    outcome, ms = _pass(kube, ms)
    assert outcome.phase == "Ready"
    assert outcome.fields["url"] == f"http://{NAME}.{NS}.example.com"
    assert _condition(outcome, "CanaryReady").reason == "NoCanary"

    # a new version: the canary member starts at weight 0, the stable keeps everything
    ms["spec"]["model"]["uri"] = "hf://org/llm-v2"
    outcome, ms = _pass(kube, ms)
    assert kube.events[-1] == "RolloutStart"
    assert _weights(kube) == {NAME: 100, CANARY: 0}
    assert _condition(outcome, "CanaryReady").reason == "WaitingForKServe"
    assert outcome.requeue_after == 2.0
    assert ms["status"]["canary"]["trafficPercent"] == 10

    # KServe cannot start it: said with KServe's own reason, still no traffic
    _report(kube, CANARY, ready=False, MainWorkloadReady="MinimumReplicasUnavailable")
    outcome, ms = _pass(kube, ms)
    cannot = _condition(outcome, "CanaryReady")
    assert (cannot.status, cannot.reason) == ("False", "MinimumReplicasUnavailable")
    assert cannot.message.startswith(f"KServe MainWorkloadReady=False on {CANARY}")
    assert "0/1 replicas available" in cannot.message
    assert _weights(kube) == {NAME: 100, CANARY: 0}
    assert outcome.phase == "Progressing"
    assert _condition(outcome, "InferenceServiceReady").status == "True"  # the stable serves

    # KServe says Ready while its Deployment still rolls (old pods answer): no traffic yet
    _report(kube, CANARY, ready=True)
    member = kube.children[("LLMInferenceService", CANARY)]
    kube.children[("Deployment", f"{CANARY}-kserve")] = _workload(member, rolled=False)
    outcome, ms = _pass(kube, ms)
    assert _weights(kube) == {NAME: 100, CANARY: 0}
    rolling = _condition(outcome, "CanaryReady")
    assert (rolling.status, rolling.reason) == ("False", "RollingOut")
    assert f"{CANARY}-kserve does not run" in rolling.message

    # Ready: the step's weight, and its interval counted from now
    _report(kube, CANARY, ready=True)
    outcome, ms = _pass(kube, ms)
    assert _weights(kube) == {NAME: 90, CANARY: 10}
    canary = kube.children[("LLMInferenceService", CANARY)]
    assert canary["metadata"]["annotations"][WEIGHTS_SINCE] == NOW.isoformat()
    assert canary["spec"]["labels"]["kubeforge.io/revision"] == ms["status"]["canary"]["revision"]


def _revisions() -> tuple[Any, Any, Any]:
    spec = MODELSERVER.parse_spec(_server("hf://org/llm-v2")["spec"])
    adapters = {"tickets": "pvc://models/tickets/v1"}
    old = desired_revision("hf://org/llm-v1", spec, None, None, adapters)
    new = desired_revision("hf://org/llm-v2", spec, None, None, adapters)
    return spec, old, new


def _member(plan_apply: dict[str, Any], ready: bool) -> dict[str, Any]:
    obj = copy.deepcopy(plan_apply)
    obj["metadata"]["generation"] = 1
    obj["status"] = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    return obj


def test_a_promotion_keeps_the_canary_answering_until_the_stable_member_serves_it() -> None:
    spec, old, new = _revisions()
    owner = _server("hf://org/llm-v2")
    at_full = plan_members(owner, spec, new, 100, old, Members(), GATEWAY, NOW, PLACEMENT)
    stable_seen, canary_seen = (_member(m, True) for m in at_full.apply)
    # promoted (no canary planned): the stable member now names the new revision, not ready yet
    plan = plan_members(owner, spec, new, None, old, Members(stable_seen, canary_seen),
                        GATEWAY, NOW, PLACEMENT)  # fmt: skip
    assert [member_weight(m) for m in plan.apply] == [0, 100]
    revisions = {m["spec"]["labels"]["kubeforge.io/revision"] for m in plan.apply}
    assert revisions == {new.revision}
    # the stable member serves it: the canary is drained, kept DRAIN_SECONDS, then deleted
    stable_new = _member(plan.apply[0], True)
    # KServe says Ready while its Deployment rolls (the old pods still answer): not yet
    rolling = Members(stable_new, canary_seen, _workload(stable_new, rolled=False))
    plan = plan_members(owner, spec, new, None, new, rolling, GATEWAY, NOW, PLACEMENT)
    assert [member_weight(m) for m in plan.apply] == [0, 100]
    serving = Members(stable_new, canary_seen, _workload(stable_new))
    plan = plan_members(owner, spec, new, None, new, serving, GATEWAY, NOW, PLACEMENT)
    assert [member_weight(m) for m in plan.apply] == [100, 0]
    assert not plan.delete_canary
    draining = _member(plan.apply[1], True)
    later = NOW + timedelta(seconds=DRAIN_SECONDS - 1)
    drained = Members(stable_new, draining, _workload(stable_new))
    plan = plan_members(owner, spec, new, None, new, drained, GATEWAY, later, PLACEMENT)
    assert not plan.delete_canary
    assert plan.apply[1]["metadata"]["annotations"][WEIGHTS_SINCE] == NOW.isoformat()
    done = NOW + timedelta(seconds=DRAIN_SECONDS)
    drained = Members(stable_new, draining, _workload(stable_new))
    plan = plan_members(owner, spec, new, None, new, drained, GATEWAY, done, PLACEMENT)
    assert plan.delete_canary
    assert [m["metadata"]["name"] for m in plan.apply] == [NAME]


def test_a_rolled_back_canary_loses_its_traffic_at_once_and_is_removed_after_draining() -> None:
    spec, old, new = _revisions()
    owner = _server("hf://org/llm-v2")
    at_step = plan_members(owner, spec, new, 10, old, Members(), GATEWAY, NOW, PLACEMENT)
    stable_seen, canary_seen = (_member(m, True) for m in at_step.apply)
    canary_seen["spec"]["router"]["route"]["weight"] = 10
    # rolled back: the old revision is served again by the stable member alone
    plan = plan_members(owner, spec, old, None, old, Members(stable_seen, canary_seen),
                        GATEWAY, NOW, PLACEMENT)  # fmt: skip
    assert [member_weight(m) for m in plan.apply] == [100, 0]
    assert plan.apply[1]["spec"]["labels"]["kubeforge.io/revision"] == new.revision
    assert "status" not in plan.apply[1]
    assert plan.apply[0]["spec"]["labels"]["kubeforge.io/revision"] == old.revision


def test_adapters_are_taken_from_where_kserve_loads_them() -> None:
    ms = _server("hf://org/llm-v1")
    ms["spec"]["adapters"] = [{"name": "tickets", "uri": "hf://org/tickets-lora"}]
    kube = MemberKube({})
    outcome, _ = _pass(kube, ms)
    assert _condition(outcome, "ModelResolved").status == "True"
    assert kube.applied[0]["spec"]["model"]["lora"]["adapters"][0]["uri"] == "hf://org/tickets-lora"
    ms["spec"]["adapters"] = [{"name": "tickets", "uri": "oci://registry/tickets:1"}]
    outcome, _ = _pass(MemberKube({}), ms)
    refused = _condition(outcome, "ModelResolved")
    assert (refused.status, refused.reason) == ("False", "AdapterSchemeNotSupported")
    assert refused.message.startswith("spec.adapters[0]: the version to serve is oci://")


def test_vllm_s_pods_are_placed_as_the_hardware_profile_says(tmp_path: Path) -> None:
    """The members' pod template carries the placement the built-in runtime's predictor gets:
    the profile's accelerator resource and count, its node selector and tolerations (a GPU
    node's taint would otherwise keep vLLM Pending)."""
    config = tmp_path / "platform.yaml"
    config.write_text(
        json.dumps(
            {
                "hardwareProfiles": [
                    {
                        "name": "mi300",
                        "accelerator": {"identifier": "amd.com/gpu", "maxCount": 8,
                                        "defaultCount": 2},
                        "nodeSelector": {"amd.com/gpu.product": "MI300X"},
                        "tolerations": [
                            {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                        ],
                    }
                ]
            }
        )
    )  # fmt: skip
    obj = _server("hf://org/llm-v1")
    obj["spec"]["resources"] = {"cpu": "4", "memory": "16Gi", "accelerator": {"profile": "mi300"}}
    kube = MemberKube({})
    ctx = ReconcileContext(
        kind=MODELSERVER, obj=obj, kube=kube, now=NOW,  # type: ignore[arg-type]
        settings=OperatorSettings(platform_config=config),
    )  # fmt: skip
    outcome = reconcile_modelserver(ctx, MODELSERVER.parse_spec(obj["spec"]))
    (member,) = kube.applied
    template = member["spec"]["template"]
    assert template["nodeSelector"] == {"amd.com/gpu.product": "MI300X"}
    (toleration,) = template["tolerations"]
    assert (toleration["key"], toleration["operator"], toleration["effect"]) == (
        "amd.com/gpu", "Exists", "NoSchedule",
    )  # fmt: skip
    resources = template["containers"][0]["resources"]
    assert resources["limits"]["amd.com/gpu"] == resources["requests"]["amd.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in resources["limits"]
    assert outcome.fields["gpus"] == 2  # what the GPU-hours are counted on


def test_a_member_without_an_accelerator_asks_for_no_gpu_and_tolerates_nothing() -> None:
    """(The platform config's default placement would apply: none is configured here.)"""
    kube = MemberKube({})
    _pass(kube, _server("hf://org/llm-v1"))
    (member,) = kube.applied
    template = member["spec"]["template"]
    assert "tolerations" not in template
    assert "nodeSelector" not in template
    assert not any("gpu" in r for r in template["containers"][0]["resources"]["limits"])


def test_a_preset_kserve_cannot_find_is_named_not_a_generic_failure() -> None:
    """KServe v0.20 keeps Ready Unknown (NewObservedGenFailure) when a preset it merges is
    missing: PresetsCombined, outside Ready's roll-up, says which one and where it looked."""
    kube = MemberKube({})
    _pass(kube, _server("hf://org/llm-v1"))
    (member,) = kube.applied
    missing = (
        'LLMInferenceServiceConfig "kserve-config-llm-template" not found in namespaces '
        f"[{NS} kserve]"
    )
    member["metadata"]["generation"] = 1
    member["status"] = {
        "observedGeneration": 1,
        "conditions": [
            {"type": "Ready", "status": "Unknown", "reason": "NewObservedGenFailure",
             "message": "unsuccessfully observed a new generation"},
            {"type": "GroupReady", "status": "False", "reason": "FinalizationPending"},
            {"type": "OciImageVolumeCompatible", "status": "False",
             "reason": "ImageVolumeUnsupported", "message": "a warning on healthy members"},
            {"type": "PresetsCombined", "status": "False", "reason": "ConfigNotFound",
             "message": missing},
        ],
    }  # fmt: skip
    said = member_observation(member, member["spec"]["labels"]["kubeforge.io/revision"])
    assert (said.status, said.reason) == ("Unknown", "ConfigNotFound")
    assert said.message == f"KServe PresetsCombined=False on {NAME}: {missing}"
    # without that gate, the False parts that do not stop it are not blamed
    member["status"]["conditions"].pop()
    said = member_observation(member, member["spec"]["labels"]["kubeforge.io/revision"])
    assert (said.status, said.reason) == ("Unknown", "NewObservedGenFailure")
    assert said.message.startswith(f"KServe Ready=Unknown on {NAME}")


def test_routes_a_gateway_cannot_resolve_are_said_in_traffic_routed() -> None:
    """KServe's real controller behind a Gateway whose implementation takes no InferencePool
    backends (Traefik here): the member's workloads are up, its HTTPRoute is not resolved.
    TrafficRouted says so with KServe's reason and message, not "routed"."""
    kube = MemberKube({})
    outcome, ms = _pass(kube, _server("hf://org/llm-v1"))
    assert _condition(outcome, "TrafficRouted").reason == "WaitingForKServe"
    unresolved = (
        f'The following HTTPRoutes are not ready: [{NS}/{NAME}-kserve-route: "False" (reason '
        '"InvalidKind", message "unsupported HTTPBackendRef inference.networking.k8s.io/'
        f'InferencePool/{NAME}-inference-pool")]'
    )
    member = kube.children[("LLMInferenceService", NAME)]
    member["status"] = {
        "observedGeneration": member["metadata"]["generation"],
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "HTTPRoutesNotReady",
             "message": unresolved},
            {"type": "MainWorkloadReady", "status": "True"},
            {"type": "HTTPRoutesReady", "status": "False", "reason": "HTTPRoutesNotReady",
             "message": unresolved},
            {"type": "RouterReady", "status": "False", "reason": "HTTPRoutesNotReady",
             "message": unresolved},
        ],
    }  # fmt: skip
    outcome, ms = _pass(kube, ms)
    routed = _condition(outcome, "TrafficRouted")
    assert (routed.status, routed.reason) == ("False", "HTTPRoutesNotReady")
    assert routed.message == f"KServe HTTPRoutesReady=False on {NAME}: {unresolved}"
    ready = _condition(outcome, "InferenceServiceReady")
    assert (ready.status, ready.reason) == ("False", "HTTPRoutesNotReady")
    assert outcome.phase == "Pending"
    # resolved: routed, and Ready with it
    _report(kube, NAME, ready=True)
    member["status"]["conditions"].append({"type": "HTTPRoutesReady", "status": "True"})
    outcome, ms = _pass(kube, ms)
    assert _condition(outcome, "TrafficRouted").reason == "KServeRoutes"
    assert outcome.phase == "Ready"
