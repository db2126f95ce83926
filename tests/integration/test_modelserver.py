"""ModelServer on the local control plane: the operator (its own process, with a real Prometheus)
creates the InferenceService, moves it through the canary steps, promotes, rolls back, carries on
after a restart, and leaves nothing behind on deletion.

No KServe controller runs here (it needs Knative or a full serving stack), so a small stand-in
does the two things KServe would: it reports the InferenceService Ready for the generation the
operator applied, and routes the generated load by ``canaryTrafficPercent`` to runtime processes
(the real ``kubeforge_runtimes`` serving a real scikit-learn model) labelled with the revision in
the predictor's env. Prometheus scrapes those processes; the operator queries Prometheus.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kubeforge_crds.modelserver import ModelServerSpec
from kubeforge_labs.canary import (
    SKLEARN_BODY,
    Proc,
    Router,
    start_prometheus,
    start_runtime,
    write_sklearn_model,
)
from kubeforge_labs.kserve import KServeStandIn, Predictor
from kubeforge_operator.modelserver.revisions import desired_revision
from tests.integration.conftest import (
    ISOLATED_PREFIX,
    Cluster,
    OperatorProcess,
    start_operator,
    stop_operator,
    wait_until,
)

pytestmark = [pytest.mark.usefixtures("local_cluster")]

NAME = "scorer"
SCRAPE = 1.0


def serve_with(runtimes: dict[str, Proc], router: Router) -> Callable[[Predictor], None]:
    """Route traffic as KServe would for the predictor the stand-in reports: all of it to a
    revision without canaryTrafficPercent, that share to the canary otherwise."""

    def route(predictor: Predictor) -> None:
        if predictor.canary_percent is None:
            router.stable = runtimes[predictor.revision]
            router.canary_percent = 0
        else:
            router.canary = runtimes[predictor.revision]
            router.canary_percent = predictor.canary_percent

    return route


def _uri(version: str) -> str:
    return f"s3://models/scorer/{version}"


def _spec(version: str, **runtime: Any) -> dict[str, Any]:
    return {
        "model": {"uri": _uri(version)},
        "runtime": {"modelFormat": "sklearn", **runtime},
        "resources": {"cpu": "500m", "memory": "1Gi"},
        "rollout": {"steps": [25, 50, 100], "interval": "10s", "failureThreshold": 2},
    }


def _revision(spec: dict[str, Any]) -> str:
    parsed = ModelServerSpec.model_validate(spec)
    return desired_revision(str(parsed.model.uri), parsed, None).revision


class Env:
    def __init__(self, cluster: Cluster, ns: str, work: Path, prom: Proc, op: OperatorProcess):
        self.cluster, self.ns, self.work, self.prom, self.op = cluster, ns, work, prom, op

    def get(self, what: str) -> dict[str, Any] | None:
        proc = self.cluster.kubectl("get", what, "-n", self.ns, "-o", "json", check=False)
        return dict(json.loads(proc.stdout)) if proc.returncode == 0 else None

    def apply(self, spec: dict[str, Any]) -> None:
        obj = {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "ModelServer",
            "metadata": {"name": NAME},
            "spec": spec,
        }
        self.cluster.kubectl("apply", "-n", self.ns, "-f", "-", stdin=json.dumps(obj))

    def status(self) -> dict[str, Any]:
        return dict((self.get(f"modelserver/{NAME}") or {}).get("status") or {})

    def wait_phase(self, phase: str, timeout: float = 90) -> dict[str, Any]:
        return dict(
            wait_until(
                lambda: (s := self.status()).get("phase") == phase and s,
                timeout,
                what=f"ModelServer phase {phase}",
            )
        )

    def conditions(self) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in self.status().get("conditions", [])}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sklearn_model(tmp_path_factory.mktemp("sklearn") / "model")


@pytest.fixture(scope="module")
def env(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, model_dir: Path
) -> Iterator[Env]:
    ns = f"{ISOLATED_PREFIX}ms-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", ns)
    work = tmp_path_factory.mktemp("modelserver")
    revisions = {
        "v1": _revision(_spec("v1")),
        "v2": _revision(_spec("v2")),
        "v3": _revision(_spec("v3", faultInjection={"errorRate": 0.5})),
        "v4": _revision(_spec("v4")),
    }
    # started together: each waits for its model to load (imports and all), ~10 s apiece
    with ThreadPoolExecutor(len(revisions)) as pool:
        starting = {
            rev: pool.submit(
                start_runtime,
                work,
                model_dir,
                name=NAME,
                namespace=ns,
                revision=rev,
                error_rate=0.5 if version == "v3" else 0.0,
            )
            for version, rev in revisions.items()
        }
        runtimes = {rev: started.result() for rev, started in starting.items()}
    prom = start_prometheus(
        work / "prometheus", [p.url.removeprefix("http://") for p in runtimes.values()], SCRAPE
    )
    router = Router(
        runtimes[revisions["v1"]], runtimes[revisions["v1"]], NAME, rate=10, body=SKLEARN_BODY
    )
    router.start()
    standin = KServeStandIn(cluster.kubeconfig, ns, NAME, serve_with(runtimes, router))
    standin.start()
    op = start_operator(
        cluster,
        work,
        namespaces=json.dumps([ns]),
        prometheus_url=prom.url,
        prometheus_scrape_interval=str(SCRAPE),
    )
    e = Env(cluster, ns, work, prom, op)
    e.revisions = revisions  # type: ignore[attr-defined]
    e.router = router  # type: ignore[attr-defined]
    yield e
    stop_operator(e.op)
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "operator-modelserver.log").write_bytes(e.op.log.read_bytes())
    standin.stop()
    router.stop()
    for p in [prom, *runtimes.values()]:
        p.stop()
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _isvc(env: Env) -> dict[str, Any]:
    return dict(env.get(f"inferenceservice/{NAME}") or {})


def _served(isvc: dict[str, Any]) -> tuple[str, int | None]:
    predictor = isvc["spec"]["predictor"]
    return predictor["model"]["storageUri"], predictor.get("canaryTrafficPercent")


def test_first_version_is_served_without_a_canary(env: Env) -> None:
    env.apply(_spec("v1"))
    status = env.wait_phase("Ready", 60)
    assert status["stable"]["revision"] == env.revisions["v1"]  # type: ignore[attr-defined]
    assert status["trafficSplit"] == "100/0"
    assert status["url"] == f"http://{NAME}.{env.ns}.example.com"
    isvc = _isvc(env)
    assert _served(isvc) == (_uri("v1"), None)
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == "kubeforge"
    assert model["modelFormat"] == {"name": "sklearn"}
    assert isvc["metadata"]["ownerReferences"][0]["name"] == NAME
    assert env.conditions()["Ready"]["status"] == "True"


def test_healthy_new_version_is_promoted_step_by_step(env: Env) -> None:
    env.apply(_spec("v2"))
    seen: set[int | None] = set()

    def promoted() -> bool:
        seen.add(_served(_isvc(env))[1])
        s = env.status()
        return s.get("phase") == "Ready" and s["stable"]["revision"] == env.revisions["v2"]  # type: ignore[attr-defined]

    try:
        wait_until(promoted, 90, interval=0.3, what="v2 promoted")
    except AssertionError as err:
        decisions = [(d["action"], d["reason"]) for d in env.status().get("decisions", [])]
        raise AssertionError(f"{err}; decisions: {decisions}") from None
    assert {25, 50} <= seen, seen  # the InferenceService went through the steps
    assert _served(_isvc(env)) == (_uri("v2"), None)
    actions = [(d["action"], d["trafficSplit"]) for d in env.status()["decisions"]]
    assert actions[-4:] == [
        ("start", "75/25"),
        ("advance", "50/50"),
        ("advance", "0/100"),
        ("promote", "0/100"),
    ]
    events = env.cluster.kubectl(
        "get",
        "events",
        "-n",
        env.ns,
        "--field-selector",
        f"involvedObject.name={NAME}",
        "-o",
        "json",
    )
    reasons = {e["reason"] for e in json.loads(events.stdout)["items"]}
    assert {"RolloutStart", "RolloutAdvance", "RolloutPromote"} <= reasons


def test_failing_version_is_rolled_back_and_stays_rolled_back(env: Env) -> None:
    bad = _spec("v3", faultInjection={"errorRate": 0.5})
    env.apply(bad)
    status = env.wait_phase("RolledBack", 90)
    rolled = env.conditions()["RolledBack"]
    assert rolled["status"] == "True"
    assert rolled["reason"] == "ErrorRateExceeded"
    assert "error-rate" in rolled["message"]
    assert status["rolledBack"]["revision"] == env.revisions["v3"]  # type: ignore[attr-defined]
    assert status["stable"]["revision"] == env.revisions["v2"]  # type: ignore[attr-defined]
    assert status["decisions"][-1]["measurements"]["error-rate"] > 0.05
    assert _served(_isvc(env)) == (_uri("v2"), None)  # the stable predictor is back
    # the spec still names v3 (as a GitOps tool would keep it): no new rollout starts
    starts = sum(d["action"] == "start" for d in status["decisions"])
    wait_until(lambda: env.status().get("phase") == "RolledBack", 5)
    import time

    time.sleep(12)  # longer than the resync and an analysis interval
    after = env.status()
    assert after["phase"] == "RolledBack"
    assert sum(d["action"] == "start" for d in after["decisions"]) == starts
    assert _served(_isvc(env)) == (_uri("v2"), None)


def test_restarted_operator_continues_the_rollout(env: Env, cluster: Cluster) -> None:
    env.apply(_spec("v4"))
    wait_until(
        lambda: (
            any(d["action"] == "advance" for d in env.status().get("decisions", [])[-3:])
            and env.status().get("rollout", {}).get("revision") == env.revisions["v4"]
        ),  # type: ignore[attr-defined]
        60,
        what="the first advance of v4",
    )
    env.op.proc.kill()  # SIGKILL: no chance to tidy up
    env.op.proc.wait()
    before = env.status()
    assert before["phase"] == "Progressing"
    env.op = start_operator(
        cluster,
        env.work,
        namespaces=json.dumps([env.ns]),
        prometheus_url=env.prom.url,
        prometheus_scrape_interval=str(SCRAPE),
    )
    status = env.wait_phase("Ready", 90)
    assert status["stable"]["revision"] == env.revisions["v4"]  # type: ignore[attr-defined]
    v4 = [d for d in status["decisions"] if d["revision"] == env.revisions["v4"]]  # type: ignore[attr-defined]
    assert [d["action"] for d in v4] == ["start", "advance", "advance", "promote"], v4
    steps = [d["step"] for d in v4]
    assert steps == sorted(steps)


def test_bad_inputs_leave_the_served_version_alone(env: Env) -> None:
    served = _served(_isvc(env))
    env.apply({**_spec("v5"), "runtime": {"modelFormat": "sklearn", "servingRuntime": "vllm"}})
    accepted = wait_until(
        lambda: (c := env.conditions().get("Accepted")) and c["reason"] == "UnknownRuntime" and c,
        30,
    )
    assert "spec.runtime.servingRuntime" in accepted["message"]
    spec = _spec("v5")
    spec["rollout"]["metrics"] = [
        {"name": "custom", "type": "promql", "query": "sum(rate(x[{{window}}]) /", "max": 1}
    ]
    env.apply(spec)
    accepted = wait_until(
        lambda: (c := env.conditions().get("Accepted")) and c["reason"] == "InvalidPromQL" and c,
        30,
    )
    assert "spec.rollout.metrics[0].query" in accepted["message"]
    assert "parse error" in accepted["message"]
    # a query reading another team's namespace is refused, not run with the operator's identity
    spec["rollout"]["metrics"] = [
        {
            "name": "theirs",
            "type": "promql",
            "query": 'sum(kubeforge_gpus{namespace="team-b"})',
            "max": 1,
        }
    ]
    env.apply(spec)
    accepted = wait_until(
        lambda: (
            (c := env.conditions().get("Accepted"))
            and c["reason"] == "PromQLOutsideNamespace"
            and c
        ),
        30,
    )
    assert 'spec.rollout.metrics[0].query: it selects namespace="team-b"' in accepted["message"]
    assert _served(_isvc(env)) == served
    assert env.status().get("rollout") is None


def test_fine_tune_job_source_waits_for_success(env: Env) -> None:
    ftj = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": "from-ftj"},
        "spec": {"model": {"fineTuneJob": "not-there"}},
    }
    env.cluster.kubectl("apply", "-n", env.ns, "-f", "-", stdin=json.dumps(ftj))
    cond = wait_until(
        lambda: {
            c["type"]: c
            for c in ((env.get("modelserver/from-ftj") or {}).get("status") or {}).get(
                "conditions", []
            )
        }.get("ModelResolved"),
        30,
    )
    assert cond["reason"] == "FineTuneJobNotFound"
    assert "spec.model.fineTuneJob" in cond["message"]
    assert env.get("inferenceservice/from-ftj") is None


def test_deletion_removes_the_inference_service(env: Env) -> None:
    assert env.get(f"inferenceservice/{NAME}") is not None
    env.cluster.kubectl("delete", "modelserver", NAME, "-n", env.ns)
    wait_until(lambda: env.get(f"inferenceservice/{NAME}") is None, 60, what="GC of the ISVC")
