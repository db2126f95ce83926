"""Python bytecode for the images' layers, compiled when a layer is built.

A container starts from its image's files every time, and kubeforge's images set
``PYTHONDONTWRITEBYTECODE`` (their root filesystem is not the place for a cache): without
``__pycache__`` in the image, every start of a program compiles every module it imports from
source. For the runtime's imports (torch, transformers, kserve) that is about 5 CPU-seconds of
a 8 s start on the development machine, paid again by every predictor, training and evaluation
pod (`docs/benchmarks.md`, "Python's start in kubeforge's images"). pip writes bytecode when it
installs; the layers are copied from an environment instead (uv installs without it), so this
module compiles it, with the standard library's ``py_compile``.

The bytecode is hash-based (PEP 552), not timestamp-based: the layers give every file the same
fixed mtime, which a timestamp-based ``.pyc`` would not match. The dependencies' layers are
immutable (rebuilt when the lock changes), so their bytecode is not checked against the source
(``UNCHECKED_HASH``, what distributions that build images reproducibly use); kubeforge's own
packages are checked (``CHECKED_HASH``: a source mounted over the image's for development is
compiled afresh instead of running stale bytecode).
"""

from __future__ import annotations

import os
import py_compile
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath

from kfcluster.settings import ClusterError

# The images' Python: Debian bookworm's python3 (kfcluster.images.BASE_PACKAGES) is 3.11, and
# bytecode is read only by the minor version whose magic number it carries
IMAGE_CACHE_TAG = "cpython-311"

UNCHECKED = py_compile.PycInvalidationMode.UNCHECKED_HASH
CHECKED = py_compile.PycInvalidationMode.CHECKED_HASH


class BytecodeError(ClusterError):
    """The bytecode cannot be compiled for the images' Python."""


def pyc_name(arcname: str) -> str:
    """Where the images' Python looks for the bytecode of ``arcname`` (PEP 3147)."""
    source = PurePosixPath(arcname)
    return (source.parent / "__pycache__" / f"{source.stem}.{IMAGE_CACHE_TAG}.pyc").as_posix()


def _compile(job: tuple[str, str, int]) -> bool:
    source, target, mode = job
    try:
        py_compile.compile(
            source,
            cfile=target,
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode(mode),
        )
    except (py_compile.PyCompileError, UnicodeDecodeError, ValueError):
        return False  # not Python 3 (a template, a Python 2 test fixture): compileall skips too
    return True


def with_bytecode(
    files: list[tuple[Path, str]], scratch: Path, mode: py_compile.PycInvalidationMode
) -> list[tuple[Path, str]]:
    """``files`` (path, name in the image) and the bytecode of each Python source among them,
    compiled into ``scratch``; a source that does not compile goes in without bytecode."""
    if sys.implementation.cache_tag != IMAGE_CACHE_TAG:
        raise BytecodeError(
            f"the images' bytecode is compiled by the Python that builds them, which must be "
            f"the images' {IMAGE_CACHE_TAG} (this is {sys.implementation.cache_tag}): run "
            "the build with Python 3.11 (make venv)"
        )
    sources = [(path, pyc_name(arcname)) for path, arcname in files if arcname.endswith(".py")]
    jobs = [(str(path), str(scratch / pyc), mode.value) for path, pyc in sources]
    for _, target, _ in jobs:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        compiled = list(pool.map(_compile, jobs, chunksize=256))
    return list(files) + [
        (scratch / pyc, pyc) for (_, pyc), ok in zip(sources, compiled, strict=True) if ok
    ]
