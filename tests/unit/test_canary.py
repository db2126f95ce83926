"""The canary analysis function, table-driven: healthy, failing, flapping, missing data,
Prometheus unreachable, relative thresholds, and a whole rollout driven to its end."""

from __future__ import annotations

import math

import pytest

from kubeforge_crds.modelserver import AnalysisMetric, RolloutPolicy
from kubeforge_operator.modelserver.canary import (
    Action,
    Measurement,
    RolloutState,
    analyse,
    check_metric,
)

POLICY = RolloutPolicy()  # steps 10/25/50/100; error rate <= 5%; p95 <= 1.5x stable; threshold 2
HEALTHY = {
    "error-rate": Measurement(canary=0.01),
    "latency-p95": Measurement(canary=0.12, stable=0.10),
}
ERRORS = {**HEALTHY, "error-rate": Measurement(canary=0.2)}
SLOW = {**HEALTHY, "latency-p95": Measurement(canary=0.5, stable=0.10)}
NO_DATA: dict[str, Measurement] = {}
UNREACHABLE = {
    name: Measurement(error="Get http://127.0.0.1:9090: connection refused")
    for name in ("error-rate", "latency-p95")
}


def run(sequence: list[dict[str, Measurement]], policy: RolloutPolicy = POLICY) -> list[str]:
    """Feed one measurement set per interval; the actions taken, until the rollout ends."""
    state = RolloutState()
    actions = []
    for measured in sequence:
        decision = analyse(policy, state, measured)
        actions.append(f"{decision.action}@{decision.traffic}")
        if decision.action in (Action.PROMOTE, Action.ROLLBACK):
            break
        state = RolloutState(decision.step, decision.failures)
    return actions


@pytest.mark.parametrize(
    ("name", "sequence", "expected"),
    [
        ("healthy", [HEALTHY] * 5, ["advance@25", "advance@50", "advance@100", "promote@100"]),
        ("failing", [ERRORS] * 5, ["hold@10", "rollback@0"]),
        ("slow relative to stable", [HEALTHY, SLOW, SLOW], ["advance@25", "hold@25", "rollback@0"]),
        (
            "one blip is tolerated",
            [HEALTHY, ERRORS, HEALTHY, HEALTHY, HEALTHY],
            ["advance@25", "hold@25", "advance@50", "advance@100", "promote@100"],
        ),
        (
            "flapping adds up",
            [ERRORS, HEALTHY, ERRORS, HEALTHY],
            ["hold@10", "advance@25", "rollback@0"],
        ),
        ("missing data is never a pass", [NO_DATA] * 3, ["hold@10", "rollback@0"]),
        ("prometheus unreachable", [UNREACHABLE] * 3, ["hold@10", "rollback@0"]),
        (
            "recovers after an outage",
            [UNREACHABLE, HEALTHY, HEALTHY, HEALTHY, HEALTHY],
            ["hold@10", "advance@25", "advance@50", "advance@100", "promote@100"],
        ),
    ],
)
def test_rollouts(name: str, sequence: list[dict[str, Measurement]], expected: list[str]) -> None:
    assert run(sequence) == expected, name


def test_hold_instead_of_rollback_keeps_the_traffic() -> None:
    policy = RolloutPolicy(on_failure="hold", failure_threshold=1)  # type: ignore[arg-type]
    decision = analyse(policy, RolloutState(step=2), ERRORS)
    assert decision.action == Action.HOLD
    assert decision.traffic == 50
    assert "held for a decision" in decision.reason


def test_rollback_names_the_metric_and_its_value() -> None:
    decision = analyse(POLICY, RolloutState(step=1, failures=1), ERRORS)
    assert decision.action == Action.ROLLBACK
    assert decision.traffic == 0
    assert "error-rate 0.2 > 0.05" in decision.reason
    assert decision.measurements == {"error-rate": 0.2, "latency-p95": pytest.approx(1.2)}


def test_unreachable_prometheus_is_named_and_measures_nothing() -> None:
    decision = analyse(POLICY, RolloutState(), UNREACHABLE)
    assert "query failed (Get http://127.0.0.1:9090: connection refused)" in decision.reason
    assert decision.measurements == {}


def test_relative_check_edge_cases() -> None:
    (_, latency) = POLICY.metrics
    assert check_metric(latency, Measurement(canary=0.0, stable=0.0)).passed is True
    errors = AnalysisMetric(name="errors", type="errorRate", max=2, relative_to_stable=True)
    worse = check_metric(errors, Measurement(canary=0.1, stable=0.0))
    assert worse.passed is False
    assert "canary/stable inf" in worse.reason
    assert check_metric(latency, Measurement(canary=0.1, stable=0.0)).passed is False
    assert check_metric(latency, Measurement(canary=0.1)).passed is None
    assert check_metric(latency, Measurement(canary=math.nan, stable=0.1)).passed is None


def test_a_single_step_policy_promotes_on_the_first_pass() -> None:
    decision = analyse(RolloutPolicy(steps=[100]), RolloutState(), HEALTHY)
    assert (decision.action, decision.traffic) == (Action.PROMOTE, 100)


def test_relative_latency_below_the_floor_is_jitter_not_a_failure() -> None:
    metric = AnalysisMetric(name="p95", type="latencyP95", max=1.5, relative_to_stable=True)
    assert check_metric(metric, Measurement(canary=0.005, stable=0.003)).passed is True
    assert check_metric(metric, Measurement(canary=0.080, stable=0.003)).passed is False
    assert check_metric(metric, Measurement(canary=0.060, stable=0.030)).passed is False


def test_generation_throughput_passes_at_least_its_min() -> None:
    """Higher is better: a canary generating fewer tokens a second than min (or than min times
    the stable version's) fails; no data is no pass."""
    relative = AnalysisMetric.model_validate(
        {"name": "speed", "type": "generationThroughput", "min": 0.9, "relativeToStable": True}
    )
    slower = check_metric(relative, Measurement(canary=40.0, stable=50.0))
    assert slower.passed is False
    assert slower.reason == "speed canary/stable 0.8 < 0.9 (40 vs 50)"
    assert check_metric(relative, Measurement(canary=48.0, stable=50.0)).passed is True
    assert check_metric(relative, Measurement(canary=48.0)).passed is None
    absolute = AnalysisMetric.model_validate(
        {"name": "speed", "type": "generationThroughput", "min": 20}
    )
    assert check_metric(absolute, Measurement(canary=25.0)).reason == "speed 25 >= 20"
    assert check_metric(absolute, Measurement(canary=15.0)).passed is False
