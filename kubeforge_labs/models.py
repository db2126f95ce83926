"""The tiny base model the tests, the demo and the benches train and serve, built once per recipe.

``build_base_model`` trains a tokenizer and pretrains a small GPT-2 for half a minute of CPU;
every pytest worker and tier used to do it again. The result depends only on the recipe, its
arguments and the versions of the libraries that run it (the build is seeded; its pretraining is
the pipeline's own training step, so the recipe is the whole ``kubeforge_pipelines`` package).
It is thus built once into the kubeforge cache under a key of those and copied from there: a
copy per caller, as a test may write beside it. Two workers asking at once wait on one build (a
file lock), not two.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

_LIBRARIES = ("torch", "transformers", "tokenizers", "peft")


def _cache_root() -> Path:
    base = (
        os.environ.get("KUBEFORGE_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kubeforge"
    )
    return Path(base) / "models"


def recipe_key(**kwargs: Any) -> str:
    """What the built model depends on, hashed: the recipe's source (the package's), its
    arguments and the versions of the libraries that run it."""
    import kubeforge_pipelines

    digest = hashlib.sha256()
    for source in sorted(Path(kubeforge_pipelines.__file__).parent.rglob("*.py")):
        digest.update(source.read_bytes())
    versions = {lib: importlib.metadata.version(lib) for lib in _LIBRARIES}
    digest.update(json.dumps([sorted(kwargs.items()), versions], default=str).encode())
    return digest.hexdigest()[:16]


def base_model(target: Path, **kwargs: Any) -> Path:
    """``build_base_model(target, **kwargs)``, from the cache when that recipe was built before."""
    from kubeforge_pipelines.tinymodel import build_base_model

    cached = _cache_root() / f"tiny-base-{recipe_key(**kwargs)}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    with Path(f"{cached}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (cached / "config.json").is_file():
            staging = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".building-"))
            build_base_model(staging / "model", **kwargs)
            shutil.rmtree(cached, ignore_errors=True)
            (staging / "model").rename(cached)  # whole or not at all
            shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(cached, target)
    return target
