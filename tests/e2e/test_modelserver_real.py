"""ModelServers on KServe's real controller (v0.20, Standard mode) with a real Gateway API data
plane (Traefik): predictor pods of kubeforge's runtime on the real node, KServe's canary
predictor beside the stable one, and the operator's weighted HTTPRoute splitting real requests.

A load generator in a pod sends requests through the Gateway the whole time and records which
revision answered each (the runtime's ``x-kubeforge-revision`` header); the test records when
the HTTPRoute's weights changed, and measures the share of each step from the requests."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.conftest import (
    KEEP,
    ON_REAL_NODE,
    apply,
    condition,
    get,
    wait_for_condition,
)
from tests.integration.conftest import LOCALCLUSTER, Cluster, helm_binary, wait_until

from kubeforge_labs import helm

pytestmark = pytest.mark.slow

GATEWAY_URL = "http://kserve-ingress-gateway.kserve.svc"
NAME = "bot"
SETTLE = 3.0  # seconds the proxy may take to apply a route change
TOLERANCE = 10  # percentage points between a step's weight and its measured share
PER_STEP = 200  # requests measured per step, at least

# Trains and saves three scikit-learn models on the volume (the runtime image has them).
MODELS = """
import joblib, numpy as np, os
from sklearn.linear_model import LogisticRegression
rng = np.random.default_rng(0)
X = rng.random((200, 3))
for name, column in (("m1", 0), ("m2", 1)):
    os.makedirs(f"/models/{name}", exist_ok=True)
    y = (X[:, column] > 0.5).astype(int)
    joblib.dump(LogisticRegression().fit(X, y), f"/models/{name}/model.joblib")
for root, dirs, files in os.walk("/models"):
    os.chmod(root, 0o755)
    for f in files:
        os.chmod(os.path.join(root, f), 0o644)
print("ok")
"""

# Requests through the Gateway at a steady rate; one line per answer: time, revision, status.
LOAD = """
import json, sys, time, urllib.request, urllib.error
url, host, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
body = json.dumps({"instances": [[0.9, 0.1, 0.2]]}).encode()
out = open("/tmp/load.log", "a", buffering=1)
while True:
    started = time.time()
    headers = {"Host": host, "content-type": "application/json"}
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            code, rev = resp.status, resp.headers.get("x-kubeforge-revision", "-")
    except urllib.error.HTTPError as err:
        code, rev = err.code, err.headers.get("x-kubeforge-revision", "-")
    except OSError:
        code, rev = 0, "-"
    out.write(f"{started:.3f} {rev} {code}\\n")
    time.sleep(max(0.0, 1 / rate - (time.time() - started)))
