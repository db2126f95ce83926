#!/usr/bin/env python3
"""Pod start latency on the local cluster's real node, and what its components cost.

Applies COUNT pods one after the other (the Debian base image running ``sleep``, as a Job or a
notebook's first container would) and measures apply → Ready for each: median and max. The
baseline, in the same run: the same pods on a kwok node, where no container starts (what the
control plane alone costs: admission, scheduling, status updates). The ratio is what a real
container adds. Also the resident memory of the node's processes (kubelet, containerd, the shims,
kube-proxy, CoreDNS, the relay).

Then Python's start in kubeforge's trainer image (the one that trains, evaluates and serves
LLMs: the chart's kubeforge-llm runtime): pods that import what the runtime imports before it
serves a transformers model (its server, torch, transformers, peft) and exit, timed
apply → Succeeded, with the bytecode the image carries against the same pods made to compile
every module from source (``-X pycache_prefix`` naming an empty folder: Python looks for bytecode
only there), alternating, in the same run.

    python bench/pod_start.py             # 20 pods each, 5 Python starts each way
    python bench/pod_start.py --count 5 --python-starts 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "hack"))
import localcluster as lc  # noqa: E402
from kfcluster import node  # noqa: E402
from kfcluster.images import BASE_IMAGE, TARGETS  # noqa: E402

REAL = {
    "nodeSelector": {"kubeforge.io/node": "real"},
    "tolerations": [{"key": "kubeforge.io/node", "operator": "Exists", "effect": "NoSchedule"}],
}
KWOK = {"nodeSelector": {"type": "kwok", "node.kubernetes.io/instance-type": "cpu-16"}}


def pod(name: str, placement: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            **placement,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": BASE_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "600"],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
        },
    }


def start_latencies(namespace: str, placement: dict[str, object], count: int) -> list[float]:
    """apply → Ready of each pod, one at a time."""
    out = []
    for i in range(count):
        name = f"p{i}"
        t0 = time.monotonic()
        lc.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(pod(name, placement)))
        lc.kubectl(
            "wait", "-n", namespace, "--for=condition=Ready", f"pod/{name}", "--timeout=120s"
        )
        out.append(time.monotonic() - t0)
    lc.kubectl("delete", "pods", "--all", "-n", namespace, "--wait=false")
    return out


# what `python -m kubeforge_runtimes serve` imports before it serves a transformers model
RUNTIME_IMPORTS = "import kubeforge_runtimes.server, torch, transformers, peft"


def python_start(name: str, from_source: bool) -> dict[str, object]:
    """A pod of the trainer image that imports RUNTIME_IMPORTS and exits; ``from_source``: with
    no bytecode found (what every start cost before the image carried it)."""
    flags = ["-X", "pycache_prefix=/tmp/no-bytecode"] if from_source else []
    spec = pod(name, REAL)
    container = spec["spec"]["containers"][0]  # type: ignore[index]
    container["image"] = TARGETS["trainer"].tag
    container["command"] = ["python", *flags, "-c", RUNTIME_IMPORTS]
    spec["spec"]["restartPolicy"] = "Never"  # type: ignore[index]
    return spec


def python_starts(namespace: str, count: int) -> dict[str, list[float]]:
    """apply → Succeeded of each such pod, one at a time, the two ways alternating."""
    out: dict[str, list[float]] = {"bytecode": [], "from_source": []}
    for i in range(count):
        for way in ("bytecode", "from_source"):
            name = f"py-{way.replace('_', '-')}-{i}"
            t0 = time.monotonic()
            lc.kubectl(
                "apply",
                "-n",
                namespace,
                "-f",
                "-",
                stdin=json.dumps(python_start(name, way == "from_source")),
            )
            finished(namespace, name)
            out[way].append(time.monotonic() - t0)
    return out


def finished(namespace: str, name: str, timeout: float = 300) -> None:
    """Wait for the pod to succeed; its log when it fails or takes too long, and at once the
    command that imports the trainer image when the node does not have it."""
    deadline = time.monotonic() + timeout
    fields = "{.status.phase} {.status.containerStatuses[0].state.waiting.reason}"
    while (
        phase := lc.kubectl("get", "pod", "-n", namespace, name, "-o", f"jsonpath={fields}")
    ).strip() != "Succeeded":
        if "ErrImageNeverPull" in phase:
            raise SystemExit(
                f"the real node has no {TARGETS['trainer'].tag}: run `make images` "
                "(python3 hack/localcluster.py images), or --python-starts 0"
            )
        if phase.startswith("Failed") or time.monotonic() > deadline:
            log = lc.kubectl("logs", "-n", namespace, name, check=False)
            raise SystemExit(f"pod {name}: {phase or 'not started'} after {timeout:.0f} s\n{log}")
        time.sleep(0.2)


def rss_mb() -> dict[str, float]:
    """Resident memory of the node's processes (the shims together), MB."""
    out: dict[str, float] = {}
    for name, pid in node.status():
        if pid is not None:
            out[name] = _rss(pid)
    shims = node.shim_pids()
    out[f"containerd shims ({len(shims)})"] = sum(_rss(p) for p in shims)
    return out


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--python-starts", type=int, default=5)
    args = parser.parse_args()
    lc.up()
    if not node.is_running():
        print("the real node is not running (see `make deps`)", file=sys.stderr)
        return 1
    ns = f"bench-pods-{uuid.uuid4().hex[:6]}"
    lc.kubectl("create", "namespace", ns)
    try:
        real = start_latencies(ns, REAL, args.count)
        memory = rss_mb()  # with the last real pod still running
        kwok = start_latencies(ns, KWOK, args.count)
        starts = python_starts(ns, args.python_starts) if args.python_starts else {}
    finally:
        lc.kubectl("delete", "namespace", ns, "--wait=false")
    result = {
        "count": args.count,
        "real_node_s": {"median": statistics.median(real), "max": max(real)},
        "kwok_baseline_s": {"median": statistics.median(kwok), "max": max(kwok)},
        "ratio_median": statistics.median(real) / statistics.median(kwok),
        "rss_mb": {k: round(v, 1) for k, v in memory.items()},
    }
    if starts:
        median = {way: statistics.median(times) for way, times in starts.items()}
        result["python_start_s"] = {
            way: {"median": round(median[way], 2), "runs": [round(t, 2) for t in times]}
            for way, times in starts.items()
        }
        result["python_start_ratio_median"] = round(median["from_source"] / median["bytecode"], 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
