"""``python -m kubeforge_runtimes serve``: the built-in model runtime (the container command of
kubeforge's ClusterServingRuntime). Every option also reads KUBEFORGE_RUNTIME_<OPTION>."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.callback()
def main() -> None:
    """kubeforge data-plane programs."""


@app.command("serve")
def serve_cmd(
    model_dir: Annotated[Path | None, typer.Option(help="Model directory.")] = None,
    model_name: Annotated[str | None, typer.Option(help="Name in the URLs.")] = None,
    model_format: Annotated[str | None, typer.Option(help="transformers, peft, sklearn.")] = None,
    namespace: Annotated[str | None, typer.Option(help="Metric label.")] = None,
    revision: Annotated[str | None, typer.Option(help="Metric label.")] = None,
    http_host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: all of the pod's).")
    ] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Default generation length.")] = None,
    error_rate: Annotated[float | None, typer.Option(help="Injected error share.")] = None,
    extra_latency_seconds: Annotated[float | None, typer.Option(help="Injected latency.")] = None,
    fault_control: Annotated[
        bool | None, typer.Option("--fault-control/--no-fault-control", help="PUT faults.")
    ] = None,
    adapter: Annotated[
        list[str] | None, typer.Option(help="NAME=URI of a LoRA adapter to load (repeatable).")
    ] = None,
) -> None:
    """Serve one model with the v1 and v2 inference protocols and Prometheus metrics."""
    given: dict[str, Any] = {k: v for k, v in locals().items() if v is not None}
    if adapter:
        pairs = [a.partition("=") for a in given.pop("adapter")]
        if any(not sep or not name for name, sep, _ in pairs):
            raise typer.BadParameter("expected NAME=URI", param_hint="--adapter")
        given["adapters"] = {name: uri for name, _, uri in pairs}
    from kubeforge_runtimes.models import ModelDirError
    from kubeforge_runtimes.server import RuntimeSettings, serve

    settings = RuntimeSettings(**given)
    try:
        serve(settings)
    except ModelDirError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err


drift_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The drift service.")
app.add_typer(drift_app, name="drift")


@drift_app.command("serve")
def drift_serve_cmd(
    config: Annotated[
        Path, typer.Option(envvar="KUBEFORGE_DRIFT_CONFIG", help="Monitor configuration (JSON).")
    ],
    host: Annotated[str, typer.Option(envvar="KUBEFORGE_DRIFT_HOST")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(envvar="KUBEFORGE_DRIFT_PORT")] = 8080,
    metrics_port: Annotated[
        int,
        typer.Option(
            envvar="KUBEFORGE_DRIFT_METRICS_PORT",
            help="Also serve /metrics alone on this port (0: only on --port).",
        ),
    ] = 0,
) -> None:
    """Receive KServe logger CloudEvents and export drift, bias and anomaly scores."""
    import logging

    import uvicorn

    from kubeforge_crds.contracts.drift import MonitorConfig
    from kubeforge_runtimes.drift.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = MonitorConfig.model_validate_json(config.read_text())
    except (OSError, ValueError) as err:
        typer.echo(f"error: {config}: {err}", err=True)
        raise typer.Exit(2) from err
    app = create_app(cfg)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=host, registry=app.state.service.metrics.registry)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _thresholds(items: list[str]) -> dict[str, float]:
    from kubeforge_crds.contracts.drift import ALL_METRICS

    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in ALL_METRICS:
            raise typer.BadParameter(
                f"{item!r}: expected METRIC=THRESHOLD with METRIC one of {', '.join(ALL_METRICS)}",
                param_hint="--metric",
            )
        try:
            out[name] = float(value)
        except ValueError as err:
            raise typer.BadParameter(
                f"{item!r}: {value!r} is not a number", param_hint="--metric"
            ) from err
    return out


@drift_app.command("report")
def drift_report_cmd(
    reference: Annotated[Path, typer.Option(help="Reference dataset (JSONL, CSV, Parquet).")],
    current: Annotated[Path, typer.Option(help="Current dataset with the same columns.")],
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("drift-report.html"),
    metric: Annotated[
        list[str] | None,
        typer.Option(help="METRIC=THRESHOLD, repeatable (default psi=0.2 ks=0.1)."),
    ] = None,
) -> None:
    """Write an HTML drift report of CURRENT against REFERENCE."""
    from kubeforge_runtimes.drift.reference import ReferenceError
    from kubeforge_runtimes.drift.report import ReportError, compare_files

    thresholds = _thresholds(metric or [])
    try:
        comparison = compare_files(reference, current, thresholds or None)
    except (ReportError, ReferenceError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    out.write_text(comparison.html())
    crossed = comparison.crossed()
    checks = len(comparison.scores)
    if crossed:
        typer.echo(f"drift found: {len(crossed)} of {checks} checks crossed their threshold")
        for line in crossed:
            typer.echo(f"  {line}")
    else:
        typer.echo(f"no drift: all {checks} checks within their thresholds")
    typer.echo(f"report: {out}")


@app.command("evaluate")
def evaluate_cmd(
    prompts: Annotated[Path, typer.Option(help="Prompt set (JSON Lines: prompt, reference).")],
    candidate: Annotated[
        str, typer.Option(help="Candidate's root URL (its OpenAI API is found under it).")
    ],
    stable: Annotated[
        str, typer.Option(help="Stable version's root URL (its OpenAI API is found under it).")
    ],
    model: Annotated[str, typer.Option(help="The model name both serve.")],
    max_tokens: Annotated[int, typer.Option(min=1, max=512, help="Tokens per answer.")] = 32,
    termination_log: Annotated[
        Path | None, typer.Option(help="Also write the report (or the error) here.")
    ] = None,
) -> None:
    """Score the candidate's and the stable version's answers to the prompt set (ROUGE-L)."""
    import json

    from kubeforge_crds.contracts.evaluation import PromptSetError
    from kubeforge_runtimes.evaluate import EvaluationError, run

    try:
        report = run(prompts, candidate, stable, model, max_tokens).model_dump_json()
    except (OSError, PromptSetError, EvaluationError) as err:
        message = f"{prompts}: {err}" if isinstance(err, PromptSetError) else str(err)
        if termination_log is not None:
            termination_log.write_text(json.dumps({"error": message[-2000:]}))
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from err
    if termination_log is not None:
        termination_log.write_text(report)
    typer.echo(report)


if __name__ == "__main__":
    app()
