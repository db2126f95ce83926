"""ModelServers on KServe's real controller (v0.20, Standard mode) with a real Gateway API data
plane (Traefik): predictor pods of kubeforge's runtime on the real node, KServe's canary
predictor beside the stable one, and the operator's weighted HTTPRoute splitting real requests.

A load generator in a pod sends requests through the Gateway the whole time and records which
revision answered each (the runtime's ``x-kubeforge-revision`` header); the test records when
the HTTPRoute's weights changed, and measures the share of each step from the requests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from tests.e2e.conftest import KEEP, condition, get, packed, wait_for_condition
from tests.integration.conftest import Cluster, wait_until

from kubeforge_labs import gateway, helm, models
from kubeforge_labs.gateway import GatewayClient

pytestmark = pytest.mark.slow

NAME = "bot"
SETTLE = 3.0  # seconds the proxy may take to apply a route change
TOLERANCE = 10  # percentage points between a step's weight and its measured share
PER_STEP = 200  # requests measured per step, at least


@pytest.fixture(scope="module")
def served(cluster: Cluster, kserve: None, kubeforge: str) -> Iterator[GatewayClient]:
    """A namespace with the models on a volume, a client pod sending load through the Gateway
    (started by ``start_load``) and the first version of ModelServer ``bot`` served."""
    ns = f"kf-iso-e2e-serve-{int(time.time()) % 100000}"
    cluster.kubectl("create", "namespace", ns)
    client = GatewayClient(cluster.kubeconfig, cluster.kubectl_bin, ns, NAME)
    client.create()
    client.apply(model_server("pvc://models/m1"))
    yield client
    if not KEEP:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def model_server(uri: str, error_rate: float = 0.0) -> dict[str, Any]:
    return gateway.model_server(NAME, uri, steps=[30, 60, 100], interval=20, error_rate=error_rate)


def test_first_version_served_through_the_gateway(cluster: Cluster, served: GatewayClient) -> None:
    ns = served.namespace
    ms = wait_for_condition(cluster, "modelserver", ns, NAME, "Ready", status="True", timeout=240)
    status = ms["status"]
    assert status["url"] == f"http://{NAME}-{ns}.example.com"
    assert condition(ms, "TrafficRouted")["reason"] == "Accepted"
    isvc = get(cluster, "inferenceservice", ns, NAME)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    # KServe's own controller reconciled it: its predictor Deployment on the real node
    pods = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", ns, "-l", f"serving.kserve.io/inferenceservice={NAME}",
            "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    assert pods
    assert all(p["spec"]["nodeName"] == "kf-node-0" for p in pods)
    served.start_load()
    time.sleep(5)
    got = served.answers(time.time() - 4, time.time())
    assert len(got) > 20, got
    assert {(a.revision, a.code) for a in got} == {(status["stable"]["revision"], 200)}


@pytest.mark.timeout(600)
def test_canary_steps_split_real_traffic_and_survive_an_operator_restart(
    cluster: Cluster, served: GatewayClient, kubeforge: str
) -> None:
    stable = served.get("modelserver")["status"]["stable"]["revision"]
    served.apply(model_server("pvc://models/m2"))
    restarted: list[float] = []

    def restart_operator_once(weight: int) -> None:
        if weight == 30 and not restarted:
            restarted.append(time.time())
            cluster.kubectl(
                "delete", "pod", "-n", kubeforge, "-l", "app.kubernetes.io/component=operator",
                "--wait=false",
            )  # fmt: skip

    changes = served.watch_rollout(
        # promoted, and the route handed over to the stable predictor's (rolled) pods
        lambda ms, weight: (ms.get("status") or {}).get("stable", {}).get("revision")
        not in (None, stable)
        and (ms.get("status") or {}).get("canary") is None
        and weight == 0,
        timeout=300, on_weight=restart_operator_once,
    )  # fmt: skip
    ms = served.get("modelserver")
    canary = ms["status"]["stable"]["revision"]
    actions = [d["action"] for d in ms["status"]["decisions"] if d["revision"] == canary]
    assert actions == ["start", "advance", "advance", "promote"], ms["status"]["decisions"]
    assert restarted, "the operator was restarted while the canary had 30%"
    weights = [w for _, w in changes]
    assert weights[-1] == 0, changes
    assert {30, 60} <= set(weights), changes
    time.sleep(SETTLE + 2)
    ends = [t for t, _ in changes[1:]] + [time.time()]
    report = []
    for (since, weight), until in zip(changes, ends, strict=True):
        if weight not in (30, 60, 100):
            continue
        got = served.answers(since + SETTLE, until)
        share = 100 * sum(a.revision == canary for a in got) / max(1, len(got))
        report.append((weight, len(got), round(share, 1)))
        assert len(got) >= PER_STEP, report
        assert abs(share - weight) <= TOLERANCE, report
        assert all(a.code == 200 for a in got), report
    print("measured canary shares (weight, requests, share %):", report)
    # promoted: the new version answers everything, during the hand-over to the stable
    # predictor's pods and after it
    promoted = next(t for t, w in changes if w == 100)
    got = served.answers(promoted + SETTLE, time.time())
    assert got
    assert {a.revision for a in got} == {canary}, got


@pytest.mark.timeout(400)
def test_faulty_version_rolled_back_and_traffic_back_on_stable(served: GatewayClient) -> None:
    stable = served.get("modelserver")["status"]["stable"]["revision"]
    served.apply(model_server("pvc://models/m1", error_rate=0.5))
    changes = served.watch_rollout(
        lambda ms, weight: (ms.get("status") or {}).get("phase") == "RolledBack", timeout=240
    )
    ms = served.get("modelserver")
    assert condition(ms, "RolledBack")["reason"] == "ErrorRateExceeded", ms["status"]
    assert ms["status"]["stable"]["revision"] == stable
    assert served.canary_weight() == 0
    rolled_back = changes[-1][0] if changes[-1][1] == 0 else time.time()
    time.sleep(SETTLE + 4)
    got = served.answers(rolled_back + SETTLE, time.time())
    assert len(got) > 30
    assert {(a.revision, a.code) for a in got} == {(stable, 200)}, "traffic back on stable"


def test_canary_that_cannot_load_gets_no_traffic_and_no_analysis(served: GatewayClient) -> None:
    stable = served.get("modelserver")["status"]["stable"]["revision"]
    served.apply(model_server("pvc://models/missing"))

    def canary_not_ready() -> dict[str, Any] | None:
        ms = served.get("modelserver")
        return ms if condition(ms, "CanaryReady").get("status") == "False" else None

    ms = wait_until(canary_not_ready, 180, 1, "CanaryReady=False")
    assert condition(ms, "CanaryReady")["reason"], ms["status"]["conditions"]
    # RollingOut when the rolled-back canary was still draining (its Deployment rolled over)
    print("CanaryReady:", condition(ms, "CanaryReady"))
    time.sleep(25)  # past an analysis interval: postponed, not judged
    ms = served.get("modelserver")
    assert served.canary_weight() == 0
    actions = [d["action"] for d in ms["status"]["decisions"]][-1:]
    assert actions == ["start"], ms["status"]["decisions"]
    got = served.answers(time.time() - 10, time.time())
    assert got
    assert {(a.revision, a.code) for a in got} == {(stable, 200)}


def test_a_kserve_webhook_refusal_is_reported_and_the_stable_keeps_serving(
    cluster: Cluster, served: GatewayClient
) -> None:
    """KServe's validating webhook refuses to change an InferenceService's deployment mode. A
    platform team that switches KServe's default mode to Serverless (the operator follows
    KServe's default: kserveMode auto) turns the operator's next write into such a change: the
    refusal, in KServe's words, reaches the ModelServer, and the stable version keeps serving
    through the Gateway. (A name KServe's webhook would refuse never reaches it: the
    ModelServer's own admission refuses it first, naming metadata.name.)"""
    cm = ["configmap", "inferenceservice-config", "-n", "kserve"]
    deploy = json.loads(cluster.kubectl("get", *cm, "-o", "json").stdout)["data"]["deploy"]

    def set_deploy(value: str) -> None:
        patch = json.dumps({"data": {"deploy": value}})
        cluster.kubectl("patch", *cm, "--type=merge", "-p", patch)

    before = served.get("modelserver")
    stable = before["status"]["stable"]["revision"]
    set_deploy(json.dumps({**json.loads(deploy), "defaultDeploymentMode": "Serverless"}))
    try:
        # the operator reads KServe's configuration again once per resync interval
        values = yaml.safe_load(helm.LOCAL_VALUES.read_text())
        time.sleep(float(values["operator"]["resyncSeconds"]) + 1)
        served.apply(model_server("pvc://models/m1"))  # a new version: the operator writes

        def refused() -> dict[str, Any] | None:
            ms = served.get("modelserver")
            reason = condition(ms, "InferenceServiceReady").get("reason")
            return ms if reason == "RefusedByKServe" else None

        ms = wait_until(refused, 90, 1, "RefusedByKServe on the ModelServer")
        cond = condition(ms, "InferenceServiceReady")
        assert cond["status"] == "False", cond
        assert "admission webhook" in cond["message"], cond
        assert "deploymentMode cannot be changed" in cond["message"], cond
        assert ms["status"]["stable"]["revision"] == stable
        assert served.canary_weight() == 0
        got = served.answers(time.time() - 10, time.time())
        assert got
        assert {(a.revision, a.code) for a in got} == {(stable, 200)}
    finally:
        set_deploy(deploy)
        # the last scenario of this ModelServer: its load stopped and its spec as it was (no
        # new version to roll out once the operator has read KServe's mode again), so the
        # module's next scenarios have the real node's CPU
        served.stop_load()
        served.apply({**model_server(""), "spec": before["spec"]})

        # and the operator back on KServe's mode before the next scenario makes its own
        # InferenceService: one made meanwhile got the Serverless mode, which KServe never
        # lets it leave (seen in CI: the next scenario's ModelServer refused for 300 s)
        def accepted_again() -> bool:
            reason = condition(served.get("modelserver"), "InferenceServiceReady").get("reason")
            return reason != "RefusedByKServe"

        wait_until(accepted_again, 90, 1, "the operator writing in KServe's mode again")


@pytest.fixture(scope="module")
def judged(
    cluster: Cluster, kserve: None, kubeforge: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayClient]:
    """A namespace with three causal LMs on a volume (fine-tuned on the tickets with two seeds,
    and one trained on the tickets' words shuffled), the prompt set as a ConfigMap, and
    ModelServer ``judge`` serving the first, with an evaluation before traffic."""
    ns = f"kf-iso-e2e-eval-{int(time.time()) % 100000}"
    cluster.kubectl("create", "namespace", ns)
    client = GatewayClient(cluster.kubeconfig, cluster.kubectl_bin, ns, "judge")
    client.create(models=0)
    work = tmp_path_factory.mktemp("judged")
    folders = [
        (models.ticket_model(work / "good1", seed=1), "good1"),
        (models.ticket_model(work / "good2", seed=2), "good2"),
        (models.ticket_model(work / "worse", shuffled=True), "worse"),
    ]
    client.exec("sh", "-c", "base64 -d | tar -xz -C /models && chmod -R a+rX /models",
                stdin=packed(*folders))  # fmt: skip
    prompts = "".join(json.dumps(p) + "\n" for p in models.ticket_prompts(16))
    client.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "eval"},
         "data": {"prompts.jsonl": prompts}},
        judged_server("pvc://models/good1"),
    )  # fmt: skip
    yield client
    if not KEEP:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def judged_server(uri: str) -> dict[str, Any]:
    """A causal LM served by the kubeforge-llm runtime; a new version is evaluated on the prompt
    set (ROUGE-L within 0.05 of the stable's) before it gets traffic, then promoted in two steps
    (no metric gates: this test is about the evaluation)."""
    return {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": "judge"},
        "spec": {
            "model": {"uri": uri},
            "runtime": {"modelFormat": "transformers"},
            "resources": {"cpu": "200m", "memory": "1Gi"},
            "rollout": {
                "steps": [50, 100],
                "interval": "10s",
                "metrics": [],
                "evaluation": {
                    "prompts": {"configMap": "eval"}, "tolerance": 0.05, "maxTokens": 8,
                    "timeout": "3m",
                },
            },
        },
    }  # fmt: skip


