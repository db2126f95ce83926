"""Marks each test with its tier from where it lives, so `-m unit` and `-m integration` select
by folder and no test can be left out of both; groups the tests for pytest-xdist's workers
(`make test` runs two, `--dist loadgroup`); at the end of the session, stops every process the
kit launched that is still running (a fixture that failed half-way leaves none behind)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeforge_labs import kit

_TIERS = {"unit", "integration", "e2e"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in _TIERS:
            item.add_marker(getattr(pytest.mark, tier))
    # A worker runs a group whole, in order. One group per file, so that module fixtures start
    # once; all files that use the session's operator in one group, since two operators would
    # reconcile the same namespaces; the e2e tier in one group (one chart release, one real
    # node whose kubelet a test stops).
    with_operator = {
        str(item.fspath) for item in items if "operator" in getattr(item, "fixturenames", ())
    }
    for item in items:
        path = str(item.fspath)
        if Path(path).parent.name == "e2e":
            group = "e2e"
        elif path in with_operator:
            group = "session-operator"
        else:
            group = Path(path).stem
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionfinish(session: pytest.Session) -> None:
    left = kit.reap_all()
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"stopped what the session left running: {', '.join(left)}")
