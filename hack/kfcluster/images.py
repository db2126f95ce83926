"""Images for the real node without a registry: built here, cached by the digest of their inputs,
imported into the node's containerd (pods use them with ``imagePullPolicy: Never``).

- ``registry.k8s.io/pause``: pause.c from the pinned kubernetes module, compiled static.
- ``localhost/kubeforge/base``: a Debian bookworm root filesystem with Python (mmdebstrap, from
  Debian's own packages), the base the other images are built on.

Each layer is a tar file in the cache, and an image is a small JSON file naming its tag, its
config and its layers' files (``write_image``); the import streams it into containerd as an OCI
image layout (``kfcluster.ociimport``), without the layers containerd already holds. The layers
are written here with the standard library because no Debian or PyPI tool packs a folder into
one without a container engine (umoci writes OCI layouts that need skopeo to convert; neither is
needed for a two-field config).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from py_compile import PycInvalidationMode

from kfcluster.binaries import bin_dir, module_dir, tool_version
from kfcluster.bytecode import CHECKED, UNCHECKED, with_bytecode
from kfcluster.settings import CACHE, REPO, ClusterError, log

IMAGES = CACHE / "images"
IMAGE = ".image.json"  # an image's file (write_image); its layers are .tar files beside it

PAUSE_VERSION = "3.10.1"  # the kubelet's default sandbox image of the pinned kubernetes
PAUSE_IMAGE = f"registry.k8s.io/pause:{PAUSE_VERSION}"
BASE_IMAGE = "localhost/kubeforge/base:bookworm"
# Debian's Python and what pods of the base image need to run a Python program
BASE_PACKAGES = ["python3", "python-is-python3", "ca-certificates"]
# The users kubeforge's pods run as have names: Python's getpass (kopf's identity, Jupyter) looks
# the uid up and fails without one. 65532: kubeforge's images; 1000 (group users): notebooks.
BASE_USERS = [
    "kubeforge:x:65532:65532:kubeforge:/tmp:/usr/sbin/nologin",
    "jovyan:x:1000:100:notebook user:/home/jovyan:/bin/sh",
]
BASE_GROUPS = ["kubeforge:x:65532:"]


@dataclass(frozen=True)
class Layer:
    """A layer as a tar file on disk (its diff id is its sha256)."""

    path: Path

    def digest(self) -> str:
        """Hashed once and kept beside the layer (cached layers never change; the trainer's
        dependencies are 4 GB, read again by every build of an image on them otherwise)."""
        kept = self.path.with_name(self.path.name + ".sha256")
        if kept.exists() and kept.stat().st_mtime >= self.path.stat().st_mtime:
            return kept.read_text().strip()
        h = hashlib.sha256()
        with self.path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        kept.write_text(h.hexdigest())
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


def write_image(out: Path, tag: str, layers: list[Layer], config: ImageConfig) -> Path:
    """The image of ``layers`` (bottom first) tagged ``tag``, as the import reads it
    (``ociimport.oci_layout``): its tag, its config, and each layer's file, digest and size,
    written atomically as JSON. The layers stay where they are cached: an image holds no copy of
    them (docker-archives did, a second copy of every layer, 10 GB, on the disk whose free space
    the real node's kubelet watches)."""
    digests = [layer.digest() for layer in layers]
    doc = {
        "tag": tag,
        "config": config.as_json(digests).decode(),
        "layers": [
            {"path": str(layer.path), "digest": f"sha256:{d}", "size": layer.path.stat().st_size}
            for layer, d in zip(layers, digests, strict=True)
        ],
    }
    tmp = out.with_name(f"{out.name}.{time.monotonic_ns()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.rename(out)
    return out


def ready(image: Path) -> bool:
    """Whether ``image`` was written and each layer it names is still the one it was written
    with (a layer rebuilt or removed since makes the image be written again)."""
    if not image.exists():
        return False
    for layer in json.loads(image.read_text())["layers"]:
        path = Path(layer["path"])
        if not path.is_file() or f"sha256:{Layer(path).digest()}" != layer["digest"]:
            return False
    return True


def image_size(image: Path) -> int:
    """The bytes of an image's layers."""
    return sum(int(layer["size"]) for layer in json.loads(image.read_text())["layers"])


def _cached(name: str, inputs: str, suffix: str = ".tar") -> Path:
    """Where ``name`` built from ``inputs`` is cached (a layer: ``.tar``; an image:
    ``IMAGE``). Older builds of ``name`` (other inputs) are removed before this one is built,
    and so are an image's docker-archives that earlier versions of this code wrote: a trainer
    layer is 4 GB, and a disk that fills up puts the real node under disk pressure (its pods
    are then not scheduled)."""
    key = hashlib.sha256(inputs.encode()).hexdigest()[:16]
    IMAGES.mkdir(parents=True, exist_ok=True)
    out = IMAGES / f"{name}-{key}{suffix}"
    olds = [p for p in IMAGES.glob(f"{name}-*{suffix}") if len(p.name) == len(out.name)]
    if suffix == IMAGE:
        archive = f"{name}-{key}.tar"
        olds += [p for p in IMAGES.glob(f"{name}-*.tar") if len(p.name) == len(archive)]
    for old in olds:
        if old != out:
            old.unlink(missing_ok=True)
            old.with_name(old.name + ".sha256").unlink(missing_ok=True)
    return out


def pause_image() -> Path:
    """The sandbox image: pause.c of the pinned kubernetes module, statically linked."""
    k8s = tool_version("k8s", "k8s.io/kubernetes")
    source = module_dir("k8s.io/kubernetes", k8s) / "build" / "pause" / "linux" / "pause.c"
    inputs = f"{k8s}:{PAUSE_VERSION}:{source.read_text()}"
    out = _cached("pause", inputs, IMAGE)
    if ready(out):
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
        layer = _cached("pause", inputs, ".layer.tar")
        with tarfile.open(layer, "w") as tar:
            info = tar.gettarinfo(str(binary), arcname="pause")
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            with binary.open("rb") as f:
                tar.addfile(info, f)
        write_image(out, PAUSE_IMAGE, [Layer(layer)], ImageConfig(entrypoint=["/pause"]))
    log(f"built {PAUSE_IMAGE} ({image_size(out) // 1024} KiB)")
    return out


def base_image() -> Path:
    """Debian bookworm (minbase) with Python, made by mmdebstrap from Debian's packages."""
    out = _cached("base", BASE_INPUTS, IMAGE)
    if not ready(out):
        write_image(
            out,
            BASE_IMAGE,
            [Layer(_base_layer())],
            ImageConfig(
                cmd=["python3"],
                env=["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONUNBUFFERED=1"],
            ),
        )
    return out


BASE_INPUTS = json.dumps([BASE_PACKAGES, BASE_USERS, BASE_GROUPS])


def _base_layer() -> Path:
    """The base image's one layer (the other images are built on it)."""
    layer = _cached("base", BASE_INPUTS, ".layer.tar")
    if layer.exists():
        return layer
    if shutil.which("mmdebstrap") is None:
        raise ClusterError(
            "mmdebstrap is needed to build the base image: apt-get install mmdebstrap"
        )
    started = time.monotonic()
    # (mmdebstrap writes a tar for a target named .tar, a folder otherwise)
    with tempfile.TemporaryDirectory(dir=IMAGES) as scratch:
        tmp = Path(scratch) / "layer.tar"
        proc = subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--quiet",
                f"--include={','.join(BASE_PACKAGES)}",
                # no apt lists or caches in the image
                "--customize-hook=rm -rf $1/var/lib/apt/lists/* $1/var/cache/apt/*",
                *(f"--customize-hook=echo '{u}' >> $1/etc/passwd" for u in BASE_USERS),
                *(f"--customize-hook=echo '{g}' >> $1/etc/group" for g in BASE_GROUPS),
                "bookworm",
                str(tmp),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise ClusterError(f"mmdebstrap failed building {BASE_IMAGE}:\n{proc.stderr[-3000:]}")
        tmp.rename(layer)
    log(f"built {BASE_IMAGE} in {time.monotonic() - started:.0f}s")
    return layer


def node_images() -> list[Path]:
    """Every image the real node starts with: pause, the base, Prometheus and its operator,
    KServe's and the Gateway's, and kubeforge's images that were built (``localcluster.py
    images``) for the current sources and environment, but those imported on demand (``LAZY``:
    ``localcluster.py images trainer`` imports it when something needs it)."""
    binaries = [binary_image(tag, *spec) for tag, spec in BINARY_IMAGES.items()]
    ours = [p for p in current_images() if not p.name.startswith(tuple(f"{t}-" for t in LAZY))]
    return [pause_image(), base_image(), *binaries, *ours]


# kubeforge's images not imported when the node starts: the trainer (4 GB, about 50 s to
# import) is needed only by training on the real node (the slow tier, `make demo`)
LAZY = ("trainer",)


PROMETHEUS_VERSION = "v3.16.0"  # github.com/prometheus/prometheus v0.316.0 (hack/tools/prometheus)
OPERATOR_IMAGE = "localhost/kubeforge/prometheus-operator:dev"
RELOADER_IMAGE = "localhost/kubeforge/prometheus-config-reloader:dev"
PROMETHEUS_IMAGE = f"localhost/kubeforge/prometheus:{PROMETHEUS_VERSION}"
KSERVE_VERSION = "v0.20.0"  # github.com/kserve/kserve (hack/tools/kserve)
KSERVE_CONTROLLER_IMAGE = f"localhost/kubeforge/kserve-controller:{KSERVE_VERSION}"
KSERVE_AGENT_IMAGE = f"localhost/kubeforge/kserve-agent:{KSERVE_VERSION}"
KSERVE_LLMISVC_IMAGE = f"localhost/kubeforge/kserve-llmisvc-controller:{KSERVE_VERSION}"
KUEUE_IMAGE = "localhost/kubeforge/kueue:v0.17.0"  # sigs.k8s.io/kueue (hack/tools/kueue)
# github.com/kubeflow/trainer/v2 (hack/tools/kueue) and sigs.k8s.io/jobset (hack/tools/jobset)
TRAINER_CONTROLLER_IMAGE = "localhost/kubeforge/kubeflow-trainer-controller:v2.2.0"
JOBSET_IMAGE = "localhost/kubeforge/jobset:v0.11.1"
TRAEFIK_IMAGE = "localhost/kubeforge/traefik:v3.6.12"  # github.com/traefik/traefik/v3 (hack/tools)
# tag -> (binary in the cache, its path in the image): one static binary on the base image
BINARY_IMAGES = {
    OPERATOR_IMAGE: ("prometheus-operator", "bin/operator"),
    RELOADER_IMAGE: ("prometheus-config-reloader", "bin/prometheus-config-reloader"),
    PROMETHEUS_IMAGE: ("prometheus-kubernetes", "bin/prometheus"),
    KSERVE_CONTROLLER_IMAGE: ("kserve-manager", "manager"),
    KSERVE_AGENT_IMAGE: ("kserve-agent", "agent"),
    KSERVE_LLMISVC_IMAGE: ("kserve-llmisvc", "manager"),  # /manager, as in KServe's own image
    TRAEFIK_IMAGE: ("traefik", "traefik"),
    KUEUE_IMAGE: ("kueue", "manager"),  # /manager, as in Kueue's own image
    TRAINER_CONTROLLER_IMAGE: ("trainer-controller-manager", "manager"),  # as in Trainer's
    JOBSET_IMAGE: ("jobset", "manager"),  # as in JobSet's
}


def binary_image(tag: str, binary: str, path: str) -> Path:
    source = bin_dir() / binary
    layer = _cached_layer(f"bin-{binary}", bin_dir().name, [(source, path)])
    config = ImageConfig(entrypoint=[f"/{path}"], user="65532:65532")
    base = _base_layer()
    inputs = json.dumps([tag, str(base), str(layer), config.as_json([]).decode()])
    out = _cached(f"img-{binary}", inputs, IMAGE)
    if not ready(out):
        write_image(out, tag, [Layer(base), Layer(layer)], config)
        log(f"built {tag}")
    return out


@dataclass(frozen=True)
class Target:
    """One of kubeforge's images, as images/Containerfile's target of that name describes it:
    kubeforge with some extras (``app``), or other distributions of the environment alone."""

    tag: str
    requirements: list[str]
    cmd: list[str]
    app: bool = True
    env: list[str] = field(default_factory=list)
    # top-level folders of site-packages whose shared libraries go in only where another library
    # of the image links them (see linked_only)
    linked_only: tuple[str, ...] = ()
    # top-level folders of site-packages left out
    leave_out: tuple[str, ...] = ()


# the home volume is the Workbench's /home/jovyan (as in Jupyter's own images)
JUPYTER_ARGS = (
    "--ServerApp.port=8888 --ServerApp.root_dir=/home/jovyan --ServerApp.open_browser=False"
)


# The images/Containerfile targets, built here from the development environment (`make venv`):
# the same distributions, at the same versions, that the tests ran against.
TARGETS = {
    "core": Target(
        "localhost/kubeforge/kubeforge:dev", ["kubeforge"], ["python", "-m", "kubeforge_operator"]
    ),
    # fine-tuning on the real node's CPU, and serving what it trained (the chart's
    # ClusterServingRuntime kubeforge-llm). PyPI's torch is the CUDA build: importing it loads the
    # CUDA libraries it links (the nvidia-* wheels), so those go in; the ones it only opens when a
    # GPU computes (cuDNN's engines, ...) and triton (GPU kernels) do not: 3.7 of 5.2 GB.
    "trainer": Target(
        "localhost/kubeforge/kubeforge-trainer:dev",
        ["kubeforge[ml,serving,data]"],
        ["python", "-m", "kubeforge_pipelines", "--help"],
        linked_only=("nvidia",),
        leave_out=("triton",),
    ),
    "runtime": Target(
        "localhost/kubeforge/kubeforge-runtime:dev",
        ["kubeforge[serving,data]"],
        ["python", "-m", "kubeforge_runtimes", "serve"],
    ),
    # a real Jupyter server (the Workbench's notebook); NOTEBOOK_ARGS as jupyter's images read it
    "notebook": Target(
        "localhost/kubeforge/notebook:dev",
        ["jupyter-server"],
        ["sh", "-c", f"exec python -m jupyter_server {JUPYTER_ARGS} $NOTEBOOK_ARGS"],
        app=False,
        env=["HOME=/home/jovyan", "JUPYTER_RUNTIME_DIR=/tmp/jupyter-runtime"],
    ),
}
APP_PACKAGES = {
    "crds": "kubeforge_crds",
    "operator": "kubeforge_operator",
    "api": "kubeforge_api",
    "pipelines": "kubeforge_pipelines",
    "runtimes": "kubeforge_runtimes",
}
PREFIX = "opt/kubeforge"


def kubeforge_image(name: str, python: Path) -> Path:
    """Build (or find in the cache) one target: the base, a layer of its dependencies copied from
    the environment of ``python``, and a layer of kubeforge's own packages from the sources."""
    target = TARGETS[name]
    request = {"requirements": target.requirements, "own": "kubeforge"}
    proc = subprocess.run(
        [str(python), str(Path(__file__).with_name("distfiles.py")), json.dumps(request)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ClusterError(f"resolving the {name} image's distributions failed: {proc.stderr}")
    found = json.loads(proc.stdout)
    site = Path(found["site"])
    files = [f for f in found["files"] if f.split("/", 1)[0] not in target.leave_out]
    if target.linked_only:
        files = linked_only(site, files, target.linked_only)
    deps = _cached_layer(
        f"deps-{name}",
        # (linked-2: the pruning's own version, so that a change to it rebuilds the layer)
        # (bytecode-1: the layer carries its sources' bytecode, kfcluster.bytecode)
        json.dumps(
            [found["dists"], target.leave_out, target.linked_only, "linked-2", "bytecode-1"]
        ),
        [(site / f, f"{PREFIX}/site-packages/{f}") for f in files],
        UNCHECKED,
    )
    layers = [Layer(_base_layer()), Layer(deps)]
    if target.app:
        sources = [
            (f, f"{PREFIX}/app/{f.relative_to(REPO / folder).as_posix()}")
            for folder, package in APP_PACKAGES.items()
            for f in sorted((REPO / folder / package).rglob("*"))
            if f.is_file() and "__pycache__" not in f.parts
        ]
        digest = hashlib.sha256()
        for path, arcname in sources:
            digest.update(arcname.encode() + b"\0" + path.read_bytes())
        digest.update(b"bytecode-1")
        layers.append(Layer(_cached_layer("app", digest.hexdigest(), sources, CHECKED)))
    config = ImageConfig(
        cmd=target.cmd,
        user="65532:65532",
        env=[
            f"PATH=/{PREFIX}/bin:/usr/local/bin:/usr/bin:/bin",
            f"PYTHONPATH=/{PREFIX}/app:/{PREFIX}/site-packages",
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONUNBUFFERED=1",
            "HOME=/tmp",
            "MPLCONFIGDIR=/tmp/matplotlib",
            "HF_HOME=/tmp/huggingface",
            *target.env,
        ],
    )
    key = json.dumps(
        [target.tag, [str(layer.path) for layer in layers], config.as_json([]).decode()]
    )
    out = _cached(name, key, IMAGE)
    if not ready(out):
        write_image(out, target.tag, layers, config)
        log(f"built {target.tag} ({image_size(out) >> 20} MiB)")
    (IMAGES / f"{name}.current").write_text(str(out))
    return out


def _is_shared_library(name: str) -> bool:
    return ".so" in name or name.endswith(".a")


def _needed(path: Path) -> list[str]:
    """The sonames an ELF file links (its DT_NEEDED entries), by binutils' readelf."""
    out = subprocess.run(
        ["readelf", "--dynamic", "--wide", str(path)], capture_output=True, text=True
    ).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def linked_only(site: Path, files: list[str], folders: tuple[str, ...]) -> list[str]:
    """``files`` without the shared libraries under ``folders`` that no other shared library of
    ``files`` links, directly or through one that is kept: what the dynamic loader would load
    when the rest is imported. Libraries opened later with dlopen (only on a GPU) are left out;
    so are headers and static archives there."""
    pruned = {f for f in files if f.split("/", 1)[0] in folders}
    by_soname = {Path(f).name: f for f in pruned if _is_shared_library(Path(f).name)}
    todo = [f for f in files if f not in pruned and _is_shared_library(Path(f).name)]
    kept: set[str] = set()
    while todo:
        for soname in _needed(site / todo.pop()):
            lib = by_soname.get(soname)
            if lib is not None and lib not in kept:
                kept.add(lib)
                todo.append(lib)
    return [
        f
        for f in files
        if f not in pruned or f in kept or (f.endswith(".py") and "/include/" not in f)
    ]


def current_images() -> list[Path]:
    """The kubeforge images last built, where they and their layers still exist (a layer of
    kubeforge's code is shared: building one image for newer sources replaces it)."""
    found = []
    for current in sorted(IMAGES.glob("*.current")):
        image = Path(current.read_text().strip())
        if image.name.endswith(IMAGE) and ready(image):
            found.append(image)
        else:
            log(f"not importing {image.name}: its build is gone (make images builds it again)")
    return found


def _cached_layer(
    name: str,
    inputs: str,
    files: list[tuple[Path, str]],
    bytecode: PycInvalidationMode | None = None,
) -> Path:
    """A layer of ``files`` (path, name in the image), owned by root, world-readable, with fixed
    times: the same inputs give the same layer. With ``bytecode``, the Python sources' bytecode
    goes in beside them (kfcluster.bytecode)."""
    out = _cached(f"layer-{name}", inputs)
    if out.exists():
        return out
    if bytecode is None:
        return _write_layer(out, files)
    for stale in IMAGES.glob("bytecode-*"):  # left by a build that was killed
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=IMAGES, prefix="bytecode-") as scratch:
        return _write_layer(out, with_bytecode(files, Path(scratch), bytecode))


def _write_layer(out: Path, files: list[tuple[Path, str]]) -> Path:
    tmp = out.with_name(f"{out.name}.{time.monotonic_ns()}.tmp")
    dirs = sorted({p for _, arc in files for p in Path(arc).parents if str(p) != "."})
    with tarfile.open(tmp, "w") as tar:
        for d in dirs:
            info = tarfile.TarInfo(d.as_posix())
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, arcname in files:
            info = tar.gettarinfo(str(path), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            info.mode = 0o755 if info.mode & 0o100 else 0o644
            with path.open("rb") as f:
                tar.addfile(info, f)
    tmp.rename(out)
    return out
