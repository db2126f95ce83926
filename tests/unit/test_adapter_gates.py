"""A rollout that changes adapters alone is judged on their requests (``analysis.judged_adapters``,
the queries' ``adapter`` label); any other change, and a server whose metrics do not name the
adapter, is judged on every request. The runtime side: faults scoped to some models, and the
token metrics' adapter label."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import promql_parser
import pytest

from kubeforge_crds.modelserver import (
    AnalysisMetric,
    ModelServerSpec,
    ModelServerStatus,
    Revision,
    RolloutProgress,
)
from kubeforge_operator.modelserver.analysis import (
    judged_adapters,
    judged_on,
    record_judged,
    rollout_target,
    run_analysis,
)
from kubeforge_operator.modelserver.canary import Measurement
from kubeforge_operator.modelserver.prometheus import (
    Series,
    Target,
    metric_query,
    render_template,
)
from kubeforge_operator.modelserver.revisions import desired_revision
from kubeforge_operator.modelserver.rollout import Plan, plan_rollout
from kubeforge_runtimes.faults import Faults

BASE = "pvc://models/base/v1"
ADAPTERS = {"tickets": "pvc://models/tickets/v1", "faq": "pvc://models/faq/v3"}


def spec(**runtime: Any) -> ModelServerSpec:
    return ModelServerSpec.model_validate(
        {
            "model": {"uri": BASE},
            "runtime": runtime,
            "rollout": {"steps": [50, 100], "interval": "20s"},
        }
    )


def rev(s: ModelServerSpec, adapters: dict[str, str], uri: str = BASE) -> Revision:
    return desired_revision(uri, s, None, adapters=adapters)


def test_a_new_version_of_one_adapter_is_judged_on_its_requests_alone() -> None:
    s = spec()
    stable = rev(s, ADAPTERS)
    canary = rev(s, {**ADAPTERS, "tickets": "pvc://models/tickets/v2"})
    assert judged_adapters(s, stable, canary) == ("tickets",)
    target = rollout_target("team-a", "bot", s, stable, canary)
    assert target == Target("team-a", "bot", canary.revision, stable.revision, ("tickets",))


def test_adapters_the_stable_version_does_not_serve_are_judged_with_every_request() -> None:
    """The stable version answers an added adapter 404: it has no requests of that adapter to
    compare with, so a rollout that adds one is judged on every request, beside changed ones
    too (judged on the changed ones alone, a failing new adapter would go unseen); likewise one
    that removes an adapter (the canary answers its requests 404)."""
    s = spec()
    stable = rev(s, ADAPTERS)
    added = {**ADAPTERS, "summaries": "pvc://m/s/v1", "alerts": "pvc://m/a/v1"}
    assert judged_adapters(s, stable, rev(s, added)) == ()
    both = {**added, "tickets": "pvc://models/tickets/v2", "faq": "pvc://models/faq/v4"}
    assert judged_adapters(s, stable, rev(s, both)) == ()
    removed = {"tickets": "pvc://models/tickets/v2"}
    assert judged_adapters(s, stable, rev(s, removed)) == ()
    renamed = {"faq": ADAPTERS["faq"], "support": ADAPTERS["tickets"]}
    assert judged_adapters(s, stable, rev(s, renamed)) == ()


@pytest.mark.parametrize(
    "change",
    [
        "base model",  # every request is answered by new weights
        "faults",  # the whole process misbehaves
        "adapter removed",  # nothing new to judge: every request
    ],
)
def test_any_other_change_is_judged_on_every_request(change: str) -> None:
    s = spec()
    stable = rev(s, ADAPTERS)
    adapters = {**ADAPTERS, "tickets": "pvc://models/tickets/v2"}
    if change == "base model":
        canary = rev(s, adapters, uri="pvc://models/base/v2")
    elif change == "faults":
        faulty = spec(faultInjection={"errorRate": 0.5})
        canary = rev(faulty, adapters)
    else:
        canary = rev(s, {"faq": ADAPTERS["faq"]})
    assert canary.revision != stable.revision
    assert judged_adapters(s, stable, canary) == ()


def test_a_server_whose_metrics_do_not_name_adapters_is_judged_on_every_request() -> None:
    vllm = spec(servingRuntime="vllm-runtime")
    stable = rev(vllm, ADAPTERS)
    canary = rev(vllm, {**ADAPTERS, "tickets": "pvc://models/tickets/v2"})
    assert judged_adapters(vllm, stable, canary) == ()
    llmisvc = ModelServerSpec.model_validate(
        {**spec().to_wire(), "runtime": {"servedAs": "LLMInferenceService"}}
    )
    assert judged_adapters(llmisvc, rev(llmisvc, ADAPTERS), canary) == ()


ALL_TYPES: list[dict[str, Any]] = [
    {"name": "errors", "type": "errorRate", "max": 0.05},
    {"name": "latency", "type": "latencyP95", "max": 1.5, "relativeToStable": True},
    {"name": "ttft", "type": "timeToFirstTokenP95", "max": 2},
    {"name": "itl", "type": "interTokenLatencyP95", "max": 2},
    {"name": "speed", "type": "generationThroughput", "min": 0.5},
]


@pytest.mark.parametrize("wire", ALL_TYPES, ids=[m["type"] for m in ALL_TYPES])
def test_every_metric_type_selects_the_judged_adapters(wire: dict[str, Any]) -> None:
    metric = AnalysisMetric.model_validate(wire)
    judged = metric_query(metric, Series("team-a", "bot", "rc", ("tickets", "a.b")), "20s")
    promql_parser.parse(judged)  # valid PromQL, escapes included
    assert judged.count('adapter=~"tickets|a\\\\.b"') == judged.count('revision="rc"') > 0
    every = metric_query(metric, Series("team-a", "bot", "rc"), "20s")
    assert "adapter" not in every


def test_a_users_query_can_select_the_judged_adapters() -> None:
    template = 'sum(rate(x{revision="{{revision}}",adapter=~"{{adapters}}"}[{{window}}]))'
    assert render_template(template, Series("ns", "bot", "r1", ("tickets",)), "30s") == (
        'sum(rate(x{revision="r1",adapter=~"tickets"}[30s]))'
    )
    # no adapters judged: every request, those naming no adapter too
    assert 'adapter=~".*"' in render_template(template, Series("ns", "bot", "r1"), "30s")


class Recorder:
    """Prometheus's answers as fixed numbers; records the targets it was asked about."""

    def __init__(self, value: float) -> None:
        self.value, self.targets = value, list[Target]()

    def measure(
        self, metrics: list[AnalysisMetric], target: Target, win: str
    ) -> dict[str, Measurement]:
        self.targets.append(target)
        return {m.name: Measurement(canary=self.value, stable=self.value) for m in metrics}


