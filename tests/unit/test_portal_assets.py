"""The portal's files: every script and stylesheet the page loads is served by the API itself,
and the third-party ones are the published files, unchanged (portal/vendor/README.md)."""

from __future__ import annotations

import hashlib
import re

from tests.cases import REPO

PORTAL = REPO / "api" / "kubeforge_api" / "portal"
# sha256 of uPlot 1.6.32's dist files as npm serves them
VENDORED = {
    "vendor/uplot/uPlot.iife.min.js": (
        "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f"
    ),
    "vendor/uplot/uPlot.min.css": (
        "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04"
    ),
}


def test_vendored_files_are_the_published_ones() -> None:
    for name, digest in VENDORED.items():
        assert hashlib.sha256((PORTAL / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (PORTAL / "vendor" / "uplot" / "LICENSE").read_text()


def test_the_page_loads_only_its_own_files() -> None:
    page = (PORTAL / "index.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources, "the page loads its scripts and styles"
    for source in sources:
        assert source.startswith("/portal/"), source
        assert (PORTAL / source.removeprefix("/portal/")).is_file(), source
