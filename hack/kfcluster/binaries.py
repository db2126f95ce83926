"""The control-plane binaries, built from the pinned Go modules under hack/tools into a cache
keyed by the modules' digest (built once per set of versions)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from kfcluster.settings import BINARIES, BUILD_TAGS, CACHE, HACK, TOOLS, ClusterError, log


def _tool_digest() -> str:
    h = hashlib.sha256()
    for mod in sorted(TOOLS.glob("*/go.mod")):
        for f in (mod, mod.with_name("go.sum")):
            h.update(f.relative_to(TOOLS).as_posix().encode())
            h.update(f.read_bytes())
    h.update(json.dumps([BINARIES, BUILD_TAGS], sort_keys=True).encode())
    h.update(b"version-ldflags-2")  # binaries built before version_ldflags() are rebuilt
    return h.hexdigest()[:16]


def bin_dir() -> Path:
    return CACHE / "bin" / _tool_digest()


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", "local")
    # go.sum is committed: a missing checksum is an error, never a silent edit of hack/tools
    env["GOFLAGS"] = "-mod=readonly -buildvcs=false"
    env["CGO_ENABLED"] = "0"
    return env


def build_env(scratch: Path) -> dict[str, str]:
    """The Go command's environment for a build of the binaries: its build and module caches in
    ``scratch``, removed once the binaries are built (``remove_build_caches``). Kept in the
    user's caches they held 21 GB (13 GB of compiled packages, 8 GB of module sources) after
    one build, on the disk the real node's kubelet watches; the binaries themselves are cached
    by version (``bin_dir``), so a build happens once per set of versions and a later one
    would rarely reuse them. A version bump rebuilds from the proxy's modules, as a fresh
    machine does."""
    return go_env() | {"GOCACHE": str(scratch / "build"), "GOMODCACHE": str(scratch / "mod")}


def remove_build_caches(scratch: Path, env: dict[str, str]) -> None:
    """Remove a build's own caches (``build_env``): the module cache's files are read-only,
    which only the Go command removes for a user without root."""
    if Path(env["GOMODCACHE"]).exists():
        try:
            subprocess.run(
                ["go", "clean", "-modcache"], env=env, cwd=scratch.parent, capture_output=True
            )
        except OSError as err:  # never in place of the build's own error
            log(f"go clean -modcache failed: {err}")
    shutil.rmtree(scratch, ignore_errors=True)
    if scratch.exists():
        log(f"could not remove the Go build caches in {scratch}; remove them by hand")


def build(force: bool = False) -> Path:
    """Build every binary into the cache, once per set of pinned versions."""
    out = bin_dir()
    if not force and all((out / b).exists() for b in BINARIES):
        return out
    if shutil.which("go") is None:
        raise ClusterError("Go is needed to build the control plane; install Go 1.25 or newer")
    # a folder of this process's own: two checkouts building at once never share one; the last
    # to finish finds the set already there and drops its copy
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)
    started = time.monotonic()
    # the Go caches beside it, not in it: nothing of theirs can be renamed into the cache
    scratch = Path(tempfile.mkdtemp(prefix=f"{out.name}.go-", dir=out.parent))
    env = build_env(scratch)
    try:
        for (module, tags), names in _build_groups().items():
            _build_group(module, tags, names, tmp, env)
    except BaseException:
        remove_build_caches(scratch, env)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    remove_build_caches(scratch, env)
    (tmp / "BUILD_SECONDS").write_text(f"{time.monotonic() - started:.0f}\n")
    if force:
        shutil.rmtree(out, ignore_errors=True)
    try:
        tmp.rename(out)
    except OSError:  # another build finished first: its binaries are the same
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"binaries ready in {out} ({time.monotonic() - started:.0f}s)")
    return out


def _build_groups() -> dict[tuple[str, str], list[str]]:
    """The binaries by module and build tags: one `go build` each, so that the Go command
    compiles and links them in parallel (linking is single-threaded, and the six Kubernetes
    binaries share most of their packages)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, (module, _package) in BINARIES.items():
        groups.setdefault((module, BUILD_TAGS.get(name, "")), []).append(name)
    return groups