"""


@pytest.fixture(scope="module")
def kserve(cluster: Cluster, kubeforge: str) -> Iterator[None]:
    """KServe's controller and the Gateway (localcluster.py kserve up), and the chart's
    ClusterServingRuntime of kubeforge's runtime; removed afterwards (the integration tier
    plays KServe with a stand-in on the same cluster)."""
    subprocess.run([*LOCALCLUSTER, "kserve", "up"], check=True, timeout=600)
    runtime = helm.run_helm(
        helm_binary(),
        "template", "kubeforge", str(helm.CHART), "-f", str(helm.LOCAL_VALUES),
        "--set", "kserve.servingRuntime.enabled=true", "-s", "templates/servingruntime.yaml",
    ).stdout  # fmt: skip
    cluster.kubectl("apply", "-f", "-", stdin=runtime)
    yield
    if not KEEP:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", stdin=runtime)
        subprocess.run([*LOCALCLUSTER, "kserve", "down"], check=True, timeout=600)


@pytest.fixture(scope="module")
def served(cluster: Cluster, kserve: None, kubeforge: str) -> Iterator[str]:
    """A namespace with the models on a volume, a client pod sending load through the Gateway
    (started by ``start_load``) and the first version of ModelServer ``bot`` served."""
    ns = f"kf-iso-e2e-serve-{int(time.time()) % 100000}"
    cluster.kubectl("create", "namespace", ns)
    client = {
        **ON_REAL_NODE,
        "securityContext": {"runAsUser": 0},  # writes the volume
        "containers": [
            {
                "name": "client",
                "image": "localhost/kubeforge/kubeforge-runtime:dev",
                "imagePullPolicy": "Never",
                "command": ["sleep", "7200"],
                "volumeMounts": [{"name": "models", "mountPath": "/models"}],
            }
        ],
        "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
    }
    apply(
        cluster,
        ns,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "models"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "real-node",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"}, "spec": client},
    )
    cluster.kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/client", "--timeout=120s")
    assert "ok" in exec_in(cluster, ns, "python", "-", stdin=MODELS)
    apply(cluster, ns, model_server("pvc://models/m1"))
    yield ns
    if not KEEP:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def exec_in(cluster: Cluster, ns: str, *cmd: str, stdin: str | None = None) -> str:
    return str(cluster.kubectl("exec", "-i", "-n", ns, "client", "--", *cmd, stdin=stdin).stdout)


def model_server(uri: str, error_rate: float = 0.0) -> dict[str, Any]:
    runtime: dict[str, Any] = {"modelFormat": "sklearn"}
    if error_rate:
        runtime["faultInjection"] = {"errorRate": error_rate}
    return {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"uri": uri},
            "runtime": runtime,
            "resources": {"cpu": "200m", "memory": "512Mi"},
            "replicas": {"min": 1, "max": 1},
            "rollout": {
                "steps": [30, 60, 100],
                "interval": "20s",
                # the error rate only: latency ratios of sub-millisecond models are noise
                "metrics": [{"name": "error-rate", "type": "errorRate", "max": 0.05}],
                "failureThreshold": 1,
                "onFailure": "rollback",
            },
        },
    }


def start_load(cluster: Cluster, ns: str, rate: float = 20) -> None:
    exec_in(cluster, ns, "sh", "-c", "cat > /tmp/load.py", stdin=LOAD)
    host = f"{NAME}-{ns}.example.com"
    url = f"{GATEWAY_URL}/v1/models/{NAME}:predict"
    exec_in(
        cluster, ns, "sh", "-c",
        f"nohup python /tmp/load.py {url} {host} {rate} > /tmp/load.err 2>&1 &",
    )  # fmt: skip


def answers(cluster: Cluster, ns: str, since: float, until: float) -> list[tuple[str, int]]:
    """(revision, status) of the load's requests sent in [since, until)."""
    out = []
    for line in exec_in(cluster, ns, "cat", "/tmp/load.log").splitlines():
        t, rev, code = line.split()
        if since <= float(t) < until:
            out.append((rev, int(code)))
    return out


def canary_weight(cluster: Cluster, ns: str) -> int:
    route = get(cluster, "httproute", ns, NAME)
    backends = route["spec"]["rules"][0]["backendRefs"] if route else []
    return sum(int(b["weight"]) for b in backends if b["name"].endswith("-canary-predictor"))


def watch_rollout(
    cluster: Cluster, ns: str, done: Any, timeout: float, on_weight: Any = None
) -> list[tuple[float, int]]:
    """The route's canary weight over time, [(since, weight)], until
    ``done(modelserver, weight)``."""
    changes: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        weight = canary_weight(cluster, ns)
        if not changes or changes[-1][1] != weight:
            changes.append((time.time(), weight))
            if on_weight:
                on_weight(weight)
        ms = get(cluster, "modelserver", ns, NAME)
        if done(ms, weight):
            return changes
        time.sleep(0.5)
    raise AssertionError(f"rollout did not finish in {timeout}s; weights {changes}; {ms}")


def test_first_version_served_through_the_gateway(cluster: Cluster, served: str) -> None:
    ns = served
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
    start_load(cluster, ns)
    time.sleep(5)
    got = answers(cluster, ns, time.time() - 4, time.time())
    assert len(got) > 20, got
    assert {(rev, code) for rev, code in got} == {(status["stable"]["revision"], 200)}


