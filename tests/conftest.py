"""Marks each test with its tier from where it lives, so `-m unit` and `-m integration` select
by folder and no test can be left out of both."""

from __future__ import annotations

from pathlib import Path

import pytest

_TIERS = {"unit", "integration", "e2e"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in _TIERS:
            item.add_marker(getattr(pytest.mark, tier))