def _default_name(package: str) -> str:
    """The file `go build -o <dir>/` writes a main package to: its last path element, or the
    one before a major-version suffix (go.etcd.io/etcd/server/v3 -> server)."""
    parts = package.split("/")
    last = parts[-1]
    if len(parts) > 1 and last[:1] == "v" and last[1:].isdigit() and int(last[1:]) >= 2:
        return parts[-2]
    return last


def _build_group(module: str, tags: str, names: list[str], tmp: Path, env: dict[str, str]) -> None:
    packages = [BINARIES[n][1] for n in names]
    log(f"building {', '.join(names)} (hack/tools/{module})")
    t0 = time.monotonic()
    where = tmp / f".{module}"
    where.mkdir()
    cmd = [
        "go",
        "build",
        "-trimpath",
        *([f"-tags={tags}"] if tags else []),
        f"-ldflags=-s -w {version_ldflags(module)}".strip(),
        "-o",
        f"{where}/",
        *packages,
    ]
    proc = subprocess.run(cmd, cwd=TOOLS / module, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"building {', '.join(names)} failed:\n{proc.stderr[-4000:]}")
    for name, package in zip(names, packages, strict=True):
        (where / _default_name(package)).rename(tmp / name)
    where.rmdir()
    log(f"built {', '.join(names)} in {time.monotonic() - t0:.0f}s")


def version_ldflags(module: str) -> str:
    """The Kubernetes binaries report the version they were built from (as release builds do),
    not v0.0.0-master: `kubectl version`, discovery and Helm's kubeVersion checks read it.
    Helm gets what its own Makefile sets: its version, and the Kubernetes version `helm template`
    and `helm lint` assume (that of its client-go), without which they assume v1.20."""
    if module == "helm":
        helm = tool_version("helm", "helm.sh/helm/v3")
        client_minor = tool_version("helm", "k8s.io/client-go").split(".")[1]
        return " ".join(
            [f"-X helm.sh/helm/v3/internal/version.version={helm}"]
            + [
                f"-X helm.sh/helm/v3/pkg/{pkg}.{key}={value}"
                for pkg in ("lint/rules", "chartutil")
                for key, value in (("k8sVersionMajor", "1"), ("k8sVersionMinor", client_minor))
            ]
        )
    if module == "kueue":  # as its Makefile does: the version its metrics and logs report
        kueue = tool_version("kueue", "sigs.k8s.io/kueue")
        return f"-X sigs.k8s.io/kueue/pkg/version.GitVersion={kueue}"
    if module != "k8s":
        return ""
    version = tool_version("k8s", "k8s.io/kubernetes")
    major, minor = version.lstrip("v").split(".")[:2]
    base = "k8s.io/component-base/version"
    return " ".join(
        f"-X {pkg}.{key}={value}"
        for pkg in (base, "k8s.io/client-go/pkg/version")
        for key, value in (
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        )
    )


def module_dir(module: str, version: str) -> Path:
    """Download a pinned Go module through the module proxy (checksum-verified) and return its
    directory in the module cache."""
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        env=go_env(),
        capture_output=True,
        text=True,
        cwd=str(Path.home()),
    )
    info = json.loads(proc.stdout or "{}")
    if proc.returncode != 0 or "Dir" not in info:
        raise ClusterError(
            f"cannot download {module}@{version}: {info.get('Error') or proc.stderr}"
        )
    return Path(info["Dir"])


def tool_version(module_dir_name: str, module: str) -> str:
    for line in (TOOLS / module_dir_name / "go.mod").read_text().splitlines():
        parts = line.split("//", 1)[0].split()
        if parts[:1] == ["require"]:  # a one-line require
            parts = parts[1:]
        if len(parts) == 2 and parts[0] == module and parts[1].startswith("v"):
            return parts[1]
    raise ClusterError(f"{module} is not pinned in hack/tools/{module_dir_name}/go.mod")


def thirdparty_crd_files() -> list[Path]:
    """The third-party CRD manifests named in hack/thirdparty-crds.txt, from their modules."""
    files = []
    for line in (HACK / "thirdparty-crds.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        modver, path = line.split()
        module, version = modver.split("@")
        f = module_dir(module, version) / path
        if not f.exists():
            raise ClusterError(f"{path} is not in {module}@{version}")
        files.append(f)
    return files
