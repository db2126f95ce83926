#!/usr/bin/env python3
"""Admission under Kueue's real controller: COUNT FineTuneJobs from TEAMS teams sharing one
cohort of GPUs, through the whole path (the FineTuneJob, kubeforge's validation Job, the training
Job, Kueue's Workload, admission, the run, the quota given back).

Each team is a kubeforge Team (its namespace, ClusterQueue in cohort ``bench``, LocalQueue):
nominal GPUS/TEAMS A100s each, borrowing up to all the cohort's. The FineTuneJobs ask for 1, 2
or 4 GPUs (seeded), are created at RATE per second in round-robin over the teams, and run on the
kwok GPU nodes for 10-30 s each (simulated: ``KWOK_SIMULATED_DURATION``, the project's kwok stage;
kwok runs no container). The operator runs as a local process, Kueue (v0.17.0) as a pod on the
real node.

Reported:
- create -> admitted of each FineTuneJob (median, p95, mean): what a user waits, with kubeforge's
  part (create -> the training Job exists: validation and reconciles) and Kueue's (the Workload
  made -> Admitted) apart; from the apiserver's timestamps (creationTimestamp, the conditions'
  lastTransitionTime: 1 s resolution; a client's watch lags on 2 cores);
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
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "hack"))
import localcluster as lc  # noqa: E402

sys.path.insert(0, str(REPO))
from kubernetes import client, config  # noqa: E402

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


def stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def condition_time(obj: dict[str, Any], kind: str) -> float | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == kind and c["status"] == "True":
            return stamp(c["lastTransitionTime"])
    return None


def runs(custom: client.CustomObjectsApi, teams: list[str]) -> list[dict[str, float]]:
    """Each FineTuneJob's times, from the apiserver's own timestamps (1 s resolution): created,
    its training Job created, its Workload created, admitted (Admitted) and finished (Finished),
    and the GPUs it held."""
    batch = client.BatchV1Api(custom.api_client)
    out = []
    for ns in teams:
        ftjs = custom.list_namespaced_custom_object(*KUBEFORGE, ns, "finetunejobs")["items"]
        jobs = {
            j.metadata.name: j.metadata.creation_timestamp.timestamp()
            for j in batch.list_namespaced_job(ns, label_selector="kubeforge.io/stage=train").items
        }
        workloads = {
            w["metadata"]["ownerReferences"][0]["name"]: w
            for w in custom.list_namespaced_custom_object(*KUEUE, ns, "workloads")["items"]
        }
        for ftj in ftjs:
            train = f"{ftj['metadata']['name']}-train"
            w = workloads.get(train)
            if w is None or train not in jobs:
                continue
            out.append({
                "created": stamp(ftj["metadata"]["creationTimestamp"]),
                "job": jobs[train],
                "workload": stamp(w["metadata"]["creationTimestamp"]),
                "admitted": condition_time(w, "Admitted") or float("nan"),
                "finished": condition_time(w, "Finished") or float("nan"),
                "gpus": workload_gpus(w),
            })  # fmt: skip
    return out


def finished_count(custom: client.CustomObjectsApi, teams: list[str]) -> int:
    return sum(
        condition_time(w, "Finished") is not None
        for ns in teams
        for w in custom.list_namespaced_custom_object(*KUEUE, ns, "workloads")["items"]
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    """Median and p95, and the mean (Kueue's benchmark publishes means only)."""
    return {
        "median": round(statistics.median(values), 2),
        "p95": round(percentile(values, 0.95), 2),
        "mean": round(statistics.fmean(values), 2),
    }


def utilisation(timeline: list[dict[str, float]], nominal: int) -> float:
    """GPU-seconds admitted over nominal x time, from the first admission to the last finish
    (Kueue's benchmark: resource usage over nominal over the run)."""
    start = min(r["admitted"] for r in timeline)
    end = max(r["finished"] for r in timeline)
    used = sum((r["finished"] - r["admitted"]) * r["gpus"] for r in timeline)
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
    """The teams, their namespaces and ClusterQueues gone (waited for: the next run reuses the
    names)."""
    lc.kubectl("delete", "team", *teams, "--ignore-not-found", "--wait=false")
    lc.kubectl("delete", "namespace", *teams, "--ignore-not-found", "--timeout=300s")
    lc.kubectl("delete", "clusterqueue", *teams, "--ignore-not-found", "--timeout=120s")


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
        "--seconds",
        type=int,
        nargs=2,
        default=(10, 30),
        help="each run's simulated duration: from, to (uniform)",
    )
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
    lc.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "manifests")
    )
    teardown(teams)
    operator = start_operator(f"{PREFIX}-*")
    try:
        setup(api, teams, args.gpus)
        rng = random.Random(args.seed)
        log(f"creating {args.count} FineTuneJobs at {args.rate}/s")
        for i in range(args.count):
            ns, name = teams[i % len(teams)], f"ft-{i:04d}"
            body = finetunejob(name, rng.choice((1, 2, 4)), rng.randint(*args.seconds))
            custom.create_namespaced_custom_object(*KUBEFORGE, ns, "finetunejobs", body)
            time.sleep(1 / args.rate)

        def finished() -> bool:
            done = finished_count(custom, teams)
            log(f"finished: {done}/{args.count}")
            return done >= args.count

        kit.wait_for("every run to finish", finished, 600 + 60 * args.count, interval=10)
        timeline = runs(custom, teams)
    finally:
        operator.terminate()
        operator.wait(30)
        teardown(teams)
    total = [r["admitted"] - r["created"] for r in timeline]
    ours = [r["job"] - r["created"] for r in timeline]
    kueue = [r["admitted"] - r["workload"] for r in timeline]
    nominal = (args.gpus // args.teams) * args.teams
    figures = {
        "count": len(timeline),
        "teams": args.teams,
        "cohortGpus": nominal,
        "createToAdmittedSeconds": summary(total),
        "createToTrainingJobSeconds": summary(ours),
        "workloadToAdmittedSeconds": summary(kueue),
        "gpuUtilisationPercent": round(utilisation(timeline, nominal), 1),
        "kueueBaseline": KUEUE_BASELINE,
        "machine": f"{os.cpu_count()} CPUs",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
