"""Marks each test with its tier from where it lives, so `-m unit` and `-m integration` select
by folder and no test can be left out of both; schedules every test that may use the cluster
on one xdist worker; at the end of the session, stops every process the kit launched that is
still running (a fixture that failed half-way leaves none behind).

`make test` runs two pytest-xdist workers: the integration and e2e tests (the session's
operator, its namespaces, the chart, the audit log) run in their order on one worker, as in a
run without xdist, while the other worker takes the unit tests, the modules marked
``no_cluster`` (real processes without a cluster: runtimes, Prometheus, the pipeline) and, as
one group in their order, the modules marked ``own_operator``: they use the cluster only in
namespaces of their own (``kf-iso-*``, left alone by the session's operator) with an operator
of their own or none, and read no cluster-wide state another test changes. The other cluster
tests are thus never run beside one another, and the cluster tier's waits (a pod's start, a
culling minute) no longer hold up the tests that need only CPU."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

from kubeforge_labs import kit

_TIERS = {"unit", "integration", "e2e"}


CLUSTER_GROUP = "cluster"
OWN_OPERATOR_GROUP = "cluster-own-operator"


def pytest_itemcollected(item: pytest.Item) -> None:
    tier = item.path.parent.name
    if tier in _TIERS:
        item.add_marker(getattr(pytest.mark, tier))


def on_cluster(path: str) -> bool:
    """Whether the tests of the module at ``path`` (relative to the root) may use the cluster:
    every integration and e2e module but those marked ``no_cluster``."""
    parts = Path(path).parts
    if len(parts) < 2 or parts[-2] not in ("integration", "e2e"):
        return False
    return _NO_CLUSTER_MARK not in _source(path)


def own_operator(path: str) -> bool:
    """Whether the module at ``path`` is marked ``own_operator`` (see above)."""
    return on_cluster(path) and _OWN_OPERATOR_MARK in _source(path)


@functools.cache
def _source(path: str) -> str:
    """A test module's text, read once per session (asked for by every test's scheduling and
    setup)."""
    return (ROOT / path).read_text()


ROOT = Path(__file__).resolve().parents[1]
_NO_CLUSTER_MARK = "pytest.mark.no_cluster"
_OWN_OPERATOR_MARK = "pytest.mark.own_operator"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A module marked no_cluster whose tests use the cluster, or one marked own_operator whose
    tests use the session's operator, would run beside the tests they would disturb."""
    wrong = [
        i.nodeid
        for i in items
        if i.get_closest_marker("no_cluster") and "cluster" in getattr(i, "fixturenames", ())
    ]
    if wrong:
        raise pytest.UsageError(f"marked no_cluster but using the cluster: {', '.join(wrong)}")
    shared = [
        i.nodeid
        for i in items
        if i.get_closest_marker("own_operator") and "operator" in getattr(i, "fixturenames", ())
    ]
    if shared:
        raise pytest.UsageError(
            f"marked own_operator but using the session's operator: {', '.join(shared)}"
        )


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scheduling by scope: one scope for the tests marked ``own_operator``, one for
    every other test that may use the cluster, and one per test for the rest. (xdist's own
    ``loadgroup`` cannot be used: it renames the tests' node ids through an attribute pytest 9
    no longer has.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ClusterScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if own_operator(path):
                return OWN_OPERATOR_GROUP
            return CLUSTER_GROUP if on_cluster(path) else nodeid

    return ClusterScheduling(config, log)


# Beside the cluster's tests, the longer of the two workers' paths, the rest run at a lower CPU
# priority (and so do the runtimes and trainers they start): on two cores the apiserver, the
# operator and the kwok pods of the cluster's tests then wait less for the CPU. Only as root,
# who may also raise the priority again for a cluster test on the same worker.
_BESIDE_THE_CLUSTER = 10


def pytest_runtest_setup(item: pytest.Item) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") is None or os.geteuid() != 0:
        return
    want = 0 if on_cluster(item.nodeid.split("::", 1)[0]) else _BESIDE_THE_CLUSTER
    now = os.nice(0)
    if want != now:
        os.nice(want - now)


def pytest_sessionfinish(session: pytest.Session) -> None:
    left = kit.reap_all()
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"stopped what the session left running: {', '.join(left)}")
