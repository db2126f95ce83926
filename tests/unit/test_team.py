"""The Team's children and its quota's state, from the pure builders and policy."""

from __future__ import annotations

from typing import Any

from kubeforge_crds import TEAM
from kubeforge_crds.team import TeamSpec
from kubeforge_operator.team.builders import (
    build_cluster_queue,
    build_local_queue,
    build_namespace,
    build_role_bindings,
)
from kubeforge_operator.team.reconcile import cluster_queue_state, quota_usage
from tests.cases import example

OWNER = {
    "apiVersion": "kubeforge.io/v1alpha1",
    "kind": "Team",
    "metadata": {"name": "vision", "uid": "u-1"},
}


def _spec(**changes: Any) -> TeamSpec:
    spec = TEAM.parse_spec({**example("Team")["spec"], **changes})
    assert isinstance(spec, TeamSpec)
    return spec


def test_the_namespace_is_labelled_for_the_team_and_owned_by_nobody() -> None:
    ns = build_namespace(OWNER)
    assert ns["metadata"]["name"] == "vision"
    assert ns["metadata"]["labels"]["kubeforge.io/team"] == "vision"
    assert "ownerReferences" not in ns["metadata"]


def test_members_are_bound_by_role_and_a_role_without_members_has_no_subjects() -> None:
    edit, view = build_role_bindings(OWNER, _spec())
    assert edit["roleRef"]["name"] == "kubeforge-edit"
    assert edit["metadata"]["namespace"] == "vision"
    assert edit["subjects"] == [
        {"kind": "User", "name": "alice@example.com", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "Group", "name": "vision-engineers", "apiGroup": "rbac.authorization.k8s.io"},
    ]
    assert view["roleRef"]["name"] == "kubeforge-view"
    assert [s["name"] for s in view["subjects"]] == ["vision-readers"]
    robot = [{"kind": "ServiceAccount", "name": "ci", "namespace": "ops"}]
    edit, view = build_role_bindings(OWNER, _spec(members=robot))
    assert edit["subjects"] == [{"kind": "ServiceAccount", "name": "ci", "namespace": "ops"}]
    assert view["subjects"] == []
    assert edit["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_the_cluster_queue_holds_the_quota_for_the_team_namespace_only() -> None:
    spec = _spec()
    assert spec.quota is not None
    queue = build_cluster_queue(OWNER, spec.quota)
    assert queue["apiVersion"] == "kueue.x-k8s.io/v1beta2"
    assert queue["spec"]["cohortName"] == "gpu-pool"
    assert queue["spec"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "vision"}
    }
    [group] = queue["spec"]["resourceGroups"]
    assert group["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu"]
    assert group["flavors"] == [
        {
            "name": "a100",
            "resources": [
                {"name": "cpu", "nominalQuota": "32"},
                {"name": "memory", "nominalQuota": "256Gi"},
                {"name": "nvidia.com/gpu", "nominalQuota": "2", "borrowingLimit": "4"},
            ],
        }
    ]
    alone = _spec(
        quota={"flavors": [{"name": "a100", "resources": [{"name": "cpu", "nominal": 1}]}]}
    )
    assert alone.quota is not None
    assert "cohortName" not in build_cluster_queue(OWNER, alone.quota)["spec"]


def test_the_local_queue_is_the_one_workloads_name() -> None:
    local = build_local_queue(OWNER, _spec(queueName="gpus"))
    assert local["metadata"]["name"] == "gpus"
    assert local["metadata"]["namespace"] == "vision"
    assert local["spec"] == {"clusterQueue": "vision"}


def test_quota_state_follows_kueues_active_condition() -> None:
    pending = cluster_queue_state("vision", {"status": {}})
    assert (pending.status, pending.reason) == ("Unknown", "QuotaPending")
    active = cluster_queue_state(
        "vision", {"status": {"conditions": [{"type": "Active", "status": "True"}]}}
    )
    assert (active.status, active.reason) == ("True", "QuotaActive")
    missing = {
        "type": "Active",
        "status": "False",
        "reason": "FlavorNotFound",
        "message": "Can't admit new workloads: references missing ResourceFlavor(s): a100.",
    }
    inactive = cluster_queue_state("vision", {"status": {"conditions": [missing]}})
    assert (inactive.status, inactive.reason) == ("False", "FlavorNotFound")
    assert "missing ResourceFlavor(s): a100" in inactive.message


def test_status_quota_is_the_spec_nominal_with_kueues_usage() -> None:
    spec = _spec()
    assert spec.quota is not None
    queue = {
        "status": {
            "admittedWorkloads": 2,
            "pendingWorkloads": 1,
            "flavorsUsage": [
                {
                    "name": "a100",
                    "resources": [
                        {"name": "cpu", "total": "1", "borrowed": "0"},
                        {"name": "nvidia.com/gpu", "total": "3", "borrowed": "1"},
                    ],
                }
            ],
        }
    }
    usage = quota_usage(spec.quota, queue)
    assert (usage["admittedWorkloads"], usage["pendingWorkloads"]) == (2, 1)
    [flavor] = usage["flavors"]
    by_name = {r["name"]: r for r in flavor["resources"]}
    assert by_name["nvidia.com/gpu"] == {
        "name": "nvidia.com/gpu",
        "nominal": "2",
        "used": "3",
        "borrowed": "1",
    }
    assert by_name["memory"]["used"] == "0"  # Kueue lists no usage yet: none
    assert quota_usage(spec.quota, None)["admittedWorkloads"] == 0
