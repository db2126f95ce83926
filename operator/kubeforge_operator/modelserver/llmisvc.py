"""A ModelServer as KServe's LLMInferenceService (``serving.kserve.io/v1alpha2``, KServe v0.20):
the vLLM path (llm-d), where KServe runs vLLM with its scheduler and routes through the Gateway.

The stable version is the LLMInferenceService ``<name>``; during a rollout the canary is a
second one, ``<name>-canary``. Both are members of one routing group (``router.route.group``,
the ModelServer's name) with the split as their ``router.route.weight``s: KServe's controller
writes each member's HTTPRoute with the group's routable members as weighted backends on the
model's shared paths (weights are proportional, as Gateway API backendRef weights are).
vLLM's pods are placed as the built-in runtime's are (``runtime.placement``: the accelerator
or hardware profile's GPUs, node selector and tolerations, in ``spec.template``). Adapters are
``model.lora.adapters`` (vLLM's ``--lora-modules``), each under the name requests give as
``model``; the revision is a label on the workloads (``spec.labels``), so the canary's metrics
can be told from the stable's by a PodMonitor that keeps it.

The reconcile of a ModelServer with ``spec.runtime.servedAs: LLMInferenceService`` applies
what ``plan_members`` says, as it applies an InferenceService and its HTTPRoute otherwise: the
canary gets its step's weight once KServe reports it Ready on its revision (0 before); after a
promotion the canary keeps all the traffic until the stable member reports the promoted
revision Ready (KServe restarts vLLM with it); a canary that lost its traffic is kept at weight
0 for ``DRAIN_SECONDS`` (requests on their way), then deleted.

Pure. Checked against KServe's own CRD schema on the apiserver, and written there by the
operator (tests/integration/test_llmisvc_schema.py); the rollout walked pass by pass in
tests/unit/test_modelserver_llmisvc.py; reconciled by KServe's own LLMInferenceService
controller on the local cluster (tests/e2e/test_llmisvc_real.py), with kwok's pods for vLLM's,
which needs a GPU: no LLMInferenceService has answered a request (docs/llm-serving.md)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubeforge_crds import ConditionStatus
from kubeforge_crds.contracts.labels import MODEL_SERVER_LABEL, REVISION_LABEL
from kubeforge_crds.modelserver import ModelServerSpec, Revision
from kubeforge_operator.modelserver.conditions import CANARY_READY, ISVC_READY, TRAFFIC_ROUTED
from kubeforge_operator.modelserver.traffic import (
    DRAIN_SECONDS,
    WEIGHTS_SINCE,
    rolled_out,
    weights_since,
)
from kubeforge_operator.runtime.children import child_metadata, standard_labels
from kubeforge_operator.runtime.conditions import Observation
from kubeforge_operator.runtime.placement import Placement

LLMISVC_API = "serving.kserve.io/v1alpha2"
LLMISVC_KIND = "LLMInferenceService"
CANARY_SUFFIX = "-canary"
# KServe's Deployment of a member's vLLM pods is the member's name with this suffix (v0.20,
# pkg/controller/v1alpha2/llmisvc/workload_single_node.go)
WORKLOAD_SUFFIX = "-kserve"
# the members' component (on the LLMInferenceService objects; vLLM's pods carry KServe's labels
# and kubeforge.io/* ones, see _member)
LLM_COMPONENT = "llm-inference"
# KServe's conditions outside Ready's roll-up that stop a member: PresetsCombined=False (a preset
# it merges is missing, ConfigNotFound, or the merged spec is invalid) leaves Ready Unknown with
# Knative's generic NewObservedGenFailure (v0.20, llm_inference_service_lifecycle.go). Not any
# False part: OciImageVolumeCompatible=False is a warning on healthy members, GroupReady=False
# a finalizer pending, and a part from an earlier generation may still say False.
GATES_OUTSIDE_READY = ("PresetsCombined",)


def _member(
    owner: dict[str, Any],
    spec: ModelServerSpec,
    rev: Revision,
    name: str,
    weight: int,
    gateway: tuple[str, str],
    placement: Placement,
    since: str | None = None,
) -> dict[str, Any]:
    group = owner["metadata"]["name"]
    labels = standard_labels("modelserver", group, LLM_COMPONENT)
    # KServe copies spec.labels onto vLLM's pods: the chart's PodMonitor of LLM workloads
    # selects them and keeps the revision as the label the canary's queries use. kubeforge's
    # own keys only: KServe v0.20 merges them into the one map its Deployment's labels and
    # selector share, and an app.kubernetes.io/part-of of ours took the Deployment out of its
    # controller's cache (which keeps part-of=llminferenceservice): "already exists", forever
    workload = {MODEL_SERVER_LABEL: group, REVISION_LABEL: rev.revision}
    model: dict[str, Any] = {"uri": rev.uri, "name": group}
    if rev.adapters:
        model["lora"] = {
            "adapters": [{"name": a, "uri": uri} for a, uri in sorted(rev.adapters.items())]
        }
    res = spec.resources
    gpus = placement.limits()  # the profile's resource and count, or the accelerator's
    container = {
        "name": "main",
        "resources": {
            "requests": {"cpu": res.cpu, "memory": res.memory} | gpus,
            "limits": {"memory": res.memory} | gpus,
        },
    }
    meta = child_metadata(owner, name, labels | {REVISION_LABEL: rev.revision})
    if since is not None:
        meta["annotations"] = {WEIGHTS_SINCE: since}
    return {
        "apiVersion": LLMISVC_API,
        "kind": LLMISVC_KIND,
        "metadata": meta,
        "spec": {
            "model": model,
            "replicas": spec.replicas.min,
            "labels": workload,
            "template": {"containers": [container], **placement.pod_fields()},
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
    placement: Placement,
) -> list[dict[str, Any]]:
    """The stable member (all the traffic without a canary) and, during a rollout, the canary
    member with ``canary_percent`` of it (0 while it is evaluated)."""
    name = owner["metadata"]["name"]
    if canary is None:
        return [_member(owner, spec, stable, name, 100, gateway, placement)]
    return [
        _member(owner, spec, stable, name, 100 - canary_percent, gateway, placement),
        _member(owner, spec, canary, name + CANARY_SUFFIX, canary_percent, gateway, placement),
    ]


@dataclass(frozen=True)
class Members:
    """The LLMInferenceServices of a ModelServer as they are (None: not there), and KServe's
    Deployments of their vLLM pods."""

    stable: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None
    stable_workload: dict[str, Any] | None = None
    canary_workload: dict[str, Any] | None = None

    def serves(self, canary: bool, revision: str) -> bool:
        """KServe reports the member Ready on ``revision`` and its Deployment has rolled it out
        to every pod: KServe's Ready comes from the Deployment's Available, which a rolling
        update keeps True on the old pods while the new ones fail."""
        if canary:
            return member_ready(self.canary, revision) and workload_serves(
                self.canary_workload, revision
            )
        return member_ready(self.stable, revision) and workload_serves(
            self.stable_workload, revision
        )


@dataclass(frozen=True)
class MemberPlan:
    """What to apply (stable member first), whether to delete the canary member, and the
    weight the canary gets."""

    apply: list[dict[str, Any]]
    delete_canary: bool
    canary_weight: int


def member_revision(member: dict[str, Any] | None) -> str | None:
    return (((member or {}).get("spec") or {}).get("labels") or {}).get(REVISION_LABEL)


def member_weight(member: dict[str, Any] | None) -> int:
    route = (((member or {}).get("spec") or {}).get("router") or {}).get("route") or {}
    return int(route.get("weight") or 0)


def workload_serves(deployment: dict[str, Any] | None, revision: str) -> bool:
    """Whether KServe's Deployment of a member runs ``revision`` (the label kubeforge gives the
    member's workloads) on all its replicas."""
    if deployment is None:
        return False
    template = deployment["spec"]["template"].get("metadata") or {}
    return (template.get("labels") or {}).get(REVISION_LABEL) == revision and rolled_out(deployment)


