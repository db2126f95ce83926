"""KServe's own Hugging Face server (``huggingfaceserver``, its transformers backend on the CPU):
the baseline of ``bench/generation.py``, and a real KServe LLM runtime for the evaluation's
tests.

KServe ships it as a container image and in its source tree, not as a package; no image registry
is reachable here. Its source is in KServe's Go module, which the local cluster already downloads
to build KServe's controller (``hack/tools/kserve``, the same version): ``python/huggingfaceserver``
with the ``kserve`` and ``kserve-storage`` packages beside it. It runs on the project's ``.venv``
(transformers, torch, fastapi, ...) with KServe's sources first on ``PYTHONPATH``. KServe's
OpenAI layer imports vLLM's request types even for the transformers backend, so vLLM's wheel
(the version KServe's ``llm`` extra pins) and the few pure-Python packages its import needs are
installed, without their dependencies, into a folder of their own; vLLM's engine never runs (its
backend is not chosen: ``--backend huggingface``), nothing of it reaches ``.venv``.

KServe's server listens on every address and has no option for it; the launcher sets 127.0.0.1
with the built-in runtime's own ``serve_on`` (which reaches KServe's single-process server, the
one started here: with ``--workers`` above 1 KServe uses another class, still on 0.0.0.0), and
starts no gRPC server. The first ``prepare`` downloads vLLM's wheel (about 280 MB) and, if Go's
module cache lacks it, KServe's module: both from the package registries.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from kubeforge_labs.canary import launch
from kubeforge_labs.kit import Proc, free_port

ROOT = Path(__file__).resolve().parent.parent
KSERVE = "github.com/kserve/kserve"
CACHE = Path.home() / ".cache" / "kubeforge"
# vLLM as KServe v0.20's `llm` extra pins it, and what importing KServe's OpenAI types through
# it needs beyond .venv (found by importing until nothing was missing; versions as installed)
IMPORT_ONLY = (
    "vllm==0.24.0",
    "apache-tvm-ffi==0.1.15.post2",
    "cachetools==8.0.2",
    "cbor2==6.3.0",
    "kernels==0.19.1",
    "llguidance==1.9.1",
    "msgspec==0.23.0",
    "openai-harmony==0.0.8",
    "partial-json-parser==0.2.1.1.post7",
    "py-cpuinfo==9.0.0",
    "pybase64==1.5.1",
    "xgrammar==0.2.9",
)
LAUNCHER = (
    "import runpy, sys; from kubeforge_runtimes.server import serve_on; "
    "serve_on('127.0.0.1'); sys.argv[0] = 'huggingfaceserver'; "
    "runpy.run_module('huggingfaceserver', run_name='__main__', alter_sys=True)"
)


def kserve_module() -> tuple[str, Path]:
    """KServe's Go module as hack/tools/kserve pins it: its version and its folder (downloaded
    into Go's module cache if it is not there yet), by the cluster build's own functions."""
    if str(ROOT / "hack") not in sys.path:
        sys.path.insert(0, str(ROOT / "hack"))
    binaries = importlib.import_module("kfcluster.binaries")
    version = binaries.tool_version("kserve", KSERVE)
    return version, binaries.module_dir(KSERVE, version)


def prepare() -> tuple[str, str]:
    """KServe's version, and the PYTHONPATH that runs its Hugging Face server on .venv."""
    version, module = kserve_module()
    python = module / "python"
    server = python / "huggingfaceserver"
    if not (server / "huggingfaceserver" / "__main__.py").is_file():
        raise SystemExit(f"KServe {version}'s module has no python/huggingfaceserver ({module})")
    site = CACHE / f"kserve-hf-{version}"
    stamp = site / ".installed"
    if not stamp.is_file() or stamp.read_text() != "\n".join(IMPORT_ONLY):
        # the one `make venv` installs (the newest, if several versions are there)
        uv = sorted(CACHE.glob("tools/uv-*/bin/uv"), key=_version_of)
        if not uv:
            raise SystemExit(f"no uv under {CACHE / 'tools'}: run `make venv` first")
        subprocess.run(
            [str(uv[-1]), "pip", "install", "--quiet", "--python", sys.executable, "--no-deps",
             "--target", str(site), *IMPORT_ONLY],
            check=True,
        )  # fmt: skip
        stamp.write_text("\n".join(IMPORT_ONLY))
    path = [server, python / "kserve", python / "storage", site]
    return version, os.pathsep.join(str(p) for p in path)


def exactly(model_dir: Path, dest: Path, tokens: int) -> Path:
    """A copy of ``model_dir`` whose generation config asks for at least ``tokens`` new tokens:
    KServe's transformers backend reads no ``min_tokens`` (vLLM's extension, which the built-in
    runtime honours) but passes the model's generation config on, so both sides generate the
    same ``tokens`` tokens (with max_tokens the same) instead of stopping at an early EOS."""
    shutil.copytree(model_dir, dest)
    config_file = dest / "generation_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    config["min_new_tokens"] = tokens
    config_file.write_text(json.dumps(config, indent=2))
    return dest


def _version_of(uv: Path) -> tuple[int, ...]:
    """(0, 13, 9) of .../tools/uv-0.13.9/bin/uv."""
    parts = uv.parent.parent.name.removeprefix("uv-").split(".")
    return tuple(int(p) for p in parts if p.isdigit())


def start(workdir: Path, model_dir: Path, name: str, pythonpath: str) -> Proc:
    """KServe's Hugging Face server on ``model_dir`` (transformers on the CPU), serving ``name``
    at /openai/v1 on 127.0.0.1."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    return launch(
        [
            sys.executable, "-c", LAUNCHER,
            f"--model_dir={model_dir}", f"--model_name={name}", "--backend=huggingface",
            "--task=text_generation", f"--http_port={port}", "--enable_grpc=false",
            "--disable_log_requests",
        ],
        workdir / "kserve-hf.log",
        port,
        f"/v2/models/{name}/ready",
        "KServe's Hugging Face server",
        180,
        # nothing is fetched: the model is a local folder, and kernels stay local too
        env=os.environ | {"PYTHONPATH": pythonpath, "TMPDIR": str(workdir), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
