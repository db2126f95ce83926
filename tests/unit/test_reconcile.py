"""The shared reconcile shape's pure parts: status computation and invalid-spec outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from kubeforge_crds import WORKBENCH, ConditionStatus
from kubeforge_crds.errors import field_errors
from kubeforge_operator.runtime.conditions import Observation
from kubeforge_operator.runtime.reconcile import (
    Outcome,
    accepted,
    compute_status,
    invalid_spec_outcome,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _conds(status: dict) -> dict:
    return {c["type"]: c for c in status["conditions"]}


def test_invalid_spec_sets_accepted_and_ready_false_naming_fields() -> None:
    try:
        WORKBENCH.parse_spec({"image": "x", "culling": {"idleTimeout": "30s"}})
    except ValidationError as err:
        outcome = invalid_spec_outcome(field_errors(err))
    status = compute_status(WORKBENCH, {}, outcome, 4, T0)
    conds = _conds(status)
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "InvalidSpec"
    assert "spec.culling.idleTimeout: idleTimeout must be at least 1m" in conds["Ready"]["message"]
    assert conds["Accepted"]["status"] == "False"
    assert status["observedGeneration"] == 4
    assert status["phase"] == "Failed"


def test_status_is_unchanged_when_nothing_changed() -> None:
    outcome = Outcome(phase="Running", dependents=[accepted()], fields={"gpus": 1})
    first = compute_status(WORKBENCH, {}, outcome, 1, T0)
    again = compute_status(WORKBENCH, first, outcome, 1, T0 + timedelta(minutes=1))
    assert again == first  # so no status write happens


def test_observed_generation_and_fields_follow_the_outcome() -> None:
    before = compute_status(
        WORKBENCH, {}, Outcome("Starting", [accepted()], {"url": "http://a"}), 1, T0
    )
    outcome = Outcome(
        "Pending",
        [accepted(), Observation("Scheduled", ConditionStatus.FALSE, "Unschedulable", "no GPU")],
        {"gpus": 0},
    )
    after = compute_status(WORKBENCH, before, outcome, 2, T0 + timedelta(seconds=5))
    assert after["observedGeneration"] == 2
    assert after["phase"] == "Pending"
    assert after["gpus"] == 0
    assert after["url"] == "http://a"  # fields the outcome does not mention are kept
    conds = _conds(after)
    assert conds["Ready"]["reason"] == "Unschedulable"
    assert all(c["observedGeneration"] == 2 for c in after["conditions"])
