#!/usr/bin/env python3
"""REST API latency and throughput of the list routes with 1000 objects, against the same
list done with `kubectl get` and with a direct apiserver request, in the same run.

On the local control plane (started if needed): 1000 Workbenches in namespace `bench-api`, where
user-a holds `edit`; the API (`python -m kubeforge_api`) runs as a real process with its own
identity (TokenReview + impersonation). Every request is user-a's.

    python bench/api_load.py --json /tmp/api.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack"))
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import localcluster as lc  # noqa: E402

from kubeforge_labs import kit  # noqa: E402
from kubeforge_labs.canary import start_api  # noqa: E402

NS = "bench-api"


def log(msg: str) -> None:
    print(f"[api_load] {msg}", flush=True)


def kubectl(*args: str, stdin: str | None = None, user: str = "admin", check: bool = True) -> str:
    """``kit.kubectl`` as one of the local cluster's users."""
    return kit.kubectl(
        *args,
        kubeconfig=lc.kubeconfig_path(user),
        binary=lc.bin_dir() / "kubectl",
        stdin=stdin,
        check=check,
    )


def populate(count: int) -> None:
    kubectl("create", "namespace", NS, check=False)  # exists on a second run
    kubectl("apply", "--server-side", "-f", str(REPO / "crds" / "manifests"))
    kubectl("apply", "--server-side", "-f", str(REPO / "crds" / "rbac"))
    kubectl(
        "create",
        "rolebinding",
        "user-a-edit",
        "--clusterrole=edit",
        "--user=user-a",
        "-n",
        NS,
        check=False,
    )
    items = [
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "Workbench",
            "metadata": {"name": f"wb-{i:04d}", "namespace": NS},
            "spec": {
                "image": "quay.io/jupyter/minimal-notebook:2025-10-20",
                "resources": {"cpu": "1", "memory": "2Gi"},
            },
        }
        for i in range(count)
    ]
    for start in range(0, count, 250):
        kubectl(
            "apply",
            "--server-side",
            "-f",
            "-",
            stdin=json.dumps(
                {"apiVersion": "v1", "kind": "List", "items": items[start : start + 250]}
            ),
        )


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50_ms": at(0.5) * 1e3,
        "p99_ms": at(0.99) * 1e3,
        "mean_ms": statistics.mean(samples) * 1e3,
    }


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def throughput(fn: Any, seconds: float, workers: int) -> float:
    deadline = time.perf_counter() + seconds

    def loop() -> int:
        n = 0
        while time.perf_counter() < deadline:
            fn()
            n += 1
        return n

    with ThreadPoolExecutor(workers) as pool:
        total = sum(pool.map(lambda _: loop(), range(workers)))
    return total / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--kubectl-runs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not lc.is_up():
        log("starting the local control plane")
        lc.up()
    log(f"creating {args.objects} Workbenches in {NS}")
    populate(args.objects)
    token = lc.tokens()["user-a"]
    auth = {"Authorization": f"Bearer {token}"}
    api = start_api(lc.kubeconfig_path("kubeforge-api"), lc.STATE / "logs" / "api-bench.log")
    url = api.url
    try:
        client = httpx.Client(base_url=url, headers=auth, timeout=60)
        route = f"/api/v1/namespaces/{NS}/workbenches"
        first = client.get(route)
        assert first.status_code == 200, first.text
        count = len(first.json()["items"])
        assert count >= args.objects, count
        apiserver = httpx.Client(
            base_url=f"https://127.0.0.1:{lc.APISERVER_PORT}",
            headers=auth,
            verify=str(lc.ca_file()),
            timeout=60,
        )
        raw_path = f"/apis/kubeforge.io/v1alpha1/namespaces/{NS}/workbenches"
        assert apiserver.get(raw_path).status_code == 200
        log("timing the API")
        api_lat = timed(lambda: client.get(route).raise_for_status(), args.requests)
        log("timing the apiserver directly")
        raw_lat = timed(lambda: apiserver.get(raw_path).raise_for_status(), args.requests)
        log("timing kubectl get")
        kc = lambda: kubectl("get", "workbenches", "-n", NS, "-o", "json", user="user-a")  # noqa: E731
        kubectl_lat = timed(kc, args.kubectl_runs)
        log(f"throughput, {args.workers} clients, {args.seconds:g}s each")
        api_rps = throughput(
            lambda: client.get(route).raise_for_status(), args.seconds, args.workers
        )
        raw_rps = throughput(
            lambda: apiserver.get(raw_path).raise_for_status(), args.seconds, args.workers
        )
        kubectl_rps = throughput(kc, args.seconds, args.workers)
    finally:
        api.stop()
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "objects": count,
        "api": {**percentiles(api_lat), "rps": api_rps},
        "apiserver_direct": {**percentiles(raw_lat), "rps": raw_rps},
        "kubectl_get": {**percentiles(kubectl_lat), "rps": kubectl_rps},
    }
    result["ratio_p50_vs_kubectl"] = result["kubectl_get"]["p50_ms"] / result["api"]["p50_ms"]
    result["ratio_rps_vs_kubectl"] = api_rps / kubectl_rps
    result["overhead_p50_vs_apiserver"] = (
        result["api"]["p50_ms"] / result["apiserver_direct"]["p50_ms"]
    )
    print(f"machine: {result['machine']}; {count} Workbenches listed per request")
    for key in ("api", "apiserver_direct", "kubectl_get"):
        r = result[key]
        print(
            f"{key:17s} p50 {r['p50_ms']:8.1f} ms  p99 {r['p99_ms']:8.1f} ms  {r['rps']:7.1f} req/s"
        )
    print(
        f"API vs kubectl get: p50 {result['ratio_p50_vs_kubectl']:.2f}x faster, "
        f"{result['ratio_rps_vs_kubectl']:.2f}x the requests/s; "
        f"API p50 = {result['overhead_p50_vs_apiserver']:.2f}x the apiserver's own"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
