"""The pydantic models accept every example and reject every invalid object, naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kubeforge_crds import ALL_KINDS
from kubeforge_crds.base import parse_duration
from kubeforge_crds.kind import InvalidObjectError
from kubeforge_crds.modelserver import ModelServerSpec
from kubeforge_crds.workbench import WorkbenchSpec
from tests.cases import INVALID, LOCAL_EXAMPLES, PLATFORM_EXAMPLES, Invalid, load_examples

ALL_BY_NAME = {k.kind: k for k in ALL_KINDS}


@pytest.mark.parametrize(
    "obj",
    load_examples() + load_examples(LOCAL_EXAMPLES) + load_examples(PLATFORM_EXAMPLES),
    ids=lambda o: o["metadata"]["name"],
)
def test_examples_are_valid(obj: dict[str, Any]) -> None:
    ALL_BY_NAME[obj["kind"]].parse_spec(obj["spec"])


def test_every_kind_has_at_least_ten_invalid_cases() -> None:
    for kind in ALL_KINDS:
        assert sum(c.kind == kind.kind for c in INVALID) >= 10, kind.kind


@pytest.mark.parametrize("case", INVALID, ids=lambda c: f"{c.kind}-{c.id}")
def test_invalid_objects_are_rejected_naming_the_field(case: Invalid) -> None:
    with pytest.raises(InvalidObjectError) as err:
        ALL_BY_NAME[case.kind].parse_object(case.object("valid-name"))
    errors = err.value.errors
    matching = [e for e in errors if e.startswith(case.field)]
    assert matching, f"no error names {case.field}: {errors}"
    if case.message:
        assert any(case.message in e for e in matching), errors


def test_defaults_are_filled_in() -> None:
    spec = WorkbenchSpec.model_validate({"image": "jupyter/minimal"})
    assert spec.resources.cpu == "1"
    assert spec.storage.size == "10Gi"
    assert spec.culling.enabled is True
    assert spec.culling.idle_timeout == "1h"
    ms = ModelServerSpec.model_validate({"model": {"uri": "s3://models/a"}})
    assert ms.rollout.steps == [10, 25, 50, 100]
    assert [m.name for m in ms.rollout.metrics] == ["error-rate", "latency-p95"]


def test_quantities_accept_numbers_and_strings() -> None:
    spec = WorkbenchSpec.model_validate({"image": "x", "resources": {"cpu": 2, "memory": "512Mi"}})
    assert spec.resources.cpu == "2"
    assert spec.to_wire()["resources"]["cpu"] == "2"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "is not a duration"),
        ("5", "is not a duration"),
        ("1d", "is not a duration"),
        ("m5", "is not a duration"),
        ("-5m", "is not a duration"),
        ("100000000000000000ms", "out of range"),
        ("2562048h", "out of range"),  # Go's limit is 2562047h47m16.854775807s
    ],
)
def test_parse_duration_rejects(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_duration(text)
    assert parse_duration("2562047h").days > 100_000  # the largest whole-hour duration is fine


def test_wire_form_is_camel_case_without_nulls() -> None:
    spec = WorkbenchSpec.model_validate({"image": "x", "queueName": "gpus"})
    wire = spec.to_wire()
    assert wire["queueName"] == "gpus"
    assert "catalogImage" not in wire
    assert wire["culling"]["idleTimeout"] == "1h"


def test_a_duration_beyond_gos_range_is_a_validation_error_not_a_crash() -> None:
    """Found by schemathesis: '100000000000000000ms' overflowed timedelta (HTTP 500)."""

    from kubeforge_crds import DRIFTMONITOR, WORKBENCH

    with pytest.raises(ValidationError, match="out of range"):
        WORKBENCH.parse_spec({"image": "x", "culling": {"idleTimeout": "100000000000000000ms"}})
    with pytest.raises(ValidationError, match="out of range"):
        DRIFTMONITOR.parse_spec(
            {"target": {"modelServer": "m"}, "window": {"interval": "9999999999h"}}
        )
