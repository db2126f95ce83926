"""The developer kit that hack/, bench/, the process labs and the tests share: one ``wait_for``,
one ``kubectl``, one process launcher that reaps everything it started.

Standard library only: ``hack/localcluster.py`` imports it before any dependency is installed.

Every process ``launch`` starts is registered until it is stopped. ``reap_all`` stops whatever is
still running, newest first; it runs at interpreter exit and at the end of every pytest session
(``tests/conftest.py``), so a fixture that fails half-way (Prometheus missing, a port taken)
leaves no runtime, drift service or operator behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# what steers a pod to the local cluster's real node (its label and taint)
ON_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {"kubeforge.io/node": "real"},
    "tolerations": [
        {"key": "kubeforge.io/node", "operator": "Equal", "value": "real", "effect": "NoSchedule"}
    ],
}


class WaitTimeoutError(TimeoutError):
    """``wait_for`` gave up: the message says what it waited for and the last error seen."""


def wait_for(
    what: str,
    predicate: Callable[[], Any],
    timeout: float,
    interval: float = 0.3,
    gone: Callable[[], str | None] | None = None,
) -> Any:
    """Call ``predicate`` until it returns something truthy, and return that. An exception it
    raises counts as "not yet" (the last one is reported). ``gone`` may say why waiting is
    pointless (the process exited): then it gives up at once."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as err:
            last = f"{type(err).__name__}: {err}"
        why = gone() if gone is not None else None
        if why is not None:
            raise WaitTimeoutError(f"{what}: {why}" + (f" (last error: {last})" if last else ""))
        if time.monotonic() > deadline:
            raise WaitTimeoutError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f" (last error: {last})" if last else "")
            )
        time.sleep(interval)


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message has its arguments and stderr."""


def run_kubectl(
    *args: str,
    kubeconfig: str | Path,
    binary: str | Path = "kubectl",
    stdin: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against ``kubeconfig``, whatever it answers (stdout, stderr, exit code)."""
    return subprocess.run(
        [str(binary), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def kubectl(
    *args: str,
    kubeconfig: str | Path,
    binary: str | Path = "kubectl",
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> str:
    """Run kubectl against ``kubeconfig``; its stdout. Fails with ``KubectlError`` (its
    arguments and stderr) unless ``check`` is False."""
    proc = run_kubectl(*args, kubeconfig=kubeconfig, binary=binary, stdin=stdin, timeout=timeout)
    if check and proc.returncode != 0:
        raise KubectlError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at ``port`` (from /proc/net/tcp and tcp6):
    {"127.0.0.1"} for a server on loopback alone, {"0.0.0.0"} or {"::"} for every interface."""
    found = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with contextlib.suppress(FileNotFoundError), Path(table).open() as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, _, hexport = local.partition(":")
                if state != "0A" or int(hexport, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(addr)
                # the kernel writes each 32-bit word in the host's byte order
                if sys.byteorder == "little":
                    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
                found.add(str(ipaddress.ip_address(raw)))
    return found


def http_ok(url: str, timeout: float = 2) -> bool:
    """Whether GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Proc:
    """A process ``launch`` started: its name, the URL it serves (if any) and its log."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; to the whole process group when the process
        leads one (``launch(new_session=True)``: its children go with it)."""
        _forget(self)
        if not self.running:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if _leads_group(self.proc):
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)


_started: list[Proc] = []
_lock = threading.Lock()


def _forget(proc: Proc) -> None:
    with _lock:
        if proc in _started:
            _started.remove(proc)


def _leads_group(proc: subprocess.Popen[bytes]) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


def launch(
    name: str,
    cmd: Sequence[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    url: str = "",
    ready: Callable[[], Any] | None = None,
    timeout: float = 60,
    new_session: bool = False,
    keep: bool = False,
) -> Proc:
    """Start ``cmd`` (output appended to ``log``) and register it for ``reap_all``, unless
    ``keep`` (a daemon meant to outlive this process, stopped by its own ``down`` command). With
    ``ready``, return once it is truthy; if the process exits first or ``timeout`` passes, stop
    it and fail with the log's tail, naming ``name``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(cmd),
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=new_session,
        )
    proc = Proc(name, popen, log, url)
    if not keep:
        with _lock:
            _started.append(proc)
    if ready is None:
        return proc
    try:
        wait_for(
            name,
            ready,
            timeout,
            gone=lambda: None if proc.running else f"exited with {popen.returncode}",
        )
    except WaitTimeoutError as err:
        proc.stop()
        raise RuntimeError(f"{name} did not start: {err}\n--- {log} ---\n{proc.tail()}") from err
    return proc


def started() -> list[Proc]:
    """The launched processes not stopped yet (oldest first)."""
    with _lock:
        return list(_started)


def reap_all(among: list[Proc] | None = None) -> list[str]:
    """Stop every launched process not stopped yet (or those of them in ``among``), newest
    first; the names of those that were still running."""
    with _lock:
        left = [p for p in reversed(_started) if among is None or p in among]
    names = []
    for proc in left:
        if proc.running:
            names.append(proc.name)
        proc.stop(timeout=10)
    return names


atexit.register(reap_all)