def test_the_decision_says_whose_requests_it_judged() -> None:
    s = ModelServerSpec.model_validate(
        {
            **spec().to_wire(),
            "rollout": {
                "steps": [50, 100],
                "interval": "20s",
                "failureThreshold": 1,
                "metrics": [ALL_TYPES[0]],
            },
        }
    )
    stable = rev(s, ADAPTERS)
    canary = rev(s, {**ADAPTERS, "tickets": "pvc://models/tickets/v2"})
    now = datetime.now(UTC)
    status = ModelServerStatus(stable=stable)
    started = plan_rollout(s, status, canary, now)
    assert isinstance(started, Plan)
    status = ModelServerStatus.model_validate({**status.to_wire(), **started.status})
    assert status.rollout is not None
    measurer = Recorder(0.5)  # half of the adapter's requests fail
    target = rollout_target("team-a", "bot", s, stable, canary)
    plan = run_analysis(
        s, status, canary, status.rollout, measurer, target, 5, now + timedelta(seconds=21)
    )
    assert measurer.targets == [target]
    (decision,) = plan.decisions
    assert decision.action == "rollback"
    assert decision.reason.endswith("(requests to adapter tickets)")
    both = rev(s, {"tickets": "pvc://models/tickets/v2", "faq": "pvc://models/faq/v4"})
    target = rollout_target("team-a", "bot", s, stable, both)
    plan = run_analysis(
        s, status, both, status.rollout, measurer, target, 5, now + timedelta(seconds=21)
    )
    assert plan.decisions[0].reason.endswith("(requests to adapters faq, tickets)")


