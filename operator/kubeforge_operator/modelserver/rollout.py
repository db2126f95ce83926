"""The rollout state machine (pure): the first deployment, a cancelled or refused rollout, the
start of a new one, and the plan after each analysis's decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from kubeforge_crds import ConditionStatus
from kubeforge_crds.base import parse_duration
from kubeforge_crds.contracts.labels import ROLLBACK_ANNOTATION, ROLLBACK_REASON_ANNOTATION
from kubeforge_crds.modelserver import (
    FailureAction,
    ModelServerPhase,
    ModelServerSpec,
    ModelServerStatus,
    Revision,
    RolloutDecision,
    RolloutProgress,
)
from kubeforge_operator.modelserver.canary import (
    Action,
    Decision,
)
from kubeforge_operator.modelserver.conditions import ROLLED_BACK
from kubeforge_operator.modelserver.revisions import traffic_split, with_traffic
from kubeforge_operator.runtime.conditions import Observation

KEEP_DECISIONS = 20


@dataclass
class Plan:
    """What the reconcile applies and records."""

    served: Revision  # the predictor in the InferenceService
    canary_percent: int | None
    status: dict[str, Any]  # status fields (wire names)
    decisions: list[RolloutDecision] = field(default_factory=list)
    phase: str = ModelServerPhase.READY
    rolled_back: Observation | None = None
    next_analysis: datetime | None = None


def _decision(
    now: datetime, step: int, action: str, revision: str, split: str, reason: str, values: Any
) -> RolloutDecision:
    return RolloutDecision(
        time=now,
        step=step,
        action=action,
        revision=revision,
        traffic_split=split,
        reason=reason[:1024],
        measurements=dict(values or {}),
    )


def _steady(rev: Revision, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "stable": with_traffic(rev, 100).to_wire(),
        "canary": None,
        "rollout": None,
        "trafficSplit": "100/0",
        **(extra or {}),
    }


def plan_rollout(
    spec: ModelServerSpec,
    status: ModelServerStatus,
    desired: Revision,
    now: datetime,
) -> Plan | RolloutProgress:
    """Everything decided without measuring: first deployment, a cancelled or refused rollout,
    the start of a new one. Returns the rollout in progress when it needs an analysis (or is
    held) instead."""
    policy = spec.rollout
    stable = status.stable
    if stable is None:
        return Plan(desired, None, _steady(desired))
    if desired.revision == stable.revision:
        plan = Plan(with_traffic(desired, 100), None, _steady(desired))
        if status.rollout is not None:
            plan.decisions.append(
                _decision(
                    now,
                    status.rollout.step,
                    "cancel",
                    status.rollout.revision,
                    "100/0",
                    "the spec names the stable revision again: rollout cancelled",
                    None,
                )
            )
        return plan
    if status.rolled_back is not None and desired.revision == status.rolled_back.revision:
        return Plan(stable, None, _steady(stable), phase=ModelServerPhase.ROLLED_BACK)
    if status.rollout is None or status.rollout.revision != desired.revision:
        if policy.evaluation is not None:
            return _start_evaluation(stable, desired, now)
        rollout = RolloutProgress(revision=desired.revision, step=0, failures=0, start_time=now)
        return start_steps(spec, stable, desired, rollout, now, "start", "")
    return status.rollout


EVALUATION_POLL = timedelta(seconds=2)


def _start_evaluation(stable: Revision, desired: Revision, now: datetime) -> Plan:
    """A rollout that starts with the evaluation: the canary's predictor at 0% of the route."""
    rollout = RolloutProgress(
        revision=desired.revision, step=0, failures=0, evaluating=True, start_time=now
    )
    why = "canary at 0% until its evaluation passes"
    decision = _decision(now, 0, "start", desired.revision, traffic_split(100, 0), why, None)
    return _canary_at(0, stable, desired, rollout, now + EVALUATION_POLL, decision)


def start_steps(
    spec: ModelServerSpec,
    stable: Revision,
    desired: Revision,
    rollout: RolloutProgress,
    now: datetime,
    action: str,
    why: str,
    values: dict[str, float] | None = None,
) -> Plan:
    """The canary at the first step, its first analysis an interval later: a new rollout, or one
    whose evaluation passed (``action`` evaluate, ``why`` the numbers)."""
    first = spec.rollout.steps[0]
    due = now + parse_duration(spec.rollout.interval)
    progress = rollout.model_copy(
        update={"step": 0, "evaluating": False, "next_analysis_time": due}
    )
    reason = f"{why}; canary at {first}%" if why else f"canary at {first}%"
    split = traffic_split(100 - first, first)
    decision = _decision(now, 0, action, desired.revision, split, reason, values)
    return _canary_at(first, stable, desired, progress, due, decision)


def _canary_at(
    percent: int,
    stable: Revision,
    desired: Revision,
    progress: RolloutProgress,
    due: datetime,
    decision: RolloutDecision,
) -> Plan:
    """The plan that gives the canary ``percent`` of the traffic, after ``decision``."""
    return Plan(
        desired,
        percent,
        {
            "stable": with_traffic(stable, 100 - percent).to_wire(),
            "canary": with_traffic(desired, percent).to_wire(),
            "rollout": progress.to_wire(),
            "trafficSplit": traffic_split(100 - percent, percent),
        },
        [decision],
        phase=ModelServerPhase.PROGRESSING,
        next_analysis=due,
    )


