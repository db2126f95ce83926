"""The control plane's Go builds keep their caches to themselves (hack/kfcluster/binaries.py):
a build's compiled packages and module sources live in a folder of its own and are gone once
it ends, the user's Go caches untouched (they held 21 GB after one build of the binaries)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cases import REPO

sys.path.insert(0, str(REPO / "hack"))
from kfcluster.binaries import build_env, go_env, remove_build_caches


def go_cache(env: dict[str, str]) -> str:
    return subprocess.run(
        ["go", "env", "GOCACHE"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_build_s_caches_are_its_own_and_removed_after_it(tmp_path: Path) -> None:
    module = tmp_path / "hello"
    module.mkdir()
    (module / "go.mod").write_text("module example.com/hello\n\ngo 1.22\n")
    (module / "main.go").write_text('package main\n\nfunc main() { println("built") }\n')
    scratch = tmp_path / "scratch"
    env = build_env(scratch)
    assert go_cache(env) == str(scratch / "build")
    assert go_cache(go_env()) != str(scratch / "build")  # the user's, left as it is
    subprocess.run(["go", "build", "-o", str(tmp_path / "hello-bin"), "."], cwd=module, env=env,
                   check=True, capture_output=True)  # fmt: skip
    assert any((scratch / "build").iterdir())  # the compiled packages went there
    # a module cache as the Go command leaves it: read-only folders and files
    held = scratch / "mod" / "example.com" / "dep@v1.0.0"
    held.mkdir(parents=True)
    (held / "go.mod").write_text("module example.com/dep\n")
    (held / "go.mod").chmod(0o444)
    held.chmod(0o555)
    remove_build_caches(scratch, env)
    assert not scratch.exists()
    ran = subprocess.run([str(tmp_path / "hello-bin")], capture_output=True, text=True, check=True)
    assert ran.stderr.strip() == "built"
