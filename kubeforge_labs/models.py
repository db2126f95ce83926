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

    return _cached(
        f"tiny-base-{recipe_key(**kwargs)}", lambda out: build_base_model(out, **kwargs), target
    )


def _cached(name: str, build: Any, target: Path, marker: str = "config.json") -> Path:
    """``build(path)`` once per key ``name`` into the cache, then a copy at ``target``."""
    cached = _cache_root() / name
    cached.parent.mkdir(parents=True, exist_ok=True)
    with Path(f"{cached}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (cached / marker).is_file():
            staging = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".building-"))
            build(staging / "model")
            shutil.rmtree(cached, ignore_errors=True)
            (staging / "model").rename(cached)  # whole or not at all
            shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(cached, target)
    return target


def _ticket_texts(shuffled: bool, seed: int) -> list[str]:
    import random

    from kubeforge_pipelines.tinymodel import support_tickets

    texts = [r["text"] for r in support_tickets(300, seed)]
    if shuffled:
        rng = random.Random(seed)
        texts = [" ".join(rng.sample(t.split(), len(t.split()))) for t in texts]
    return texts


def ticket_adapter(target: Path, *, shuffled: bool = False, seed: int = 1) -> Path:
    """A LoRA adapter of the tiny base model (``base_model``) trained on the tickets (or their
    words shuffled) for 60 steps at a high learning rate: enough that adapters answer
    differently from the base and from each other."""
    from kubeforge_pipelines.train import TrainSettings, fine_tune

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="kubeforge-adapter-") as tmp:
            base = base_model(Path(tmp) / "base")
            settings = TrainSettings(
                method="lora", max_steps=60, batch_size=8, max_seq_length=64,
                learning_rate=0.01, seed=seed, target_modules=["c_attn", "c_proj", "c_fc"],
            )  # fmt: skip
            fine_tune(base, _ticket_texts(shuffled, seed), out, Path(tmp) / "checkpoints", settings)

    key = recipe_key(recipe="ticket-adapter", shuffled=shuffled, seed=seed)
    return _cached(f"adapter-{key}", build, target, marker="adapter_config.json")


def ticket_model(target: Path, *, shuffled: bool = False, seed: int = 1) -> Path:
    """The tiny base model fully fine-tuned on support tickets (400 steps, about 10 s): it learns
    the tickets' form, ``... resolution: <a fix>.``. ``shuffled``: trained on the same tickets with
    their words in random order, the deliberately worse version an evaluation must stop."""
    from kubeforge_pipelines.train import TrainSettings, fine_tune

    def build(out: Path) -> None:
        texts = _ticket_texts(shuffled, seed)
        with tempfile.TemporaryDirectory(prefix="kubeforge-tickets-") as tmp:
            base = base_model(Path(tmp) / "base")
            settings = TrainSettings(
                method="full", max_steps=400, batch_size=8, max_seq_length=64,
                learning_rate=0.002, seed=seed,
            )  # fmt: skip
            fine_tune(base, texts, out, Path(tmp) / "checkpoints", settings)

    key = recipe_key(recipe="tickets", shuffled=shuffled, seed=seed)
    return _cached(f"tickets-{key}", build, target)


def ticket_prompts(n: int = 16, seed: int = 99) -> list[dict[str, str]]:
    """An evaluation prompt set: tickets up to ``resolution:``, each with its fix as reference."""
    from kubeforge_pipelines.tinymodel import support_tickets

    out = []
    for row in support_tickets(n, seed):
        prompt, _, fix = row["text"].partition(" resolution: ")
        out.append({"prompt": f"{prompt} resolution:", "reference": fix.rstrip(".")})
    return out
