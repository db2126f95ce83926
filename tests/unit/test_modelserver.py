"""ModelServer's pure parts: revisions, the InferenceService manifest, the rollout state machine,
the Prometheus queries, and what the built-in runtime finds in a model directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kubeforge_crds.modelserver import AnalysisMetric, ModelServerSpec, ModelServerStatus, Revision
from kubeforge_operator.modelserver.analysis import record_full_load, run_analysis
from kubeforge_operator.modelserver.builders import build_inference_service, cpu_millicores
from kubeforge_operator.modelserver.canary import (
    Action,
    Check,
    Decision,
    Measurement,
    with_baseline,
)
from kubeforge_operator.modelserver.prometheus import (
    Series,
    Target,
    metric_query,
    render_template,
    window,
)
from kubeforge_operator.modelserver.revisions import desired_revision, revision_id
from kubeforge_operator.modelserver.rollout import (
    Plan,
    apply_decision,
    plan_rollout,
    postponed_plan,
)
from kubeforge_operator.modelserver.status import isvc_ready
from kubeforge_operator.runtime.conditions import ConditionStatus
from kubeforge_operator.runtime.placement import Placement
from kubeforge_runtimes.models import ModelDirError, find_model
from kubeforge_runtimes.server import INFERENCE_PATH

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OWNER = {
    "apiVersion": "kubeforge.io/v1alpha1",
    "kind": "ModelServer",
    "metadata": {"name": "bot", "namespace": "team-a", "uid": "u-1"},
}


def spec(uri: str = "s3://m/v1", **rollout: Any) -> ModelServerSpec:
    return ModelServerSpec.model_validate(
        {"model": {"uri": uri}, "rollout": {"steps": [10, 50, 100], "interval": "30s", **rollout}}
    )


def rev(uri: str, s: ModelServerSpec | None = None) -> Revision:
    return desired_revision(uri, s or spec(uri), None)


# --- revisions and the manifest ------------------------------------------------------------------


def test_revision_follows_what_is_served_not_resources() -> None:
    a = spec("s3://m/v1")
    b = ModelServerSpec.model_validate({**a.to_wire(), "resources": {"cpu": "4", "memory": "8Gi"}})
    assert revision_id("s3://m/v1", a) == revision_id("s3://m/v1", b)
    assert revision_id("s3://m/v1", a) != revision_id("s3://m/v2", a)
    faulty = ModelServerSpec.model_validate(
        {**a.to_wire(), "runtime": {"faultInjection": {"errorRate": 0.5}}}
    )
    assert revision_id("s3://m/v1", a) != revision_id("s3://m/v1", faulty)
    assert revision_id("s3://m/v1", a).startswith("r")
    assert len(revision_id("s3://m/v1", a)) == 11


def test_inference_service_carries_revision_runtime_gpus_and_canary_share() -> None:
    s = ModelServerSpec.model_validate(
        {
            "model": {"uri": "s3://m/v2"},
            "runtime": {"modelFormat": "peft", "faultInjection": {"errorRate": 0.25}},
            "replicas": {"min": 1, "max": 3},
        }
    )
    placement = Placement(gpus=1, tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}])
    r = desired_revision("s3://m/v2", s, "ftj-1")
    isvc = build_inference_service(OWNER, s, placement, r, 25)
    predictor = isvc["spec"]["predictor"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert predictor["canaryTrafficPercent"] == 25
    assert predictor["minReplicas"] == 1
    assert predictor["maxReplicas"] == 3
    assert predictor["tolerations"][0]["key"] == "nvidia.com/gpu"
    model = predictor["model"]
    assert model["runtime"] == "kubeforge-llm"  # PEFT: the runtime of the ML image
    assert model["modelFormat"] == {"name": "peft"}
    assert model["storageUri"] == "s3://m/v2"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # CPU requested, not capped (throttling slows the start and the latency); memory capped
    assert "cpu" not in model["resources"]["limits"]
    assert model["resources"]["limits"]["memory"] == model["resources"]["requests"]["memory"]
    assert model["resources"]["requests"]["cpu"] == s.resources.cpu
    env = {e["name"]: e["value"] for e in model["env"]}
    assert env["KUBEFORGE_RUNTIME_REVISION"] == r.revision
    assert env["KUBEFORGE_RUNTIME_ERROR_RATE"] == "0.25"
    assert "KUBEFORGE_RUNTIME_FAULT_CONTROL" not in env  # PUT /kubeforge/faults: opt-in only
    # the CPUs requested reach the runtime (its torch threads), in millicores
    assert env["KUBEFORGE_CPU_REQUEST_MILLICORES"] == cpu_millicores(s.resources.cpu)
    assert isvc["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    controlled = ModelServerSpec.model_validate(
        {"model": {"uri": "s3://m/v2"}, "runtime": {"faultInjection": {"control": True}}}
    )
    r2 = desired_revision("s3://m/v2", controlled, None)
    model = build_inference_service(OWNER, controlled, placement, r2, None)["spec"]["predictor"]
    env = {e["name"]: e["value"] for e in model["model"]["env"]}
    assert (env["KUBEFORGE_RUNTIME_FAULT_CONTROL"], env["KUBEFORGE_RUNTIME_ERROR_RATE"]) == (
        "true",
        "0",
    )
    stable = build_inference_service(OWNER, s, placement, r, None)
    assert "canaryTrafficPercent" not in stable["spec"]["predictor"]


def test_serving_runtime_is_named_in_the_predictor() -> None:
    s = ModelServerSpec.model_validate(
        {"model": {"uri": "s3://m/v1"}, "runtime": {"servingRuntime": "vllm"}}
    )
    isvc = build_inference_service(OWNER, s, Placement(), rev("s3://m/v1", s), None)
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "vllm"


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        (None, 1, ConditionStatus.UNKNOWN),
        (
            {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]},
            2,
            ConditionStatus.UNKNOWN,
        ),
        (
            {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]},
            2,
            ConditionStatus.TRUE,
        ),
        (
            {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "False"}]},
            2,
            ConditionStatus.FALSE,
        ),
    ],
)
def test_inference_service_readiness_is_for_the_applied_generation(
    status: dict[str, Any] | None, generation: int, expected: ConditionStatus
) -> None:
    isvc = {"metadata": {"name": "bot", "generation": generation}, "status": status}
    assert isvc_ready(isvc).status == expected


# --- the state machine -------------------------------------------------------------------------


def test_first_version_is_served_at_once() -> None:
    plan = plan_rollout(spec(), ModelServerStatus(), rev("s3://m/v1"), NOW)
    assert isinstance(plan, Plan)
    assert plan.canary_percent is None
    assert plan.status["trafficSplit"] == "100/0"
    assert plan.status["stable"]["revision"] == rev("s3://m/v1").revision


def test_new_version_starts_a_canary_at_the_first_step() -> None:
    status = ModelServerStatus(stable=rev("s3://m/v1"))
    plan = plan_rollout(spec("s3://m/v2"), status, rev("s3://m/v2"), NOW)
    assert isinstance(plan, Plan)
    assert plan.canary_percent == 10
    assert plan.served.uri == "s3://m/v2"
    assert plan.status["trafficSplit"] == "90/10"
    assert plan.decisions[0].action == "start"
    assert plan.next_analysis == NOW + timedelta(seconds=30)


def test_a_rollout_in_progress_needs_an_analysis() -> None:
    status = ModelServerStatus(stable=rev("s3://m/v1"))
    started = plan_rollout(spec("s3://m/v2"), status, rev("s3://m/v2"), NOW)
    assert isinstance(started, Plan)
    status = ModelServerStatus.model_validate({**status.to_wire(), **started.status})
    again = plan_rollout(spec("s3://m/v2"), status, rev("s3://m/v2"), NOW + timedelta(seconds=5))
    assert not isinstance(again, Plan)
    assert again.revision == rev("s3://m/v2").revision


def test_an_analysis_due_before_kserve_is_ready_starts_the_interval_again() -> None:
    """The canary's pods are still starting: no decision, the traffic split stays, and the
    analysis is a whole interval later (the canary gets a full interval of traffic)."""
    status = ModelServerStatus(stable=rev("s3://m/v1"))
    started = plan_rollout(spec("s3://m/v2"), status, rev("s3://m/v2"), NOW)
    assert isinstance(started, Plan)
    status = ModelServerStatus.model_validate({**status.to_wire(), **started.status})
    progress = plan_rollout(spec("s3://m/v2"), status, rev("s3://m/v2"), NOW)
    assert not isinstance(progress, Plan)
    late = NOW + timedelta(seconds=31)
    plan = postponed_plan(spec("s3://m/v2"), status, rev("s3://m/v2"), progress, late)
    assert plan.decisions == []
    assert plan.canary_percent == 10
    assert plan.next_analysis == late + timedelta(seconds=30)
    assert plan.status["rollout"]["nextAnalysisTime"] == "2026-11-23T12:01:01Z"
    assert plan.status["rollout"]["step"] == progress.step


def test_going_back_to_the_stable_version_cancels_the_rollout() -> None:
    status = ModelServerStatus(stable=rev("s3://m/v1"))
    started = plan_rollout(spec("s3://m/v2"), status, rev("s3://m/v2"), NOW)
    assert isinstance(started, Plan)
    status = ModelServerStatus.model_validate({**status.to_wire(), **started.status})
    plan = plan_rollout(spec("s3://m/v1"), status, rev("s3://m/v1"), NOW)
    assert isinstance(plan, Plan)
    assert plan.decisions[0].action == "cancel"
    assert plan.status["rollout"] is None
    assert plan.canary_percent is None


def test_a_rolled_back_version_is_not_rolled_out_again() -> None:
    status = ModelServerStatus(stable=rev("s3://m/v1"), rolled_back=rev("s3://m/v2"))
    plan = plan_rollout(spec("s3://m/v2"), status, rev("s3://m/v2"), NOW)
    assert isinstance(plan, Plan)
    assert plan.phase == "RolledBack"
    assert plan.served.revision == rev("s3://m/v1").revision
    assert plan.decisions == []
    newer = plan_rollout(spec("s3://m/v3"), status, rev("s3://m/v3"), NOW)
    assert isinstance(newer, Plan)
    assert newer.decisions[0].action == "start"


def _in_rollout() -> tuple[ModelServerSpec, ModelServerStatus, Revision]:
    s = spec("s3://m/v2")
    status = ModelServerStatus(stable=rev("s3://m/v1"))
    started = plan_rollout(s, status, rev("s3://m/v2"), NOW)
    assert isinstance(started, Plan)
    return (
        s,
        ModelServerStatus.model_validate({**status.to_wire(), **started.status}),
        rev("s3://m/v2"),
    )


def _decide(
    action: Action, step: int, traffic: int, failures: int = 0, checks: Any = ()
) -> Decision:
    return Decision(action, step, traffic, failures, f"{action} reason", list(checks))


def test_advance_moves_traffic_and_waits_an_interval() -> None:
    s, status, canary = _in_rollout()
    assert status.rollout is not None
    plan = apply_decision(
        s, status, canary, status.rollout, _decide(Action.ADVANCE, 1, 50), NOW, timedelta(seconds=2)
    )
    assert plan.canary_percent == 50
    assert plan.status["trafficSplit"] == "50/50"
    assert plan.status["rollout"]["step"] == 1
    assert plan.next_analysis == NOW + timedelta(seconds=30)


def test_a_failed_analysis_is_confirmed_after_one_scrape() -> None:
    s, status, canary = _in_rollout()
    assert status.rollout is not None
    plan = apply_decision(
        s, status, canary, status.rollout, _decide(Action.HOLD, 0, 10, 1), NOW, timedelta(seconds=2)
    )
    assert plan.phase == "Progressing"
    assert plan.canary_percent == 10
    assert plan.status["rollout"]["failures"] == 1
    assert plan.next_analysis == NOW + timedelta(seconds=2)


def test_rollback_restores_the_stable_predictor_and_names_the_metric() -> None:
    s, status, canary = _in_rollout()
    assert status.rollout is not None
    failing = [Check("error-rate", False, 0.4, "error-rate 0.4 > 0.05")]
    plan = apply_decision(
        s,
        status,
        canary,
        status.rollout,
        _decide(Action.ROLLBACK, 0, 0, 2, failing),
        NOW,
        timedelta(seconds=2),
    )
    assert plan.phase == "RolledBack"
    assert plan.served.revision == rev("s3://m/v1").revision
    assert plan.canary_percent is None
    assert plan.status["rolledBack"]["revision"] == canary.revision
    assert plan.status["rollout"] is None
    assert plan.rolled_back is not None
    assert plan.rolled_back.reason == "ErrorRateExceeded"
    assert plan.decisions[0].measurements == {"error-rate": 0.4}


def test_promote_makes_the_canary_stable() -> None:
    s, status, canary = _in_rollout()
    assert status.rollout is not None
    plan = apply_decision(
        s,
        status,
        canary,
        status.rollout,
        _decide(Action.PROMOTE, 2, 100),
        NOW,
        timedelta(seconds=2),
    )
    assert plan.phase == "Ready"
    assert plan.status["stable"]["revision"] == canary.revision
    assert plan.status["canary"] is None
    assert plan.canary_percent is None


def test_hold_on_failure_freezes_the_split() -> None:
    s = spec("s3://m/v2", onFailure="hold", failureThreshold=2)
    status = ModelServerStatus(stable=rev("s3://m/v1"))
    started = plan_rollout(s, status, rev("s3://m/v2", s), NOW)
    assert isinstance(started, Plan)
    status = ModelServerStatus.model_validate({**status.to_wire(), **started.status})
    assert status.rollout is not None
    plan = apply_decision(
        s,
        status,
        rev("s3://m/v2", s),
        status.rollout,
        _decide(Action.HOLD, 0, 10, 2),
        NOW,
        timedelta(seconds=2),
    )
    assert plan.phase == "Held"
    assert plan.next_analysis is None
    assert plan.canary_percent == 10


def test_baseline_stands_in_for_a_stable_version_without_traffic() -> None:
    measured = {"latency": Measurement(canary=0.2, stable=None), "errors": Measurement(canary=0.0)}
    filled, baseline = with_baseline(measured, {"latency": 0.1})
    assert filled["latency"].stable == 0.1
    assert baseline == {"latency": 0.1}
    filled, baseline = with_baseline({"latency": Measurement(canary=0.2, stable=0.15)}, baseline)
    assert baseline == {"latency": 0.15}
    failed, _ = with_baseline({"latency": Measurement(error="down")}, {"latency": 0.1})
    assert failed["latency"].error == "down"  # a failed query stays a failure


def test_full_load_value_is_the_comparison_at_the_100_percent_step() -> None:
    measured = {"latency": Measurement(canary=0.3, stable=None)}
    full = {"latency": 0.25}
    filled, _ = with_baseline(measured, {"latency": 0.1}, full, canary_traffic=100)
    assert filled["latency"].stable == 0.25  # not the 0.1 measured at half the load
    # below 100 % the stable version's own value this interval is the comparison
    at_half = {"latency": Measurement(canary=0.3, stable=0.2)}
    filled, baseline = with_baseline(at_half, {}, full, canary_traffic=50)
    assert filled["latency"].stable == 0.2
    assert baseline == {"latency": 0.2}
    # without a full-load value the last measured one stands in, as before
    filled, _ = with_baseline(measured, {"latency": 0.1}, {}, canary_traffic=100)
    assert filled["latency"].stable == 0.1


class FixedMeasurer:
    """Prometheus's answers as a table: revision -> metric name -> value (pure stand-in for the
    query layer, which tests/integration runs against the real Prometheus)."""

    def __init__(self, values: dict[str, dict[str, float]]) -> None:
        self.values = values
        self.asked: list[tuple[str, str, bool]] = []

    def measure(
        self, metrics: list[AnalysisMetric], target: Target, win: str
    ) -> dict[str, Measurement]:
        out = {}
        for m in metrics:
            self.asked.append((m.name, target.canary, m.relative_to_stable))
            stable = self.values[target.stable].get(m.name) if m.relative_to_stable else None
            out[m.name] = Measurement(canary=self.values[target.canary].get(m.name), stable=stable)
        return out


def test_a_rollout_records_the_stable_version_at_full_load_and_compares_at_100() -> None:
    s = spec("s3://m/v2")  # default checks: error rate <= 5 %, p95 latency <= 1.5x stable
    v1, v2 = rev("s3://m/v1"), rev("s3://m/v2", s)
    status = ModelServerStatus(stable=v1)
    started = plan_rollout(s, status, v2, NOW)
    assert isinstance(started, Plan)
    target = Target("team-a", "bot", canary=v2.revision, stable=v1.revision)
    before = FixedMeasurer({v1.revision: {"latency-p95": 0.4, "error-rate": 0.0}})
    started = record_full_load(s, started, before, target, scrape_seconds=5)
    assert before.asked == [("latency-p95", v1.revision, False)]  # one query, relative only
    assert started.status["rollout"]["stableFullLoad"] == {"latency-p95": 0.4}
    assert started.decisions[0].reason == "canary at 10%; stable at full load: latency-p95 0.4"
    status = ModelServerStatus.model_validate({**status.to_wire(), **started.status})
    assert status.rollout is not None
    at_100 = status.rollout.model_copy(update={"step": 2, "stable_baseline": {"latency-p95": 0.2}})
    # the canary under all the load: 0.5 s, 2.5x the stable at half load, 1.25x at full load
    now_measured = FixedMeasurer(
        {v2.revision: {"latency-p95": 0.5, "error-rate": 0.0}, v1.revision: {}}
    )
    plan = run_analysis(s, status, v2, at_100, now_measured, target, 5, NOW + timedelta(minutes=2))
    assert plan.decisions[-1].action == "promote", plan.decisions[-1].reason
    assert "0.5 vs 0.4" in plan.decisions[-1].reason


def test_no_traffic_before_the_rollout_records_no_full_load_value() -> None:
    s = spec("s3://m/v2")
    v1, v2 = rev("s3://m/v1"), rev("s3://m/v2", s)
    started = plan_rollout(s, ModelServerStatus(stable=v1), v2, NOW)
    assert isinstance(started, Plan)
    target = Target("team-a", "bot", canary=v2.revision, stable=v1.revision)
    same = record_full_load(s, started, FixedMeasurer({v1.revision: {}}), target, 5)
    assert not same.status["rollout"]["stableFullLoad"]
    assert same.decisions[0].reason == "canary at 10%"


# --- Prometheus queries --------------------------------------------------------------------------


def test_queries_select_the_revision_and_window() -> None:
    s = spec()
    err, lat = s.rollout.metrics
    t = Target("team-a", "bot", canary="rc", stable="rs")
    q = metric_query(err, t.series(t.canary), "30s")
    assert 'revision="rc"' in q
    assert 'code=~"5.."' in q
    assert "[30s]" in q
    assert "or vector(0)" in q
    assert q.count("kubeforge_inference_requests_total") == 2
    latency = metric_query(lat, Series("team-a", "bot", "rs"), "1m")
    assert latency.startswith("histogram_quantile(0.95")


@pytest.mark.parametrize(
    ("kind", "histogram"),
    [
        ("timeToFirstTokenP95", "time_to_first_token_seconds_bucket"),
        ("interTokenLatencyP95", "inter_token_latency_seconds_bucket"),
    ],
)
def test_token_gates_read_vllm_histograms_by_model_name(kind: str, histogram: str) -> None:
    """vLLM's label for the model is model_name; its colon may be stored as an underscore."""
    metric = AnalysisMetric.model_validate({"name": "t", "type": kind, "max": 2})
    q = metric_query(metric, Series("team-a", "bot", "rc"), "20s")
    assert q.startswith("histogram_quantile(0.95, sum by (le) (rate({")
    assert f'__name__=~"vllm[:_]{histogram}"' in q
    assert 'model_name="bot"' in q
    assert 'revision="rc"' in q
    assert 'namespace="team-a"' in q
    assert "[20s]" in q


