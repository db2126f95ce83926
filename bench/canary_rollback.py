#!/usr/bin/env python3
"""Canary rollback time: from the moment a canary starts failing until the rollback is applied,
with analysis interval I and scrape interval S, and false rollbacks of healthy canaries.

Real processes on 127.0.0.1: Prometheus (Debian's package) scrapes two runtimes
(``python -m kubeforge_runtimes serve``, a scikit-learn model) under generated load split by the
current traffic share; the rollouts run the operator's own code (``modelserver.run_analysis``:
Prometheus queries, ``canary.analyse``, the state machine). The errors start at a random moment
of the first analysis interval of each rollout (``PUT /kubeforge/faults`` on the canary).

Baseline, in the same process: the same rollouts with a failed analysis confirmed only at the
next interval (as Flagger and Argo Rollouts count failures: one check per interval).
Target: max <= 2*I + S and no false rollbacks over 20 healthy canaries.

With ``--real``, the same measure on the real stack (``bench/canary_real.py``): KServe's
controller, predictor pods on the local cluster's real node, the Gateway, the chart's operator
and Prometheus (S = 5 s, the chart's local PodMonitor interval); about 32 minutes on 2 cores.

    python bench/canary_rollback.py                     # I=10s, S=1s, 20 + 20 runs
    python bench/canary_rollback.py --runs 5 --baseline-runs 2
    python bench/canary_rollback.py --real              # 20 failing + 20 healthy, side by side
    python bench/canary_rollback.py --real --runs 2     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubeforge_crds.modelserver import ModelServerSpec, Revision
from kubeforge_labs.canary import (
    SKLEARN_BODY,
    Outcome,
    Router,
    drive_rollout,
    set_faults,
    start_prometheus,
    start_runtime,
    write_sklearn_model,
)
from kubeforge_operator.modelserver.prometheus import window
from kubeforge_operator.runtime.prometheus import Prometheus

NS, NAME = "bench", "scorer"
DEFAULT_STEPS = "10,25,50,100"


def _spec(steps: list[int], interval: int, threshold: int) -> ModelServerSpec:
    return ModelServerSpec.model_validate(
        {
            "model": {"uri": "s3://bench/v2"},
            "rollout": {"steps": steps, "interval": f"{interval}s", "failureThreshold": threshold},
        }
    )


def _rev(name: str) -> Revision:
    return Revision(revision=name, uri=f"s3://bench/{name}", traffic_percent=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="failing and healthy canaries each")
    parser.add_argument("--baseline-runs", type=int, default=5)
    parser.add_argument("--interval", type=int, default=10, help="analysis interval I (s)")
    parser.add_argument("--scrape", type=float, default=1.0, help="scrape interval S (s)")
    parser.add_argument("--threshold", type=int, default=2, help="failureThreshold")
    parser.add_argument("--error-rate", type=float, default=0.5)
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--steps", default=DEFAULT_STEPS, help="--real: 50,100 unless given")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--real", action="store_true", help="on the real stack (see above)")
    parser.add_argument("--keep", action="store_true", help="--real: keep namespaces, release")
    args = parser.parse_args()
    if args.real:
        return real(args)
    steps = [int(s) for s in args.steps.split(",")]
    spec = _spec(steps, args.interval, args.threshold)
    rng = random.Random(args.seed)
    flush = int(window(args.interval, args.scrape).removesuffix("s")) + 2 * args.scrape

    with tempfile.TemporaryDirectory(prefix="kubeforge-canary-bench-") as tmp:
        work = Path(tmp)
        model = write_sklearn_model(work / "model")
        stable = start_runtime(work, model, name=NAME, namespace=NS, revision="stable")
        canary = start_runtime(work, model, name=NAME, namespace=NS, revision="canary")
        prom = start_prometheus(
            work / "prom", [p.url.removeprefix("http://") for p in (stable, canary)], args.scrape
        )
        router = Router(stable, canary, NAME, rate=args.rate, body=SKLEARN_BODY)
        router.start()
        time.sleep(4 * args.scrape)
        client = Prometheus(prom.url)

        def rollout(recheck: float | None) -> Outcome:
            return drive_rollout(
                spec,
                client,
                router,
                namespace=NS,
                name=NAME,
                stable=_rev("stable"),
                canary=_rev("canary"),
                scrape_interval=args.scrape,
                timeout=len(steps) * args.interval * 4 + 60,
                recheck_seconds=recheck,
            )

        def failing(recheck: float | None) -> float | None:
            result: dict[str, Outcome] = {}
            t = threading.Thread(target=lambda: result.setdefault("o", rollout(recheck)))
            t.start()
            time.sleep(rng.uniform(0, args.interval))
            started = time.monotonic()
            set_faults(canary, error_rate=args.error_rate)
            t.join()
            set_faults(canary, error_rate=0.0)
            router.canary_percent = 0
            time.sleep(flush)  # the errors leave the rate() window before the next run
            outcome = result["o"]
            if outcome.result != "rollback":
                print(f"  run ended with {outcome.result}, not rollback", file=sys.stderr)
                return None
            return outcome.finished_at - started

        try:
            ours = []
            for i in range(args.runs):
                took = failing(None)
                print(f"failing canary {i + 1}/{args.runs}: rolled back after {took}")
                if took is not None:
                    ours.append(took)
            base = []
            for i in range(args.baseline_runs):
                took = failing(float(args.interval))
                print(f"baseline {i + 1}/{args.baseline_runs}: rolled back after {took}")
                if took is not None:
                    base.append(took)
            false_rollbacks = 0
            for i in range(args.runs):
                outcome = rollout(None)
                router.canary_percent = 0
                false_rollbacks += outcome.result != "promote"
                print(f"healthy canary {i + 1}/{args.runs}: {outcome.result}")
                if outcome.result != "promote":
                    print("  " + json.dumps([d["reason"] for d in outcome.decisions]))
                    time.sleep(flush)
        finally:
            router.stop()
            for p in (prom, stable, canary):
                p.stop()

    bound = 2 * args.interval + args.scrape
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
        "interval_s": args.interval,
        "scrape_s": args.scrape,
        "failure_threshold": args.threshold,
        "error_rate": args.error_rate,
        "requests_per_s": args.rate,
        "failing_runs": len(ours),
        "rollback_median_s": round(statistics.median(ours), 2) if ours else None,
        "rollback_max_s": round(max(ours), 2) if ours else None,
        "bound_2I_plus_S": bound,
        "max_over_bound": round(max(ours) / bound, 3) if ours else None,
        "baseline_median_s": round(statistics.median(base), 2) if base else None,
        "baseline_max_s": round(max(base), 2) if base else None,
        "median_ratio_vs_baseline": round(statistics.median(ours) / statistics.median(base), 3)
        if ours and base
        else None,
        "healthy_runs": args.runs,
        "false_rollbacks": false_rollbacks,
        "flagger_default_rollback_s": 60 * 5,
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    met = bool(ours) and max(ours) <= bound and false_rollbacks == 0
    print(f"target (max <= 2I+S = {bound:g}s, no false rollbacks): {'met' if met else 'NOT met'}")
    return 0 if met else 1


def real(args: argparse.Namespace) -> int:
    """``--real``: steps 50,100 unless given, 10 requests/s per series."""
    from bench import canary_real

    if args.steps == DEFAULT_STEPS:
        args.steps = "50,100"
    results = canary_real.run(args)
    failing = [r for r in results["failing"] if "to_stable_s" in r]
    took = [r["to_stable_s"] for r in failing]
    route = [r["to_route_weight_0_s"] for r in failing]
    bound = 2 * args.interval + canary_real.SCRAPE
    summary: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
        "stack": "KServe v0.20 Standard, Traefik Gateway, real node, chart's operator+Prometheus",
        "interval_s": args.interval,
        "scrape_s": canary_real.SCRAPE,
        "steps": args.steps,
        "failure_threshold": args.threshold,
        "error_rate": args.error_rate,
        "requests_per_s": args.rate,
        "failing_runs": len(results["failing"]),
        "rolled_back": sum(r.get("result") == "rolledback" for r in results["failing"]),
        "to_stable_median_s": round(statistics.median(took), 2) if took else None,
        "to_stable_max_s": max(took, default=None),
        "to_route_weight_0_median_s": round(statistics.median(route), 2) if route else None,
        "to_route_weight_0_max_s": max(route, default=None),
        "bound_2I_plus_S": bound,
        "max_over_bound": round(max(took) / bound, 3) if took else None,
        "not_stable_200_after_rollback": sum(r["not_stable_200_after"] for r in failing),
        "healthy_runs": len(results["healthy"]),
        "false_rollbacks": sum(r["result"] != "promote" for r in results["healthy"]),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": results}, indent=2) + "\n")
    met = (
        len(took) == args.runs
        and max(took) <= bound
        and summary["false_rollbacks"] == 0
        and summary["not_stable_200_after_rollback"] == 0
        and len(results["healthy"]) == args.runs
    )
    print(f"target (max <= 2I+S = {bound:g}s, no false rollbacks): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
