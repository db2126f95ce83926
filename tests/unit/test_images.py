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


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(names: set[str]) -> set[str]:
    """The distributions ``names`` bring in, themselves included (from installed metadata)."""
    from importlib import metadata

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_requirement_name(r) for r in requires if "extra ==" not in r]
    return seen


def _third_party_imports(package_dir: Path) -> set[str]:
    import ast
    import sys

    ours = {"kubeforge_crds", "kubeforge_operator", "kubeforge_api", "kubeforge_pipelines"}
    found: set[str] = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in ours and m not in sys.stdlib_module_names}


def test_the_core_image_has_what_the_operator_and_the_api_import() -> None:
    """The core image installs the project without extras and runs the operator and the API:
    every package they import must come with the core dependencies (the API's FastAPI too)."""
    from importlib import metadata

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = _closure({_requirement_name(r) for r in project["dependencies"]})
    by_module = metadata.packages_distributions()
    missing = {}
    for package in ("operator/kubeforge_operator", "api/kubeforge_api", "crds/kubeforge_crds"):
        for module in _third_party_imports(REPO / package):
            dists = {d.lower().replace("_", "-") for d in by_module.get(module, [module])}
            if not dists & core:
                missing[module] = f"{package} imports it; no core dependency brings it"
    assert not missing, missing


def test_the_compiled_pipeline_is_package_data() -> None:
    """The kfp backend submits the compiled IR from the installed package, as the images have it."""
    import kubeforge_pipelines
    from kubeforge_pipelines.pipeline import COMPILED

    assert COMPILED.is_file()
    assert COMPILED.is_relative_to(Path(kubeforge_pipelines.__file__).parent)
