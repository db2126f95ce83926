"""The developer kit on real processes: launches that fail are stopped and explained, and
whatever was started is reaped at the end even when a fixture failed half-way."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from kubeforge_labs import kit

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]


def test_a_launch_that_never_gets_ready_is_stopped_and_explained(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as err:
        kit.launch("the sleeper", SLEEPER, tmp_path / "s.log", ready=lambda: False, timeout=1)
    text = str(err.value)
    assert "the sleeper did not start" in text
    assert "timed out after 1s" in text
    assert "up" in text  # the log's tail
    assert not [p for p in kit.started() if p.name == "the sleeper"]  # stopped, not left


def test_a_launch_that_exits_fails_at_once_with_its_log(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "import sys; print('no config file', flush=True); sys.exit(3)"]
    started = time.monotonic()
    with pytest.raises(RuntimeError) as err:
        kit.launch("the service", crash, tmp_path / "c.log", ready=lambda: False, timeout=30)
    assert time.monotonic() - started < 10  # not the whole timeout
    assert "exited with 3" in str(err.value)
    assert "no config file" in str(err.value)


def test_reap_all_stops_what_a_failed_fixture_left_behind(tmp_path: Path) -> None:
    first = kit.launch("runtime 1", SLEEPER, tmp_path / "1.log")
    second = kit.launch("runtime 2", SLEEPER, tmp_path / "2.log")
    kept = kit.launch("a daemon", SLEEPER, tmp_path / "3.log", keep=True)
    try:
        # this test's own processes only: a session's other processes are not the test's to stop
        assert kit.reap_all([first, second, kept]) == ["runtime 2", "runtime 1"]  # newest first
        assert not first.running
        assert not second.running
        assert kept.running  # a daemon meant to outlive the script is left alone
    finally:
        kept.stop()
    assert not kept.running


def test_a_process_group_goes_with_its_leader(tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    parent = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(child_pid)!r}, 'w').write(str(c.pid)); time.sleep(60)"
    )
    proc = kit.launch(
        "a parent", [sys.executable, "-c", parent], tmp_path / "p.log", new_session=True
    )
    pid = int(kit.wait_for("the child's pid", lambda: child_pid.read_text().strip(), 10))
    proc.stop()
    assert kit.wait_for(
        "the child to go", lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 10
    )


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_wait_for_returns_the_value_or_names_what_and_the_last_error() -> None:
    calls = iter([None, 0, "ready"])
    assert kit.wait_for("x", lambda: next(calls), 5, interval=0.01) == "ready"

    def broken() -> bool:
        raise ConnectionRefusedError("port 8080")

    with pytest.raises(kit.WaitTimeoutError) as err:
        kit.wait_for("the API", broken, 0.2, interval=0.05)
    assert "waiting for the API" in str(err.value)
    assert "ConnectionRefusedError: port 8080" in str(err.value)
    with pytest.raises(kit.WaitTimeoutError, match="the API: exited"):
        kit.wait_for("the API", lambda: False, 30, gone=lambda: "exited")


def test_kubectl_failures_carry_the_arguments_and_stderr(tmp_path: Path) -> None:
    fake = tmp_path / "kubectl"
    fake.write_text("#!/bin/sh\necho 'error: the server does not allow this' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(kit.KubectlError) as err:
        kit.kubectl("get", "pods", kubeconfig="kc", binary=fake)
    assert str(err.value) == "kubectl get pods: error: the server does not allow this"
    assert kit.kubectl("get", "pods", kubeconfig="kc", binary=fake, check=False) == ""


@pytest.mark.parametrize(
    ("host", "family"), [("127.0.0.1", "AF_INET"), ("::", "AF_INET6"), ("::1", "AF_INET6")]
)
def test_listening_addresses_names_where_a_port_listens(host: str, family: str) -> None:
    import socket

    with socket.socket(getattr(socket, family)) as s:
        try:
            s.bind((host, 0))
        except OSError as err:  # a machine without IPv6
            pytest.skip(f"cannot bind {host}: {err}")
        port = s.getsockname()[1]
        assert kit.listening_addresses(port) == set()  # bound, not listening yet
        s.listen()
        assert kit.listening_addresses(port) == {host}
