"""What the real node's image builder (hack/kfcluster/images.py) puts in a layer where a
target keeps only linked libraries: real shared objects, compiled here, read by readelf."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cases import REPO

sys.path.insert(0, str(REPO / "hack"))
from kfcluster.images import linked_only

pytestmark = pytest.mark.skipif(
    not (shutil.which("gcc") and shutil.which("readelf")), reason="needs gcc and readelf"
)


def shared(site: Path, name: str, *links: str) -> str:
    """``name`` (folder/stem) as lib<stem>.so in ``site``, linking the named libraries of it."""
    folder, stem = name.rsplit("/", 1)
    src = site / folder / f"{stem}.c"
    src.write_text(f"int {stem}(void) {{ return 1; }}\n")
    out = site / folder / f"lib{stem}.so"
    args = ["-Wl,--no-as-needed"]  # Debian links as-needed: these link nothing they call
    for link in links:
        args += [f"-L{(site / link).parent}", f"-l:{(site / link).name}"]
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(src), *args], check=True)
    src.unlink()
    return out.relative_to(site).as_posix()


def test_only_libraries_linked_from_outside_the_folder_stay_with_what_they_link(
    tmp_path: Path,
) -> None:
    (tmp_path / "vendor" / "a").mkdir(parents=True)
    (tmp_path / "vendor" / "b" / "include").mkdir(parents=True)
    (tmp_path / "torch").mkdir()
    deep = shared(tmp_path, "vendor/a/deep")
    direct = shared(tmp_path, "vendor/a/direct", deep)
    unused = shared(tmp_path, "vendor/b/unused")
    user = shared(tmp_path, "torch/user", direct)
    for extra in ("vendor/__init__.py", "vendor/b/include/api.h", "vendor/b/include/x.py"):
        (tmp_path / extra).write_text("")
    files = [
        user,
        direct,
        deep,
        unused,
        "vendor/__init__.py",
        "vendor/b/include/api.h",
        "vendor/b/include/x.py",
    ]
    kept = linked_only(tmp_path, files, ("vendor",))
    # what torch links, what that links in turn, and the packages' Python files
    assert kept == [user, direct, deep, "vendor/__init__.py"]
    assert unused not in kept
    # nothing outside the folder is ever left out
    assert linked_only(tmp_path, files, ("elsewhere",)) == files
