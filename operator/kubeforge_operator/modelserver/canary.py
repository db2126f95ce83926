"""Canary analysis for ModelServer rollouts: a pure function from the rollout policy, where the
rollout is, and what Prometheus measured, to a decision (advance, hold, roll back, promote).

Rules (written down because they are the product's promise):
- every metric of the policy is checked at every interval; a check passes when the measured value
  (or, with ``relativeToStable``, the ratio canary/stable) is at most ``max`` (at least ``min``
  for generationThroughput, where higher is better); a relative
  latency check counts latencies under 25 ms as 25 ms (jitter, not the model);
- **no data is never a pass**: a metric without a canary sample, without the stable sample it is
  compared with, or whose query failed (Prometheus unreachable) makes the analysis inconclusive;
  the step is held and the analysis counts as failed;
- failed analyses add up over the whole rollout (they are not reset by a later pass), so a
  flapping canary cannot creep forward: at ``failureThreshold`` the failure action is taken
  (roll back, or hold for a person);
- when every check passes the canary advances one step, and after the last step (100 %) it is
  promoted.

The ModelServer controller (issue #5) calls :func:`analyse` each interval and records the
decision in status and as an Event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from kubeforge_crds.modelserver import AnalysisMetric, FailureAction, MetricType, RolloutPolicy

LATENCY_FLOOR_SECONDS = 0.025  # relative latency checks count faster responses as this fast


class Action(StrEnum):
    ADVANCE = "advance"
    HOLD = "hold"
    ROLLBACK = "rollback"
    PROMOTE = "promote"


@dataclass(frozen=True)
class Measurement:
    """What Prometheus returned for one metric: the canary's and the stable version's values
    (None: no sample), or the error that stopped the query."""

    canary: float | None = None
    stable: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class RolloutState:
    step: int = 0  # index into policy.steps of the traffic the canary has now
    failures: int = 0  # failed or inconclusive analyses so far in this rollout


@dataclass(frozen=True)
class Check:
    metric: str
    passed: bool | None  # None: inconclusive
    value: float | None
    reason: str


@dataclass(frozen=True)
class Decision:
    action: Action
    step: int  # the step index after the decision
    traffic: int  # canary traffic percent after the decision
    failures: int
    reason: str
    checks: list[Check] = field(default_factory=list)
    cause: str | None = None  # the rollback's condition reason when not a metric check

    @property
    def measurements(self) -> dict[str, float]:
        return {c.metric: c.value for c in self.checks if c.value is not None}


def with_baseline(
    measurements: dict[str, Measurement],
    baseline: dict[str, float],
    full_load: dict[str, float] | None = None,
    canary_traffic: int = 0,
) -> tuple[dict[str, Measurement], dict[str, float]]:
    """The stable values the canary is compared with, and the baseline updated with this
    interval's values.

    At the 100% step the canary takes all the load and the stable version none; its value
    measured before the rollout, when it took all the load (``full_load``), is the comparison
    at equal load. A CPU-bound runtime's latency grows with its load: compared with the stable
    version's value at 50 % of the load, a healthy canary measured 1.96x slower. Without a
    full-load value (no traffic before the rollout), a missing stable value is filled from
    the last one measured."""
    filled: dict[str, Measurement] = {}
    updated = dict(baseline)
    for name, m in measurements.items():
        if m.error is None and m.stable is not None and math.isfinite(m.stable):
            updated[name] = m.stable
        if m.error is not None:
            filled[name] = m
        elif canary_traffic >= 100 and full_load and name in full_load:
            filled[name] = Measurement(canary=m.canary, stable=full_load[name])
        elif m.stable is not None and math.isfinite(m.stable):
            filled[name] = m
        elif name in baseline:
            filled[name] = Measurement(canary=m.canary, stable=baseline[name])
        else:
            filled[name] = m
    return filled, updated


def check_metric(metric: AnalysisMetric, m: Measurement) -> Check:
    name = metric.name
    if m.error is not None:
        return Check(name, None, None, f"{name}: query failed ({m.error})")
    if m.canary is None or not math.isfinite(m.canary):
        return Check(name, None, None, f"{name}: no data for the canary")
    if not metric.relative_to_stable:
        value = m.canary
        ok, said = _within(metric, value)
        return Check(name, ok, value, f"{name} {value:.4g} {said}")
    if m.stable is None or not math.isfinite(m.stable):
        return Check(name, None, None, f"{name}: no data for the stable version")
    canary, stable = m.canary, m.stable
    if metric.type == MetricType.LATENCY_P95:
        # below the floor a ratio measures scheduler jitter, not the model: 3 ms vs 5 ms is
        # "1.7x slower" and would roll back a healthy canary
        canary, stable = max(canary, LATENCY_FLOOR_SECONDS), max(stable, LATENCY_FLOOR_SECONDS)
    value = _ratio(canary, stable)
    ok, said = _within(metric, value)
    shown = "inf" if math.isinf(value) else f"{value:.4g}"
    return Check(
        name,
        ok,
        value if math.isfinite(value) else None,
        f"{name} canary/stable {shown} {said} ({m.canary:.4g} vs {m.stable:.4g})",
    )


def _within(metric: AnalysisMetric, value: float) -> tuple[bool, str]:
    """Whether ``value`` passes the metric's bound, and the comparison in words."""
    if metric.min is not None:
        ok = value >= metric.min
        return ok, f"{'>=' if ok else '<'} {metric.min:g}"
    bound = float(metric.max if metric.max is not None else math.inf)
    ok = value <= bound
    return ok, f"{'<=' if ok else '>'} {bound:g}"


def _ratio(canary: float, stable: float) -> float:
    """canary/stable; 0/0 is 1 (both perfect), x/0 is infinitely worse."""
    if stable == 0:
        return 1.0 if canary == 0 else math.inf
    return canary / stable


def analyse(
    policy: RolloutPolicy, state: RolloutState, measurements: dict[str, Measurement]
) -> Decision:
    """The decision for one analysis interval. ``measurements`` is keyed by metric name; a
    metric missing from it has no data."""
    checks = [check_metric(m, measurements.get(m.name, Measurement())) for m in policy.metrics]
    failed = [c for c in checks if c.passed is False]
    unknown = [c for c in checks if c.passed is None]
    traffic = policy.steps[state.step]
    if failed or unknown:
        failures = state.failures + 1
        why = "; ".join(c.reason for c in [*failed, *unknown])
        if failures >= policy.failure_threshold:
            if policy.on_failure == FailureAction.ROLLBACK:
                return Decision(
                    Action.ROLLBACK,
                    state.step,
                    0,
                    failures,
                    f"rolled back after {failures} failed analyses: {why}",
                    checks,
                )
            return Decision(
                Action.HOLD,
                state.step,
                traffic,
                failures,
                f"held for a decision after {failures} failed analyses: {why}",
                checks,
            )
        return Decision(
            Action.HOLD,
            state.step,
            traffic,
            failures,
            f"analysis {failures} of {policy.failure_threshold} failed: {why}",
            checks,
        )
    passed = "; ".join(c.reason for c in checks) or "no checks configured"
    if state.step + 1 >= len(policy.steps):
        return Decision(
            Action.PROMOTE, state.step, 100, state.failures, f"promoted: {passed}", checks
        )
    nxt = state.step + 1
    return Decision(
        Action.ADVANCE,
        nxt,
        policy.steps[nxt],
        state.failures,
        f"advanced to {policy.steps[nxt]}%: {passed}",
        checks,
    )