def test_faults_scoped_to_models_spare_the_others() -> None:
    scoped = Faults.model_validate({"errorRate": 1.0, "models": ["tickets"]})
    assert scoped.applies_to("tickets")
    assert not scoped.applies_to("faq")
    assert not scoped.applies_to("bot")
    assert Faults(error_rate=1.0).applies_to("anything")


def test_token_metrics_of_an_adapter_carry_its_label() -> None:
    from prometheus_client import REGISTRY

    from kubeforge_runtimes.generation import TokenMetrics

    metrics = TokenMetrics("team-u", "gates-test", "r9")
    metrics.of_adapter("tickets").started(7)
    assert metrics.of_adapter("tickets") is metrics.of_adapter("tickets")
    labels = {"namespace": "team-u", "model_name": "gates-test", "revision": "r9"}
    prompt = "vllm:prompt_tokens_total"
    assert REGISTRY.get_sample_value(prompt, {**labels, "adapter": "tickets"}) == 7
    assert REGISTRY.get_sample_value(prompt, {**labels, "adapter": ""}) == 0


def test_the_reason_names_only_the_gates_that_were_narrowed() -> None:
    """A promql gate is narrowed only when its query selects ``{{adapters}}``."""

    def promql(name: str, selector: str) -> AnalysisMetric:
        query = f"sum(rate(kubeforge_inference_requests_total{{{selector}}}[{{{{window}}}}]))"
        return AnalysisMetric.model_validate(
            {"name": name, "type": "promql", "query": query, "max": 1}
        )

    built_in = AnalysisMetric.model_validate(ALL_TYPES[0])
    own = promql("own", 'adapter=~"{{adapters}}"')
    every = promql("every", 'revision="{{revision}}"')
    assert judged_on([built_in, own], ("tickets",)) == " (requests to adapter tickets)"
    assert judged_on([every], ("tickets",)) == ""
    assert judged_on([built_in, every], ("faq", "tickets")) == (
        f" ({built_in.name} on requests to adapters faq, tickets; the others on every request)"
    )
    assert judged_on([built_in], ()) == ""


def test_a_stable_version_without_the_adapter_label_gets_every_request_judged() -> None:
    """An operator upgrade under way: the stable predictor's runtime predates the ``adapter``
    label. The start records every request as judged and says why; each later analysis reads
    what the start recorded, not what the spec alone would say."""
    s = spec()
    stable = rev(s, ADAPTERS)
    canary = rev(s, {**ADAPTERS, "tickets": "pvc://models/tickets/v2"})
    now = datetime.now(UTC)
    started = plan_rollout(s, ModelServerStatus(stable=stable), canary, now)
    assert isinstance(started, Plan)
    meant = rollout_target("team-a", "bot", s, stable, canary)
    assert meant.adapters == ("tickets",)
    unlabelled = record_judged(started, meant, replace(meant, adapters=()))
    assert unlabelled.status["rollout"]["judgedAdapters"] == []
    (start,) = unlabelled.decisions
    assert start.reason.endswith(
        "; judged on every request: the stable revision's runtime does not label its requests "
        "with the adapter (tickets), as one from before kubeforge labelled them does"
    )
    progress = RolloutProgress.model_validate(unlabelled.status["rollout"])
    assert rollout_target("team-a", "bot", s, stable, canary, progress).adapters == ()
    # labelled: recorded as meant, nothing said
    labelled = record_judged(started, meant, meant)
    assert labelled.status["rollout"]["judgedAdapters"] == ["tickets"]
    assert labelled.decisions == started.decisions
    labelled_progress = RolloutProgress.model_validate(labelled.status["rollout"])
    assert rollout_target("team-a", "bot", s, stable, canary, labelled_progress).adapters == (
        "tickets",
    )
    # a rollout started by an operator from before gates per adapter: on every request still,
    # as it was started (its full-load baseline is every request's)
    legacy = progress.model_copy(update={"judged_adapters": None})
    assert rollout_target("team-a", "bot", s, stable, canary, legacy).adapters == ()