@pytest.mark.timeout(600)
def test_canary_steps_split_real_traffic_and_survive_an_operator_restart(
    cluster: Cluster, served: str, kubeforge: str
) -> None:
    ns = served
    stable = get(cluster, "modelserver", ns, NAME)["status"]["stable"]["revision"]
    apply(cluster, ns, model_server("pvc://models/m2"))
    restarted: list[float] = []

    def restart_operator_once(weight: int) -> None:
        if weight == 30 and not restarted:
            restarted.append(time.time())
            cluster.kubectl(
                "delete", "pod", "-n", kubeforge, "-l", "app.kubernetes.io/component=operator",
                "--wait=false",
            )  # fmt: skip

    changes = watch_rollout(
        cluster, ns,
        # promoted, and the route handed over to the stable predictor's (rolled) pods
        lambda ms, weight: (ms.get("status") or {}).get("stable", {}).get("revision")
        not in (None, stable)
        and (ms.get("status") or {}).get("canary") is None
        and weight == 0,
        timeout=300, on_weight=restart_operator_once,
    )  # fmt: skip
    ms = get(cluster, "modelserver", ns, NAME)
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
        got = answers(cluster, ns, since + SETTLE, until)
        share = 100 * sum(rev == canary for rev, _ in got) / max(1, len(got))
        report.append((weight, len(got), round(share, 1)))
        assert len(got) >= PER_STEP, report
        assert abs(share - weight) <= TOLERANCE, report
        assert all(code == 200 for _, code in got), report
    print("measured canary shares (weight, requests, share %):", report)
    # promoted: the new version answers everything, during the hand-over to the stable
    # predictor's pods and after it
    promoted = next(t for t, w in changes if w == 100)
    got = answers(cluster, ns, promoted + SETTLE, time.time())
    assert got
    assert {rev for rev, _ in got} == {canary}, got


@pytest.mark.timeout(400)
def test_faulty_version_rolled_back_and_traffic_back_on_stable(
    cluster: Cluster, served: str
) -> None:
    ns = served
    stable = get(cluster, "modelserver", ns, NAME)["status"]["stable"]["revision"]
    apply(cluster, ns, model_server("pvc://models/m1", error_rate=0.5))
    changes = watch_rollout(
        cluster, ns, lambda ms, weight: (ms.get("status") or {}).get("phase") == "RolledBack",
        timeout=240,
    )  # fmt: skip
    ms = get(cluster, "modelserver", ns, NAME)
    assert condition(ms, "RolledBack")["reason"] == "ErrorRateExceeded", ms["status"]
    assert ms["status"]["stable"]["revision"] == stable
    assert canary_weight(cluster, ns) == 0
    rolled_back = changes[-1][0] if changes[-1][1] == 0 else time.time()
    time.sleep(SETTLE + 4)
    got = answers(cluster, ns, rolled_back + SETTLE, time.time())
    assert len(got) > 30
    assert {(rev, code) for rev, code in got} == {(stable, 200)}, "traffic back on stable"


def test_canary_that_cannot_load_gets_no_traffic_and_no_analysis(
    cluster: Cluster, served: str
) -> None:
    ns = served
    stable = get(cluster, "modelserver", ns, NAME)["status"]["stable"]["revision"]
    apply(cluster, ns, model_server("pvc://models/missing"))

    def canary_not_ready() -> dict[str, Any] | None:
        ms = get(cluster, "modelserver", ns, NAME)
        return ms if condition(ms, "CanaryReady").get("status") == "False" else None

    ms = wait_until(canary_not_ready, 180, 1, "CanaryReady=False")
    assert condition(ms, "CanaryReady")["reason"], ms["status"]["conditions"]
    time.sleep(25)  # past an analysis interval: postponed, not judged
    ms = get(cluster, "modelserver", ns, NAME)
    assert canary_weight(cluster, ns) == 0
    actions = [d["action"] for d in ms["status"]["decisions"]][-1:]
    assert actions == ["start"], ms["status"]["decisions"]
    got = answers(cluster, ns, time.time() - 10, time.time())
    assert got
    assert {(rev, code) for rev, code in got} == {(stable, 200)}
