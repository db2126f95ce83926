"""Small pure pieces of the operator's plumbing: which namespaces it serves, and when a child
already holds what would be applied."""

from __future__ import annotations

import pytest

from kubeforge_operator.runtime.controller import namespace_selected
from kubeforge_operator.runtime.kube import holds


@pytest.mark.parametrize(
    ("namespace", "patterns", "selected"),
    [
        ("team-a", [], True),
        ("team-a", ["team-*"], True),
        ("kube-system", ["team-*"], False),
        ("kf-iso-1", ["!kf-iso-*"], False),
        ("team-a", ["!kf-iso-*"], True),
        ("team-a-dev", ["team-*, !*-dev"], False),
        ("team-b", ["team-a", "team-b"], True),
    ],
)
def test_namespace_patterns_follow_kopf(
    namespace: str, patterns: list[str], selected: bool
) -> None:
    assert namespace_selected(namespace, patterns) is selected


def test_holds_allows_defaults_and_status_but_not_changes() -> None:
    desired = {"spec": {"replicas": 1, "template": {"containers": [{"name": "a", "image": "x"}]}}}
    live = {
        "metadata": {"resourceVersion": "7"},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "template": {
                "containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}]
            },
        },
        "status": {"readyReplicas": 1},
    }
    assert holds(live, desired)
    live["spec"]["replicas"] = 0
    assert not holds(live, desired)


def test_holds_compares_lists_element_by_element() -> None:
    assert not holds({"l": [1, 2, 3]}, {"l": [1, 2]})
    assert holds({"l": [{"a": 1, "b": 2}]}, {"l": [{"a": 1}]})
    assert not holds({"l": [{"a": 2}]}, {"l": [{"a": 1}]})


def test_kopf_builds_no_diff_base_because_no_handler_reads_it() -> None:
    """The operator's diff base builds nothing (handlers.EventsOnlyDiffBase), which is right only
    while kopf holds event handlers alone: a change handler or a daemon added later would read
    an empty diff, so this fails first."""
    import kopf

    from kubeforge_operator import handlers

    registry = kopf.get_default_registry()
    assert registry._watching.get_all_handlers()  # the reconcilers' event handlers
    assert not registry._changing.get_all_handlers(), "a change handler needs kopf's diff base"
    assert not registry._spawning.get_all_handlers(), "a daemon or timer needs kopf's diff base"
    pod = kopf.Body({"metadata": {"name": "nb-0", "labels": {"a": "b"}}, "spec": {"x": 1}})
    storage = handlers.EventsOnlyDiffBase(prefix="kubeforge.io", key="last")
    assert storage.build(body=pod) == {}
    # kopf's own builds the essence the class leaves out
    assert kopf.AnnotationsDiffBaseStorage().build(body=pod) == {
        "metadata": {"labels": {"a": "b"}},
        "spec": {"x": 1},
    }
