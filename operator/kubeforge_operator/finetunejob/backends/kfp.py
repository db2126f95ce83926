"""Backend ``kfp``: the compiled pipeline submitted as a run to the Kubeflow Pipelines API named
in the operator's settings, through ``kfp.Client``, and the run's state mirrored into status.

Submission is idempotent: the run's display name is derived from the FineTuneJob's uid, and an
existing run of that name is adopted rather than submitted again (a status write that failed
after a submission must not start a second training run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeforge_crds.contracts.pipeline import PipelineParams

# KFP v2beta1 runtime states -> FineTuneJob phases
_STATES = {
    "PENDING": "Queued",
    "RUNTIME_STATE_UNSPECIFIED": "Queued",
    "PAUSED": "Queued",
    "RUNNING": "Running",
    "CANCELING": "Running",
    "SUCCEEDED": "Succeeded",
    "SKIPPED": "Succeeded",
    "FAILED": "Failed",
    "CANCELED": "Failed",
}


class KfpError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Submission:
    """What is sent to the KFP API: everything up to the client call, pure and testable."""

    run_name: str
    experiment: str
    package_path: str
    arguments: dict[str, Any]


def submission(
    params: PipelineParams, namespace: str, name: str, uid: str, experiment: str
) -> Submission:
    from kubeforge_pipelines.pipeline import COMPILED, pipeline_arguments

    return Submission(
        run_name=f"{namespace}.{name}.{uid[:8]}",
        experiment=experiment,
        package_path=str(COMPILED),
        arguments=pipeline_arguments(params.to_json()),
    )


def phase_of(state: str | None) -> str:
    return _STATES.get((state or "").upper(), "Queued")


def _client(host: str) -> Any:
    import kfp

    return kfp.Client(host=host)


def submit_or_adopt(host: str, sub: Submission) -> str:
    """The run id of the run named ``sub.run_name``, submitting it if there is none."""
    try:
        client = _client(host)
        found = client.list_runs(
            page_size=1,
            filter=(
                '{"predicates": [{"key": "display_name", "operation": "EQUALS", '
                f'"string_value": "{sub.run_name}"}}]}}'
            ),
        )
        if found.runs:
            return str(found.runs[0].run_id)
        result = client.create_run_from_pipeline_package(
            sub.package_path,
            arguments=sub.arguments,
            run_name=sub.run_name,
            experiment_name=sub.experiment,
        )
        return str(result.run_id)
    except Exception as err:
        raise KfpError("KFPUnreachable", f"KFP API at {host}: {type(err).__name__}: {err}") from err


def run_phase(host: str, run_id: str) -> tuple[str, str]:
    """(phase, the run's state as KFP says it)."""
    try:
        run = _client(host).get_run(run_id)
    except Exception as err:
        raise KfpError("KFPUnreachable", f"KFP API at {host}: {type(err).__name__}: {err}") from err
    state = str(getattr(run, "state", "") or "")
    return phase_of(state), state
