"""Running the compiled pipeline with kfp's local runner, on this machine's interpreter.

``SubprocessRunner(use_venv=False)`` runs each component as a subprocess of the current Python,
so the components import the installed kubeforge; nothing is installed or downloaded at run time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kubeforge_crds.contracts.pipeline import PipelineParams


class PipelineStepError(RuntimeError):
    def __init__(self, step: str, error: str) -> None:
        self.step = step
        super().__init__(f"step {step} failed: {error}")


def run_local(params: PipelineParams, workdir: Path) -> dict[str, Any]:
    """Run the pipeline; returns the registered version's lineage."""
    from kfp import local

    from kubeforge_pipelines.pipeline import finetune_pipeline, pipeline_arguments
    from kubeforge_pipelines.steps import ERROR_FILE_ENV

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workdir / "pipeline-root"),
        raise_on_error=True,
    )
    error_file = workdir / "error.json"
    error_file.unlink(missing_ok=True)
    os.environ[ERROR_FILE_ENV] = str(error_file)  # the component subprocesses inherit it
    try:
        task = finetune_pipeline(**pipeline_arguments(params.to_json()))
    except RuntimeError as err:
        if error_file.is_file():
            reason = json.loads(error_file.read_text())
            raise PipelineStepError(reason["step"], reason["error"]) from err
        raise
    finally:
        os.environ.pop(ERROR_FILE_ENV, None)
    lineage: dict[str, Any] = json.loads(task.output)
    return lineage
