"""``python -m kubeforge_pipelines``: compile the pipeline, build the tiny demo model and data,
and run the pipeline (kfp's local runner, or the steps in this process as the Job backend does)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True)
# a run stopped by SIGTERM (preempted), its checkpoint saved: as a shell reports a SIGTERM
PREEMPTED_EXIT = 143


@app.command()
def compile(
    check: Annotated[bool, typer.Option(help="Fail if the committed IR is stale.")] = False,
) -> None:
    """Compile the pipeline to kubeforge_pipelines/compiled/finetune.yaml."""
    import tempfile

    from kubeforge_pipelines.pipeline import COMPILED, compile_pipeline

    if not check:
        console.print(f"wrote {compile_pipeline()}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_pipeline(Path(tmp) / "finetune.yaml").read_text()
    if not COMPILED.is_file() or COMPILED.read_text() != fresh:
        console.print(f"[red]{COMPILED} is stale: run `python -m kubeforge_pipelines compile`")
        raise typer.Exit(1)
    console.print(f"{COMPILED} is up to date")


@app.command("build-base-model")
def build_base_model(
    target: Path,
    pretrain_steps: Annotated[int, typer.Option(help="Steps of pretraining.")] = 150,
) -> None:
    """Build the tiny GPT-2 base model (tokenizer and weights) into TARGET."""
    from kubeforge_pipelines.tinymodel import build_base_model as build

    build(target, pretrain_steps=pretrain_steps)
    console.print(f"base model written to {target}")


@app.command("make-dataset")
def make_dataset(
    target: Path,
    rows: Annotated[int, typer.Option(help="Number of tickets.")] = 400,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    products: Annotated[str, typer.Option(help="Comma-separated product mix.")] = "",
) -> None:
    """Write the synthetic support-ticket dataset (JSONL) to TARGET."""
    from kubeforge_pipelines.tinymodel import support_tickets, write_dataset

    mix = [p for p in products.split(",") if p] or None
    write_dataset(target, support_tickets(rows, seed=seed, products=mix))
    console.print(f"{rows} rows written to {target}")


def _load_params(params_file: Path | None, params_json: str | None) -> Any:
    from kubeforge_crds.contracts.pipeline import PipelineParams

    if params_json:
        return PipelineParams.model_validate_json(params_json)
    if params_file:
        return PipelineParams.model_validate_json(params_file.read_text())
    raise typer.BadParameter("give --params-file or --params-json")


def _progress(event: dict[str, Any]) -> None:
    console.print_json(json.dumps(event)) if "step" in event and len(event) > 1 else None
    if len(event) == 1:
        console.rule(f"[bold]{event['step']}")


@app.command()
def run(
    workdir: Annotated[Path, typer.Option(help="Scratch and pipeline-root directory.")],
    params_file: Annotated[Path | None, typer.Option(help="PipelineParams JSON file.")] = None,
    params_json: Annotated[str | None, typer.Option(help="PipelineParams as JSON.")] = None,
    runner: Annotated[
        str, typer.Option(help="kfp-local (kfp's local runner) or steps (in this process).")
    ] = "kfp-local",
    result: Annotated[Path | None, typer.Option(help="Write the lineage JSON here.")] = None,
    termination_log: Annotated[
        Path | None, typer.Option(help="Write a short summary here (a pod's termination log).")
    ] = None,
    run_id: Annotated[str, typer.Option(help="Run id recorded in lineage.")] = "",
) -> None:
    """Run the fine-tuning pipeline once; exits non-zero with the reason on failure."""
    from kubeforge_pipelines import checkpoints, steps

    params = _load_params(params_file, params_json)
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoints.watch_sigterm()
    try:
        if runner == "steps":
            lineage = steps.run_all(
                params, workdir, run_id or f"steps-{uuid.uuid4().hex[:8]}", _progress
            )
        elif runner == "kfp-local":
            from kubeforge_pipelines.local import run_local

            lineage = run_local(params, workdir)
        else:
            raise typer.BadParameter(f"unknown runner {runner!r} (kfp-local or steps)")
    except checkpoints.Preempted as stop:  # the pod is going away; its checkpoint stays
        if termination_log:
            termination_log.write_text(json.dumps({"preempted": {"step": stop.step}}))
        console.print(f"[yellow]preempted: {stop}")
        raise typer.Exit(PREEMPTED_EXIT) from stop
    except Exception as err:  # every failure ends as one clear line for status
        message = f"{type(err).__name__}: {err}"
        if result:
            result.write_text(json.dumps({"error": message}))
        if termination_log:
            termination_log.write_text(json.dumps({"error": message})[:4096])
        console.print(f"[red]failed: {message}")
        raise typer.Exit(1) from err
    if result:
        result.write_text(json.dumps(lineage, indent=2, sort_keys=True))
    if termination_log:
        termination_log.write_text(steps.summary(lineage))
    if "model" not in lineage:  # a worker of a distributed run: rank 0 registers
        console.rule(f"[bold green]trained ({lineage.get('training', {}).get('steps')} steps)")
        return
    console.rule("[bold green]registered")
    console.print_json(
        json.dumps(
            {
                "model": lineage["model"],
                "metrics": lineage["metrics"],
                "metricsBefore": lineage["metricsBefore"],
            }
        )
    )


@app.command("validate")
def validate_cmd(
    params_file: Annotated[Path | None, typer.Option(help="PipelineParams JSON file.")] = None,
    params_json: Annotated[str | None, typer.Option(help="PipelineParams as JSON.")] = None,
    termination_log: Annotated[
        Path | None, typer.Option(help="Write the result here (a pod's termination log).")
    ] = None,
) -> None:
    """Check the dataset, the base model and the method without training."""
    from kubeforge_pipelines import steps

    params = _load_params(params_file, params_json)
    try:
        result = steps.validate(params)
    except Exception as err:
        message = f"{type(err).__name__}: {err}"
        if termination_log:
            termination_log.write_text(json.dumps({"error": message})[:4096])
        console.print(f"[red]invalid: {message}")
        raise typer.Exit(1) from err
    if termination_log:
        termination_log.write_text(json.dumps(result, sort_keys=True)[:4096])
    console.print_json(json.dumps(result))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
