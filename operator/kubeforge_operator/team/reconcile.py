"""The Team reconcile: the namespace (created, or adopted when labelled for the team; refused
when it is someone else's) -> its members' RoleBindings -> with a quota, the ClusterQueue and
the LocalQueue, and whether Kueue made the ClusterQueue active -> status."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from kubeforge_crds import ConditionStatus
from kubeforge_crds.team import TEAM_LABEL, TeamPhase, TeamQuota, TeamSpec
from kubeforge_operator.runtime.conditions import ACCEPTED, READY, Observation
from kubeforge_operator.runtime.kube import api_refusal
from kubeforge_operator.runtime.reconcile import Outcome, ReconcileContext, accepted
from kubeforge_operator.team.builders import (
    KUEUE_API,
    ROLES,
    binding_name,
    build_cluster_queue,
    build_local_queue,
    build_namespace,
    build_role_bindings,
)

NAMESPACE_READY = "NamespaceReady"
NAMESPACE_TAKEN = "NamespaceTaken"
RBAC_API = "rbac.authorization.k8s.io/v1"
ACCESS_READY = "AccessReady"
QUOTA_READY = "QuotaReady"
OWNED = (READY, ACCEPTED, NAMESPACE_READY, ACCESS_READY, QUOTA_READY)
# Kueue's ClusterQueue status tells no watch of ours when it becomes active
QUOTA_POLL_SECONDS = 5.0
USAGE_POLL_SECONDS = 10.0
# QuotaReady reasons of the operator's own (the others are Kueue's reading of the ClusterQueue)
OUR_VERDICTS = frozenset({"NoQuota", "KueueNotInstalled", "ClusterQueueTaken", "QuotaRefused"})
TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN


def reconcile_team(ctx: ReconcileContext, spec: TeamSpec) -> Outcome:
    name = ctx.name
    # what no longer holds is cleared: a queue taken away, a namespace no longer the team's
    fields: dict[str, Any] = {
        "namespace": name,
        "members": 0,
        "clusterQueue": None,
        "queueName": None,
        "quota": None,
    }
    namespace = ensure_namespace(ctx)
    if namespace.status != TRUE:
        if namespace.reason == NAMESPACE_TAKEN:
            revoke_access(ctx)
        return Outcome(TeamPhase.FAILED, [accepted(), namespace], fields)
    access = grant_access(ctx, spec)
    if access.status == TRUE:
        fields["members"] = len(spec.members)
    quota, queue = ensure_quota(ctx, spec)
    if spec.quota is not None and quota.status == TRUE:
        fields |= {"clusterQueue": name, "queueName": spec.queue_name}
        fields["quota"] = quota_usage(spec.quota, queue)
    observed = [accepted(), namespace, access, quota]
    if all(o.status == TRUE for o in observed):
        phase = TeamPhase.READY
    elif any(o.status == FALSE for o in observed):
        phase = TeamPhase.FAILED
    else:
        phase = TeamPhase.PENDING
    # Kueue's verdict on the queue changes without an event of ours (a ResourceFlavor created
    # later activates it): read it again while it is not active
    # and the usage while it is: admissions and departures are no event of ours either
    if quota.status != TRUE and quota.reason not in OUR_VERDICTS:
        again: float | None = QUOTA_POLL_SECONDS
    else:
        again = USAGE_POLL_SECONDS if "quota" in fields else None
    return Outcome(phase, observed, fields, requeue_after=again)


def ensure_namespace(ctx: ReconcileContext) -> Observation:
    """Create the namespace, or adopt it when it already carries this team's label; a namespace
    that exists without it belongs to someone else and is left alone."""
    name = ctx.name
    live = ctx.kube.get_child("v1", "Namespace", "", name)
    if live is not None:
        meta = live["metadata"]
        owner = (meta.get("labels") or {}).get(TEAM_LABEL)
        if owner != name:
            whose = f"Team {owner!r}'s" if owner else "not a Team's"
            return Observation(
                NAMESPACE_READY,
                FALSE,
                NAMESPACE_TAKEN,
                f"namespace {name} already exists and is {whose} (label {TEAM_LABEL}); to hand "
                f"it to this Team, label it: kubectl label namespace {name} {TEAM_LABEL}={name}"
                " --overwrite; or give the Team another name",
            )
        if meta.get("deletionTimestamp"):
            return Observation(
                NAMESPACE_READY,
                FALSE,
                "NamespaceTerminating",
                f"namespace {name} is being deleted; the Team sets it up again once it is gone",
            )
    ctx.kube.apply_observed(build_namespace(ctx.obj), live)
    how = "created" if live is None else f"labelled {TEAM_LABEL}={name}: this Team's"
    return Observation(NAMESPACE_READY, TRUE, "NamespaceReady", f"namespace {name} {how}")


def revoke_access(ctx: ReconcileContext) -> None:
    """The namespace is no longer the team's (its label removed or changed): the members'
    RoleBindings there go, if they are still this Team's. Its queues stay until the label is
    back or the Team is deleted (Kueue admits nothing from a namespace of the wrong team:
    the ClusterQueue selects the namespace by name, not by label)."""
    for role in ROLES:
        binding = binding_name(role)
        live = ctx.kube.get_child(RBAC_API, "RoleBinding", ctx.name, binding)
        if ((live or {}).get("metadata", {}).get("labels") or {}).get(TEAM_LABEL) == ctx.name:
            ctx.kube.delete_child(RBAC_API, "RoleBinding", ctx.name, binding)


def grant_access(ctx: ReconcileContext, spec: TeamSpec) -> Observation:
    editors = sum(m.role == "edit" for m in spec.members)
    try:
        for binding in build_role_bindings(ctx.obj, spec):
            ctx.kube.apply(binding)
    except client.ApiException as exc:
        if exc.status not in (403, 422):
            raise
        return Observation(ACCESS_READY, FALSE, "AccessRefused", api_refusal(exc))
    return Observation(
        ACCESS_READY,
        TRUE,
        "AccessGranted",
        f"{editors} member(s) may edit and {len(spec.members) - editors} may view "
        f"in namespace {ctx.name}",
    )


def ensure_quota(
    ctx: ReconcileContext, spec: TeamSpec
) -> tuple[Observation, dict[str, Any] | None]:
    """The ClusterQueue and LocalQueue of the quota (removed when the spec has none), whether
    Kueue activated the ClusterQueue (a missing ResourceFlavor keeps it inactive), and the
    ClusterQueue as it is now."""
    name = ctx.name
    try:
        if spec.quota is None:
            _remove_queues(ctx, keep=None)
            return Observation(
                QUOTA_READY, TRUE, "NoQuota", "spec.quota is not set: no queue"
            ), None
        live = ctx.kube.get_child(KUEUE_API, "ClusterQueue", "", name)
        owner = ((live or {}).get("metadata", {}).get("labels") or {}).get(TEAM_LABEL)
        if live is not None and owner != name:
            taken = Observation(
                QUOTA_READY,
                FALSE,
                "ClusterQueueTaken",
                f"ClusterQueue {name} already exists and is not this Team's: delete or rename "
                "it, or give the Team another name",
            )
            return taken, None
        queue = ctx.kube.apply_observed(build_cluster_queue(ctx.obj, spec.quota), live)
        if ctx.kube.apply(build_local_queue(ctx.obj, spec)):
            # an apply was needed (a new queue name, a first pass of this process): an older
            # LocalQueue may be left; a usage poll applies nothing and lists nothing
            _remove_queues(ctx, keep=spec.queue_name)
    except ResourceNotFoundError:
        missing = Observation(
            QUOTA_READY,
            FALSE,
            "KueueNotInstalled",
            "spec.quota needs Kueue (kueue.x-k8s.io/v1beta2), which this cluster does not serve",
        )
        return missing, None
    except client.ApiException as exc:
        if exc.status not in (400, 403, 422):
            raise
        return Observation(QUOTA_READY, FALSE, "QuotaRefused", api_refusal(exc)), None
    return cluster_queue_state(name, queue), queue


def quota_usage(quota: TeamQuota, queue: dict[str, Any] | None) -> dict[str, Any]:
    """status.quota: each flavor's resources with the nominal quota of the spec and what
    Kueue's ClusterQueue status says is used and borrowed, and its workload counts. Pure."""
    status = (queue or {}).get("status") or {}
    usage = {
        (f["name"], r["name"]): r
        for f in status.get("flavorsUsage") or []
        for r in f.get("resources") or []
    }
    flavors = [
        {
            "name": f.name,
            "resources": [
                {
                    "name": r.name,
                    "nominal": r.nominal,
                    "used": str(usage.get((f.name, r.name), {}).get("total", "0")),
                    "borrowed": str(usage.get((f.name, r.name), {}).get("borrowed", "0")),
                }
                for r in f.resources
            ],
        }
        for f in quota.flavors
    ]
    return {
        "admittedWorkloads": int(status.get("admittedWorkloads") or 0),
        "pendingWorkloads": int(status.get("pendingWorkloads") or 0),
        "flavors": flavors,
    }


