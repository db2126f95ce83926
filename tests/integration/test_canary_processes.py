"""The canary analysis against real processes: Prometheus (Debian's package) scrapes a stable and
a canary runtime (``python -m kubeforge_runtimes serve``) serving the project's tiny GPT-2 under
generated load on 127.0.0.1; the operator's own rollout code decides."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubeforge_crds.modelserver import ModelServerSpec, Revision
from kubeforge_labs.canary import (
    Outcome,
    Router,
    drive_rollout,
    set_faults,
    start_prometheus,
    start_runtime,
)
from kubeforge_labs.kit import Proc
from kubeforge_operator.runtime.prometheus import Prometheus

pytestmark = pytest.mark.no_cluster  # real processes only: run beside the cluster's tests

NS, NAME, SCRAPE = "team-a", "tickets", 1.0


@dataclass
class Lab:
    prom: Proc
    stable: Proc
    canary: Proc
    model_dir: Path


@pytest.fixture(scope="module")
def lab(tiny_base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("canary-lab")
    stable = start_runtime(work, tiny_base_model, name=NAME, namespace=NS, revision="rstable")
    canary = start_runtime(work, tiny_base_model, name=NAME, namespace=NS, revision="rcanary")
    hosts = [s.url.removeprefix("http://") for s in (stable, canary)]
    prom = start_prometheus(work / "prometheus", hosts, SCRAPE)
    yield Lab(prom, stable, canary, tiny_base_model)
    for p in (prom, stable, canary):
        p.stop()


def _spec(steps: list[int], *extra_metrics: dict[str, Any]) -> ModelServerSpec:
    spec = ModelServerSpec.model_validate(
        {
            "model": {"uri": "file:///models/tickets"},
            "rollout": {"steps": steps, "interval": "10s", "failureThreshold": 2},
        }
    )
    wire = spec.to_wire()
    wire["rollout"]["metrics"] += list(extra_metrics)
    return ModelServerSpec.model_validate(wire)


# a user's own query: confined to the ModelServer's namespace before it is sent
SERVER_ERRORS = {
    "name": "server-errors",
    "type": "promql",
    "query": 'sum(rate(kubeforge_inference_requests_total{model="{{name}}",'
    'revision="{{revision}}",code=~"5.."}[{{window}}])) or vector(0)',
    "max": 1,
}


def _rev(revision: str) -> Revision:
    return Revision(revision=revision, uri=f"file:///models/{revision}", traffic_percent=0)


def _router(lab: Lab) -> Router:
    router = Router(lab.stable, lab.canary, NAME, rate=12)
    router.start()
    time.sleep(3 * SCRAPE)  # the stable version has a baseline before the rollout starts
    return router


def _rollout(lab: Lab, spec: ModelServerSpec, router: Router) -> Outcome:
    """The operator's rollout of the canary over the stable version, decided on ``lab``'s
    Prometheus while ``router`` sends the load."""
    return drive_rollout(
        spec,
        Prometheus(lab.prom.url),
        router,
        namespace=NS,
        name=NAME,
        stable=_rev("rstable"),
        canary=_rev("rcanary"),
        scrape_interval=SCRAPE,
        timeout=120,
    )


def test_runtime_serves_v1_v2_and_metrics(lab: Lab) -> None:
    v1 = httpx.post(
        f"{lab.stable.url}/v1/models/{NAME}:predict",
        json={"instances": ["my printer"], "parameters": {"max_new_tokens": 3}},
        timeout=30,
    )
    assert v1.status_code == 200, v1.text
    assert isinstance(v1.json()["predictions"][0], str)
    assert v1.headers["x-kubeforge-revision"] == "rstable"  # which version answered
    v2 = httpx.post(
        f"{lab.stable.url}/v2/models/{NAME}/infer",
        json={
            "id": "req-1",
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["login"]}],
        },
        timeout=30,
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["id"] == "req-1"
    assert v2.json()["outputs"][0]["name"] == "generated_text"
    bad = httpx.post(
        f"{lab.stable.url}/v1/models/{NAME}:predict", json={"instances": [42]}, timeout=30
    )
    assert bad.status_code == 400
    assert "instances[0]" in bad.text
    metrics = httpx.get(f"{lab.stable.url}/metrics", timeout=10).text
    assert (
        'kubeforge_inference_requests_total{adapter="",code="400",model="tickets",'
        'namespace="team-a",protocol="v1",revision="rstable"} 1.0'
    ) in metrics


def _tolerant(spec: ModelServerSpec) -> ModelServerSpec:
    """``spec`` with its latency gate an absolute SLO (p95 under 1 s), as a user of a small model
    would set it, instead of the default ratio to stable. Two identical processes beside another
    test worker's training differ in p95 by up to 5.4x over a 10 s window on two cores (CI: 0.136
    s against 0.025 s, three analyses in a row), so a ratio here gates on the machine's noise. A
    slower version is still caught by ratio: the time-to-first-token test below (the slow tier,
    which runs alone) rolls one back at 3x."""
    wire = spec.to_wire()
    wire["rollout"]["failureThreshold"] = 3
    for metric in wire["rollout"]["metrics"]:
        if metric["name"] == "latency-p95":
            metric.update(max=1.0, relativeToStable=False)
    return ModelServerSpec.model_validate(wire)


def test_healthy_canary_is_promoted_through_every_step(lab: Lab) -> None:
    router = _router(lab)
    try:
        outcome = _rollout(lab, _tolerant(_spec([25, 50, 100], SERVER_ERRORS)), router)
    finally:
        router.stop()
    assert outcome.result == "promote", [(d["action"], d["reason"]) for d in outcome.decisions]
    # a slow moment may hold a step on the latency gate (a hold is the gate waiting, not
    # failing); never on errors
    holds = [d for d in outcome.decisions if d["action"] == "hold"]
    assert len(holds) <= 2, holds
    assert all("latency-p95" in d["reason"] for d in holds), holds
    steps = [d for d in outcome.decisions if d["action"] != "hold"]
    assert [d["action"] for d in steps] == ["start", "advance", "advance", "promote"], steps
    splits = [d["trafficSplit"] for d in steps]
    assert splits == ["75/25", "50/50", "0/100", "0/100"]
    for d in outcome.decisions[1:]:
        assert d["measurements"]["error-rate"] == 0.0
        assert d["measurements"]["server-errors"] == 0.0  # the confined user query answered
        if d["action"] != "hold":  # the canary's p95 (s), measured and under the SLO
            assert 0 < d["measurements"]["latency-p95"] <= 1.0
    assert router.sent["canary"] > 20
    assert router.codes.get(500, 0) == 0


def test_canary_with_injected_errors_is_rolled_back(lab: Lab) -> None:
    set_faults(lab.canary, error_rate=0.5)
    router = _router(lab)
    try:
        outcome = _rollout(lab, _spec([10, 25, 50, 100]), router)
        canary_after = router.sent["canary"]
        time.sleep(2)
        assert router.sent["canary"] == canary_after, "no traffic reaches a rolled-back canary"
    finally:
        router.stop()
        set_faults(lab.canary, error_rate=0.0)
    assert outcome.result == "rollback", [(d["action"], d["reason"]) for d in outcome.decisions]
    actions = [d["action"] for d in outcome.decisions]
    assert actions == ["start", "hold", "rollback"], outcome.decisions
    last = outcome.decisions[-1]
    assert last["trafficSplit"] == "100/0"
    assert "error-rate" in last["reason"]
    assert last["measurements"]["error-rate"] > 0.05
    assert router.codes.get(500, 0) > 0


# the OpenAI-compatible API under load: the canary gate reads vLLM's time-to-first-token histogram
TTFT_GATE = {
    "name": "ttft-p95",
    "type": "timeToFirstTokenP95",
    # identical processes differ by a bucket at most (2x); a slower model by far more
    "max": 3.0,
    "relativeToStable": True,
}
# tokens per second of request time: identical processes within noise of 1, a model 250 ms a
# token slower at a small fraction
SPEED_GATE = {"name": "speed", "type": "generationThroughput", "min": 0.3, "relativeToStable": True}


def _openai_router(lab: Lab) -> Router:
    body = {"model": NAME, "prompt": "my printer does not print", "max_tokens": 3, "temperature": 0}
    router = Router(lab.stable, lab.canary, NAME, rate=12, body=body, path="/openai/v1/completions")
    router.start()
    time.sleep(3 * SCRAPE)
    return router


@pytest.mark.slow  # two rollouts, a minute: make test-slow (CI runs it)
@pytest.mark.parametrize(("token_latency", "result"), [(0.0, "promote"), (0.25, "rollback")])
def test_canary_gated_on_time_to_first_token(lab: Lab, token_latency: float, result: str) -> None:
    """A canary whose tokens come 250 ms later each is rolled back on its time to first token
    and its generation speed (relative to the stable version's); the same model at the same
    speed is promoted, both gates measured on the runtime's real token metrics each time."""
    set_faults(lab.canary, token_latency=token_latency)
    router = _openai_router(lab)
    try:
        outcome = _rollout(lab, _spec([50, 100], TTFT_GATE, SPEED_GATE), router)
    finally:
        router.stop()
        set_faults(lab.canary)
    decisions = [(d["action"], d["reason"], d["measurements"]) for d in outcome.decisions]
    assert outcome.result == result, decisions
    measured = [d["measurements"]["ttft-p95"] for d in outcome.decisions[1:]]
    assert all(m > 0 for m in measured), decisions  # canary/stable ratio, measured each time
    speed = [d["measurements"]["speed"] for d in outcome.decisions[1:]]
    assert all(v is not None for v in speed), decisions
    if result == "rollback":
        assert "ttft-p95" in outcome.decisions[-1]["reason"]
        assert "speed" in outcome.decisions[-1]["reason"]
        assert measured[-1] > 3.0
        assert speed[-1] < 0.3
    else:
        assert all(v >= 0.3 for v in speed), decisions
    assert router.codes.get(200, 0) > 20
    assert set(router.codes) == {200}