def apply_decision(
    spec: ModelServerSpec,
    status: ModelServerStatus,
    desired: Revision,
    rollout: RolloutProgress,
    decision: Decision,
    now: datetime,
    recheck: timedelta,
) -> Plan:
    """The plan after an analysis decided ``decision``: promoted, rolled back, or the next
    split (advanced, or held to confirm a failure, or held for good)."""
    stable = cast(Revision, status.stable)

    def record(action: str, split: str) -> list[RolloutDecision]:
        return [
            _decision(
                now,
                decision.step,
                action,
                desired.revision,
                split,
                decision.reason,
                decision.measurements,
            )
        ]

    if decision.action == Action.PROMOTE:
        steady = _steady(desired, {"rolledBack": None})
        return Plan(with_traffic(desired, 100), None, steady, record("promote", "0/100"))
    if decision.action == Action.ROLLBACK:
        steady = _steady(stable, {"rolledBack": with_traffic(desired, 0).to_wire()})
        plan = Plan(stable, None, steady, record("rollback", "100/0"))
        plan.phase = ModelServerPhase.ROLLED_BACK
        plan.rolled_back = Observation(
            ROLLED_BACK, ConditionStatus.TRUE, rollback_reason(decision), decision.reason
        )
        return plan
    traffic = decision.traffic
    split = traffic_split(100 - traffic, traffic)
    held_for_good, due = _next_analysis(spec, decision, now, recheck)
    progress = rollout.model_copy(
        update={
            "step": decision.step,
            "failures": decision.failures,
            "last_analysis_time": now,
            "next_analysis_time": due,
        }
    )
    fields = {
        "stable": with_traffic(stable, 100 - traffic).to_wire(),
        "canary": with_traffic(desired, traffic).to_wire(),
        "rollout": progress.to_wire(),
        "trafficSplit": split,
    }
    return Plan(
        desired,
        traffic,
        fields,
        record(str(decision.action), split),
        phase=ModelServerPhase.HELD if held_for_good else ModelServerPhase.PROGRESSING,
        next_analysis=due,
    )


def _next_analysis(
    spec: ModelServerSpec, decision: Decision, now: datetime, recheck: timedelta
) -> tuple[bool, datetime | None]:
    """Whether the rollout is now held for good (failures reached the threshold and the policy
    holds rather than rolls back), and when the next analysis is due: an interval after an
    advance, one scrape after a failure (to confirm it quickly), never when held for good."""
    policy = spec.rollout
    held_for_good = (
        decision.action == Action.HOLD
        and decision.failures >= policy.failure_threshold
        and policy.on_failure == FailureAction.HOLD
    )
    if decision.action == Action.ADVANCE:
        return held_for_good, now + parse_duration(policy.interval)
    if held_for_good:
        return True, None
    return False, now + recheck


def drift_rollback(obj: dict[str, Any], desired: Revision) -> Decision | None:
    """A rollback a DriftMonitor asked for (``kubeforge.io/rollback-revision`` naming the canary
    in progress); an annotation naming any other revision is stale and ignored."""

    annotations = obj["metadata"].get("annotations") or {}
    if annotations.get(ROLLBACK_ANNOTATION) != desired.revision:
        return None
    reason = annotations.get(ROLLBACK_REASON_ANNOTATION) or "a DriftMonitor found drift"
    return Decision(Action.ROLLBACK, 0, 0, 0, reason, cause="DriftDetected")


def held_plan(status: ModelServerStatus, desired: Revision, rollout: RolloutProgress) -> Plan:
    canary = cast(Revision, status.canary)
    traffic = canary.traffic_percent
    return Plan(
        desired,
        traffic,
        {},
        phase=ModelServerPhase.HELD
        if rollout.next_analysis_time is None
        else ModelServerPhase.PROGRESSING,
        next_analysis=rollout.next_analysis_time,
    )


def postponed_plan(
    spec: ModelServerSpec,
    status: ModelServerStatus,
    desired: Revision,
    rollout: RolloutProgress,
    now: datetime,
    due: datetime | None = None,
) -> Plan:
    """An analysis fell due while KServe has not reported the traffic split we applied as
    Ready (the canary's pods are still starting), or before the step's traffic has flowed for
    an interval: measuring now would judge a canary that had little or no traffic. The
    interval starts again (or the analysis waits until ``due``)."""
    canary = cast(Revision, status.canary)
    due = due or now + parse_duration(spec.rollout.interval)
    progress = rollout.model_copy(update={"next_analysis_time": due})
    return Plan(
        desired,
        canary.traffic_percent,
        {"rollout": progress.to_wire()},
        phase=ModelServerPhase.PROGRESSING,
        next_analysis=due,
    )


def rollback_reason(decision: Decision) -> str:
    """A CamelCase reason naming what failed first."""
    if decision.cause:
        return decision.cause
    for check in decision.checks:
        if check.passed is False:
            return {"error-rate": "ErrorRateExceeded", "latency-p95": "LatencyExceeded"}.get(
                check.metric, "MetricThresholdExceeded"
            )
    if any("query failed" in c.reason for c in decision.checks):
        return "MetricsUnavailable"
    return "NoMetricData"


def traffic_started(
    spec: ModelServerSpec, status: ModelServerStatus, planned: Plan, now: datetime
) -> Plan:
    """The canary's share of traffic begins only now (Standard mode: the route gives it its
    weight once KServe reports its pods ready), so the step's interval starts now: an analysis
    judges an interval of the step's traffic, not the minutes its pods took to start."""
    wire = planned.status.get("rollout")
    if wire is not None:
        progress = RolloutProgress.model_validate(wire)
    elif status.rollout is not None:
        progress = status.rollout
    else:
        return planned
    due = now + parse_duration(spec.rollout.interval)
    progress = progress.model_copy(update={"next_analysis_time": due})
    planned.status = {**planned.status, "rollout": progress.to_wire()}
    planned.next_analysis = due
    return planned
