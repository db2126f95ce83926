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
