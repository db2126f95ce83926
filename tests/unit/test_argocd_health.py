"""The Argo CD health checks (charts/kubeforge/argocd/kubeforge.io/<Kind>/health.lua) run on their
fixtures the way Argo CD runs them: Lua 5.1 (Argo CD embeds gopher-lua, a Lua 5.1), the object as
a global table ``obj``, the script's returned table read as status and message. The fixtures and
expectations are in Argo CD's own resource_customizations layout (health_test.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa.lua51 import LuaRuntime

from kubeforge_crds import ALL_KINDS
from kubeforge_crds.generate import HEALTH_DIR

STATES = {"Healthy", "Progressing", "Degraded", "Suspended"}


def health(script: str, obj: dict[str, Any]) -> dict[str, str]:
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return {"status": result["status"], "message": result["message"]}


def cases() -> list[Any]:
    out = []
    for kind in ALL_KINDS:
        folder = HEALTH_DIR / "kubeforge.io" / kind.kind
        for case in yaml.safe_load((folder / "health_test.yaml").read_text())["tests"]:
            out.append(pytest.param(folder, case, id=f"{kind.kind}-{Path(case['inputPath']).stem}"))
    return out


@pytest.mark.parametrize(("folder", "case"), cases())
def test_health_check_on_fixture(folder: Path, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((folder / case["inputPath"]).read_text())
    assert health((folder / "health.lua").read_text(), obj) == case["healthStatus"]


def test_every_kind_has_fixtures_for_its_states() -> None:
    """Each kind is checked in every state it can be in; a DriftMonitor and a Team cannot be
    paused, so they have no Suspended state (docs/gitops.md)."""
    for kind in ALL_KINDS:
        folder = HEALTH_DIR / "kubeforge.io" / kind.kind
        tests = yaml.safe_load((folder / "health_test.yaml").read_text())["tests"]
        seen = {t["healthStatus"]["status"] for t in tests}
        expected = STATES - {"Suspended"} if kind.kind in ("DriftMonitor", "Team") else STATES
        assert seen == expected, kind.kind
        assert len({t["inputPath"] for t in tests}) == len(tests)
        for t in tests:  # every fixture is a valid object of the kind
            obj = yaml.safe_load((folder / t["inputPath"]).read_text())
            assert obj["kind"] == kind.kind
            kind.spec_model.model_validate(obj["spec"])
            if "status" in obj:
                kind.status_model.model_validate(obj["status"])


def test_a_status_the_script_does_not_know_is_progressing_not_an_error() -> None:
    script = (HEALTH_DIR / "kubeforge.io" / "ModelServer" / "health.lua").read_text()
    obj = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "phase": "Future"}}
    assert health(script, obj) == {"status": "Progressing", "message": "Future"}
