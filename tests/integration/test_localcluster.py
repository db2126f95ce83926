"""The local control plane's own promises: starting twice and stopping a stopped cluster are
harmless, and a failed start names the component, shows its log and leaves nothing running."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kubeforge_labs.kit import free_port
from tests.cases import REPO
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.usefixtures("local_cluster")
SCRIPT = [sys.executable, str(REPO / "hack" / "localcluster.py")]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_starting_a_running_cluster_is_harmless(cluster: Cluster) -> None:
    proc = _run("up")
    assert proc.returncode == 0, proc.stderr
    assert "already running" in proc.stderr
    assert _run("status").returncode == 0


def test_stopping_a_stopped_cluster_is_harmless(tmp_path: Path) -> None:
    env = {"KUBEFORGE_CLUSTER_DIR": str(tmp_path / "never-started")}
    for _ in range(2):
        proc = _run("down", env=env)
        assert proc.returncode == 0, proc.stderr
    assert _run("status", env=env).returncode == 1  # and status says it is not running


def _free_port_pair() -> int:
    """A free port whose successor is free too: etcd listens for peers on port + 1."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two adjacent free ports")


def test_a_failed_start_names_the_component_and_cleans_up(tmp_path: Path) -> None:
    env = {
        "KUBEFORGE_CLUSTER_DIR": str(tmp_path / "broken"),
        "KUBEFORGE_APISERVER_PORT": str(free_port()),
        "KUBEFORGE_ETCD_PORT": str(_free_port_pair()),
        "KUBEFORGE_APISERVER_EXTRA_ARGS": "--no-such-flag=1",
    }
    proc = _run("up", env=env)
    assert proc.returncode == 1
    assert "kube-apiserver failed to start" in proc.stderr
    assert "unknown flag: --no-such-flag" in proc.stderr  # the end of its log
    pids = list((tmp_path / "broken" / "run").glob("*.pid"))
    assert pids == []  # etcd, started first, was stopped again


def test_credentials_are_readable_by_their_owner_only(cluster: Cluster) -> None:
    """The apiserver's token file and every kubeconfig hold credentials: mode 0600."""
    if not cluster.local:
        pytest.skip("the embedded control plane's files; this run uses another cluster")
    state = Path(cluster.kubeconfig).parent
    files = [state / "tokens.csv", state / "tokens.json", *state.glob("kubeconfig*")]
    assert len(files) > 3
    for path in files:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