def cluster_queue_state(name: str, queue: dict[str, Any] | None) -> Observation:
    """QuotaReady from Kueue's Active condition of the ClusterQueue. Pure."""
    conditions = ((queue or {}).get("status") or {}).get("conditions") or []
    active = next((c for c in conditions if c.get("type") == "Active"), None)
    if active is None:
        return Observation(
            QUOTA_READY,
            UNKNOWN,
            "QuotaPending",
            f"waiting for Kueue to activate ClusterQueue {name}",
        )
    if active.get("status") == "True":
        return Observation(QUOTA_READY, TRUE, "QuotaActive", f"ClusterQueue {name} is active")
    reason = str(active.get("reason") or "Inactive")
    return Observation(
        QUOTA_READY,
        FALSE,
        reason,
        f"Kueue keeps ClusterQueue {name} inactive: {active.get('message') or reason}",
    )


def _remove_queues(ctx: ReconcileContext, keep: str | None) -> None:
    """Delete the team's LocalQueues other than ``keep`` (a renamed queue), and with no
    quota its ClusterQueue. Kueue not installed: nothing to remove."""
    try:
        stale = ctx.kube.list_children(
            KUEUE_API, "LocalQueue", ctx.name, f"{TEAM_LABEL}={ctx.name}"
        )
    except ResourceNotFoundError:
        return
    for queue in stale:
        if queue["metadata"]["name"] != keep:
            ctx.kube.delete_child(KUEUE_API, "LocalQueue", ctx.name, queue["metadata"]["name"])
    if keep is None:
        live = ctx.kube.get_child(KUEUE_API, "ClusterQueue", "", ctx.name)
        if ((live or {}).get("metadata", {}).get("labels") or {}).get(TEAM_LABEL) == ctx.name:
            ctx.kube.delete_child(KUEUE_API, "ClusterQueue", "", ctx.name)
