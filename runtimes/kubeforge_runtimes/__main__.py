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
    http_port: Annotated[int | None, typer.Option(help="HTTP port.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Default generation length.")] = None,
    error_rate: Annotated[float | None, typer.Option(help="Injected error share.")] = None,
    extra_latency_seconds: Annotated[float | None, typer.Option(help="Injected latency.")] = None,
    fault_control: Annotated[
        bool | None, typer.Option("--fault-control/--no-fault-control", help="PUT faults.")
    ] = None,
) -> None:
    """Serve one model with the v1 and v2 inference protocols and Prometheus metrics."""
    given: dict[str, Any] = {k: v for k, v in locals().items() if v is not None}
    from kubeforge_runtimes.models import ModelDirError
    from kubeforge_runtimes.server import RuntimeSettings, serve

    settings = RuntimeSettings(**given)
    try:
        serve(settings)
    except ModelDirError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err


if __name__ == "__main__":
    app()
