"""The real stack of ``bench/canary_rollback.py --real``: ModelServers that KServe's controller
(v0.20, Standard mode) serves on the local cluster's real node, the operator and Prometheus as the
chart installs them (release ``kubeforge-bench``), and requests from a pod through the Gateway
(Traefik) split by the operator's HTTPRoute.

Two series run side by side, each in a namespace of its own with its own client pod and load:

- failing canaries: a new version is rolled out; once the route gives it traffic, at a random
  moment of its first analysis interval, it starts answering half of its requests with 500
  (``PUT /kubeforge/faults`` on its pod, which ``faultInjection.control`` allows). Measured from
  the first failed request to the first request after the canary's last answer (traffic back on
  the stable predictor), from the client's own log; and to the route's weight 0 as seen by polling.
- healthy canaries: a new version rolled out through every step; any rollback is a false one.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "hack"))
sys.path.insert(0, str(REPO))
import localcluster as lc  # noqa: E402
from kfcluster import node  # noqa: E402

from kubeforge_labs import helm  # noqa: E402
from kubeforge_labs.gateway import GatewayClient, model_server  # noqa: E402

RELEASE, SYSTEM, WATCHED = "kubeforge-bench", "kf-iso-bench-system", "kf-iso-bench-"
NAME = "scorer"
SETTLE = 3.0  # seconds the proxy may take to apply a route change
SCRAPE = 5.0  # hack/values-local.yaml: the predictors' PodMonitor interval


def localcluster(*args: str) -> None:
    subprocess.run([sys.executable, str(REPO / "hack" / "localcluster.py"), *args], check=True)


def set_up() -> None:
    """The cluster with its real node, kubeforge's images, KServe and the Gateway, and the chart
    (idempotent: what runs already is kept)."""
    localcluster("up")
    localcluster("images")
    localcluster("kserve", "up")
    node.recycle_volumes()
    helm.install_local(
        lc.bin_dir(), lc.kubeconfig_path(), RELEASE, SYSTEM, f"{WATCHED}*",
        sets=["kserve.servingRuntime.enabled=true"],
    )  # fmt: skip


def tear_down(namespaces: list[str]) -> None:
    for ns in namespaces:
        lc.kubectl("delete", "namespace", ns, "--ignore-not-found", "--timeout=100s", check=False)
    helm.uninstall_local(lc.bin_dir(), lc.kubeconfig_path(), RELEASE, SYSTEM)
    node.recycle_volumes()


@dataclass
class Series:
    """One namespace's ModelServer and the rollouts made of it, one after another."""

    client: GatewayClient
    args: Any
    log: Callable[[str], None]
    next_model: int = 1
    results: list[dict[str, Any]] = field(default_factory=list)

    def spec(self) -> dict[str, Any]:
        uri = f"pvc://models/m{self.next_model}"
        self.next_model += 1
        steps = [int(s) for s in self.args.steps.split(",")]
        return model_server(
            NAME, uri, steps=steps, interval=self.args.interval, control=True,
            failure_threshold=self.args.threshold,
        )  # fmt: skip

    def start(self) -> None:
        self.client.create(models=self.args.runs + 2)
        self.client.apply(self.spec())
        self.client.watch_rollout(lambda ms, _: _phase(ms) == "Ready", timeout=300)
        self.client.start_load(self.args.rate)

    def stable(self) -> str:
        return str(self.client.get("modelserver")["status"]["stable"]["revision"])

    def healthy(self) -> dict[str, Any]:
        before = self.stable()
        self.client.apply(self.spec())
        self.client.watch_rollout(
            lambda ms, weight: _phase(ms) == "RolledBack"
            or (_stable(ms) not in (None, before) and weight == 0),
            timeout=120 + 4 * self.args.interval * len(self.args.steps.split(",")),
        )  # fmt: skip
        ms = self.client.get("modelserver")
        return {"result": "rollback" if _phase(ms) == "RolledBack" else "promote"}

    def failing(self, rng: random.Random) -> dict[str, Any]:
        stable = self.stable()
        self.client.apply(self.spec())
        self.client.watch_rollout(lambda ms, weight: weight > 0, timeout=240)
        canary = str(self.client.get("modelserver")["status"]["canary"]["revision"])
        time.sleep(rng.uniform(0, self.args.interval))
        injected = time.time()
        for ip in self.pod_ips(canary):
            self.client.set_faults(ip, self.args.error_rate)
        faulty = time.time()  # every canary pod fails from here on
        changes = self.client.watch_rollout(
            lambda ms, weight: _phase(ms) == "RolledBack" and weight == 0, timeout=240
        )
        time.sleep(SETTLE + 4)
        got = self.client.answers(injected)
        errors = [a.at for a in got if a.code >= 500 and a.revision == canary]
        last_canary = max((a.at for a in got if a.revision == canary), default=injected)
        after = [a for a in got if a.at > last_canary]
        if not errors or not after:
            return {"result": "no errors seen" if not errors else "canary still answering"}
        return {
            "result": _phase(self.client.get("modelserver")).lower(),
            "to_stable_s": round(after[0].at - errors[0], 2),
            "from_faults_on_s": round(after[0].at - faulty, 2),
            "to_route_weight_0_s": round(changes[-1][0] - errors[0], 2),
            "answers_after": len(after),
            "not_stable_200_after": sum((a.revision, a.code) != (stable, 200) for a in after),
        }

    def pod_ips(self, revision: str) -> list[str]:
        listed = self.client.kubectl(
            "get", "pods", "-n", self.client.namespace, "-o", "json",
            "-l", f"serving.kserve.io/inferenceservice={NAME}",
        )  # fmt: skip
        pods = json.loads(listed)["items"]
        ips = [
            p["status"]["podIP"]
            for p in pods
            if p["status"].get("podIP")
            and any(
                e.get("value") == revision
                for c in p["spec"]["containers"]
                for e in c.get("env") or []
                if e["name"] == "KUBEFORGE_RUNTIME_REVISION"
            )
        ]
        if not ips:
            raise RuntimeError(f"no pod of canary revision {revision}")
        return ips


