"""Marks each test with its tier from where it lives, so `-m unit` and `-m integration` select
by folder and no test can be left out of both; at the end of the session, stops every process
the kit launched that is still running (a fixture that failed half-way leaves none behind)."""

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


def pytest_sessionfinish(session: pytest.Session) -> None:
    left = kit.reap_all()
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"stopped what the session left running: {', '.join(left)}")
