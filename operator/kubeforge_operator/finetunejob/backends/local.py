"""Backend ``local``: the pipeline runs with kfp's local runner in a subprocess beside the
operator, for the embedded control plane and laptops, where pods cannot run containers.

Each run has a directory ``<local_runs_dir>/<namespace>/<name>-<uid8>`` holding its parameters,
log, checkpoints and, when it ends, ``result.json`` (the lineage, or the error). The directory is
the run's state: a restarted operator finds a finished run's result there, and restarts an
interrupted run, which resumes from its newest checkpoint (at most ``MAX_ATTEMPTS`` starts).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeforge_crds.contracts.pipeline import PipelineParams

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
RESULT = "result.json"
ATTEMPTS = "attempts"


@dataclass(frozen=True)
class LocalState:
    state: str  # Running | Succeeded | Failed
    reason: str
    message: str = ""
    result: dict[str, Any] | None = None
    log_path: Path | None = None


class LocalRuns:
    """The processes this operator started, by FineTuneJob uid. ``on_exit(namespace, name)`` is
    called when one ends, so that its FineTuneJob is reconciled at once."""

    def __init__(self) -> None:
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self.on_exit: Callable[[str, str], None] | None = None

    @staticmethod
    def run_dir(root: Path, namespace: str, name: str, uid: str) -> Path:
        return root / namespace / f"{name}-{uid[:8]}"

    def observe(
        self,
        root: Path,
        namespace: str,
        name: str,
        uid: str,
        params: PipelineParams,
        python: str | None = None,
    ) -> LocalState:
        """The run's state, starting (or restarting) it when nothing runs it."""
        run_dir = self.run_dir(root, namespace, name, uid)
        result_file = run_dir / RESULT
        log_path = run_dir / "run.log"
        with self._lock:
            if result_file.is_file():
                self._procs.pop(uid, None)
                return _finished(result_file, log_path)
            proc = self._procs.get(uid)
            if proc is not None and proc.poll() is None:
                return LocalState("Running", "PipelineRunning", f"log: {log_path}", None, log_path)
            attempts_file = run_dir / ATTEMPTS
            attempts = int(attempts_file.read_text()) if attempts_file.is_file() else 0
            if attempts >= MAX_ATTEMPTS:
                return LocalState(
                    "Failed",
                    "RunInterrupted",
                    f"the run stopped {attempts} times without a result; log: {log_path}",
                    None,
                    log_path,
                )
            run_dir.mkdir(parents=True, exist_ok=True)
            attempts_file.write_text(str(attempts + 1))
            self._procs[uid] = self._start(run_dir, log_path, params, python, namespace, name)
            message = f"started (attempt {attempts + 1}); log: {log_path}"
            return LocalState("Running", "PipelineStarted", message, None, log_path)

    def _start(
        self,
        run_dir: Path,
        log_path: Path,
        params: PipelineParams,
        python: str | None,
        namespace: str,
        name: str,
    ) -> subprocess.Popen[bytes]:
        if not params.checkpoint_uri:
            params = params.model_copy(update={"checkpoint_uri": str(run_dir / "checkpoints")})
        (run_dir / "params.json").write_text(params.to_json())
        work = run_dir / "work"
        shutil.rmtree(work, ignore_errors=True)  # a half-run's artifacts; checkpoints stay
        command = [
            python or sys.executable,
            "-m",
            "kubeforge_pipelines",
            "run",
            "--runner=kfp-local",
            f"--workdir={work}",
            f"--params-file={run_dir / 'params.json'}",
            f"--result={run_dir / RESULT}",
        ]
        with log_path.open("ab") as logf:
            proc = subprocess.Popen(
                command,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # not killed with the operator's terminal
            )
        log.info(
            "Started local pipeline run",
            extra={"object": f"{namespace}/{name}", "pid": proc.pid, "log": str(log_path)},
        )
        threading.Thread(
            target=self._wait, args=(proc, namespace, name), name=f"run-{name}", daemon=True
        ).start()
        return proc

    def _wait(self, proc: subprocess.Popen[bytes], namespace: str, name: str) -> None:
        proc.wait()
        if self.on_exit is not None:
            try:
                self.on_exit(namespace, name)
            except Exception:
                log.exception("Reconcile after a local run ended failed")

    def stop(self, uid: str) -> None:
        """Terminate a run (its FineTuneJob was deleted)."""
        with self._lock:
            proc = self._procs.pop(uid, None)
        if proc is not None and proc.poll() is None:
            proc.terminate()


def _finished(result_file: Path, log_path: Path) -> LocalState:
    try:
        result = json.loads(result_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return LocalState("Failed", "ResultUnreadable", f"{result_file}: {err}", None, log_path)
    if "error" in result:
        return LocalState("Failed", "PipelineFailed", str(result["error"]), result, log_path)
    return LocalState("Succeeded", "PipelineSucceeded", "", result, log_path)


LOCAL_RUNS = LocalRuns()
