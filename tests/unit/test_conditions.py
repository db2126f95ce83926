"""Condition policies: transition times move only on status changes; Ready aggregates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubeforge_crds import ConditionStatus
from kubeforge_operator.runtime.conditions import Observation, set_condition, summarise_ready

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN


def test_new_condition_is_added_with_now() -> None:
    conds = set_condition([], Observation("Ready", FALSE, "Pending", "waiting"), 3, T0)
    assert len(conds) == 1
    assert conds[0].last_transition_time == T0
    assert conds[0].observed_generation == 3


def test_same_status_keeps_transition_time_but_updates_reason() -> None:
    conds = set_condition([], Observation("Ready", FALSE, "Pending"), 1, T0)
    conds = set_condition(conds, Observation("Ready", FALSE, "Unschedulable", "no GPU"), 2, T1)
    assert conds[0].last_transition_time == T0
    assert conds[0].reason == "Unschedulable"
    assert conds[0].observed_generation == 2


def test_status_change_moves_transition_time() -> None:
    conds = set_condition([], Observation("Ready", FALSE, "Pending"), 1, T0)
    conds = set_condition(conds, Observation("Ready", TRUE, "Ready"), 1, T1)
    assert conds[0].last_transition_time == T1


def test_other_conditions_keep_their_order() -> None:
    conds = set_condition([], Observation("Accepted", TRUE, "SpecValid"), 1, T0)
    conds = set_condition(conds, Observation("Ready", FALSE, "Pending"), 1, T0)
    conds = set_condition(conds, Observation("Accepted", FALSE, "InvalidSpec"), 2, T1)
    assert [c.type for c in conds] == ["Accepted", "Ready"]


def test_ready_is_true_only_when_all_dependents_are() -> None:
    assert (
        summarise_ready([Observation("A", TRUE, "Ok"), Observation("B", TRUE, "Ok")]).status == TRUE
    )
    assert summarise_ready([]).status == TRUE


def test_ready_takes_the_first_false_before_any_unknown() -> None:
    ready = summarise_ready(
        [
            Observation("A", UNKNOWN, "Waiting"),
            Observation("B", FALSE, "Unschedulable", "0/4 nodes"),
        ]
    )
    assert (ready.status, ready.reason, ready.message) == (FALSE, "Unschedulable", "0/4 nodes")


def test_ready_is_unknown_when_nothing_failed_but_something_is_unknown() -> None:
    ready = summarise_ready([Observation("A", TRUE, "Ok"), Observation("B", UNKNOWN, "Waiting")])
    assert (ready.status, ready.reason) == (UNKNOWN, "Waiting")
