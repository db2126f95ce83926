"""Images for the real node without a registry: built here, cached by the digest of their inputs,
imported into the node's containerd (pods use them with ``imagePullPolicy: Never``).

- ``registry.k8s.io/pause``: pause.c from the pinned kubernetes module, compiled static.
- ``localhost/kubeforge/base``: a Debian bookworm root filesystem with Python (mmdebstrap, from
  Debian's own packages), the base the other images are built on.

Each image is a docker-archive (``manifest.json``, a config and one layer tar per layer): the
format ``ctr images import`` reads. It is written here with the standard library because no
Debian or PyPI tool packs a folder into one without a container engine (umoci writes OCI
layouts that need skopeo to convert; neither is needed for a two-field config).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kfcluster.binaries import module_dir, tool_version
from kfcluster.settings import CACHE, ClusterError, log

IMAGES = CACHE / "images"

PAUSE_VERSION = "3.10.1"  # the kubelet's default sandbox image of the pinned kubernetes
PAUSE_IMAGE = f"registry.k8s.io/pause:{PAUSE_VERSION}"
BASE_IMAGE = "localhost/kubeforge/base:bookworm"
# Debian's Python and what pods of the base image need to run a Python program
BASE_PACKAGES = ["python3", "python3-venv", "ca-certificates"]


@dataclass(frozen=True)
class Layer:
    """A layer as a tar file on disk (its diff id is its sha256)."""

    path: Path

    def digest(self) -> str:
        h = hashlib.sha256()
        with self.path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    user: str = ""
    workdir: str = ""

    def as_json(self, diff_ids: list[str]) -> bytes:
        config: dict[str, object] = {"Env": self.env or ["PATH=/usr/local/bin:/usr/bin:/bin"]}
        if self.entrypoint:
            config["Entrypoint"] = self.entrypoint
        if self.cmd:
            config["Cmd"] = self.cmd
        if self.user:
            config["User"] = self.user
        if self.workdir:
            config["WorkingDir"] = self.workdir
        doc = {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        }
        return json.dumps(doc, sort_keys=True).encode()


def write_archive(out: Path, tag: str, layers: list[Layer], config: ImageConfig) -> Path:
    """A docker-archive of ``layers`` (bottom first) tagged ``tag``, written atomically."""
    digests = [layer.digest() for layer in layers]
    config_bytes = config.as_json(digests)
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    manifest = [
        {
            "Config": config_name,
            "RepoTags": [tag],
            "Layers": [f"{d}/layer.tar" for d in digests],
        }
    ]
    tmp = out.with_name(f"{out.name}.{time.monotonic_ns()}.tmp")
    with tarfile.open(tmp, "w") as tar:
        for digest, layer in zip(digests, layers, strict=True):
            tar.add(layer.path, arcname=f"{digest}/layer.tar")
        for name, data in (
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tmp.rename(out)
    return out


def _cached(name: str, inputs: str) -> Path:
    key = hashlib.sha256(inputs.encode()).hexdigest()[:16]
    IMAGES.mkdir(parents=True, exist_ok=True)
    return IMAGES / f"{name}-{key}.tar"


def pause_image() -> Path:
    """The sandbox image: pause.c of the pinned kubernetes module, statically linked."""
    k8s = tool_version("k8s", "k8s.io/kubernetes")
    source = module_dir("k8s.io/kubernetes", k8s) / "build" / "pause" / "linux" / "pause.c"
    out = _cached("pause", f"{k8s}:{PAUSE_VERSION}:{source.read_text()}")
    if out.exists():
        return out
    if shutil.which("gcc") is None:
        raise ClusterError("gcc is needed to build the pause image: apt-get install gcc libc6-dev")
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "pause"
        proc = subprocess.run(
            [
                "gcc",
                "-Os",
                "-static",
                f"-DVERSION=v{PAUSE_VERSION}",
                "-o",
                str(binary),
                str(source),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise ClusterError(f"compiling pause.c failed (libc6-dev installed?):\n{proc.stderr}")
        subprocess.run(["strip", str(binary)], check=False)
        layer = Path(tmp) / "layer.tar"
        with tarfile.open(layer, "w") as tar:
            info = tar.gettarinfo(str(binary), arcname="pause")
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            with binary.open("rb") as f:
                tar.addfile(info, f)
        write_archive(out, PAUSE_IMAGE, [Layer(layer)], ImageConfig(entrypoint=["/pause"]))
    log(f"built {PAUSE_IMAGE} ({out.stat().st_size // 1024} KiB)")
    return out


def base_image() -> Path:
    """Debian bookworm (minbase) with Python, made by mmdebstrap from Debian's packages."""
    out = _cached("base", json.dumps(BASE_PACKAGES))
    if out.exists():
        return out
    if shutil.which("mmdebstrap") is None:
        raise ClusterError(
            "mmdebstrap is needed to build the base image: apt-get install mmdebstrap"
        )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=IMAGES) as tmp:
        layer = Path(tmp) / "layer.tar"
        proc = subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--quiet",
                f"--include={','.join(BASE_PACKAGES)}",
                # no apt lists or caches in the image
                "--customize-hook=rm -rf $1/var/lib/apt/lists/* $1/var/cache/apt/*",
                "bookworm",
                str(layer),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise ClusterError(f"mmdebstrap failed building {BASE_IMAGE}:\n{proc.stderr[-3000:]}")
        write_archive(
            out,
            BASE_IMAGE,
            [Layer(layer)],
            ImageConfig(
                cmd=["python3"],
                env=["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONUNBUFFERED=1"],
            ),
        )
    log(f"built {BASE_IMAGE} in {time.monotonic() - started:.0f}s")
    return out


def node_images() -> list[Path]:
    """Every image the real node starts with."""
    return [pause_image(), base_image()]
