"""Which files of a virtual environment make up a set of requirements: run by that environment's
interpreter (``.venv/bin/python hack/kfcluster/distfiles.py REQUEST_JSON``), it resolves the
requirements (with extras and environment markers) against the installed distributions and prints
their files, as the image builder (images.py) lays them out in a layer.

The request is ``{"requirements": ["kubeforge[serving,data]"], "own": "kubeforge", "skip": []}``
(``own``: a distribution whose requirements count but whose files do not: the project itself,
installed editable, whose packages the builder takes from the source tree);
the answer ``{"dists": ["name==version", ...], "site": "<site-packages>", "files": [...]}`` with
each file relative to site-packages (console scripts and other files outside it are left out:
images run ``python -m``).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import sys
import sysconfig
from pathlib import Path

from packaging.requirements import Requirement


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: list[str], skip: set[str]) -> dict[str, md.Distribution]:
    by_name = {canonical(d.metadata["Name"]): d for d in md.distributions()}
    found: dict[str, md.Distribution] = {}
    todo = [(Requirement(r), "") for r in requirements]
    seen: set[tuple[str, str]] = set()
    while todo:
        req, extra = todo.pop()
        name = canonical(req.name)
        if name in skip or (req.marker and not req.marker.evaluate({"extra": extra})):
            continue
        for wanted_extra in ["", *sorted(req.extras)]:
            if (name, wanted_extra) in seen:
                continue
            seen.add((name, wanted_extra))
            dist = by_name.get(name)
            if dist is None:
                raise SystemExit(f"{req.name} is not installed in {sys.prefix} (make venv)")
            found[name] = dist
            todo += [(Requirement(r), wanted_extra) for r in dist.requires or []]
    return found


def main() -> None:
    request = json.loads(sys.argv[1])
    skip = {canonical(s) for s in request.get("skip", [])}
    dists = closure(request["requirements"], skip)
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    files: list[str] = []
    own = canonical(request.get("own", ""))  # followed for its requirements; its files are not
    for name in sorted(dists):
        if name == own:
            continue
        for f in dists[name].files or []:
            path = Path(dists[name].locate_file(f)).resolve()
            if not path.is_relative_to(site) or "__pycache__" in path.parts or not path.is_file():
                continue
            files.append(str(path.relative_to(site)))
    print(
        json.dumps(
            {
                "dists": sorted(f"{n}=={d.version}" for n, d in dists.items()),
                "site": str(site),
                "files": sorted(set(files)),
            }
        )
    )


if __name__ == "__main__":
    main()
