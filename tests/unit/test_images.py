"""The container build file names what the repository has: every COPY source exists and every
pip extra it installs is declared in pyproject.toml (no engine here builds it; see
docs/security.md)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "images" / "Containerfile"


def test_copy_sources_exist() -> None:
    copies = re.findall(r"^COPY (?!--from)(.+) \S+$", CONTAINERFILE.read_text(), re.M)
    assert copies
    for line in copies:
        for source in line.split():
            assert (REPO / source).exists(), source


def test_installed_extras_are_declared_and_targets_match_the_chart() -> None:
    text = CONTAINERFILE.read_text()
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    used = {e for group in re.findall(r"'\.\[([a-z,]+)\]'", text) for e in group.split(",")}
    assert used == {"ml", "data", "serving"}
    assert used <= set(extras)
    targets = set(re.findall(r"^FROM \S+ AS (\w+)$", text, re.M))
    assert {"core", "trainer", "runtime"} <= targets
    values = (REPO / "charts" / "kubeforge" / "values.yaml").read_text()
    for image in ("kubeforge", "kubeforge-trainer", "kubeforge-runtime"):
        assert f"repository: ghcr.io/kubeforge/{image}\n" in values
