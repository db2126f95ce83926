"""Traffic through the real Gateway, for the e2e tier's ModelServer tests and the real-stack
canary benchmark (``bench/canary_rollback.py --real``): a client pod on the real node that holds
scikit-learn models on a volume, sends requests through the Gateway at a steady rate in the
background and logs which revision answered each (the runtime's ``x-kubeforge-revision``
header), and can change a predictor pod's faults (``PUT /kubeforge/faults``, for a ModelServer
with ``faultInjection.control``).

Needs the local cluster's real node with KServe and the Gateway (``localcluster.py kserve up``)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeforge_labs import kit
from kubeforge_labs.kit import ON_REAL_NODE
from kubeforge_operator.modelserver.traffic import route_canary_weight

GATEWAY_URL = "http://kserve-ingress-gateway.kserve.svc"  # localcluster.py kserve up
RUNTIME_IMAGE = "localhost/kubeforge/kubeforge-runtime:dev"
LOAD_LOG = "/tmp/load.log"  # noqa: S108 - in the client pod

# Trains and saves scikit-learn models m1..mN on the volume (the runtime image has sklearn);
# odd ones read the first feature, even ones the second, so that versions answer differently.
MODELS = """
import joblib, numpy as np, os, sys
from sklearn.linear_model import LogisticRegression
rng = np.random.default_rng(0)
X = rng.random((200, 3))
for i in range(1, int(sys.argv[1]) + 1):
    os.makedirs(f"/models/m{i}", exist_ok=True)
    y = (X[:, (i + 1) % 2] > 0.5).astype(int)
    joblib.dump(LogisticRegression().fit(X, y), f"/models/m{i}/model.joblib")
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
out = open(sys.argv[4], "a", buffering=1)
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

# PUT /kubeforge/faults on one pod: address, then the faults as JSON.
PUT_FAULTS = """
import sys, urllib.request
req = urllib.request.Request(f"http://{sys.argv[1]}/kubeforge/faults", data=sys.argv[2].encode(),
                             headers={"content-type": "application/json"}, method="PUT")
print(urllib.request.urlopen(req, timeout=5).read().decode())
"""


def model_server(
    name: str,
    uri: str,
    *,
    steps: list[int],
    interval: int,
    error_rate: float = 0.0,
    control: bool = False,
    failure_threshold: int = 1,
) -> dict[str, Any]:
    """A ModelServer of a scikit-learn model gated on the error rate only (latency ratios of
    sub-millisecond models are noise)."""
    runtime: dict[str, Any] = {"modelFormat": "sklearn"}
    if error_rate or control:
        runtime["faultInjection"] = {"errorRate": error_rate, "control": control}
    return {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": uri},
            "runtime": runtime,
            "resources": {"cpu": "200m", "memory": "512Mi"},
            "replicas": {"min": 1, "max": 1},
            "rollout": {
                "steps": steps,
                "interval": f"{interval}s",
                "metrics": [{"name": "error-rate", "type": "errorRate", "max": 0.05}],
                "failureThreshold": failure_threshold,
                "onFailure": "rollback",
            },
        },
    }


@dataclass(frozen=True)
class Answer:
    at: float  # when the request was sent (the client pod's clock, the same machine's)
    revision: str
    code: int


@dataclass
class GatewayClient:
    """The client pod ``client`` in ``namespace`` and the load it sends to ModelServer ``name``."""

    kubeconfig: str | Path
    kubectl_binary: str | Path
    namespace: str
    name: str

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return kit.kubectl(
            *args, kubeconfig=self.kubeconfig, binary=self.kubectl_binary, stdin=stdin,
            check=check, timeout=300,
        )  # fmt: skip

    def get(self, kind: str, name: str | None = None) -> dict[str, Any]:
        out = self.kubectl(
            "get", kind, name or self.name, "-n", self.namespace, "-o", "json", check=False
        )
        return dict(json.loads(out)) if out else {}

    def exec(self, *cmd: str, stdin: str | None = None) -> str:
        # -i only with input: kubectl would read the terminal (or stop, in the background)
        interactive = ["-i"] if stdin is not None else []
        return self.kubectl(
            "exec", *interactive, "-n", self.namespace, "client", "--", *cmd, stdin=stdin
        )

    def create(self, models: int = 2) -> None:
        """The namespace's ``models`` claim and client pod, and models m1..m<models> on it."""
        pod = {
            **ON_REAL_NODE,
            "securityContext": {"runAsUser": 0},  # writes the volume
            "containers": [
                {
                    "name": "client",
                    "image": RUNTIME_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "infinity"],
                    "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                }
            ],
            "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
        }
        claim = {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "real-node",
            "resources": {"requests": {"storage": "1Gi"}},
        }
        items = [
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models"},
             "spec": claim},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"}, "spec": pod},
        ]  # fmt: skip
        self.apply(*items)
        self.kubectl(
            "wait", "-n", self.namespace, "--for=condition=Ready", "pod/client", "--timeout=180s"
        )
        out = self.exec("python", "-", str(models), stdin=MODELS)
        if "ok" not in out:
            raise RuntimeError(f"writing the models failed: {out}")

    def apply(self, *objects: dict[str, Any]) -> None:
        manifest = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kubectl("apply", "-n", self.namespace, "-f", "-", stdin=json.dumps(manifest))

    def host(self) -> str:
        return f"{self.name}-{self.namespace}.example.com"

    def start_load(self, rate: float = 20) -> None:
        """Requests to the ModelServer through the Gateway until the pod goes."""
        self.exec("sh", "-c", "cat > /tmp/load.py", stdin=LOAD)
        url = f"{GATEWAY_URL}/v1/models/{self.name}:predict"
        self.exec(
            "sh", "-c",
            f"nohup python /tmp/load.py {url} {self.host()} {rate} {LOAD_LOG} "
            "> /tmp/load.err 2>&1 & echo $! > /tmp/load.pid",
        )  # fmt: skip

    def stop_load(self) -> None:
        """Stop what ``start_load`` started (its answers stay readable): the node's CPU back for
        whatever runs next."""
        self.exec("sh", "-c", "kill $(cat /tmp/load.pid) 2>/dev/null; true")

    def answers(self, since: float = 0, until: float = float("inf")) -> list[Answer]:
        """The load's answers to requests sent in [since, until)."""
        out = []
        for line in self.exec("cat", LOAD_LOG).splitlines():
            t, rev, code = line.split()
            if since <= float(t) < until:
                out.append(Answer(float(t), rev, int(code)))
        return out

    def canary_weight(self) -> int:
        return route_canary_weight(self.get("httproute") or None)

    def set_faults(self, pod_ip: str, error_rate: float) -> None:
        body = json.dumps({"errorRate": error_rate})
        self.exec("python", "-c", PUT_FAULTS, f"{pod_ip}:8080", body)

    def watch_rollout(
        self, done: Any, timeout: float, on_weight: Any = None
    ) -> list[tuple[float, int]]:
        """The route's canary weight over time, [(since, weight)], until
        ``done(modelserver, weight)``."""
        changes: list[tuple[float, int]] = []
        deadline = time.monotonic() + timeout
        ms: dict[str, Any] = {}
        while time.monotonic() < deadline:
            weight = self.canary_weight()
            if not changes or changes[-1][1] != weight:
                changes.append((time.time(), weight))
                if on_weight:
                    on_weight(weight)
            ms = self.get("modelserver")
            if done(ms, weight):
                return changes
            time.sleep(0.5)
        raise AssertionError(f"rollout did not finish in {timeout}s; weights {changes}; {ms}")
