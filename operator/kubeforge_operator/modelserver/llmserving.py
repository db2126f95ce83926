"""The apply step of a ModelServer served as KServe's LLMInferenceService
(``spec.runtime.servedAs: LLMInferenceService``): the members ``llmisvc.plan_members`` says,
and the status from KServe's report on them. The decisions (``decide``) are the same as for an
InferenceService; only what is applied and read differs."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from kubernetes import client
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from kubeforge_crds import ConditionStatus
from kubeforge_crds.base import parse_duration
from kubeforge_crds.modelserver import ModelServerPhase, ModelServerSpec, ModelServerStatus
from kubeforge_operator.modelserver.conditions import CANARY_READY, ISVC_READY
from kubeforge_operator.modelserver.llmisvc import (
    CANARY_SUFFIX,
    LLMISVC_API,
    LLMISVC_KIND,
    WORKLOAD_SUFFIX,
    Members,
    canary_member_observation,
    member_observation,
    member_weight,
    plan_members,
    routes_observation,
)
from kubeforge_operator.modelserver.rollout import Plan
from kubeforge_operator.modelserver.status import refused_by_kserve, served_outcome
from kubeforge_operator.modelserver.traffic import weights_since
from kubeforge_operator.runtime.conditions import ACCEPTED, Observation
from kubeforge_operator.runtime.placement import Placement
from kubeforge_operator.runtime.reconcile import Outcome, ReconcileContext

NOT_INSTALLED = (
    f"the LLMInferenceService API ({LLMISVC_API}) is not served by this cluster: install "
    "KServe (v0.16 or later) with its LLMInferenceService CRD and controller, or serve the "
    "model as an InferenceService (unset spec.runtime.servedAs)"
)


def observe_members(ctx: ReconcileContext) -> Members | None:
    """The stable and canary members as they are; None when the cluster has no such API."""
    try:
        stable, canary = (
            ctx.kube.get_child(LLMISVC_API, LLMISVC_KIND, ctx.namespace, name)
            for name in (ctx.name, ctx.name + CANARY_SUFFIX)
        )
    except ResourceNotFoundError:
        return None
    stable_workload, canary_workload = (
        ctx.kube.get_child("apps/v1", "Deployment", ctx.namespace, name + WORKLOAD_SUFFIX)
        if member is not None
        else None
        for name, member in ((ctx.name, stable), (ctx.name + CANARY_SUFFIX, canary))
    )
    return Members(stable, canary, stable_workload, canary_workload)


def not_installed(status: ModelServerStatus) -> Outcome:
    problem = Observation(ACCEPTED, ConditionStatus.FALSE, "LLMInferenceServiceNotInstalled",
                          NOT_INSTALLED)  # fmt: skip
    return Outcome(phase=str(status.phase or ModelServerPhase.PENDING), dependents=[problem])


def queue_refused(status: ModelServerStatus, queue: str) -> Outcome:
    """Kueue is not wired to LLMInferenceService workloads: said, not ignored."""
    problem = Observation(
        ACCEPTED,
        ConditionStatus.FALSE,
        "QueueNotSupported",
        f"queue {queue} (spec.queueName or the hardware profile's) is not applied to an "
        "LLMInferenceService's workloads yet: remove it, or serve the model as an "
        "InferenceService (unset spec.runtime.servedAs)",
    )
    return Outcome(phase=str(status.phase or ModelServerPhase.PENDING), dependents=[problem])


def serve_members(
    ctx: ReconcileContext,
    spec: ModelServerSpec,
    status: ModelServerStatus,
    planned: Plan,
    seen: Members,
    gateway: tuple[str, str],
    placement: Placement,
    model_uri: str,
) -> Outcome:
    """Apply the members (stable first: a canary never routes alone), delete a drained
    canary, and report KServe's readiness of the stable member as InferenceServiceReady and of
    the canary as CanaryReady."""
    stable = status.stable
    members = plan_members(
        ctx.obj, spec, planned.served, planned.canary_percent, stable, seen, gateway, ctx.now,
        placement,
    )  # fmt: skip
    applied = []
    try:
        for manifest, live in zip(members.apply, (seen.stable, seen.canary), strict=False):
            applied.append(ctx.kube.apply_observed(manifest, live))
    except client.ApiException as exc:
        if exc.status not in (400, 403, 422):
            raise
        return refused_by_kserve(exc, status)
    if members.delete_canary:
        ctx.kube.delete_child(LLMISVC_API, LLMISVC_KIND, ctx.namespace, ctx.name + CANARY_SUFFIX)
    now = Members(
        applied[0],
        applied[1] if len(applied) > 1 else None,
        seen.stable_workload,
        seen.canary_workload,
    )
    served = planned.served.revision
    canary = served if planned.canary_percent is not None and stable is not None else None
    if members.canary_weight == 100:  # the canary member answers everything
        ready = member_observation(now.canary, served, workload=now.canary_workload)
        routed = routes_observation(now.canary, ctx.name)
    else:
        rev = stable.revision if canary and stable else served
        ready = member_observation(now.stable, rev, workload=now.stable_workload)
        routed = routes_observation(now.stable, ctx.name)
    url = ((now.stable or {}).get("status") or {}).get("url")
    gpus = placement.gpus * spec.replicas.min
    outcome = served_outcome(
        status, planned, None, model_uri, gpus, ctx.now, routed=routed, url=url
    )
    info = [o for o in outcome.info if o.type != CANARY_READY]
    info.append(canary_member_observation(now, canary))
    dependents = [ready if o.type == ISVC_READY else o for o in outcome.dependents]
    phase = planned.phase  # served_outcome judged readiness on no InferenceService
    if phase == ModelServerPhase.READY and ready.status != ConditionStatus.TRUE:
        phase = ModelServerPhase.PENDING
    outcome.fields["inferenceService"] = ctx.name
    requeue = outcome.requeue_after
    if len(members.apply) > 1 and members.canary_weight != planned.canary_percent:
        requeue = min(requeue or 2.0, 2.0)  # a canary starting, handed over or draining
    return replace(outcome, phase=phase, dependents=dependents, info=info, requeue_after=requeue)


def traffic_flowed(
    seen: Members, spec: ModelServerSpec, status: ModelServerStatus, revision: str
) -> tuple[bool, datetime | None]:
    """Whether the canary member is Ready on ``revision`` with its step's weight, and since
    when its traffic has flowed for an interval (None: unknown)."""
    canary = status.canary
    if canary is None or not seen.serves(True, revision):
        return False, None
    since = weights_since(seen.canary)
    if member_weight(seen.canary) != canary.traffic_percent or since is None:
        return False, None
    return True, since + parse_duration(spec.rollout.interval)