def member_ready(member: dict[str, Any] | None, revision: str) -> bool:
    """KServe reports the member Ready for the spec we last applied, and that spec serves
    ``revision``."""
    if member is None or member_revision(member) != revision:
        return False
    status = member.get("status") or {}
    if status.get("observedGeneration") != member["metadata"].get("generation"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def plan_members(
    owner: dict[str, Any],
    spec: ModelServerSpec,
    served: Revision,
    canary_percent: int | None,
    stable: Revision | None,
    seen: Members,
    gateway: tuple[str, str],
    now: datetime,
    placement: Placement,
) -> MemberPlan:
    """The members for this pass: a rollout (the canary at its step's weight once Ready), a
    promotion being handed over, a canary draining, or the stable member alone."""
    name = owner["metadata"]["name"]

    def member(rev: Revision, canary: bool, weight: int) -> dict[str, Any]:
        since = None
        if canary:
            kept = weights_since(seen.canary)
            unchanged = seen.canary is not None and member_weight(seen.canary) == weight
            since = (kept if unchanged and kept else now).isoformat()
        return _member(owner, spec, rev, name + CANARY_SUFFIX if canary else name,
                       weight, gateway, placement, since)  # fmt: skip

    if canary_percent is not None and stable is not None and stable.revision != served.revision:
        weight = canary_percent if seen.serves(True, served.revision) else 0
        applied = [member(stable, False, 100 - weight), member(served, True, weight)]
        return MemberPlan(applied, False, weight)
    canary_rev = member_revision(seen.canary)
    if canary_rev == served.revision and not seen.serves(False, served.revision):
        # promoted: the canary's vLLM answers until the stable member serves the revision
        return MemberPlan([member(served, False, 0), member(served, True, 100)], False, 100)
    alone = member(served, False, 100)
    if seen.canary is None:
        return MemberPlan([alone], False, 0)
    since = weights_since(seen.canary)
    drained = member_weight(seen.canary) == 0 and since is not None
    if drained and (now - since).total_seconds() >= DRAIN_SECONDS:  # type: ignore[operator]
        return MemberPlan([alone], True, 0)
    draining = copy.deepcopy(seen.canary)
    draining["spec"]["router"]["route"]["weight"] = 0
    kept = since if member_weight(seen.canary) == 0 and since else now
    draining["metadata"] = child_metadata(
        owner, name + CANARY_SUFFIX, seen.canary["metadata"].get("labels") or {}
    )
    draining["metadata"]["annotations"] = {WEIGHTS_SINCE: kept.isoformat()}
    draining.pop("status", None)
    return MemberPlan([alone, draining], False, 0)


def member_observation(
    member: dict[str, Any] | None,
    revision: str,
    type_: str = ISVC_READY,
    workload: dict[str, Any] | None = None,
) -> Observation:
    """KServe's Ready of a member for ``revision``; when not ready, the first of its other
    conditions that is not True says why."""
    unreported = _unreported(member, type_)
    if unreported is not None or member is None:
        return unreported or Observation(type_, ConditionStatus.UNKNOWN, "Creating", "")
    name = member["metadata"]["name"]
    conditions = (member.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        return Observation(type_, ConditionStatus.UNKNOWN, "WaitingForKServe", "no Ready yet")
    if ready.get("status") == "True":
        if member_revision(member) != revision:
            return Observation(
                type_, ConditionStatus.UNKNOWN, "Updating", f"{name} does not serve {revision} yet"
            )
        if not workload_serves(workload, revision):
            return Observation(
                type_,
                ConditionStatus.FALSE,
                "RollingOut",
                f"KServe reports {name} Ready, but its Deployment {name}{WORKLOAD_SUFFIX} does "
                f"not run {revision} on every replica yet",
            )
        return Observation(type_, ConditionStatus.TRUE, "Ready", "")
    # KServe's Ready is Knative's roll-up: a False part (MainWorkloadReady, HTTPRoutesReady,
    # ...) makes it False with that part's reason and message; the part is named when found
    reason, message = str(ready.get("reason") or "NotReady"), ready.get("message")
    failed = [
        c
        for c in conditions
        if c.get("type") not in ("Ready", "WorkloadsReady", "RouterReady")
        and c.get("status") == "False"
    ]
    part = next((c for c in failed if c.get("reason") == ready.get("reason")), None)
    gate = next((c for c in failed if c.get("type") in GATES_OUTSIDE_READY), None)
    if part is None and gate is not None:
        part = gate
        reason, message = str(part.get("reason") or reason), part.get("message")
    said = f"KServe {(part or ready).get('type')}={(part or ready).get('status')} on {name}"
    if message:
        said += f": {message}"
    return Observation(type_, ConditionStatus(ready.get("status", "Unknown")), reason, said)


def _unreported(member: dict[str, Any] | None, type_: str) -> Observation | None:
    """``type_`` Unknown while KServe has not reported on the member's generation (None when
    it has, or when there is no member)."""
    if member is None:
        return None
    status = member.get("status") or {}
    if status.get("observedGeneration") == member["metadata"].get("generation"):
        return None
    return Observation(
        type_,
        ConditionStatus.UNKNOWN,
        "WaitingForKServe",
        f"KServe has not reported on LLMInferenceService {member['metadata']['name']} "
        f"generation {member['metadata'].get('generation')} yet: is KServe's "
        "LLMInferenceService controller installed?",
    )


def routes_observation(member: dict[str, Any] | None, group: str) -> Observation:
    """TrafficRouted from KServe's ``HTTPRoutesReady`` on the member whose routes carry the
    group: KServe's reason and message while they are not Ready (a Gateway whose controller
    does not take InferencePool backends: ``InvalidKind``), Unknown until KServe has reported
    on the member, True otherwise."""
    unreported = _unreported(member, TRAFFIC_ROUTED)
    if unreported is not None or member is None:
        return unreported or Observation(TRAFFIC_ROUTED, ConditionStatus.UNKNOWN, "Creating", "")
    conditions = (member.get("status") or {}).get("conditions") or []
    routes = next((c for c in conditions if c.get("type") == "HTTPRoutesReady"), None)
    if routes is None or routes.get("status") == "True":  # a member Ready without one routes too
        return Observation(
            TRAFFIC_ROUTED, ConditionStatus.TRUE, "KServeRoutes",
            f"KServe's HTTPRoutes of routing group {group}",
        )  # fmt: skip
    said = f"KServe HTTPRoutesReady={routes.get('status')} on {member['metadata']['name']}"
    if routes.get("message"):
        said += f": {routes['message']}"
    return Observation(
        TRAFFIC_ROUTED,
        ConditionStatus(routes.get("status", "Unknown")),
        str(routes.get("reason") or "HTTPRoutesNotReady"),
        said,
    )


def canary_member_observation(seen: Members, canary: str | None) -> Observation:
    """CanaryReady during a rollout (``canary``: its revision), from the canary member."""
    if canary is None:
        return Observation(CANARY_READY, ConditionStatus.FALSE, "NoCanary", "")
    return member_observation(seen.canary, canary, CANARY_READY, seen.canary_workload)
