"""Teams against the real apiserver, its RBAC and Kueue's CRDs: a Team gets its namespace, its
members their access there (checked by the apiserver's own authorizer, impersonating them), and
its quota as a ClusterQueue and LocalQueue; a namespace that is someone else's is refused and
adopted once labelled; members removed lose access; deleting a Team keeps its namespace.

Kueue's controller does not run in this tier, so the quota stays pending here: that Kueue then
admits the team's workloads within it is tests/e2e/test_queueing_real.py's part."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kubeforge_api.app import create_app
from kubeforge_api.settings import ApiSettings
from tests.cases import example
from tests.integration.conftest import Cluster, wait_until

# Kueue's CRDs without its controller: the local control plane's
pytestmark = [pytest.mark.usefixtures("operator", "local_cluster")]


@pytest.fixture
def team_name(cluster: Cluster) -> Iterator[str]:
    name = f"kf-team-{uuid.uuid4().hex[:6]}"
    yield name
    cluster.kubectl("delete", "team", name, "--wait=false", check=False)
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _apply(cluster: Cluster, name: str, spec: dict[str, Any]) -> None:
    team = {"apiVersion": "kubeforge.io/v1alpha1", "kind": "Team", "metadata": {"name": name}}
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps({**team, "spec": spec}))


def _get(cluster: Cluster, what: str, ns: str | None = None) -> dict[str, Any] | None:
    args = ["get", what, "-o", "json", *(["-n", ns] if ns else [])]
    proc = cluster.kubectl(*args, check=False)
    return dict(json.loads(proc.stdout)) if proc.returncode == 0 else None


def _reconciled(cluster: Cluster, name: str) -> dict[str, Any]:
    """The Team once the operator has reconciled its current generation."""

    def done() -> dict[str, Any] | None:
        team = _get(cluster, f"team/{name}") or {}
        status = team.get("status") or {}
        return team if status.get("observedGeneration") == team["metadata"]["generation"] else None

    result: dict[str, Any] = wait_until(done, 60, what=f"team {name} reconciled")
    return result


def _conditions(team: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in team["status"]["conditions"]}


def _can(cluster: Cluster, verb: str, ns: str, user: str, *groups: str) -> bool:
    """The apiserver's own answer (SubjectAccessReview, as kubectl auth can-i sends it)."""
    as_groups = [f"--as-group={g}" for g in groups]
    proc = cluster.kubectl(
        "auth",
        "can-i",
        verb,
        "workbenches.kubeforge.io",
        "-n",
        ns,
        f"--as={user}",
        *as_groups,
        check=False,
    )
    return proc.stdout.strip() == "yes"


def test_a_team_gets_its_namespace_access_and_queues(cluster: Cluster, team_name: str) -> None:
    spec = example("Team")["spec"]
    _apply(cluster, team_name, spec)
    team = _reconciled(cluster, team_name)
    conditions = _conditions(team)
    assert conditions["NamespaceReady"]["status"] == "True", conditions
    assert conditions["AccessReady"]["status"] == "True", conditions
    assert "2 member(s) may edit and 1 may view" in conditions["AccessReady"]["message"]
    # no Kueue controller here: the ClusterQueue is written, Kueue has not activated it
    assert conditions["QuotaReady"]["reason"] == "QuotaPending", conditions
    assert team["status"]["phase"] == "Pending"
    assert team["status"]["members"] == 3
    ns = _get(cluster, f"namespace/{team_name}")
    assert ns is not None
    assert ns["metadata"]["labels"]["kubeforge.io/team"] == team_name
    assert not ns["metadata"].get("ownerReferences"), "the namespace must outlive the Team"
    queue = _get(cluster, f"clusterqueue/{team_name}")
    assert queue is not None
    assert queue["spec"]["cohortName"] == "gpu-pool"
    assert queue["spec"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": team_name
    }
    [group] = queue["spec"]["resourceGroups"]
    assert group["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu"]
    gpu = group["flavors"][0]["resources"][2]
    assert gpu == {"name": "nvidia.com/gpu", "nominalQuota": "2", "borrowingLimit": "4"}
    local = _get(cluster, "localqueue/gpu", team_name)
    assert local is not None
    assert local["spec"]["clusterQueue"] == team_name
    # access, as the apiserver's authorizer decides it
    assert _can(cluster, "create", team_name, "alice@example.com")
    assert _can(cluster, "create", team_name, "bob", "vision-engineers")
    assert _can(cluster, "list", team_name, "carol", "vision-readers")
    assert not _can(cluster, "create", team_name, "carol", "vision-readers")
    assert not _can(cluster, "list", team_name, "mallory")
    assert not _can(cluster, "list", "default", "alice@example.com")

    # the platform admin's view through the REST API: the Team as its status says, and why
    # there is no quota to show yet; a team member is refused and told where to look
    tokens = json.loads((Path(cluster.kubeconfig).parent / "tokens.json").read_text())
    settings = ApiSettings(kubeconfig=Path(cluster.user_kubeconfig("kubeforge-api")))
    with TestClient(create_app(settings)) as api:
        admin = api.get("/api/v1/teams", headers={"Authorization": f"Bearer {tokens['admin']}"})
        assert admin.status_code == 200, admin.text
        view = next(t for t in admin.json()["teams"] if t["name"] == team_name)
        assert view["phase"] == "Pending"
        assert (view["namespace"], view["members"]) == (team_name, 3)
        assert view["quota"] is None
        assert view["quotaReady"]["reason"] == "QuotaPending"
        assert (
            f"waiting for Kueue to activate ClusterQueue {team_name}"
            in (view["quotaReady"]["message"])
        )
        member = api.get("/api/v1/teams", headers={"Authorization": f"Bearer {tokens['user-a']}"})
        assert member.status_code == 403
        assert "needs list on teams.kubeforge.io" in member.json()["detail"]
        assert "/api/v1/namespaces/{namespace}/queues" in member.json()["detail"]