@pytest.mark.timeout(600)
def test_an_evaluation_stops_a_worse_version_before_traffic_and_passes_a_good_one(
    cluster: Cluster, judged: GatewayClient
) -> None:
    ns = judged.namespace
    wait_for_condition(cluster, "modelserver", ns, "judge", "Ready", status="True", timeout=300)
    stable = judged.get("modelserver")["status"]["stable"]["revision"]

    judged.apply(judged_server("pvc://models/worse"))

    def rolled_back() -> dict[str, Any] | None:
        m = judged.get("modelserver")
        return m if m["status"].get("phase") == "RolledBack" else None

    ms = wait_until(rolled_back, 300, 2, "the worse version rolled back")
    status = ms["status"]
    rolled = condition(ms, "RolledBack")
    assert rolled["reason"] == "EvaluationRegressed", status
    evaluation = status["evaluation"]
    assert evaluation["phase"] == "Regressed"
    assert evaluation["candidate"] < evaluation["stable"] - 0.05, evaluation
    assert evaluation["prompts"] == 16
    assert status["stable"]["revision"] == stable
    worse = evaluation["revision"]
    # it never had a share of the route: no decision gave it traffic
    splits = [d["trafficSplit"] for d in status["decisions"] if d["revision"] == worse]
    assert splits == ["100/0", "100/0"], status["decisions"]
    job = judged.get("job", evaluation["job"])
    assert job["status"].get("succeeded") == 1, job["status"]
    events = judged.kubectl("get", "events", "-n", ns, "-o", "json")
    assert any(
        e["reason"] == "RolloutRollback" and "evaluation regressed" in e["message"]
        for e in json.loads(events)["items"]
    )
    print("evaluation of the worse version:", {k: evaluation[k] for k in ("candidate", "stable")})

    judged.apply(judged_server("pvc://models/good2"))

    def promoted() -> dict[str, Any] | None:
        m = judged.get("modelserver")
        s = m["status"]
        return (
            m
            if s.get("stable", {}).get("revision") not in (stable, None) and not s.get("canary")
            else None
        )

    ms = wait_until(promoted, 300, 2, "the good version promoted")
    status = ms["status"]
    good = status["stable"]["revision"]
    actions = [d["action"] for d in status["decisions"] if d["revision"] == good]
    assert actions == ["start", "evaluate", "advance", "promote"], status["decisions"]
    evaluation = status["evaluation"]
    assert (evaluation["revision"], evaluation["phase"]) == (good, "Passed")
    assert evaluation["candidate"] >= evaluation["stable"] - 0.05, evaluation
    print("evaluation of the good version:", {k: evaluation[k] for k in ("candidate", "stable")})


