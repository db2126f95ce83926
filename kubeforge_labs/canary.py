"""Real processes for canary tests and ``bench/canary_rollback.py``: Prometheus (Debian's
package) scraping kubeforge's built-in runtime serving a real model on 127.0.0.1, a load
generator that splits traffic between stable and canary the way KServe's router does, and a
driver that runs the operator's own rollout code (``modelserver.plan_rollout`` /
``apply_decision`` with ``canary.analyse`` on ``prometheus.PrometheusMeasurer`` measurements).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from kubeforge_crds.modelserver import ModelServerSpec, ModelServerStatus, Revision
from kubeforge_labs import kit
from kubeforge_labs.kit import Proc, free_port, http_ok
from kubeforge_operator.modelserver.analysis import measure_start, rollout_target, run_analysis
from kubeforge_operator.modelserver.prometheus import PrometheusMeasurer
from kubeforge_operator.modelserver.rollout import Plan, plan_rollout
from kubeforge_operator.runtime.prometheus import Prometheus

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def launch(
    cmd: list[str],
    log: Path,
    port: int,
    ready_path: str,
    what: str,
    timeout: float,
    env: dict[str, str] | None = None,
) -> Proc:
    """Start ``cmd`` serving on 127.0.0.1:``port`` (``kit.launch``: reaped with the rest even
    if a later step fails); return once GET ``ready_path`` answers 200."""
    url = f"http://127.0.0.1:{port}"
    return kit.launch(
        what, cmd, log, env=env, url=url, ready=lambda: http_ok(url + ready_path), timeout=timeout
    )


def start_prometheus(
    workdir: Path,
    targets: list[str],
    scrape_interval: float,
    rule_files: list[Path] = (),  # type: ignore[assignment]
) -> Proc:
    """Prometheus scraping ``targets`` (host:port) every ``scrape_interval`` seconds, evaluating
    ``rule_files`` every second."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": f"{scrape_interval:g}s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": "kubeforge-runtimes",
                "scrape_interval": f"{scrape_interval:g}s",
                "scrape_timeout": f"{min(scrape_interval, 5):g}s",
                "static_configs": [{"targets": targets}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config))
    port = free_port()
    log = workdir / "prometheus.log"
    return launch(
        [
            PROMETHEUS,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        log,
        port,
        "/-/ready",
        "Prometheus",
        60,
    )


def start_runtime(
    workdir: Path,
    model_dir: Path,
    *,
    name: str,
    namespace: str,
    revision: str,
    error_rate: float = 0.0,
    max_new_tokens: int = 4,
    port: int | None = None,
    adapters: dict[str, Path] | None = None,
    torch_threads: int | None = 1,
) -> Proc:
    """``python -m kubeforge_runtimes serve`` with fault control enabled (and ``adapters``
    loaded on the model by name). ``torch_threads``: its intra-op threads (None: the
    runtime's own choice, ``kubeforge_runtimes.threads``). Its temporary files go to
    ``workdir/tmp`` (``TMPDIR``), which it leaves empty when it stops."""
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = workdir / f"runtime-{revision}.log"
    return launch(
        [
            sys.executable,
            "-m",
            "kubeforge_runtimes",
            "serve",
            f"--model-dir={model_dir}",
            f"--model-name={name}",
            f"--namespace={namespace}",
            f"--revision={revision}",
            "--http-host=127.0.0.1",
            f"--http-port={port}",
            f"--max-new-tokens={max_new_tokens}",
            f"--error-rate={error_rate}",
            "--fault-control",
            *(f"--adapter={n}={p}" for n, p in sorted((adapters or {}).items())),
        ],
        log,
        port,
        f"/v2/models/{name}/ready",
        f"runtime {revision}",
        120,
        # one torch thread each by default: two runtimes (and a test worker beside them) on two
        # cores otherwise fight over the same cores, and one's p95 jumps several-fold while the
        # other's does not
        env=os.environ
        | {"TMPDIR": str(workdir / "tmp")}
        | ({"OMP_NUM_THREADS": str(torch_threads)} if torch_threads else {}),
    )


def start_api(
    kubeconfig: str | Path,
    log: Path,
    drift_url_template: str | None = None,
    model_url_template: str | None = None,
) -> Proc:
    """``python -m kubeforge_api`` with its own identity from ``kubeconfig``, on 127.0.0.1
    (reaching drift services at ``drift_url_template`` and predictors at
    ``model_url_template`` when given)."""
    port = free_port()
    env = {
        **os.environ,
        "KUBEFORGE_API_KUBECONFIG": str(kubeconfig),
        "KUBEFORGE_API_HOST": "127.0.0.1",
        "KUBEFORGE_API_PORT": str(port),
    }
    if drift_url_template:
        env["KUBEFORGE_API_DRIFT_URL_TEMPLATE"] = drift_url_template
    if model_url_template:
        env["KUBEFORGE_API_MODEL_URL_TEMPLATE"] = model_url_template
    return launch(
        [sys.executable, "-m", "kubeforge_api"], log, port, "/healthz", "the API", 60, env
    )


def write_sklearn_model(directory: Path, seed: int = 0) -> Path:
    """A real, tiny scikit-learn classifier (3 features) saved as the runtime loads it."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 3))
    y = (x @ np.array([1.0, -2.0, 0.5]) > 0).astype(int)
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression().fit(x, y), directory / "model.joblib")
    return directory


SKLEARN_BODY: dict[str, Any] = {"instances": [[0.2, -0.1, 0.4], [1.0, 1.0, 1.0]]}


def set_faults(
    runtime: Proc,
    error_rate: float = 0.0,
    extra_latency: float = 0.0,
    token_latency: float = 0.0,
    models: tuple[str, ...] = (),
) -> None:
    """The runtime's injected faults, from now on (``models``: only requests naming these)."""
    body = {
        "errorRate": error_rate,
        "extraLatencySeconds": extra_latency,
        "tokenLatencySeconds": token_latency,
        "models": list(models),
    }
    httpx.put(f"{runtime.url}/kubeforge/faults", json=body, timeout=5).raise_for_status()


@dataclass
class Router:
    """Sends ``rate`` requests a second, each to the canary with probability canary%/100, as
    KServe's (Knative's) traffic split does."""

    stable: Proc
    canary: Proc
    name: str
    rate: float = 10.0
    canary_percent: int = 0
    body: dict[str, Any] = field(
        default_factory=lambda: {
            "instances": ["my printer does not print"],
            "parameters": {"max_new_tokens": 2},
        }
    )
    # where ``body`` goes, after the runtime's URL (``{name}``: the model's name)
    path: str = "/v1/models/{name}:predict"
    # when given, each worker sends these in turn instead of ``body`` (a mix of adapters, say)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=lambda: {"stable": 0, "canary": 0})
    codes: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, workers: int = 4) -> None:
        for i in range(workers):
            t = threading.Thread(target=self._run, args=(i, workers), daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, index: int, workers: int) -> None:
        rng = random.Random(index)
        period = workers / self.rate
        with httpx.Client(timeout=10) as client:
            next_at = time.monotonic() + index * period / workers
            turn = index
            while not self._stop.is_set():
                to_canary = rng.random() * 100 < self.canary_percent
                target = self.canary if to_canary else self.stable
                try:
                    path = self.path.format(name=self.name)
                    body = self.bodies[turn % len(self.bodies)] if self.bodies else self.body
                    turn += 1
                    r = client.post(f"{target.url}{path}", json=body)
                    self.codes[r.status_code] = self.codes.get(r.status_code, 0) + 1
                except httpx.HTTPError:
                    self.codes[0] = self.codes.get(0, 0) + 1
                self.sent["canary" if to_canary else "stable"] += 1
                next_at += period
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)