def test_removed_members_lose_access_and_a_renamed_queue_replaces_the_old(
    cluster: Cluster, team_name: str
) -> None:
    spec = example("Team")["spec"]
    _apply(cluster, team_name, spec)
    _reconciled(cluster, team_name)
    assert _can(cluster, "create", team_name, "alice@example.com")
    fewer = {
        **spec,
        "members": [m for m in spec["members"] if m["name"] != "alice@example.com"],
        "queueName": "gpus",
    }
    _apply(cluster, team_name, fewer)
    team = _reconciled(cluster, team_name)
    assert team["status"]["members"] == 2
    assert not _can(cluster, "create", team_name, "alice@example.com")
    assert _can(cluster, "create", team_name, "bob", "vision-engineers")
    assert _get(cluster, "localqueue/gpus", team_name) is not None
    assert _get(cluster, "localqueue/gpu", team_name) is None
    # the quota taken away: no queue is left behind
    _apply(cluster, team_name, {k: v for k, v in fewer.items() if k != "quota"})
    team = _reconciled(cluster, team_name)
    assert _conditions(team)["QuotaReady"]["reason"] == "NoQuota"
    assert team["status"]["phase"] == "Ready"
    assert _get(cluster, f"clusterqueue/{team_name}") is None
    assert _get(cluster, "localqueue/gpus", team_name) is None


def test_someone_elses_namespace_is_refused_until_labelled_for_the_team(
    cluster: Cluster, team_name: str
) -> None:
    cluster.kubectl("create", "namespace", team_name)
    cluster.kubectl("create", "configmap", "theirs", "-n", team_name, "--from-literal=a=b")
    _apply(cluster, team_name, {"members": [{"name": "alice@example.com"}]})
    team = _reconciled(cluster, team_name)
    namespace = _conditions(team)["NamespaceReady"]
    assert namespace["status"] == "False"
    assert namespace["reason"] == "NamespaceTaken"
    assert (
        f"kubectl label namespace {team_name} kubeforge.io/team={team_name}"
        in (namespace["message"])
    )
    assert team["status"]["phase"] == "Failed"
    assert _get(cluster, "rolebinding/kubeforge-team-edit", team_name) is None
    assert not _can(cluster, "list", team_name, "alice@example.com")
    cluster.kubectl("label", "namespace", team_name, f"kubeforge.io/team={team_name}")

    def adopted() -> dict[str, Any] | None:
        team = _get(cluster, f"team/{team_name}") or {}
        return team if (team.get("status") or {}).get("phase") == "Ready" else None

    team = wait_until(adopted, 60, what="the labelled namespace adopted")
    assert "this Team's" in _conditions(team)["NamespaceReady"]["message"]
    assert _can(cluster, "list", team_name, "alice@example.com")
    assert _get(cluster, "configmap/theirs", team_name) is not None
    # handed back (the label removed): the members' access there goes
    cluster.kubectl("label", "namespace", team_name, "kubeforge.io/team-")
    wait_until(
        lambda: not _can(cluster, "list", team_name, "alice@example.com"),
        60,
        what="access revoked with the namespace handed back",
    )
    assert (_get(cluster, f"team/{team_name}") or {})["status"]["phase"] == "Failed"


def test_deleting_a_team_removes_access_and_queues_and_keeps_the_namespace(
    cluster: Cluster, team_name: str
) -> None:
    _apply(cluster, team_name, example("Team")["spec"])
    _reconciled(cluster, team_name)
    cluster.kubectl("create", "configmap", "work", "-n", team_name, "--from-literal=a=b")
    cluster.kubectl("delete", "team", team_name)
    wait_until(
        lambda: (
            _get(cluster, f"clusterqueue/{team_name}") is None
            and _get(cluster, "rolebinding/kubeforge-team-edit", team_name) is None
        ),
        60,
        what="the garbage collector removing the Team's queue and access",
    )
    assert not _can(cluster, "list", team_name, "alice@example.com")
    assert _get(cluster, f"namespace/{team_name}") is not None
    assert _get(cluster, "configmap/work", team_name) is not None


def test_a_team_event_says_why_it_is_not_ready(cluster: Cluster, team_name: str) -> None:
    cluster.kubectl("create", "namespace", team_name)
    _apply(cluster, team_name, {})
    _reconciled(cluster, team_name)

    def event() -> dict[str, Any] | None:
        events = _get(cluster, "events", "default") or {"items": []}
        return next(
            (
                e
                for e in events["items"]
                if e["involvedObject"].get("name") == team_name
                and e["involvedObject"].get("kind") == "Team"
            ),
            None,
        )

    found = wait_until(event, 30, what="the Team's Event")
    assert found["reason"] == "NamespaceTaken"
    assert found["type"] == "Warning"