def test_template_substitution_and_quoting() -> None:
    assert (
        render_template(
            "x{ns='{{namespace}}',r='{{revision}}'}[{{window}}]", Series("a", "b", "r1"), "40s"
        )
        == "x{ns='a',r='r1'}[40s]"
    )
    s = spec()
    q = metric_query(s.rollout.metrics[0], Series('we"ird', "bot", "r"), "1m")
    assert 'namespace="we\\"ird"' in q


@pytest.mark.parametrize(
    ("interval", "scrape", "expected"), [(30, 5, "30s"), (10, 15, "60s"), (60, 30, "120s")]
)
def test_window_spans_an_interval_and_at_least_four_scrapes(
    interval: float, scrape: float, expected: str
) -> None:
    assert window(interval, scrape) == expected


# --- the runtime's model directory ---------------------------------------------------------------


def _touch(path: Path, content: str = "{}") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def test_registered_version_prefers_merged_and_reads_the_base_from_lineage(tmp_path: Path) -> None:
    version = tmp_path / "v1"
    _touch(version / "adapter" / "adapter_config.json")
    _touch(version / "lineage.json", json.dumps({"baseModel": "file:///models/base"}))
    found = find_model(version)
    assert (found.format, found.path.name, found.base) == ("peft", "adapter", "file:///models/base")
    _touch(version / "merged" / "config.json")
    assert find_model(version).path.name == "merged"
    assert find_model(version, expected="peft").path.name == "adapter"


