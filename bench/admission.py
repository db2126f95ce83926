#!/usr/bin/env python3
"""Admission under Kueue's real controller: COUNT FineTuneJobs from TEAMS teams sharing one
cohort of GPUs, through the whole path (the FineTuneJob, kubeforge's validation Job, the training
Job, Kueue's Workload, admission, the run, the quota given back).

Each team is a kubeforge Team (its namespace, ClusterQueue in cohort ``bench``, LocalQueue):
nominal GPUS/TEAMS A100s each, borrowing up to all the cohort's. The FineTuneJobs ask for 1, 2
or 4 GPUs (seeded), are created at RATE per second in round-robin over the teams, and run on the
kwok GPU nodes for 20-60 s each (simulated: ``KWOK_SIMULATED_DURATION``, the project's kwok stage;
kwok runs no container). The operator runs as a local process, Kueue (v0.17.0) as a pod on the
real node.

Reported:
- create -> admitted of each FineTuneJob (median, p95): what a user waits, with kubeforge's part
  (create -> the training Job exists: validation and reconciles) and Kueue's (the Workload made
  -> Admitted) apart; times from this client's watch of the Workloads (as Kueue's own scheduler
  benchmark measures), and of the FineTuneJob's status;
- GPU utilisation of the cohort's quota: GPUs in use by admitted workloads over nominal, averaged
  from the first admission to the last finish (Kueue's benchmark: CPU used over nominal x time);
- Kueue's published baseline beside it (test/performance/scheduler, configs/baseline).

    python3 hack/localcluster.py up && python3 hack/localcluster.py kueue up
    python bench/admission.py                  # 200 FineTuneJobs, 4 teams, 16 GPUs
    python bench/admission.py --count 40 --rate 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "hack"))
import localcluster as lc  # noqa: E402

sys.path.insert(0, str(REPO))
from kubernetes import client, config, watch  # noqa: E402

from kubeforge_labs import kit  # noqa: E402

KUEUE = ("kueue.x-k8s.io", "v1beta2")
KUBEFORGE = ("kubeforge.io", "v1alpha1")
FLAVOR = "bench-a100"
PREFIX = "kf-bench-team"
# Kueue's scheduler benchmark (sigs.k8s.io/kueue@v0.17.0 test/performance/scheduler/configs/
# baseline): 15 000 simulated CPU workloads, 30 ClusterQueues in 5 cohorts, no pods; its CI
# thresholds and the averages of the 5 runs they were set from (average time to admission by
# class, ms; ClusterQueue usage of nominal over the run, %). It publishes no percentiles.
KUEUE_BASELINE = {
    "avgTimeToAdmissionMs": {"small": 215_468, "medium": 76_768, "large": 6_666},
    "thresholdMs": {"small": 260_000, "medium": 90_000, "large": 11_000},
    "usagePercent": 58.7,
    "usageThresholdPercent": 55,
    "workloads": 15_000,
    "wallSeconds": 351.1,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def team(name: str, gpus: int, total: int) -> dict[str, Any]:
    resources = [
        {"name": "cpu", "nominal": str(8 * gpus), "borrowingLimit": str(8 * (total - gpus))},
        {
            "name": "memory",
            "nominal": f"{32 * gpus}Gi",
            "borrowingLimit": f"{32 * (total - gpus)}Gi",
        },
        {"name": "nvidia.com/gpu", "nominal": str(gpus), "borrowingLimit": str(total - gpus)},
    ]
    return {
        "apiVersion": "/".join(KUBEFORGE),
        "kind": "Team",
        "metadata": {"name": name},
        "spec": {
            "members": [{"kind": "User", "name": "user-a"}],
            "quota": {"cohort": "bench", "flavors": [{"name": FLAVOR, "resources": resources}]},
        },
    }


def finetunejob(name: str, gpus: int, seconds: int) -> dict[str, Any]:
    """A run the kwok GPU nodes "train" for ``seconds``; nothing is read (no container runs)."""
    return {
        "apiVersion": "/".join(KUBEFORGE),
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": "hf://sshleifer/tiny-gpt2"},
            "dataset": {"uri": "s3://bench/tickets.jsonl"},
            "method": {"type": "lora"},
            "hyperparameters": {"maxSteps": 100},
            "resources": {
                "cpu": "4",
                "memory": "16Gi",
                "accelerator": {"count": gpus, "product": "NVIDIA-A100-SXM4-80GB"},
            },
            "queueName": "gpu",
            "env": [{"name": "KWOK_SIMULATED_DURATION", "value": f"{seconds}s"}],
            "backend": "job",
            "output": {"uri": f"s3://bench/models/{name}", "modelName": name},
        },
    }


def workload_gpus(workload: dict[str, Any]) -> int:
    """GPUs a Workload asks for: each pod set's count times its first container's limit."""
    total = 0
    for pod_set in workload["spec"]["podSets"]:
        container = pod_set["template"]["spec"]["containers"][0]
        limits = (container.get("resources") or {}).get("limits") or {}
        total += int(pod_set.get("count", 1)) * int(limits.get("nvidia.com/gpu", 0))
    return total


class Recorder:
    """Watches Workloads (cluster-wide) and FineTuneJobs' training Jobs; records when each was
    first seen, admitted and finished, by this client's clock."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.lock = threading.Lock()
        self.workloads: dict[str, dict[str, float]] = {}  # job name -> times
        self.jobs: dict[str, float] = {}  # "<ns>/<job>" -> first seen
        self.stop = threading.Event()

    def _watch_workloads(self) -> None:
        while not self.stop.is_set():
            w = watch.Watch()
            for event in w.stream(
                self.custom.list_cluster_custom_object, *KUEUE, "workloads", timeout_seconds=30
            ):
                obj, now = event["object"], time.monotonic()
                meta = obj["metadata"]
                if not meta["namespace"].startswith(PREFIX):
                    continue
                owner = next(iter(meta.get("ownerReferences") or []), {}).get("name", "")
                key = f"{meta['namespace']}/{owner}"
                conds = {
                    c["type"]: c["status"]
                    for c in (obj.get("status") or {}).get("conditions") or []
                }
                gpus = workload_gpus(obj)
                with self.lock:
                    times = self.workloads.setdefault(key, {"seen": now, "gpus": gpus})
                    if conds.get("Admitted") == "True":
                        times.setdefault("admitted", now)
                    if conds.get("Finished") == "True":
                        times.setdefault("finished", now)
                if self.stop.is_set():
                    w.stop()

    def _watch_jobs(self) -> None:
        while not self.stop.is_set():
            w = watch.Watch()
            for event in w.stream(
                self.batch.list_job_for_all_namespaces,
                label_selector="kubeforge.io/stage=train",
                timeout_seconds=30,
            ):
                meta = event["object"].metadata
                with self.lock:
                    self.jobs.setdefault(f"{meta.namespace}/{meta.name}", time.monotonic())
                if self.stop.is_set():
                    w.stop()

    def start(self) -> None:
        for target in (self._watch_workloads, self._watch_jobs):
            threading.Thread(target=target, daemon=True).start()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def utilisation(workloads: list[dict[str, float]], nominal: int) -> float:
    """GPU-seconds admitted over nominal x time, from the first admission to the last finish."""
    spans = [(w["admitted"], w["finished"], w["gpus"]) for w in workloads]
    start, end = min(s for s, _, _ in spans), max(e for _, e, _ in spans)
    used = sum((e - s) * g for s, e, g in spans)
    return 100 * used / (nominal * (end - start))