def _phase(ms: dict[str, Any]) -> str:
    return str((ms.get("status") or {}).get("phase") or "")


def _stable(ms: dict[str, Any]) -> str | None:
    return ((ms.get("status") or {}).get("stable") or {}).get("revision")


def run(args: Any) -> dict[str, Any]:
    """Both series side by side; returns what the report needs."""
    set_up()
    stamp = int(time.time()) % 100000
    lock = threading.Lock()

    def log(line: str) -> None:
        with lock:
            print(line, flush=True)

    kube = (lc.kubeconfig_path(), lc.bin_dir() / "kubectl")
    series = {
        kind: Series(GatewayClient(*kube, f"{WATCHED}{kind}-{stamp}", NAME), args, log)
        for kind in ("failing", "healthy")
    }
    for s in series.values():
        lc.kubectl("create", "namespace", s.client.namespace)
    errors: list[BaseException] = []

    def drive(kind: str) -> None:
        s, rng = series[kind], random.Random(args.seed)
        try:
            s.start()
            for i in range(args.runs):
                result = s.failing(rng) if kind == "failing" else s.healthy()
                s.results.append(result)
                log(f"{kind} canary {i + 1}/{args.runs}: {json.dumps(result)}")
        except BaseException as err:  # reported after both threads end
            errors.append(err)
            log(f"{kind} series stopped: {err!r}")

    threads = [threading.Thread(target=drive, args=(k,), daemon=True) for k in series]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        if not args.keep:
            tear_down([s.client.namespace for s in series.values()])
    results = {kind: s.results for kind, s in series.items()}
    if errors:
        print("partial results: " + json.dumps(results), file=sys.stderr)
        raise errors[0]
    return results