def test_model_directory_errors_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match="does not exist"):
        find_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match="holds no model"):
        find_model(tmp_path / "empty")
    _touch(tmp_path / "sk" / "model.joblib")
    with pytest.raises(ModelDirError, match="modelFormat is 'transformers'"):
        find_model(tmp_path / "sk", expected="transformers")
    _touch(tmp_path / "lonely" / "adapter_config.json")
    with pytest.raises(ModelDirError, match="base model is unknown"):
        find_model(tmp_path / "lonely")


@pytest.mark.parametrize(
    ("path", "protocol"),
    [
        ("/v1/models/bot:predict", "v1"),
        ("/v2/models/bot/infer", "v2"),
        ("/v2/models/bot/versions/3/infer", "v2"),
        ("/v2/models/bot/generate", "v2"),
        ("/v2/models/bot/ready", None),
        ("/metrics", None),
        ("/v1/models/bot:explain", None),
    ],
)
def test_only_inference_requests_are_counted(path: str, protocol: str | None) -> None:
    m = INFERENCE_PATH.match(path)
    assert (None if m is None else ("v1" if m.group("v1") else "v2")) == protocol


def _ftj(name: str, model: str, version: str, done: str, phase: str = "Succeeded") -> dict:  # type: ignore[type-arg]
    return {
        "metadata": {"name": name, "creationTimestamp": "2026-11-01T00:00:00Z"},
        "status": {
            "phase": phase,
            "completionTime": done,
            "model": {"name": model, "version": version, "uri": f"file:///m/{model}/{version}"},
        },
    }


