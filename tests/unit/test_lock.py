"""constraints.txt (`make lock`) pins what pyproject.toml pins, and constraints-checkov.txt the
checkov the Makefile names: a change to one without the other would make `make venv` refuse with
a resolver error that does not say what to run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]


def direct_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += [line for line in extra if not line.startswith("kubeforge")]
    return [Requirement(line) for line in lines]


def locked(name: str = "constraints.txt") -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in (REPO / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{name}: {raw!r} is not a pin (name==version); run `make lock`"
        pins[canonicalize_name(name.split("[")[0])] = version.split(";")[0].strip()
    return pins


def test_every_direct_pin_is_the_locked_version() -> None:
    pins = locked()
    stale = []
    for req in direct_requirements():
        (spec,) = req.specifier  # pyproject.toml pins every direct dependency exactly
        assert spec.operator == "==", f"pyproject.toml: {req} is not pinned with =="
        have = pins.get(canonicalize_name(req.name))
        if have != spec.version:
            stale.append(f"{req.name}: pyproject.toml {spec.version}, constraints.txt {have}")
    assert not stale, "constraints.txt is stale, run `make lock`: " + "; ".join(stale)


def test_the_lock_pins_the_dependencies_of_dependencies() -> None:
    pins = locked()
    direct = {canonicalize_name(r.name) for r in direct_requirements()}
    # a few that nothing in pyproject.toml names but every install has
    for transitive in ("soupsieve", "filelock", "starlette", "urllib3"):
        assert transitive not in direct
        assert transitive in pins, f"{transitive} is not in constraints.txt; run `make lock`"
    assert len(pins) > 2 * len(direct)


def test_checkov_is_locked_at_the_version_the_makefile_installs() -> None:
    found = re.search(r"^CHECKOV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert found is not None
    pins = locked("constraints-checkov.txt")
    assert pins.get("checkov") == found[1], "constraints-checkov.txt is stale, run `make lock`"
    assert len(pins) > 20  # its dependencies too
