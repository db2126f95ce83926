#!/usr/bin/env python3
"""Drift service ingest: KServe logger CloudEvents per second on one core, and their latency.

The drift service runs as it does in its pod (``python -m kubeforge_runtimes drift serve``,
uvicorn, one process) pinned to one CPU; the load comes from this process on another CPU, with
aiohttp: binary-mode CloudEvents as KServe's agent posts them, a request event (ten ticket rows,
v1) and its response event with the same ``ce-id``. Two measurements:

- **throughput**: as many events as ``--concurrency`` connections get through in ``--seconds``;
- **latency at a fixed rate**: ``--rate`` events per second offered open-loop (each event sent at
  its scheduled time, latency counted from then, so a stalled server is not hidden), p50/p99.

Baseline, in the same run, on the same core and client: a bare FastAPI app on the same uvicorn
whose ``POST /`` reads the body and answers 202 — the HTTP stack alone, the most any ingest
could do. Target (#17): >= 2,000 events/s with p99 < 50 ms at 2,000/s.

    python bench/drift_ingest.py --json /tmp/ingest.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubeforge_labs.drift import logger_headers, write_jsonl  # noqa: E402
from kubeforge_pipelines.tinymodel import support_tickets  # noqa: E402
from kubeforge_runtimes.drift.payloads import REQUEST_TYPE, RESPONSE_TYPE  # noqa: E402

BASELINE = """
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
import sys, uvicorn
app = FastAPI()

@app.post("/")
async def receive(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"accepted": 1}, status_code=202)

@app.get("/readyz")
async def ready() -> dict:
    return {"ready": True}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() else []


def start(command: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*pinned(0), *command], stdout=subprocess.DEVNULL)
    import httpx

    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{command[:4]} did not become ready on port {port}")


def events(count: int) -> list[tuple[dict[str, str], bytes]]:
    """Pairs of request and response events, ten tickets per request."""
    rows = support_tickets(10 * (count // 2 + 1), seed=3)
    out = []
    for i in range(count // 2):
        batch = rows[10 * i : 10 * i + 10]
        event_id = str(uuid.uuid4())
        out.append(
            (logger_headers(REQUEST_TYPE, event_id), json.dumps({"instances": batch}).encode())
        )
        answer = {"predictions": [int(r["priority"] >= 3) for r in batch]}
        out.append((logger_headers(RESPONSE_TYPE, event_id), json.dumps(answer).encode()))
    return out


async def throughput(
    url: str, payload: list[tuple[dict[str, str], bytes]], seconds: float, concurrency: int
) -> float:
    import aiohttp

    sent = 0
    stop = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession, offset: int) -> None:
        nonlocal sent
        i = offset
        while time.perf_counter() < stop:
            headers, body = payload[i % len(payload)]
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 202:
                    raise SystemExit(f"unexpected {resp.status}: {await resp.text()}")
            sent += 1
            i += concurrency

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session, k) for k in range(concurrency)))
        return sent / (time.perf_counter() - started)


async def fixed_rate(
    url: str, payload: list[tuple[dict[str, str], bytes]], seconds: float, rate: float
) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int, due: float) -> None:
            nonlocal failures
            headers, body = payload[i % len(payload)]
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status == 202
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - due)
            else:
                failures += 1

        started = time.perf_counter()
        tasks = []
        n = int(seconds * rate)
        for i in range(n):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"p50Ms": pick(0.50), "p99Ms": pick(0.99), "sent": n, "failed": failures}


def measure(name: str, command: list[str], port: int, args: argparse.Namespace) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/"
    payload = events(4000)
    proc = start(command, port)
    try:
        asyncio.run(throughput(url, payload, 2, args.concurrency))  # warm up
        per_second = asyncio.run(throughput(url, payload, args.seconds, args.concurrency))
        at_rate = asyncio.run(fixed_rate(url, payload, args.seconds, args.rate))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    result = {"eventsPerSecond": round(per_second), f"at{int(args.rate)}PerSecond": at_rate}
    print(
        f"{name:>10}: {per_second:7.0f} events/s; at {args.rate:g}/s p50 "
        f"{at_rate['p50Ms']:.1f} ms, p99 {at_rate['p99Ms']:.1f} ms, {at_rate['failed']} failed"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument(
        "--interval", type=float, default=5, help="scoring interval (runs while events arrive)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})  # the client on another CPU
    with tempfile.TemporaryDirectory(prefix="kubeforge-ingest-") as tmp:
        work = Path(tmp)
        reference = write_jsonl(work / "reference.jsonl", support_tickets(3000, seed=1))
        config = {
            "namespace": "bench",
            "name": "ingest",
            "referenceUri": f"file://{reference}",
            "windowSize": 1000,
            "intervalSeconds": args.interval,
        }
        (work / "config.json").write_text(json.dumps(config))
        port = free_port()
        service = [
            sys.executable, "-m", "kubeforge_runtimes", "drift", "serve",
            "--config", str(work / "config.json"), "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        results = {"kubeforge": measure("kubeforge", service, port, args)}
        port = free_port()
        bare = [sys.executable, "-c", BASELINE, str(port)]
        results["baseline"] = measure("bare app", bare, port, args)
    ratio = results["kubeforge"]["eventsPerSecond"] / results["baseline"]["eventsPerSecond"]
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "pinned": bool(shutil.which("taskset")),
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "results": results,
        "ratioToBareApp": round(ratio, 3),
    }
    print(f"kubeforge ingest / bare app: {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