def test_model_name_serves_the_version_registered_last() -> None:
    from kubeforge_operator.modelserver.resolve import newest_version

    jobs = [
        _ftj("tickets-v1", "tickets", "1", "2026-11-23T10:00:00Z"),
        _ftj("watch-retrain-1", "tickets", "2", "2026-11-23T12:00:00Z"),
        _ftj("watch-retrain-2", "tickets", "3", "2026-11-23T13:00:00Z", phase="Failed"),
        _ftj("other", "faq", "9", "2026-11-23T14:00:00Z"),
        {"metadata": {"name": "running"}, "status": {"phase": "Running"}},
        {"metadata": {"name": "new"}},
    ]
    assert newest_version(jobs, "tickets") == ("file:///m/tickets/2", "watch-retrain-1")
    assert newest_version(jobs, "faq") == ("file:///m/faq/9", "other")
    assert newest_version(jobs, "missing") is None


def test_generation_throughput_is_tokens_per_second_of_request_time() -> None:
    """Load-independent: the revision's generated tokens over the seconds its requests ran, so
    a canary with a tenth of the traffic is not "ten times slower"."""
    metric = AnalysisMetric.model_validate(
        {"name": "speed", "type": "generationThroughput", "min": 0.9, "relativeToStable": True}
    )
    q = metric_query(metric, Series("team-a", "bot", "rc"), "30s")
    tokens, _, seconds = q.partition(" / ")
    assert tokens.startswith('sum(rate({__name__=~"vllm[:_]generation_tokens_total",')
    assert seconds.startswith('sum(rate({__name__=~"vllm[:_]e2e_request_latency_seconds_sum",')
    assert q.count('model_name="bot"') == 2
    assert q.count('revision="rc"') == 2


