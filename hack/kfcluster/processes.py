"""The components as daemons: started in their own session with a pid file (they outlive the
command that started them), stopped by pid, waited on with the failure naming the component
and the tail of its log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kfcluster.binaries import bin_dir
from kfcluster.settings import STATE, ClusterError
from kubeforge_labs import kit


@dataclass
class Proc:
    name: str
    # a host program (Debian's containerd, socat); by default the cache's binary of that name
    exe: str | None = None

    @property
    def program(self) -> Path:
        return Path(self.exe) if self.exe else bin_dir() / self.name

    @property
    def pidfile(self) -> Path:
        return STATE / "run" / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return STATE / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # a zombie or a recycled pid is not ours
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        if stat.split(")")[-1].split()[0] == "Z" or not cmdline.endswith(
            self.program.name.encode()
        ):
            return None
        return pid

    def start(self, args: list[str]) -> None:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as logf:
            proc = subprocess.Popen(
                [str(self.program), *args],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=STATE,
            )
        self.pidfile.write_text(str(proc.pid))
        # until the child has exec'd, /proc shows the Python parent's command line
        deadline = time.monotonic() + 5
        while self.pid() is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self, timeout: float = 10) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.pid() is not None:
                os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def fail(component: str, why: str) -> ClusterError:
    proc = Proc(component)
    return ClusterError(
        f"{component} failed to start: {why}\n--- last lines of {proc.logfile} ---\n{proc.tail()}"
    )


def wait_for(component: str, check, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """``kit.wait_for`` on a component: it fails at once if the process exits, and the error
    names the component and shows its log's tail."""
    try:
        kit.wait_for(
            component,
            check,
            timeout,
            interval=0.25,
            gone=lambda: "the process exited" if Proc(component).pid() is None else None,
        )
    except kit.WaitTimeoutError as err:
        raise fail(component, str(err)) from None


def tcp_open(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def port_free(port: int) -> bool:
    return not tcp_open("127.0.0.1", port)