# Completions through the Gateway from the client pod: host, then (model, prompt) pairs as JSON;
# one line per answer: the model asked, the revision that answered, the text.
ASK = """
import json, sys, urllib.request
host, asks = sys.argv[1], json.loads(sys.argv[2])
for model, prompt in asks:
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": 8, "temperature": 0})
    req = urllib.request.Request(
        "http://kserve-ingress-gateway.kserve.svc/openai/v1/completions", data=body.encode(),
        headers={"Host": host, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer = json.loads(resp.read())["choices"][0]["text"]
        print(json.dumps([model, resp.headers["x-kubeforge-revision"], answer]))
"""
PROMPT = "ticket: the vpn keeps disconnecting after the move. resolution:"


@pytest.fixture(scope="module")
def adapted(
    cluster: Cluster, kserve: None, kubeforge: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayClient, dict[str, str]]]:
    """A base model and three LoRA adapters on a volume, ModelServer ``multi`` serving the base
    with two of them (``tickets`` v1 and ``faq``), and each model's greedy answer to PROMPT as
    transformers gives it in this process."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ns = f"kf-iso-e2e-lora-{int(time.time()) % 100000}"
    cluster.kubectl("create", "namespace", ns)
    client = GatewayClient(cluster.kubeconfig, cluster.kubectl_bin, ns, "multi")
    client.create(models=0)
    work = tmp_path_factory.mktemp("adapted")
    folders = {
        "base": models.base_model(work / "base"),
        "tickets-v1": models.ticket_adapter(work / "tickets-v1"),
        "tickets-v2": models.ticket_adapter(work / "tickets-v2", seed=2),
        "faq": models.ticket_adapter(work / "faq", shuffled=True),
    }
    client.exec("sh", "-c", "base64 -d | tar -xz -C /models && chmod -R a+rX /models",
                stdin=packed(*((p, n) for n, p in folders.items())))  # fmt: skip
    client.apply(adapted_server("tickets-v1"))
    tokenizer = AutoTokenizer.from_pretrained(folders["base"])
    ids = tokenizer(PROMPT, return_tensors="pt")
    expected = {}
    for name in ("base", "tickets-v1", "tickets-v2", "faq"):
        model = AutoModelForCausalLM.from_pretrained(folders["base"])
        if name != "base":
            model = PeftModel.from_pretrained(model, folders[name])
        out = model.generate(**ids, max_new_tokens=8, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)  # fmt: skip
        expected[name] = tokenizer.decode(
            out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True
        )
    assert len(set(expected.values())) == 4, expected  # four models that answer differently
    yield client, expected
    if not KEEP:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def adapted_server(tickets: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": "multi"},
        "spec": {
            "model": {"uri": "pvc://models/base"},
            "runtime": {"modelFormat": "transformers"},
            "adapters": [
                {"name": "tickets", "uri": f"pvc://models/{tickets}"},
                {"name": "faq", "uri": "pvc://models/faq"},
            ],
            "resources": {"cpu": "200m", "memory": "1Gi"},
            "rollout": {"steps": [50, 100], "interval": "20s", "metrics": []},
        },
    }


def ask(client: GatewayClient, *models_asked: str) -> list[tuple[str, str, str]]:
    asks = json.dumps([[m, PROMPT] for m in models_asked])
    out = client.exec("python", "-c", ASK, client.host(), asks)
    return [tuple(json.loads(line)) for line in out.splitlines()]  # type: ignore[misc]


@pytest.mark.timeout(600)
def test_two_adapters_on_one_base_and_a_canary_of_one_leaves_the_other_alone(
    cluster: Cluster, adapted: tuple[GatewayClient, dict[str, str]]
) -> None:
    client, expected = adapted
    ns = client.namespace
    wait_for_condition(cluster, "modelserver", ns, "multi", "Ready", status="True", timeout=300)
    first = client.get("modelserver")["status"]["stable"]
    assert set(first["adapters"]) == {"tickets", "faq"}
    answers = ask(client, "multi", "tickets", "faq")
    assert [a[2] for a in answers] == [expected["base"], expected["tickets-v1"], expected["faq"]]
    # the 200m the ModelServer requests reached the runtime through KServe's predictor (the
    # operator's env), and it sized torch by them, not by the node's cores
    logs = cluster.kubectl(
        "logs", "-n", ns, "-l", "serving.kserve.io/inferenceservice=multi",
        "-c", "kserve-container", "--tail=-1",
    ).stdout  # fmt: skip
    assert "torch uses 1 thread(s) for decoding steps and 1 for a large prefill" in logs, logs
    assert "no CPU quota, 0.2 CPU(s) requested" in logs, logs

    client.apply(adapted_server("tickets-v2"))  # a new version of one adapter
    seen: list[tuple[str, str, str]] = []

    def promoted() -> dict[str, Any] | None:
        seen.extend(ask(client, "faq", "tickets"))
        ms = client.get("modelserver")
        s = ms["status"]
        new = s.get("stable", {}).get("revision") not in (first["revision"], None)
        return ms if new and not s.get("canary") else None

    ms = wait_until(promoted, 400, 1, "the new tickets adapter promoted")
    second = ms["status"]["stable"]
    assert second["adapters"]["tickets"] == "pvc://models/tickets-v2"
    assert second["adapters"]["faq"] == first["adapters"]["faq"]
    # during the rollout both revisions answered; faq the same from either, tickets each its own
    by_revision = {rev for _, rev, _ in seen}
    assert by_revision == {first["revision"], second["revision"]}, seen
    assert {a for m, _, a in seen if m == "faq"} == {expected["faq"]}
    for model, rev, answer in seen:
        if model == "tickets":
            version = "tickets-v1" if rev == first["revision"] else "tickets-v2"
            assert answer == expected[version], (rev, answer)
    answers = ask(client, "tickets", "faq", "multi")
    assert [a[2] for a in answers] == [expected["tickets-v2"], expected["faq"], expected["base"]]
    print("answers by revision during the rollout:", sorted({(m, r) for m, r, _ in seen}))
