"""The operator's object metrics: phases by kind, and GPUs held by namespace and kind."""

from __future__ import annotations

from kubeforge_operator.runtime.metrics import ObjectPhases


def _samples(collector: ObjectPhases, name: str) -> dict[tuple[str, ...], float]:
    for family in collector.collect():
        if family.name == name:
            return {tuple(s.labels.values()): s.value for s in family.samples}
    raise AssertionError(f"no family {name}")


def test_gpus_by_namespace_and_kind_follow_each_objects_last_reconcile() -> None:
    c = ObjectPhases()
    c.set("Workbench", "team-a", "nb1", "Running", 1)
    c.set("Workbench", "team-a", "nb2", "Running", 2)
    c.set("FineTuneJob", "team-a", "tune", "Running", 4)
    c.set("Workbench", "team-b", "nb", "Running", 1)
    assert _samples(c, "kubeforge_gpus") == {
        ("team-a", "FineTuneJob"): 4,
        ("team-a", "Workbench"): 3,
        ("team-b", "Workbench"): 1,
    }
    c.set("FineTuneJob", "team-a", "tune", "Succeeded", 0)  # finished: holds none
    c.forget("Workbench", "team-a", "nb2")  # deleted
    assert _samples(c, "kubeforge_gpus") == {("team-a", "Workbench"): 1, ("team-b", "Workbench"): 1}
    assert _samples(c, "kubeforge_objects")[("Workbench", "Running")] == 2


def test_a_teams_quota_and_usage_are_its_status_numbers_and_go_with_the_team() -> None:
    c = ObjectPhases()
    quota = {
        "admittedWorkloads": 2,
        "pendingWorkloads": 1,
        "flavors": [
            {
                "name": "a100",
                "resources": [
                    {"name": "nvidia.com/gpu", "nominal": "2", "used": "3", "borrowed": "1"},
                    {"name": "cpu", "nominal": "16", "used": "1500m", "borrowed": "0"},
                    {"name": "memory", "nominal": "64Gi", "used": "2Gi"},
                ],
            }
        ],
    }
    c.set("Team", "", "team-a", "Ready", quota=quota)
    c.set("Team", "", "team-b", "Ready")  # no queue (or not active yet): no series
    c.set("Workbench", "team-a", "team-a", "Running", 1)  # a namespaced object of that name
    assert _samples(c, "kubeforge_team_quota_nominal") == {
        ("team-a", "a100", "nvidia.com/gpu"): 2,
        ("team-a", "a100", "cpu"): 16,
        ("team-a", "a100", "memory"): 64 * 2**30,
    }
    assert _samples(c, "kubeforge_team_quota_used")[("team-a", "a100", "cpu")] == 1.5
    assert _samples(c, "kubeforge_team_quota_borrowed") == {
        ("team-a", "a100", "nvidia.com/gpu"): 1,
        ("team-a", "a100", "cpu"): 0,
        ("team-a", "a100", "memory"): 0,
    }
    assert _samples(c, "kubeforge_team_workloads") == {
        ("team-a", "admitted"): 2,
        ("team-a", "pending"): 1,
    }
    c.forget("Workbench", "team-a", "team-a")  # not the Team
    assert _samples(c, "kubeforge_team_workloads")[("team-a", "pending")] == 1
    c.set("Team", "", "team-a", "Ready")  # its quota removed from the spec
    assert _samples(c, "kubeforge_team_quota_nominal") == {}
    c.set("Team", "", "team-a", "Ready", quota=quota)
    c.forget("Team", "", "team-a")  # deleted
    assert _samples(c, "kubeforge_team_workloads") == {}