def setup(api: client.ApiClient, teams: list[str], gpus: int) -> None:
    custom = client.CustomObjectsApi(api)
    flavor = {
        "apiVersion": "/".join(KUEUE),
        "kind": "ResourceFlavor",
        "metadata": {"name": FLAVOR},
        "spec": {
            "nodeLabels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        },
    }
    lc.kubectl("apply", "-f", "-", stdin=json.dumps(flavor))
    for name in teams:
        lc.kubectl("apply", "-f", "-", stdin=json.dumps(team(name, gpus // len(teams), gpus)))

    def ready() -> int:
        found = 0
        for name in teams:
            status = custom.get_cluster_custom_object(*KUBEFORGE, "teams", name).get("status") or {}
            conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
            found += conds.get("QuotaReady") == "True"
        return -1 if found == len(teams) else found

    kit.wait_for("the teams' quota", lambda: ready() == -1, 120, interval=1)


def teardown(teams: list[str]) -> None:
    for name in teams:
        lc.kubectl("delete", "team", name, "--ignore-not-found", "--wait=false")
        lc.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")
    lc.kubectl("delete", "clusterqueue", *teams, "--ignore-not-found", "--wait=false")


def start_operator(teams_glob: str) -> Any:
    env = {
        **os.environ,
        "KUBECONFIG": str(lc.kubeconfig_path("kubeforge-operator")),
        "KUBEFORGE_OPERATOR_NAMESPACES": json.dumps([teams_glob]),
        "KUBEFORGE_OPERATOR_METRICS_HOST": "127.0.0.1",
        "KUBEFORGE_OPERATOR_METRICS_PORT": str(kit.free_port()),
        "KUBEFORGE_OPERATOR_LIVENESS_HOST": "127.0.0.1",
        "KUBEFORGE_OPERATOR_LIVENESS_PORT": "18182",
        "KUBEFORGE_OPERATOR_LOG_LEVEL": "WARNING",
    }
    oplog = REPO / ".cache" / "bench-admission-operator.log"
    oplog.unlink(missing_ok=True)
    return kit.launch(
        "the operator",
        [sys.executable, "-m", "kubeforge_operator"],
        oplog,
        env=env,
        ready=lambda: kit.http_ok("http://127.0.0.1:18182/healthz"),
        timeout=60,
    ).proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--teams", type=int, default=4)
    parser.add_argument("--gpus", type=int, default=16, help="the cohort's nominal GPUs")
    parser.add_argument("--rate", type=float, default=4, help="FineTuneJobs created per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=REPO / "test-artifacts" / "bench-admission.json"
    )
    args = parser.parse_args()
    if not lc.is_up():
        raise SystemExit("the local cluster is not up: python3 hack/localcluster.py up")
    config.load_kube_config(str(lc.kubeconfig_path()))
    api = client.ApiClient()
    custom = client.CustomObjectsApi(api)
    teams = [f"{PREFIX}-{i}" for i in range(args.teams)]
    teardown(teams)
    operator = start_operator(f"{PREFIX}-*")
    try:
        setup(api, teams, args.gpus)
        recorder = Recorder(api)
        recorder.start()
        rng = random.Random(args.seed)
        created: dict[str, float] = {}
        log(f"creating {args.count} FineTuneJobs at {args.rate}/s")
        for i in range(args.count):
            ns, name = teams[i % len(teams)], f"ft-{i:04d}"
            body = finetunejob(name, rng.choice((1, 2, 4)), rng.randint(20, 60))
            created[f"{ns}/{name}-train"] = time.monotonic()
            custom.create_namespaced_custom_object(*KUBEFORGE, ns, "finetunejobs", body)
            time.sleep(1 / args.rate)

        def finished() -> bool:
            with recorder.lock:
                done = sum("finished" in w for w in recorder.workloads.values())
            log(f"finished: {done}/{args.count}")
            return done >= args.count

        kit.wait_for("every run to finish", finished, 600 + 60 * args.count, interval=10)
        recorder.stop.set()
    finally:
        operator.terminate()
        operator.wait(30)
        teardown(teams)
    with recorder.lock:
        runs = {k: recorder.workloads[k] for k in created if k in recorder.workloads}
        jobs = dict(recorder.jobs)
    total = [runs[k]["admitted"] - created[k] for k in runs]
    ours = [jobs[k] - created[k] for k in runs if k in jobs]
    kueue = [runs[k]["admitted"] - runs[k]["seen"] for k in runs]
    figures = {
        "count": len(runs),
        "teams": args.teams,
        "cohortGpus": args.gpus,
        "createToAdmittedSeconds": {
            "median": statistics.median(total),
            "p95": percentile(total, 0.95),
        },
        "createToTrainingJobSeconds": {
            "median": statistics.median(ours),
            "p95": percentile(ours, 0.95),
        },
        "workloadToAdmittedSeconds": {
            "median": statistics.median(kueue),
            "p95": percentile(kueue, 0.95),
        },
        "gpuUtilisationPercent": round(utilisation(list(runs.values()), args.gpus), 1),
        "kueueBaseline": KUEUE_BASELINE,
        "machine": f"{os.cpu_count()} CPUs",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
