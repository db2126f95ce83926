#!/usr/bin/env python3
"""Drift scoring throughput: feature values per second for 10k-row windows of 25 features
against a 100k-row reference, kubeforge's drift service code against Evidently's
DataDriftPreset, in the same process on the same data.

kubeforge: ``Monitor.evaluate`` as the service runs it (the window's deques copied out, every
configured metric for every feature). The reference summary is built once when the service
starts; "cold" also counts building it. kubeforge computes more per feature than Evidently
(numeric: psi, ks, jensenShannon, wasserstein, meanShift, outOfRange; categorical: psi,
chiSquare, jensenShannon, unseenCategory) where Evidently's preset computes one test per column
(normed Wasserstein for numeric columns, Jensen-Shannon for categorical ones at this size).

Target: kubeforge >= 10x Evidently's throughput. Needs the ``bench`` extra (``make bench-drift``).

    python bench/drift_throughput.py --json /tmp/drift.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubeforge_crds.contracts.drift import (
    CATEGORICAL_METRICS,
    NUMERIC_METRICS,
    FeatureConfig,
    MonitorConfig,
)
from kubeforge_runtimes.drift.monitor import Monitor
from kubeforge_runtimes.drift.reference import summarise

CATEGORIES = [f"c{i}" for i in range(8)]


def make_data(
    rows: int, n_numeric: int, n_categorical: int, seed: int, shift: bool
) -> pd.DataFrame:
    """Numeric features on different scales; categorical ones with 8 levels. With ``shift``,
    every other feature moves (half a standard deviation, or a changed category mix)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i in range(n_numeric):
        loc = 0.5 if shift and i % 2 == 0 else 0.0
        cols[f"num{i}"] = rng.normal(loc, 1.0, rows) * (i + 1) + 10 * i
    base = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03])
    moved = base[::-1]
    for i in range(n_categorical):
        p = moved if shift and i % 2 == 0 else base
        cols[f"cat{i}"] = rng.choice(CATEGORIES, size=rows, p=p)
    return pd.DataFrame(cols)


def features_of(frame: pd.DataFrame) -> list[FeatureConfig]:
    return [
        FeatureConfig(name=c, type="numeric" if c.startswith("num") else "categorical")
        for c in frame.columns
    ]


def kubeforge_monitor(ref: pd.DataFrame, cur: pd.DataFrame) -> Monitor:
    features = features_of(ref)
    metrics = dict.fromkeys([*NUMERIC_METRICS, *CATEGORICAL_METRICS], 0.1)
    metrics.update({"psi": 0.2, "chiSquare": 0.001, "wasserstein": 1.0, "meanShift": 0.2})
    config = MonitorConfig(
        name="bench", reference_uri="memory://", window_size=len(cur), metrics=metrics
    )
    monitor = Monitor(config, features, summarise(ref, features))
    for f in features:  # fill the window as the service does (not timed)
        values = cur[f.name].tolist() if f.type == "numeric" else cur[f.name].astype(str).tolist()
        monitor.window.columns[f.name].extend(values)
    return monitor


def time_kubeforge(ref: pd.DataFrame, cur: pd.DataFrame, repeats: int) -> dict[str, Any]:
    monitor = kubeforge_monitor(ref, cur)
    monitor.evaluate(force=True)  # warm-up
    steady = []
    for _ in range(repeats):
        t = time.perf_counter()
        evaluation = monitor.evaluate(force=True)
        steady.append(time.perf_counter() - t)
    cold = []
    for _ in range(max(1, repeats // 3)):
        t = time.perf_counter()
        summary = summarise(ref, monitor.features)
        Monitor(monitor.config, monitor.features, summary)
        cold.append(time.perf_counter() - t + statistics.median(steady))
    assert evaluation is not None
    drifted = sorted({s.feature for s in evaluation.scores if s.crossed})
    return {
        "steady_s": statistics.median(steady),
        "cold_s": statistics.median(cold),
        "drifted": drifted,
    }


def time_evidently(ref: pd.DataFrame, cur: pd.DataFrame, repeats: int) -> dict[str, Any]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    times = []
    result: dict[str, Any] = {}
    for _ in range(repeats):
        report = Report([DataDriftPreset()])
        t = time.perf_counter()
        run = report.run(cur, ref)
        result = run.dict()
        times.append(time.perf_counter() - t)
    drifted = []
    for metric in result["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            value = float(metric["value"])
            if value > float(config.get("threshold") or 0.1):
                drifted.append(config["column"])
    return {"median_s": statistics.median(times), "all_s": times, "drifted": sorted(drifted)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--window-rows", type=int, default=10_000)
    parser.add_argument("--numeric", type=int, default=20)
    parser.add_argument("--categorical", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="kubeforge evaluations timed")
    parser.add_argument("--evidently-repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()

    ref = make_data(args.reference_rows, args.numeric, args.categorical, seed=1, shift=False)
    cur = make_data(args.window_rows, args.numeric, args.categorical, seed=2, shift=True)
    values = args.window_rows * (args.numeric + args.categorical)
    kf = time_kubeforge(ref, cur, args.repeats)
    ev = time_evidently(ref, cur, args.evidently_repeats)
    shifted = sorted(
        c
        for i, c in enumerate(ref.columns)
        if (c.startswith("num") and int(c[3:]) % 2 == 0)
        or (c.startswith("cat") and int(c[3:]) % 2 == 0)
    )
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "reference_rows": args.reference_rows,
        "window_rows": args.window_rows,
        "features": args.numeric + args.categorical,
        "kubeforge_values_per_s": values / kf["steady_s"],
        "kubeforge_cold_values_per_s": values / kf["cold_s"],
        "evidently_values_per_s": values / ev["median_s"],
        "ratio": ev["median_s"] / kf["steady_s"],
        "ratio_cold": ev["median_s"] / kf["cold_s"],
        "kubeforge_s": kf["steady_s"],
        "kubeforge_cold_s": kf["cold_s"],
        "evidently_s": ev["median_s"],
        "evidently_runs_s": ev["all_s"],
        "shifted_features": shifted,
        "kubeforge_drifted": kf["drifted"],
        "evidently_drifted": ev["drifted"],
    }
    print(f"machine: {result['machine']}")
    print(f"{args.window_rows} rows x {result['features']} features vs {args.reference_rows} rows")
    print(
        f"kubeforge  {kf['steady_s'] * 1e3:8.1f} ms  "
        f"{result['kubeforge_values_per_s']:12,.0f} values/s"
        f"  (cold, with the reference summary: {kf['cold_s'] * 1e3:.1f} ms)"
    )
    print(
        f"evidently  {ev['median_s'] * 1e3:8.1f} ms  "
        f"{result['evidently_values_per_s']:12,.0f} values/s"
    )
    print(
        f"ratio: {result['ratio']:.1f}x (cold {result['ratio_cold']:.1f}x); target >= 10x: "
        f"{'met' if result['ratio'] >= 10 else 'NOT met'}"
    )
    print(f"shifted: {shifted}")
    print(f"kubeforge found: {kf['drifted']}")
    print(f"evidently found: {ev['drifted']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
