"""A Team's children, from pure functions: its namespace (labelled with the team, never owned by
it: deleting a Team must not delete its members' work), the RoleBindings of its members, and
with a quota its Kueue ClusterQueue (named after the team, only its namespace may use it) and
the LocalQueue its workloads name."""

from __future__ import annotations

from typing import Any

from kubeforge_crds.team import TEAM_LABEL, MemberRole, TeamQuota, TeamSpec
from kubeforge_operator.runtime.children import owner_reference, standard_labels

KUEUE_API = "kueue.x-k8s.io/v1beta2"
# the ClusterRoles that kubeforge's chart installs (generated: kubeforge_crds.generate)
ROLES = {MemberRole.EDIT: "kubeforge-edit", MemberRole.VIEW: "kubeforge-view"}


def binding_name(role: MemberRole) -> str:
    return f"kubeforge-team-{role.value}"


def _labels(team: dict[str, Any], component: str) -> dict[str, str]:
    name = team["metadata"]["name"]
    return {**standard_labels("team", name, component), TEAM_LABEL: name}


def _owned(team: dict[str, Any], name: str, component: str, namespace: str | None = None) -> Any:
    meta: dict[str, Any] = {
        "name": name,
        "labels": _labels(team, component),
        "ownerReferences": [owner_reference(team)],
    }
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def build_namespace(team: dict[str, Any]) -> dict[str, Any]:
    """The team's namespace: labelled, not owned (the garbage collector would delete it, and
    every notebook volume and model in it, with the Team)."""
    name = team["metadata"]["name"]
    # the team's label only: an adopted namespace keeps its app.kubernetes.io labels (a GitOps
    # tool's tracking label, Helm's ownership)
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {TEAM_LABEL: name}},
    }


def build_role_bindings(team: dict[str, Any], spec: TeamSpec) -> list[dict[str, Any]]:
    """One RoleBinding per role in the team's namespace, its subjects the members with that
    role (none: an empty binding, so that removing the last member removes the access)."""
    namespace = team["metadata"]["name"]
    bindings = []
    for role, cluster_role in ROLES.items():
        subjects = [_subject(m.kind, m.name, m.namespace) for m in spec.members if m.role == role]
        bindings.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": _owned(team, binding_name(role), "access", namespace),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": cluster_role,
                },
                "subjects": subjects,
            }
        )
    return bindings


def _subject(kind: str, name: str, namespace: str | None) -> dict[str, str]:
    if kind == "ServiceAccount":
        return {"kind": kind, "name": name, "namespace": namespace or ""}
    return {"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def build_cluster_queue(team: dict[str, Any], quota: TeamQuota) -> dict[str, Any]:
    """The team's ClusterQueue: its quota per flavor, for its namespace only; in a cohort its
    unused quota is lent and borrowed, and lent quota is taken back by preemption when the team
    needs it; within the team a higher-priority workload preempts a lower one."""
    name = team["metadata"]["name"]
    covered = [r.name for r in quota.flavors[0].resources]
    spec: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}},
        "queueingStrategy": "BestEffortFIFO",
        "preemption": {"withinClusterQueue": "LowerPriority", "reclaimWithinCohort": "Any"},
        "resourceGroups": [
            {
                "coveredResources": covered,
                "flavors": [
                    {"name": f.name, "resources": [_quota(r.to_wire()) for r in f.resources]}
                    for f in quota.flavors
                ],
            }
        ],
    }
    if quota.cohort:
        spec["cohortName"] = quota.cohort
    return {
        "apiVersion": KUEUE_API,
        "kind": "ClusterQueue",
        "metadata": _owned(team, name, "quota"),
        "spec": spec,
    }


def _quota(resource: dict[str, Any]) -> dict[str, Any]:
    out = {"name": resource["name"], "nominalQuota": resource["nominal"]}
    for ours, kueue in (("borrowingLimit", "borrowingLimit"), ("lendingLimit", "lendingLimit")):
        if ours in resource:
            out[kueue] = resource[ours]
    return out


def build_local_queue(team: dict[str, Any], spec: TeamSpec) -> dict[str, Any]:
    name = team["metadata"]["name"]
    return {
        "apiVersion": KUEUE_API,
        "kind": "LocalQueue",
        "metadata": _owned(team, spec.queue_name, "quota", name),
        "spec": {"clusterQueue": name},
    }
