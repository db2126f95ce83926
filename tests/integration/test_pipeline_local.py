"""The fine-tuning pipeline run for real with kfp's local runner (each component a subprocess of
this interpreter), on the tiny model and dataset the project builds: it trains, the held-out
loss falls, and a version with lineage and model card is registered. A bad dataset fails in the
prepare step with the row and field named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubeforge_crds.contracts.pipeline import PipelineParams
from kubeforge_pipelines.local import PipelineStepError, run_local

pytestmark = pytest.mark.no_cluster  # real processes only: run beside the cluster's tests

SETTINGS = {
    "method": "lora",
    "target_modules": ["c_attn", "c_proj", "c_fc"],
    "max_steps": 40,
    "batch_size": 8,
    "max_seq_length": 64,
    "learning_rate": 0.002,
    "save_steps": 20,
}


def params(base: Path, dataset: Path, out: Path, **extra: object) -> PipelineParams:
    return PipelineParams(
        base_model_uri=f"file://{base}",
        dataset_uri=f"file://{dataset}",
        output_uri=f"file://{out}",
        model_name="tickets",
        settings=SETTINGS,
        run_info={"backend": "local"},
        **extra,  # type: ignore[arg-type]
    )


def run_steps_cli(p: PipelineParams, workdir: Path, term: Path, *extra: str) -> int:
    """The pipeline CLI as the Job backend's container runs it; its exit code."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubeforge_pipelines",
            "run",
            "--runner=steps",
            f"--workdir={workdir}",
            f"--params-json={p.to_json()}",
            f"--termination-log={term}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise AssertionError(proc.stderr[-3000:])
    return proc.returncode


def write_prompts(path: Path, lines: list[str] | None = None) -> Path:
    """A prompt set: the tickets' (the ModelServer evaluation's format), or ``lines``."""
    from kubeforge_labs.models import ticket_prompts

    lines = lines if lines is not None else [json.dumps(p) for p in ticket_prompts(8)]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_local_pipeline_trains_evaluates_and_registers(
    tiny_base_model: Path, tickets_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "models"
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    p = params(
        tiny_base_model, tickets_dataset, out, merge_adapter=True,
        eval_prompts_uri=str(prompts), eval_max_tokens=8,
    )  # fmt: skip
    lineage = run_local(p, tmp_path / "work")
    assert lineage["model"]["version"] == "v1"
    assert lineage["metrics"]["loss"] < lineage["metricsBefore"]["loss"] - 0.5
    # the prompt set scored with ROUGE-L, the tuned model's and its base's
    assert 0 <= lineage["metricsBefore"]["rougeL"] <= 1
    assert 0 <= lineage["metrics"]["rougeL"] <= 1
    version = out / "v1"
    # the run's record (steps, the loss curve) is the lineage's and, for the status, the answer's
    assert json.loads((version / "lineage.json").read_text()) == {
        k: v for k, v in lineage.items() if k != "training"
    }
    assert lineage["run"]["training"] == lineage["training"]
    assert len(lineage["training"]["lossCurve"]) >= 4
    assert lineage["dataset"]["rows"] == 400
    assert (version / "adapter" / "adapter_model.safetensors").is_file()
    assert (version / "merged" / "model.safetensors").is_file()
    assert "# tickets v1" in (version / "README.md").read_text()
    # evaluate logged its metrics on a kfp Metrics artifact, as the KFP UI shows them
    (executor_output,) = (tmp_path / "work" / "pipeline-root").glob(
        "*/evaluate/executor_output.json"
    )
    logged = json.loads(executor_output.read_text())["artifacts"]["metrics"]["artifacts"][0]
    assert logged["metadata"]["loss"] == pytest.approx(lineage["metrics"]["loss"])
    assert logged["metadata"]["base_loss"] == pytest.approx(lineage["metricsBefore"]["loss"])
    assert logged["metadata"]["rougeL"] == pytest.approx(lineage["metrics"]["rougeL"])


def test_bad_dataset_fails_in_prepare_naming_row_and_field(
    tiny_base_model: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "fine too"}\n{"body": "no text"}\n')
    with pytest.raises(PipelineStepError) as err:
        run_local(params(tiny_base_model, bad, tmp_path / "models"), tmp_path / "work")
    assert err.value.step == "prepare"
    assert "row 3: field 'text' is missing (fields: body)" in str(err.value)
    assert not (tmp_path / "models").exists()


def test_cli_runs_the_steps_in_process_as_the_job_backend_does(
    tiny_base_model: Path, tickets_dataset: Path, tmp_path: Path
) -> None:
    p = params(tiny_base_model, tickets_dataset, tmp_path / "models")
    term = tmp_path / "termination-log"
    assert run_steps_cli(p, tmp_path / "work", term, "--run-id=job-abc") == 0, term.read_text()
    summary = json.loads(term.read_text())
    assert summary["model"]["version"] == "v1"
    assert summary["metrics"]["loss"] > 0
    lineage = json.loads((tmp_path / "models" / "v1" / "lineage.json").read_text())
    assert lineage["run"]["id"] == "job-abc"
    assert summary["datasetDigest"] == lineage["dataset"]["sha256"]


def test_a_malformed_prompt_set_fails_validation_naming_the_field_and_line(
    tiny_base_model: Path, tickets_dataset: Path, tmp_path: Path
) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", ['{"prompt": "a", "reference": "b"}', "{oops"])
    for uri, said in [
        (str(prompts), "spec.evaluation.promptsUri: line 2: not JSON"),
        (str(tmp_path / "none.jsonl"), "spec.evaluation.promptsUri: 'file://"),
    ]:
        p = params(tiny_base_model, tickets_dataset, tmp_path / "models", eval_prompts_uri=uri)
        term = tmp_path / "termination-log"
        proc = subprocess.run(
            [sys.executable, "-m", "kubeforge_pipelines", "validate",
             f"--params-json={p.to_json()}", f"--termination-log={term}"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 1
        assert said in json.loads(term.read_text())["error"]


def test_cli_failure_writes_the_reason_to_the_termination_log(tmp_path: Path) -> None:
    p = params(tmp_path / "no-model", tmp_path / "no-data.jsonl", tmp_path / "models")
    term = tmp_path / "termination-log"
    assert run_steps_cli(p, tmp_path / "work", term) == 1
    assert "no such file" in json.loads(term.read_text())["error"]
