"""Checkpoints a preempted run can trust: which one to resume from, and stopping at a signal.

A training pod is stopped when Kueue preempts its workload (the Job is suspended and its pod
gets SIGTERM, then SIGKILL after the grace period). What we add to the transformers Trainer's
own checkpointing, and why:

- **a checkpoint at the signal**: SIGTERM asks the Trainer to save and stop after the step it is
  in (:class:`StopOnSignal`), so the next admission loses at most one step, not up to
  ``save_steps``;
- **only complete checkpoints are resumed**: the Trainer writes ``trainer_state.json`` last, so
  a checkpoint without a readable one was cut short (a kill while saving) and is skipped; the
  one before it (the Trainer keeps two) is used instead;
- **only checkpoints of the same run**: the directory records a fingerprint of what makes a
  checkpoint resumable (base model, data, method and shape settings). Checkpoints of another
  fingerprint are removed and the run starts over, saying why. Extending a run (more steps or
  epochs) keeps the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

FINGERPRINT = "kubeforge-checkpoints.json"
STATE = "trainer_state.json"
# settings that change what a checkpoint holds or how its data is laid out; the others (steps,
# epochs, how often to save) may change between a run and its continuation
RESUMABLE_KEYS = (
    "method",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "batch_size",
    "max_seq_length",
    "seed",
    "packing",
    "learning_rate",
)


class Preempted(RuntimeError):  # noqa: N818 - what happened, not an error of the run
    """Training stopped at a signal after saving a checkpoint."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped by a signal at step {step}; checkpoint-{step} saved")
        self.step = step


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Path | None  # None: start from the base model
    step: int
    restart_reason: str | None  # why checkpoints that were there are not used


def fingerprint(base_dir: Path, texts: list[str], settings: dict[str, Any]) -> str:
    h = hashlib.sha256()
    config = base_dir / "config.json"
    h.update(config.read_bytes() if config.exists() else b"")
    for text in texts:
        h.update(hashlib.sha256(text.encode()).digest())
    h.update(json.dumps({k: settings.get(k) for k in RESUMABLE_KEYS}, sort_keys=True).encode())
    return h.hexdigest()


def _step(path: Path) -> int:
    return int(path.name.split("-")[-1])


def _complete(path: Path) -> bool:
    try:
        state = json.loads((path / STATE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("global_step") == _step(path)


def checkpoints(checkpoint_dir: Path) -> list[Path]:
    """The Trainer's checkpoints in the directory, newest first."""
    found = [p for p in checkpoint_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return sorted(found, key=_step, reverse=True)


def resume_point(checkpoint_dir: Path, digest: str) -> ResumePoint:
    """The newest complete checkpoint of this run, or a fresh start with the reason."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    marker = checkpoint_dir / FINGERPRINT
    found = checkpoints(checkpoint_dir)
    recorded = json.loads(marker.read_text()).get("fingerprint") if marker.exists() else None
    reasons = []
    if found and recorded != digest:
        for path in found:
            shutil.rmtree(path, ignore_errors=True)
        reasons.append(
            "the checkpoints there were made from another base model, data or settings; "
            "starting over"
        )
        found = []
    marker.write_text(json.dumps({"fingerprint": digest}))
    for path in found:
        if _complete(path):
            return ResumePoint(path, _step(path), "; ".join(reasons) or None)
        reasons.append(f"{path.name} is incomplete (stopped while saving), not used")
    return ResumePoint(None, 0, "; ".join(reasons) or None)


def discard(point: ResumePoint, error: BaseException) -> str:
    """A checkpoint that failed to load: removed, with the reason to report."""
    assert point.checkpoint is not None
    shutil.rmtree(point.checkpoint, ignore_errors=True)
    return f"{point.checkpoint.name} could not be loaded ({type(error).__name__}: {error})"


_SIGNALLED = threading.Event()  # SIGTERM came (recorded by watch_sigterm's handler)


def watch_sigterm() -> None:
    """Record SIGTERM for the whole run (the container's PID 1 would otherwise ignore it):
    before training starts, training then stops after its first step with a checkpoint;
    during evaluation and registration, the run finishes what it is writing."""
    signal.signal(signal.SIGTERM, lambda signum, frame: _SIGNALLED.set())


class StopOnSignal:
    """While active, SIGTERM (or one that came before) makes the Trainer save a checkpoint and
    stop after the current step (``callback()``); ``stopped_at`` is that step, None when
    training ran to its end. Only in the main thread, where Python delivers signals."""

    def __init__(self) -> None:
        self.stepped = False  # a training step began (an error before it is the checkpoint's)
        self.stopped_at: int | None = None
        self._previous: Any = None

    @property
    def requested(self) -> bool:
        return _SIGNALLED.is_set()

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        _SIGNALLED.set()

    def callback(self) -> Any:
        from transformers import TrainerCallback

        stopper = self

        class _Stop(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                stopper.stepped = True

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if stopper.requested:
                    control.should_save = True
                    control.should_training_stop = True
                    stopper.stopped_at = int(state.global_step)
                    _SIGNALLED.clear()  # acted on: a later run in this process starts clean

        return _Stop()