@dataclass
class Outcome:
    result: str  # promote | rollback | hold | timeout
    decisions: list[dict[str, Any]]
    finished_at: float  # time.monotonic() when the final decision was applied


def drive_rollout(
    spec: ModelServerSpec,
    prom: Prometheus,
    router: Router,
    *,
    namespace: str,
    name: str,
    stable: Revision,
    canary: Revision,
    scrape_interval: float,
    timeout: float = 300,
    on_decision: Callable[[Plan], None] | None = None,
    recheck_seconds: float | None = None,
) -> Outcome:
    """Run one rollout of ``canary`` over ``stable`` with the operator's rollout code, applying
    each traffic split to ``router``; returns when it is promoted, rolled back or held."""
    status = ModelServerStatus(stable=stable)
    plan = plan_rollout(spec, status, canary, datetime.now(UTC))
    assert isinstance(plan, Plan), "a new revision starts a rollout"
    # as the operator starts one: which requests are judged, the stable version at full load
    meant = rollout_target(namespace, name, spec, stable, canary)
    plan = measure_start(spec, plan, prom, meant, scrape_interval)
    measurer = PrometheusMeasurer(prom)
    decisions = [d.to_wire() for d in plan.decisions]
    router.canary_percent = plan.canary_percent or 0
    status = ModelServerStatus.model_validate({**status.to_wire(), **plan.status})
    due = plan.next_analysis
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert due is not None
        assert status.rollout is not None
        time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
        target = rollout_target(namespace, name, spec, stable, canary, status.rollout)
        plan = run_analysis(
            spec,
            status,
            canary,
            status.rollout,
            measurer,
            target,
            scrape_interval,
            datetime.now(UTC),
            recheck_seconds,
        )
        action = plan.decisions[-1].action
        if action == "promote":
            router.canary_percent = 100
        elif action == "rollback":
            router.canary_percent = 0
        else:
            router.canary_percent = plan.canary_percent or 0
        applied = time.monotonic()
        decisions += [d.to_wire() for d in plan.decisions]
        if on_decision:
            on_decision(plan)
        status = ModelServerStatus.model_validate({**status.to_wire(), **plan.status})
        if action in ("promote", "rollback"):
            return Outcome(action, decisions, applied)
        if plan.next_analysis is None:
            return Outcome("hold", decisions, applied)
        due = plan.next_analysis
    return Outcome("timeout", decisions, time.monotonic())
