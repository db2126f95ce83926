"""The bytecode the image builder puts in a layer (hack/kfcluster/bytecode.py): read by a fresh
Python from a tree laid out as the layer's names say, with the sources' times gone as in a
layer; the dependencies' bytecode is used without looking at the source, kubeforge's own is
compiled afresh when its source changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cases import REPO

sys.path.insert(0, str(REPO / "hack"))
from kfcluster.bytecode import CHECKED, UNCHECKED, BytecodeError, pyc_name, with_bytecode

pytestmark = pytest.mark.skipif(
    sys.implementation.cache_tag != "cpython-311", reason="the images' Python is 3.11"
)


def layout(tmp_path: Path, mode: object) -> Path:
    """Sources in ``src``, laid out with their bytecode under ``root`` as the layer names them,
    every file's mtime 0 (as the layer has it); returns the root's site-packages."""
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("")
    (src / "pkg" / "answer.py").write_text("def value():\n    return 'compiled'\n")
    (src / "pkg" / "py2.py").write_text("print 'a Python 2 fixture'\n")
    (src / "pkg" / "data.txt").write_text("not Python\n")
    files = [
        (p, f"opt/kubeforge/site-packages/{p.relative_to(src).as_posix()}")
        for p in sorted(src.rglob("*"))
        if p.is_file()
    ]
    root = tmp_path / "root"
    for path, arcname in with_bytecode(files, tmp_path / "scratch", mode):  # type: ignore[arg-type]
        (root / arcname).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, root / arcname)
        os.utime(root / arcname, (0, 0))
    return root / "opt" / "kubeforge" / "site-packages"


def run(site: Path, code: str) -> str:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def edit_source(site: Path) -> None:
    # the same size and mtime as before: only the hash tells the source changed
    (site / "pkg" / "answer.py").write_text("def value():\n    return 'from-src'\n")
    os.utime(site / "pkg" / "answer.py", (0, 0))


def test_dependencies_bytecode_is_used_as_is(tmp_path: Path) -> None:
    site = layout(tmp_path, UNCHECKED)
    assert (site / "pkg" / "__pycache__" / "answer.cpython-311.pyc").is_file()
    # a source that does not compile goes in without bytecode; other files get none
    assert not (site / "pkg" / "__pycache__" / "py2.cpython-311.pyc").exists()
    assert not list((site / "pkg").glob("__pycache__/data*"))
    edit_source(site)
    assert run(site, "import pkg.answer as a; print(a.value())") == "compiled"


def test_kubeforge_s_own_bytecode_gives_way_to_a_changed_source(tmp_path: Path) -> None:
    site = layout(tmp_path, CHECKED)
    code = "import pkg.answer as a; print(a.value())"
    assert run(site, code) == "compiled"
    edit_source(site)
    assert run(site, code) == "from-src"


def test_pyc_name_is_where_python_looks() -> None:
    assert pyc_name("opt/app/kubeforge_operator/handlers.py") == (
        "opt/app/kubeforge_operator/__pycache__/handlers.cpython-311.pyc"
    )


def test_another_python_is_refused_with_the_one_to_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.implementation, "cache_tag", "cpython-312")
    with pytest.raises(BytecodeError, match=r"cpython-311 .this is cpython-312.*Python 3.11"):
        with_bytecode([], tmp_path, UNCHECKED)
