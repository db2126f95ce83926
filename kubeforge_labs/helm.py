"""Helm as hack/demo.py and the tests run it: the binary the local cluster builds from Helm's
module, with caches of its own, and the chart installed on the real node (hack/values-local.yaml).

Standard library only (hack/demo.py imports it).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from kubeforge_labs import kit

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kubeforge"
LOCAL_VALUES = REPO / "hack" / "values-local.yaml"
# what `kubectl apply -f crds/rbac` creates and the chart creates too (user-roles.yaml)
USER_ROLES = REPO / "crds" / "rbac"
HELM_HOME = REPO / ".cache" / "helm"


class HelmError(RuntimeError):
    """helm exited non-zero; the message has its arguments and output."""


def run_helm(
    helm: str | Path, *args: str, kubeconfig: str | Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    # Helm's caches and repository config of its own, not the user's
    env = {**os.environ, "HELM_CACHE_HOME": str(HELM_HOME / "cache")}
    env["HELM_CONFIG_HOME"] = str(HELM_HOME / "config")
    if kubeconfig:
        env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    if check and proc.returncode != 0:
        raise HelmError(f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def install_local(
    bin_dir: Path,
    kubeconfig: str | Path,
    release: str,
    namespace: str,
    watch: str,
    timeout: str = "5m",
    sets: Sequence[str] = (),
) -> None:
    """The chart as release ``release`` in ``namespace`` with hack/values-local.yaml, its
    operator reconciling the namespaces matching ``watch``; waits until its pods are ready.
    The user roles that ``kubectl apply -f crds/rbac`` made (the tests and the host-run demo
    apply them) are handed to Helm, which adopts only what it created."""
    kubectl = bin_dir / "kubectl"
    kit.kubectl(
        "delete",
        "-f",
        str(USER_ROLES),
        "--ignore-not-found",
        kubeconfig=kubeconfig,
        binary=kubectl,
    )
    run_helm(
        bin_dir / "helm",
        "upgrade",
        "--install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--create-namespace",
        "-f",
        str(LOCAL_VALUES),
        "--set",
        f"operator.watchNamespaces={{{watch}}}",
        *(arg for value in sets for arg in ("--set", value)),
        "--wait",
        f"--timeout={timeout}",
        kubeconfig=kubeconfig,
    )


def uninstall_local(bin_dir: Path, kubeconfig: str | Path, release: str, namespace: str) -> None:
    """Undo ``install_local``: the release, its namespace, and the user roles back as
    ``kubectl apply -f crds/rbac`` makes them."""
    run_helm(
        bin_dir / "helm",
        "uninstall",
        release,
        "-n",
        namespace,
        "--wait",
        kubeconfig=kubeconfig,
        check=False,
    )
    kubectl = bin_dir / "kubectl"
    kit.kubectl(
        "delete",
        "namespace",
        namespace,
        "--wait=false",
        "--ignore-not-found",
        kubeconfig=kubeconfig,
        binary=kubectl,
        check=False,
    )
    kit.kubectl(
        "apply",
        "--server-side",
        "-f",
        str(USER_ROLES),
        kubeconfig=kubeconfig,
        binary=kubectl,
        check=False,
    )