def test_adapters_resolve_to_versions_on_volumes_or_say_why_not() -> None:
    from types import SimpleNamespace

    from kubeforge_operator.modelserver.resolve import resolve_adapters

    succeeded = {"status": {"phase": "Succeeded", "model": {"uri": "pvc://models/tickets/v2"}}}
    kube = SimpleNamespace(get=lambda kind, ns, name: succeeded if name == "tickets-v2" else None)
    ctx = SimpleNamespace(name="bot", namespace="team-a", kube=kube)

    def resolve(*adapters: dict[str, str]) -> Any:
        s = ModelServerSpec.model_validate(
            {"model": {"uri": "pvc://models/base"}, "adapters": list(adapters)}
        )
        return resolve_adapters(ctx, s)  # type: ignore[arg-type]

    assert resolve(
        {"name": "tickets", "fineTuneJob": "tickets-v2"}, {"name": "faq", "uri": "pvc://a/faq"}
    ) == {"tickets": "pvc://models/tickets/v2", "faq": "pvc://a/faq"}
    taken = resolve({"name": "bot", "uri": "pvc://a/x"})
    assert (taken.reason, taken.message.split(":")[0]) == (
        "AdapterNameTaken",
        "spec.adapters[0].name",
    )
    missing = resolve({"name": "a", "uri": "pvc://a/x"}, {"name": "b", "fineTuneJob": "gone"})
    assert missing.reason == "FineTuneJobNotFound"
    assert missing.message.startswith("spec.adapters[1].fineTuneJob: FineTuneJob 'gone' not found")
    remote = resolve({"name": "a", "uri": "s3://bucket/a"})
    assert remote.reason == "AdapterNotOnVolume"


@pytest.mark.parametrize(
    ("cpu", "millicores"),
    [("2", "2000"), ("200m", "200"), ("1.5", "1500"), ("0.0005", "1"), ("100u", "1"), (4, "4000")],
)
def test_the_cpu_request_in_millicores_rounds_up_as_the_downward_api(
    cpu: str, millicores: str
) -> None:
    assert cpu_millicores(cpu) == millicores
