"""An operator rolled back reads the statuses a newer one wrote: every model a status is made
of ignores fields it does not know (a newer operator's), while the spec's models still refuse
them (kubectl's strict field validation)."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from kubeforge_crds.driftmonitor import DriftMonitorStatus
from kubeforge_crds.finetunejob import FineTuneJobStatus
from kubeforge_crds.modelserver import FaultInjection, ModelServerSpec, ModelServerStatus
from kubeforge_crds.team import TeamStatus
from kubeforge_crds.workbench import WorkbenchStatus

STATUSES = [DriftMonitorStatus, FineTuneJobStatus, ModelServerStatus, TeamStatus, WorkbenchStatus]
# spec models a status repeats (what a revision was served with): strict as in the spec, where
# a field an older operator does not know would be refused anyway
SPEC_PARTS = {FaultInjection}


def models_in(model: type[BaseModel]) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()

    def walk(annotation: Any) -> None:
        for arg in typing.get_args(annotation):
            walk(arg)
        model = inspect.isclass(annotation) and issubclass(annotation, BaseModel)
        if model and annotation not in found:
            found.add(annotation)
            for field in annotation.model_fields.values():
                walk(field.annotation)

    walk(model)
    return found


@pytest.mark.parametrize("status", STATUSES, ids=lambda s: s.__name__)
def test_every_part_of_a_status_ignores_unknown_fields(status: type[BaseModel]) -> None:
    strict = {
        m.__name__
        for m in models_in(status) - SPEC_PARTS
        if m.model_config.get("extra") == "forbid"
    }
    assert not strict, f"{status.__name__} parts that refuse a newer operator's fields: {strict}"


def test_a_rollout_written_by_a_newer_operator_is_read() -> None:
    wire = {
        "stable": {"revision": "r1", "uri": "pvc://m/v1", "trafficPercent": 100},
        "rollout": {
            "revision": "r2",
            "step": 1,
            "failures": 0,
            "startTime": "2026-12-04T08:00:00Z",
            "judgedAdapters": ["tickets"],
            "aFieldFromTheFuture": {"x": 1},
        },
    }
    status = ModelServerStatus.model_validate(wire)
    assert status.rollout is not None
    assert status.rollout.judged_adapters == ["tickets"]
    assert status.stable is not None
    assert status.stable.revision == "r1"
    assert "aFieldFromTheFuture" not in (status.to_wire()["rollout"])


def test_the_spec_still_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError, match=r"rollout\.stepz"):
        ModelServerSpec.model_validate(
            {"model": {"uri": "pvc://m/v1"}, "rollout": {"stepz": [10, 100]}}
        )
