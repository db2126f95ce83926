"""One analysis of a rollout: measure (Prometheus, or anything with ``measure``), decide with
the pure ``canary.analyse``, and plan the result. The operator's reconcile and
``kubeforge_labs/canary.py`` both run exactly this."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from kubeforge_crds.base import parse_duration
from kubeforge_crds.modelserver import (
    AnalysisMetric,
    MetricType,
    ModelServerSpec,
    ModelServerStatus,
    Revision,
    RolloutProgress,
    ServedAs,
)
from kubeforge_operator.modelserver.canary import (
    Measurement,
    RolloutState,
    analyse,
    with_baseline,
)
from kubeforge_operator.modelserver.prometheus import (
    PrometheusMeasurer,
    Target,
    adapters_unlabelled,
    window,
)
from kubeforge_operator.modelserver.rollout import Plan, apply_decision
from kubeforge_operator.runtime.prometheus import Prometheus


class Measurer(Protocol):
    def measure(
        self, metrics: list[AnalysisMetric], target: Target, win: str
    ) -> dict[str, Measurement]: ...


def judged_adapters(spec: ModelServerSpec, stable: Revision, canary: Revision) -> tuple[str, ...]:
    """The adapters whose requests alone tell ``canary`` from ``stable``: those both serve, the
    canary in a new version, when that is all that changed (the same base model, format and
    injected faults, on kubeforge's runtime). The base model and the other adapters answer alike
    on both sides, so their requests would dilute the changed adapter's: a broken adapter that
    gets a few percent of the traffic would pass an error-rate gate on all requests. Empty,
    every request counts: for any other change; when the canary adds or removes an adapter,
    beside changed ones or not (the stable version has no requests of an added one to compare
    with and answers it 404, the canary answers a removed one 404); and for a
    ServingRuntime or an LLMInferenceService (vLLM), whose metrics do not say which adapter a
    request named."""
    if spec.runtime.served_as == ServedAs.LLM_INFERENCE_SERVICE:
        return ()
    same = {"revision", "traffic_percent", "adapters", "fine_tune_job"}
    if stable.model_dump(exclude=same) != canary.model_dump(exclude=same):
        return ()
    if canary.serving_runtime is not None:
        return ()
    if canary.adapters.keys() != stable.adapters.keys():
        return ()
    return tuple(sorted(n for n, uri in canary.adapters.items() if stable.adapters[n] != uri))


def rollout_target(
    namespace: str,
    name: str,
    spec: ModelServerSpec,
    stable: Revision,
    canary: Revision,
    progress: RolloutProgress | None = None,
) -> Target:
    """What a rollout of ``canary`` over ``stable`` is measured on: at its start (no
    ``progress``), :func:`judged_adapters`; afterwards, what the start recorded
    (``progress.judgedAdapters``; none recorded: every request, as an operator from before
    gates per adapter judged the rollout it started, against a full-load baseline of every
    request)."""
    if progress is not None:  # this rollout's: plan_rollout keeps no other canary's
        adapters = tuple(progress.judged_adapters or ())
    else:
        adapters = judged_adapters(spec, stable, canary)
    return Target(namespace, name, canary.revision, stable.revision, adapters)


def record_judged(plan: Plan, meant: Target, judged: Target) -> Plan:
    """At the start of a rollout, keep in status whose requests its gates judge: ``meant``'s
    adapters, or every request (``judged``) when the stable version's runtime does not label
    its requests with them; the start decision says so."""
    rollout = plan.status.get("rollout")
    if rollout is None:
        return plan
    rollout = {**rollout, "judgedAdapters": list(judged.adapters)}
    why = (
        "; judged on every request: the stable revision's runtime does not label its requests "
        f"with the adapter ({', '.join(meant.adapters)}), as one from before kubeforge labelled "
        "them does"
    )
    decisions = [
        d.model_copy(update={"reason": (d.reason + why)[:1024]})
        if d.action == "start" and meant.adapters != judged.adapters
        else d
        for d in plan.decisions
    ]
    return replace(plan, status={**plan.status, "rollout": rollout}, decisions=decisions)


class NoPrometheus:
    """Measurements when no Prometheus is configured: every query fails, saying so."""

    def measure(
        self, metrics: list[AnalysisMetric], target: Target, win: str
    ) -> dict[str, Measurement]:
        why = "no Prometheus configured (operator setting KUBEFORGE_OPERATOR_PROMETHEUS_URL)"
        return {m.name: Measurement(error=why) for m in metrics}


def run_analysis(
    spec: ModelServerSpec,
    status: ModelServerStatus,
    desired: Revision,
    rollout: RolloutProgress,
    measurer: Measurer,
    target: Target,
    scrape_seconds: float,
    now: datetime,
    recheck_seconds: float | None = None,
) -> Plan:
    """One analysis of the rollout: measure, decide (``canary.analyse``), and plan the result.
    The operator's reconcile and ``kubeforge_labs/canary.py`` both run exactly this. A failed
    analysis is confirmed after ``recheck_seconds`` (default: one scrape interval)."""
    interval = parse_duration(spec.rollout.interval).total_seconds()
    measured = measurer.measure(spec.rollout.metrics, target, window(interval, scrape_seconds))
    measured, baseline = with_baseline(
        measured,
        rollout.stable_baseline,
        rollout.stable_full_load,
        spec.rollout.steps[rollout.step],
    )
    decision = analyse(
        spec.rollout, RolloutState(step=rollout.step, failures=rollout.failures), measured
    )
    recheck = timedelta(seconds=max(1.0, recheck_seconds or scrape_seconds))
    progress = rollout.model_copy(update={"stable_baseline": baseline})
    plan = apply_decision(spec, status, desired, progress, decision, now, recheck)
    whose = judged_on(spec.rollout.metrics, target.adapters)
    if not whose:
        return plan
    decisions = [
        d.model_copy(update={"reason": d.reason[: 1024 - len(whose)] + whose})
        for d in plan.decisions
    ]
    return replace(plan, decisions=decisions)


def judged_on(metrics: list[AnalysisMetric], adapters: tuple[str, ...]) -> str:
    """What a decision's reason adds when gates were narrowed to ``adapters``' requests: the
    built-in gates are, a ``promql`` gate only when its query selects ``{{adapters}}``."""
    narrowed = [
        m.name for m in metrics if m.type != MetricType.PROMQL or "{{adapters}}" in (m.query or "")
    ]
    if not adapters or not narrowed:
        return ""
    plural = "s" if len(adapters) > 1 else ""
    requests = f"requests to adapter{plural} {', '.join(adapters)}"
    if len(narrowed) == len(metrics):
        return f" ({requests})"
    return f" ({', '.join(narrowed)} on {requests}; the others on every request)"


def measure_start(
    spec: ModelServerSpec, plan: Plan, client: Prometheus, meant: Target, scrape_seconds: float
) -> Plan:
    """What a starting rollout measures before the canary gets traffic: whether the stable
    version's requests can be told apart by adapter (else every request is judged), and the
    stable version's relative metrics at full load (:func:`record_full_load`)."""
    target = meant
    if meant.adapters and adapters_unlabelled(client, meant.series(meant.stable)):
        target = replace(meant, adapters=())
    measurer = PrometheusMeasurer(client)
    return record_judged(
        record_full_load(spec, plan, measurer, target, scrape_seconds), meant, target
    )


def record_full_load(
    spec: ModelServerSpec,
    plan: Plan,
    measurer: Measurer,
    target: Target,
    scrape_seconds: float,
) -> Plan:
    """At the start of a rollout, measure the stable version's relative metrics over the
    interval before it, when it still took all the traffic: the 100% step compares the canary
    with these, at the same load (``canary.with_baseline``). Nothing is recorded for a metric
    without data (no traffic yet) or whose query failed; the rollout starts either way."""
    relative = [m for m in spec.rollout.metrics if m.relative_to_stable]
    rollout = plan.status.get("rollout")
    if not relative or rollout is None:
        return plan
    interval = parse_duration(spec.rollout.interval).total_seconds()
    # the stable revision measured as if it were the canary: one query per metric
    as_absolute = [m.model_copy(update={"relative_to_stable": False}) for m in relative]
    stable_only = replace(target, canary=target.stable)
    measured = measurer.measure(as_absolute, stable_only, window(interval, scrape_seconds))
    values = {
        name: m.canary
        for name, m in measured.items()
        if m.error is None and m.canary is not None and math.isfinite(m.canary)
    }
    if not values:
        return plan
    rollout = {**rollout, "stableFullLoad": values}
    # said in the start decision's reason; its measurements stay what they are elsewhere (each
    # check's value: a ratio for a relative check), not seconds under the same name
    measured_at_full_load = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
    decisions = [
        d.model_copy(
            update={"reason": f"{d.reason}; stable at full load: {measured_at_full_load}"[:1024]}
        )
        if d.action == "start"
        else d
        for d in plan.decisions
    ]
    return replace(plan, status={**plan.status, "rollout": rollout}, decisions=decisions)
