"""Every setting of the operator and the API is in its doc's settings table: a setting added to
the code and not to docs/operations.md or docs/api.md fails here (seven of the operator's and
four of the API's were missing until a review found them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from kubeforge_api.settings import ApiSettings
from kubeforge_operator.runtime.settings import OperatorSettings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def documented(doc: str, prefix: str) -> tuple[set[str], set[str]]:
    """The variables a doc's table rows name in full (`PREFIX_A`), and every name a short form
    after one on the same row may stand for (`PREFIX_METRICS_HOST` / `_PORT`: the short form
    replaces the full name's last segments, PREFIX_METRICS_PORT or PREFIX_PORT)."""
    full: set[str] = set()
    could_be: set[str] = set()
    for row in doc.splitlines():
        if not row.startswith(f"| `{prefix}"):
            continue
        cell = row.split("|")[1]
        named = re.findall(rf"`({prefix}[A-Z0-9_]+)`", cell)
        full.update(named)
        for short in re.findall(r"`(_[A-Z0-9_]+)`", cell):
            segments = named[0].removeprefix(prefix).split("_")
            for keep in range(len(segments)):  # the full name's first segments it keeps
                stem = "_".join(segments[:keep])
                could_be.add(prefix + (stem + short if stem else short[1:]))
    return full, could_be


@pytest.mark.parametrize(
    ("settings", "prefix", "doc"),
    [
        (OperatorSettings, "KUBEFORGE_OPERATOR_", "operations.md"),
        (ApiSettings, "KUBEFORGE_API_", "api.md"),
    ],
)
def test_every_setting_is_in_its_doc_s_table(
    settings: type[BaseSettings], prefix: str, doc: str
) -> None:
    wanted = {prefix + name.upper() for name in settings.model_fields}
    full, could_be = documented((DOCS / doc).read_text(), prefix)
    missing = wanted - full - could_be
    assert not missing, f"not in docs/{doc}'s settings table: {sorted(missing)}"
    assert not full - wanted, f"docs/{doc} names settings the code lacks: {sorted(full - wanted)}"


def test_short_forms_after_a_full_name_are_read() -> None:
    rows = (
        "| `KUBEFORGE_X_METRICS_HOST` / `_PORT` | `0.0.0.0` | listen |\n"
        "| `KUBEFORGE_X_LEASE_SECONDS` / `_RENEW_SECONDS` | 15 / 10 | lease |\n"
        "| `KUBEFORGE_X_A` | 1 | a |"
    )
    full, could_be = documented(rows, "KUBEFORGE_X_")
    assert full == {"KUBEFORGE_X_METRICS_HOST", "KUBEFORGE_X_LEASE_SECONDS", "KUBEFORGE_X_A"}
    assert {"KUBEFORGE_X_METRICS_PORT", "KUBEFORGE_X_RENEW_SECONDS"} <= could_be
    assert "KUBEFORGE_X_B" not in could_be
