"""A new version of one adapter, rolled out as a canary beside an unchanged adapter, is judged on
its own requests. Two runtime processes (``python -m kubeforge_runtimes serve``) serve the tiny
base model with the adapters ``tickets`` and ``shuffled``, the canary with a new version of
``tickets``; Prometheus (Debian's package) scrapes both; the operator's rollout code decides
(``kubeforge_labs.canary.drive_rollout``). One request in twenty names ``tickets``: a version of
it that fails every request is rolled back, although the canary's error rate over all of its
requests stays under the gate; the same version without the faults is promoted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kubeforge_crds.modelserver import AnalysisMetric, ModelServerSpec, Revision
from kubeforge_labs import models
from kubeforge_labs.canary import Router, drive_rollout, set_faults, start_prometheus, start_runtime
from kubeforge_labs.kit import Proc, free_port, wait_for
from kubeforge_operator.modelserver.prometheus import Series, adapters_unlabelled, metric_query
from kubeforge_operator.modelserver.revisions import desired_revision
from kubeforge_operator.runtime.prometheus import Prometheus

pytestmark = pytest.mark.no_cluster  # real processes only: run beside the cluster's tests

NS, NAME, SCRAPE = "team-a", "support", 1.0
GATE = 0.1  # the canary's error rate, at most
ERRORS = {"name": "error-rate", "type": "errorRate", "max": GATE}
# 24 requests a second, one in twenty naming tickets: at the first step about 9 of them reach
# the canary in an interval (none, which is no data and a failed analysis, once in ~10^4), and
# over the ~190 canary requests of a rollback the diluted error rate is 5 +- 1.6 %
RATE = 24
ROLLOUT = {"steps": [50, 100], "interval": "15s", "failureThreshold": 2, "metrics": [ERRORS]}
SPEC = ModelServerSpec.model_validate({"model": {"uri": "file:///models/base"}, "rollout": ROLLOUT})


@dataclass
class Lab:
    prom: Proc
    stable: Proc
    canary: Proc
    revisions: dict[str, Revision]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("adapter-canary")
    base = models.base_model(work / "base")
    folders = {
        "v1": models.ticket_adapter(work / "tickets-v1"),
        "v2": models.ticket_adapter(work / "tickets-v2"),  # the new version (a copy will do)
        "shuffled": models.ticket_adapter(work / "shuffled", shuffled=True),
    }
    served = {
        "stable": {"tickets": folders["v1"], "shuffled": folders["shuffled"]},
        "canary": {"tickets": folders["v2"], "shuffled": folders["shuffled"]},
    }
    revisions = {
        side: desired_revision(
            SPEC.model.uri or "", SPEC, None, adapters={n: f"file://{p}" for n, p in ads.items()}
        )
        for side, ads in served.items()
    }
    procs = {
        side: start_runtime(
            work,
            base,
            name=NAME,
            namespace=NS,
            revision=revisions[side].revision,
            max_new_tokens=2,
            adapters=served[side],
        )
        for side in served
    }
    hosts = [p.url.removeprefix("http://") for p in procs.values()]
    prom = start_prometheus(work / "prometheus", hosts, SCRAPE)
    yield Lab(prom, procs["stable"], procs["canary"], revisions)
    for p in (prom, *procs.values()):
        p.stop()


def _body(model: str) -> dict[str, object]:
    return {"model": model, "prompt": "ticket: the vpn drops. resolution:", "max_tokens": 2}


@pytest.mark.parametrize(("error_rate", "result"), [(1.0, "rollback"), (0.0, "promote")])
def test_a_canary_of_one_adapter_is_judged_on_that_adapters_requests(
    lab: Lab, error_rate: float, result: str
) -> None:
    set_faults(lab.canary, error_rate=error_rate, models=("tickets",))
    bodies = [_body("tickets"), *[_body("shuffled")] * 19]
    router = Router(
        lab.stable, lab.canary, NAME, rate=RATE, path="/openai/v1/completions", bodies=bodies
    )
    router.start()
    time.sleep(3 * SCRAPE)
    started = time.monotonic()
    try:
        outcome = drive_rollout(
            SPEC, Prometheus(lab.prom.url), router, namespace=NS, name=NAME,
            stable=lab.revisions["stable"], canary=lab.revisions["canary"],
            scrape_interval=SCRAPE, timeout=150,
        )  # fmt: skip
        took = time.monotonic() - started
    finally:
        router.stop()
        set_faults(lab.canary)
    decisions = [(d["action"], d["reason"], d["measurements"]) for d in outcome.decisions]
    assert outcome.result == result, decisions
    judged = [d for d in outcome.decisions if d["action"] != "start"]
    assert judged, decisions
    # every analysis measured the changed adapter's requests alone, and said so
    assert all(d["reason"].endswith("(requests to adapter tickets)") for d in judged), decisions
    measured = [d["measurements"].get("error-rate") for d in judged]
    if result == "promote":
        assert all(m == 0.0 for m in measured), decisions
        return
    assert outcome.decisions[-1]["trafficSplit"] == "100/0"
    assert "error-rate" in outcome.decisions[-1]["reason"]
    assert measured[-1] == 1.0, decisions  # every request to the new tickets failed
    # ... while over all of the canary's requests, the gate would have seen a pass
    metric = AnalysisMetric.model_validate(ERRORS)
    canary = lab.revisions["canary"].revision
    every = metric_query(metric, Series(NS, NAME, canary), f"{int(took) + 5}s")
    diluted = Prometheus(lab.prom.url).query(every)
    assert diluted is not None
    assert 0 < diluted < GATE, (diluted, decisions)
    print(f"adapter tickets: error rate {measured[-1]}; all the canary's requests: {diluted:.3f}")
    assert router.codes.get(500, 0) > 0


def test_a_rollout_reads_whether_the_stable_version_labels_its_adapters_requests(lab: Lab) -> None:
    """What the start of a rollout checks before it judges adapters' requests alone: a stable
    revision that is scraped but has no request series of an adapter (the runtime makes one for
    each it serves when it starts) runs a runtime from before the ``adapter`` label, as this
    one has none of an adapter it does not serve."""
    prom = Prometheus(lab.prom.url)
    stable = lab.revisions["stable"].revision
    wait_for(
        "the stable version scraped", lambda: prom.query(f'count({{revision="{stable}"}})'), 30
    )
    assert not adapters_unlabelled(prom, Series(NS, NAME, stable, ("shuffled", "tickets")))
    assert adapters_unlabelled(prom, Series(NS, NAME, stable, ("faq", "tickets")))
    # nothing scraped of the revision, or no Prometheus to ask: no evidence, adapters judged
    assert not adapters_unlabelled(prom, Series(NS, NAME, "r-unknown", ("tickets",)))
    nobody = Prometheus(f"http://127.0.0.1:{free_port()}", timeout=2)
    assert not adapters_unlabelled(nobody, Series(NS, NAME, stable, ("faq",)))
