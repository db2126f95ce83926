"""Preemptible fine-tuning on a tiny model: SIGTERM saves a checkpoint and stops, the next run
resumes from it and ends where an uninterrupted run ends; incomplete, corrupt and foreign
checkpoints are not resumed, and the run says why."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from kubeforge_pipelines import checkpoints, train
from kubeforge_pipelines.tinymodel import build_base_model, support_tickets

TEXTS = [r["text"] for r in support_tickets(64, seed=3)]
SETTINGS = train.TrainSettings(
    max_steps=8, batch_size=4, max_seq_length=32, learning_rate=1e-2, save_steps=100
)


@pytest.fixture(autouse=True)
def log_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Progress at every step, so that a test can send the signal at a step of its choice."""
    arguments = train.training_arguments
    monkeypatch.setattr(
        train, "training_arguments", lambda s, d, **kw: arguments(s, d, **kw | {"log_every": 1})
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_base_model(tmp_path_factory.mktemp("base") / "m", pretrain_steps=0)


def final_loss(base: Path, out: Path) -> float:
    model, tok = train.load_trained(base, out)
    return train.evaluate_texts(model, tok, TEXTS[:16], 32)["loss"]


def sigterm_at(step: int) -> Any:
    """A progress callback that sends this process SIGTERM once training logs ``step``."""

    def progress(event: dict[str, Any]) -> None:
        if event.get("step") == step:
            os.kill(os.getpid(), signal.SIGTERM)

    return progress


def test_a_preempted_run_resumes_and_ends_like_an_uninterrupted_one(
    base: Path, tmp_path: Path
) -> None:
    settings = SETTINGS.model_copy(update={"save_steps": 100})  # no interval checkpoint
    whole = train.fine_tune(base, TEXTS, tmp_path / "whole", tmp_path / "c1", settings)
    assert whole.steps == 8

    original = signal.getsignal(signal.SIGTERM)
    ckpt = tmp_path / "c2"
    with pytest.raises(checkpoints.Preempted) as stopped:
        train.fine_tune(base, TEXTS, tmp_path / "x", ckpt, settings, progress=sigterm_at(3))
    assert signal.getsignal(signal.SIGTERM) is original  # the handler is put back
    step = stopped.value.step
    assert 3 <= step < 8
    assert [p.name for p in checkpoints.checkpoints(ckpt)] == [f"checkpoint-{step}"]
    assert not (tmp_path / "x").exists()  # no model saved from a stopped run

    resumed = train.fine_tune(base, TEXTS, tmp_path / "resumed", ckpt, settings)
    assert (resumed.resumed_from, resumed.resumed_from_step) == (f"checkpoint-{step}", step)
    assert resumed.steps == whole.steps  # the same number of optimizer steps in all
    assert resumed.restart_reason is None
    before, after = final_loss(base, tmp_path / "whole"), final_loss(base, tmp_path / "resumed")
    assert after == pytest.approx(before, rel=0.05)


def _fake_checkpoint(ckpt: Path, step: int, complete: bool = True) -> Path:
    path = ckpt / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / checkpoints.STATE).write_text(json.dumps({"global_step": step}))
    return path


def test_an_incomplete_checkpoint_is_skipped_for_the_one_before(tmp_path: Path) -> None:
    _fake_checkpoint(tmp_path, 2)
    _fake_checkpoint(tmp_path, 4, complete=False)  # killed while saving
    (tmp_path / checkpoints.FINGERPRINT).write_text(json.dumps({"fingerprint": "f"}))
    point = checkpoints.resume_point(tmp_path, "f")
    assert (point.checkpoint, point.step) == (tmp_path / "checkpoint-2", 2)
    assert point.restart_reason == "checkpoint-4 is incomplete (stopped while saving), not used"


def test_checkpoints_of_another_run_are_removed_and_the_run_starts_over(tmp_path: Path) -> None:
    _fake_checkpoint(tmp_path, 2)
    (tmp_path / checkpoints.FINGERPRINT).write_text(json.dumps({"fingerprint": "other"}))
    point = checkpoints.resume_point(tmp_path, "mine")
    assert (point.checkpoint, point.step) == (None, 0)
    assert "made from another base model, data or settings; starting over" in (
        point.restart_reason or ""
    )
    assert not (tmp_path / "checkpoint-2").exists()
    assert json.loads((tmp_path / checkpoints.FINGERPRINT).read_text()) == {"fingerprint": "mine"}


def test_the_fingerprint_ignores_how_long_the_run_is_but_not_its_shape(base: Path) -> None:
    one = checkpoints.fingerprint(base, TEXTS, SETTINGS.model_dump())
    longer = SETTINGS.model_copy(update={"max_steps": 20, "epochs": 3, "save_steps": 5})
    assert checkpoints.fingerprint(base, TEXTS, longer.model_dump()) == one
    wider = SETTINGS.model_copy(update={"lora_r": 16})
    assert checkpoints.fingerprint(base, TEXTS, wider.model_dump()) != one
    assert checkpoints.fingerprint(base, TEXTS[1:], SETTINGS.model_dump()) != one


def test_a_corrupt_checkpoint_is_dropped_and_the_run_starts_over(
    base: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "c"
    digest = checkpoints.fingerprint(base, TEXTS, SETTINGS.model_dump())
    bad = _fake_checkpoint(ckpt, 3)
    (bad / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    (ckpt / checkpoints.FINGERPRINT).write_text(json.dumps({"fingerprint": digest}))
    result = train.fine_tune(base, TEXTS, tmp_path / "out", ckpt, SETTINGS)
    assert result.steps == 8
    assert (result.resumed_from, result.resumed_from_step) == (None, 0)
    assert (result.restart_reason or "").startswith("checkpoint-3 could not be loaded (")


def test_a_signal_before_training_stops_it_after_its_first_step(base: Path, tmp_path: Path) -> None:
    """SIGTERM while the data is prepared or the model loads (PID 1 would ignore it): recorded,
    and training saves and stops after one step instead of running to the grace period's end."""
    original = signal.getsignal(signal.SIGTERM)
    try:
        checkpoints.watch_sigterm()
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(checkpoints.Preempted) as stopped:
            train.fine_tune(base, TEXTS, tmp_path / "x", tmp_path / "c", SETTINGS)
        assert stopped.value.step == 1
        assert (tmp_path / "c" / "checkpoint-1" / checkpoints.STATE).is_file()
    finally:
        signal.signal(signal.SIGTERM, original)
    # the signal was acted on: the next run in this process trains to its end
    assert train.fine_tune(base, TEXTS, tmp_path / "y", tmp_path / "c", SETTINGS).steps == 8
