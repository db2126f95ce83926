#!/usr/bin/env python3
"""Workbench scale benchmark on the embedded local control plane.

Creates COUNT Workbenches across NAMESPACES namespaces and reports:

- the seconds until all are Ready through the operator;
- the baseline: the seconds a plain client needs to create the same children (PVC, Service,
  NetworkPolicy, StatefulSet, built by the operator's own builders) at the same concurrency and
  see every notebook pod ready, measured in the same run;
- their ratio (target <= 1.5): the two phases run in turn ``--rounds`` times (3), each from
  the same empty cluster, and the ratio reported is the median of the rounds' ratios;
- the operator's peak RSS (VmHWM; target <= 200 MB);
- API write requests per Workbench, and API writes during an idle period afterwards (target: 0),
  both counted from the apiserver's audit log by the operator's own user.

    python bench/workbench_scale.py                      # 1000 Workbenches, 10 namespaces
    python bench/workbench_scale.py --count 100 --idle-seconds 30

Culling is off in the benchmark's Workbenches: no notebook server runs on the local control plane,
and the activity reads would only measure DNS failures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "hack"))
import localcluster as lc  # noqa: E402

sys.path.insert(0, str(REPO))
from kubernetes import client, config  # noqa: E402

from kubeforge_crds.platform import PlatformConfig  # noqa: E402
from kubeforge_crds.workbench import WorkbenchSpec  # noqa: E402
from kubeforge_labs import kit  # noqa: E402
from kubeforge_operator.runtime.placement import Placement, resolve_placement  # noqa: E402
from kubeforge_operator.workbench.builders import (  # noqa: E402
    build_home_pvc,
    build_network_policy,
    build_service,
    build_statefulset,
)

OPERATOR_USER = "kubeforge-operator"
SPEC = {
    "image": "quay.io/jupyter/minimal-notebook:2025-10-20",
    "resources": {"cpu": "10m", "memory": "64Mi"},
    "storage": {"size": "1Gi"},
    "culling": {"enabled": False},
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bench_nodes(count: int) -> dict[str, Any]:
    """Extra kwok nodes so that two runs of COUNT small notebook pods fit at once."""
    pods_per_node = 250
    items = []
    for i in range(max(1, (2 * count) // pods_per_node + 1)):
        node = lc.node_manifest(f"kwok-bench-{i}", cpu="64", memory="256Gi", gpus=0)
        node["status"]["capacity"]["pods"] = str(pods_per_node)  # type: ignore[index]
        node["status"]["allocatable"]["pods"] = str(pods_per_node)  # type: ignore[index]
        node["metadata"]["labels"]["kubeforge.io/bench"] = "true"  # type: ignore[index]
        items.append(node)
    return {"apiVersion": "v1", "kind": "List", "items": items}


def names(prefix: str, count: int, namespaces: int) -> list[tuple[str, str]]:
    return [(f"{prefix}-{i % namespaces}", f"wb-{i:04d}") for i in range(count)]


def run_parallel(fn: Any, jobs: list[Any], concurrency: int) -> None:
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in pool.map(lambda job: fn(*job), jobs):
            pass


def wait_for(what: str, done: Any, timeout: float) -> float:
    started = time.monotonic()
    last = -1
    while time.monotonic() - started < timeout:
        n = done()
        if n != last:
            log(f"{what}: {n}")
            last = n
        if n is True or n == -1:
            return time.monotonic() - started
        time.sleep(1)
    raise SystemExit(f"timed out waiting for {what}")


def baseline(
    api: client.ApiClient, pairs: list[tuple[str, str]], concurrency: int, prefix: str
) -> float:
    """Create the operator's children with a plain client and wait until every pod is ready."""
    from kubernetes.dynamic import DynamicClient

    dyn = DynamicClient(api)
    spec = WorkbenchSpec.model_validate(SPEC)
    placement = resolve_placement(None, None, PlatformConfig())
    assert isinstance(placement, Placement)
    resources: dict[str, Any] = {}

    def create(ns: str, name: str) -> None:
        owner = {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "Workbench",
            "metadata": {"name": name, "namespace": ns, "uid": "none"},
        }
        for child in (
            build_home_pvc(owner, spec),
            build_service(owner),
            build_network_policy(owner, "kubeforge-system"),
            build_statefulset(owner, spec, SPEC["image"], placement),
        ):
            del child["metadata"]["ownerReferences"]  # no Workbench owns them here
            key = (child["apiVersion"], child["kind"])
            if key not in resources:
                resources[key] = dyn.resources.get(api_version=key[0], kind=key[1])
            resources[key].create(body=child, namespace=ns)

    apps = client.AppsV1Api(api)
    count = len(pairs)
    started = time.monotonic()
    run_parallel(create, pairs, concurrency)

    def ready() -> int:
        sets = apps.list_stateful_set_for_all_namespaces(
            label_selector="app.kubernetes.io/name=workbench"
        ).items
        n = sum(
            1
            for s in sets
            if s.metadata.namespace.startswith(prefix) and (s.status.ready_replicas or 0) == 1
        )
        return -1 if n == count else n

    wait_for("baseline pods ready", ready, 1800)
    return time.monotonic() - started


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# the control plane's programs, by the name /proc gives them; all else counts as "other"
CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller", "kube-scheduler", "kwok")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(operator_pid: int | None = None) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each control-plane program, the operator and
    everything else on the machine (this benchmark's client included), from /proc."""
    out = dict.fromkeys((*CONTROL_PLANE, "operator", "other"), 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
        if operator_pid is not None and int(entry.name) == operator_pid:
            out["operator"] += used
        else:
            out[next((c for c in CONTROL_PLANE if comm.startswith(c)), "other")] += used
    return out


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after if after[k] - before.get(k, 0.0) > 0.05}


def reconcile_count(port: int) -> float:
    """Workbench reconciles the operator has done, from its own metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kubeforge_reconcile_total{") and 'kind="Workbench"' in line
    )


def audit_now() -> str:
    """Now as the audit log writes its stageTimestamp (RFC 3339, microseconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def operator_writes(since: str, until: str | None = None) -> list[dict[str, Any]]:
    """The operator's completed requests between two audit_now() times, from the audit log and
    the files the apiserver rotated it into (audit-<time>.log beside it, 200 MB each), so that a
    long run is counted whole."""
    log_file = lc.audit_log()
    files = sorted(log_file.parent.glob("audit*.log"), key=lambda f: f.stat().st_mtime)
    floor = datetime.strptime(since, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    out = []
    for path in files:
        if path.stat().st_mtime < floor:
            continue  # rotated before the phase began
        with path.open() as f:
            for line in f:
                if OPERATOR_USER not in line:  # most lines: not worth parsing
                    continue
                event = json.loads(line)
                stamp = event.get("stageTimestamp", "")
                if (
                    event["user"]["username"] == OPERATOR_USER
                    and event.get("stage") == "ResponseComplete"
                    and stamp >= since
                    and (until is None or stamp < until)
                ):
                    out.append(event)
    return out


@dataclass
class Phase:
    """One phase of a round: seconds until all were Ready, and the CPU-seconds each program of
    the machine used meanwhile."""

    seconds: float
    cpu: dict[str, float]


@dataclass
class OperatorPhase(Phase):
    reconciles: float  # the operator's kubeforge_reconcile_total at the end of the phase
    writes: list[dict[str, Any]]  # its writes until all were Ready (audit log)
    idle_writes: list[dict[str, Any]] | None  # its writes while idle afterwards (last round)
    rss: float  # its peak RSS (VmHWM), MB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="client threads, and the operator's worker threads",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="baseline and operator phases in turn, this many times; the ratio is the median "
        "of the rounds' ratios (the machine's noise moves one phase's seconds by 30 %%)",
    )
    parser.add_argument("--idle-seconds", type=int, default=120)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the last round's Workbenches in place (the baseline's objects are always "
        "removed before the operator's phase starts)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="write a 30 s CPU profile of kube-apiserver from the middle of each phase of the "
        "first round into this folder (baseline.pprof, operator.pprof; read with `go tool "
        "pprof -top FILE`); the cluster must have been started with "
        "KUBEFORGE_APISERVER_PROFILING=1",
    )
    args = parser.parse_args()

    lc.up()
    api = config.new_client_from_config(config_file=str(lc.kubeconfig_path()))
    lc.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "manifests")
    )
    lc.kubectl(
        "apply",
        "--server-side",
        "--field-manager=bench",
        "-f",
        "-",
        stdin=json.dumps(bench_nodes(args.count)),
    )
    log(
        f"{args.count} Workbenches in {args.namespaces} namespaces, concurrency "
        f"{args.concurrency}, {args.rounds} rounds; {os.cpu_count()} CPUs"
    )
    run = f"bench-{int(time.time()) % 100000}"  # fresh namespaces, whatever earlier runs left
    rounds: list[tuple[Phase, OperatorPhase]] = []
    for r in range(args.rounds):
        last = r == args.rounds - 1
        profile = args.profile if r == 0 else None
        # each phase starts from the same empty cluster: its objects are removed (and their
        # removal waited for) before the next phase starts; until 2026-12-02 the operator's
        # phase shared the control plane with the baseline's thousands of objects
        base = baseline_phase(api, args, f"{run}-{r}-base", profile)
        log(f"round {r + 1}: baseline {base.seconds:.1f} s")
        op = operator_phase(api, args, f"{run}-{r}-op", profile, last)
        log(f"round {r + 1}: operator {op.seconds:.1f} s, ratio {op.seconds / base.seconds:.2f}")
        rounds.append((base, op))
    report(args, rounds)
    if not args.keep:
        lc.kubectl("delete", "nodes", "-l", "kubeforge.io/bench=true", "--wait=false", check=False)
    return 0


def baseline_phase(
    api: client.ApiClient, args: argparse.Namespace, prefix: str, profile: Path | None
) -> Phase:
    spaces = create_namespaces(prefix, args.namespaces)
    cpu_before = cpu_seconds()
    profiling = profile_later(profile, "baseline")
    seconds = baseline(api, names(prefix, args.count, args.namespaces), args.concurrency, prefix)
    profiling.join()
    phase = Phase(seconds, cpu_used(cpu_before, cpu_seconds()))
    remove_namespaces(api, spaces)
    return phase


def operator_phase(
    api: client.ApiClient, args: argparse.Namespace, prefix: str, profile: Path | None, last: bool
) -> OperatorPhase:
    """A fresh operator process makes ``args.count`` Workbenches Ready; in the last round it
    then idles ``args.idle_seconds`` and its writes meanwhile are counted."""
    spaces = create_namespaces(prefix, args.namespaces)
    metrics_port = kit.free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(lc.kubeconfig_path(OPERATOR_USER)),
        "KUBEFORGE_OPERATOR_NAMESPACES": json.dumps([f"{prefix}-*"]),
        "KUBEFORGE_OPERATOR_METRICS_HOST": "127.0.0.1",
        "KUBEFORGE_OPERATOR_METRICS_PORT": str(metrics_port),
        "KUBEFORGE_OPERATOR_LIVENESS_HOST": "127.0.0.1",
        "KUBEFORGE_OPERATOR_LIVENESS_PORT": "18181",
        "KUBEFORGE_OPERATOR_MAX_WORKERS": str(args.concurrency),
        "KUBEFORGE_OPERATOR_LOG_LEVEL": "WARNING",
    }
    oplog = REPO / ".cache" / "bench-operator.log"
    oplog.unlink(missing_ok=True)
    launched = kit.launch(
        "the operator",
        [sys.executable, "-m", "kubeforge_operator"],
        oplog,
        env=env,
        ready=lambda: kit.http_ok("http://127.0.0.1:18181/healthz"),
        timeout=60,
    )
    custom = client.CustomObjectsApi(api)
    since = audit_now()

    def create_workbench(ns: str, name: str) -> None:
        body = {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "Workbench",
            "metadata": {"name": name},
            "spec": SPEC,
        }
        custom.create_namespaced_custom_object("kubeforge.io", "v1alpha1", ns, "workbenches", body)

    def ready() -> int:
        items = custom.list_cluster_custom_object("kubeforge.io", "v1alpha1", "workbenches")
        n = sum(
            1
            for wb in items["items"]
            if wb["metadata"]["namespace"].startswith(prefix)
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in wb.get("status", {}).get("conditions", [])
            )
        )
        return -1 if n == args.count else n

    cpu_before = cpu_seconds(launched.proc.pid)
    profiling = profile_later(profile, "operator")
    started = time.monotonic()
    run_parallel(create_workbench, names(prefix, args.count, args.namespaces), args.concurrency)
    wait_for("Workbenches ready", ready, 1800)
    seconds = time.monotonic() - started
    profiling.join()
    cpu = cpu_used(cpu_before, cpu_seconds(launched.proc.pid))
    reconciles = reconcile_count(metrics_port)
    idle_since = audit_now()
    writes = operator_writes(since, idle_since)
    idle_writes = None
    if last:
        log(f"idle for {args.idle_seconds} s")
        time.sleep(args.idle_seconds)
        idle_writes = operator_writes(idle_since)
    rss = peak_rss_mb(launched.proc.pid)
    launched.stop(timeout=30)
    if not (last and args.keep):
        # waited for, so that what comes next does not share the machine with the deletion of
        # this phase's thousands of objects (it made a back-to-back baseline 3x slower)
        remove_namespaces(api, spaces)
    return OperatorPhase(seconds, cpu, reconciles, writes, idle_writes, rss)


def report(args: argparse.Namespace, rounds: list[tuple[Phase, OperatorPhase]]) -> None:
    count = args.count
    ratios = [op.seconds / base.seconds for base, op in rounds]
    writes = [w for _, op in rounds for w in op.writes]
    idle = rounds[-1][1].idle_writes or []
    print()
    print(
        f"workbenches                 {count} in {args.namespaces} namespaces "
        f"(concurrency {args.concurrency}, {os.cpu_count()} CPUs), {len(rounds)} rounds"
    )
    print("round   baseline   operator   ratio   peak RSS   reconciles/Wb   writes/Wb")
    for i, (base, op) in enumerate(rounds, 1):
        print(
            f"{i:5} {base.seconds:8.1f} s {op.seconds:8.1f} s {ratios[i - 1]:7.2f} "
            f"{op.rss:7.1f} MB {op.reconciles / count:15.2f} {len(op.writes) / count:11.2f}"
        )
    print(f"ratio operator/baseline     {statistics.median(ratios):8.2f}   (median; target <= 1.5)")
    print(f"operator peak RSS           {max(op.rss for _, op in rounds):8.1f} MB (target <= 200)")
    print(f"API writes per Workbench    {len(writes) / count / len(rounds):8.2f}   (all rounds)")
    for key, n in sorted(writes_by_kind(writes).items(), key=lambda kv: -kv[1]):
        print(f"    {key:38} {n / count / len(rounds):6.2f}")
    print(f"API writes while idle       {len(idle):8d}   ({args.idle_seconds} s; target 0)")
    print("CPU seconds by program       baseline   operator phase (each round)")
    for key in (*CONTROL_PLANE, "operator", "other"):
        base_cpu = " ".join(f"{b.cpu.get(key, 0.0):6.1f}" for b, _ in rounds)
        op_cpu = " ".join(f"{o.cpu.get(key, 0.0):6.1f}" for _, o in rounds)
        print(f"    {key:24} {base_cpu} | {op_cpu}")


def writes_by_kind(writes: list[dict[str, Any]]) -> dict[str, int]:
    """Audit events counted by verb and resource (with the subresource)."""
    by_kind: dict[str, int] = {}
    for e in writes:
        ref = e.get("objectRef", {})
        sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
        key = f"{e['verb']} {ref.get('resource')}{sub}"
        by_kind[key] = by_kind.get(key, 0) + 1
    return by_kind


def create_namespaces(prefix: str, count: int) -> list[str]:
    spaces = [f"{prefix}-{i}" for i in range(count)]
    for ns in spaces:
        lc.kubectl("create", "namespace", ns)
    return spaces


def profile_later(folder: Path | None, phase: str) -> threading.Thread:
    """From 20 s into a phase, a 30 s CPU profile of kube-apiserver into ``folder``/phase.pprof
    (nothing without a folder)."""

    def take() -> None:
        if folder is None:
            return
        time.sleep(20)
        folder.mkdir(parents=True, exist_ok=True)
        kubectl = [str(lc.bin_dir() / "kubectl"), "--kubeconfig", str(lc.kubeconfig_path())]
        path = "/debug/pprof/profile?seconds=30"
        got = subprocess.run([*kubectl, "get", "--raw", path], capture_output=True, check=False)
        if got.returncode != 0:
            log(
                f"no profile of the {phase} phase (is the apiserver's profiling on?): "
                f"{got.stderr.decode(errors='replace')}"
            )
            return
        (folder / f"{phase}.pprof").write_bytes(got.stdout)
        log(f"profile of the {phase} phase: {folder / f'{phase}.pprof'}")

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    return thread


def remove_namespaces(api: client.ApiClient, spaces: list[str]) -> None:
    """Delete ``spaces`` and wait until they and everything in them are gone."""
    log(f"deleting {len(spaces)} namespaces")
    for ns in spaces:
        lc.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    core = client.CoreV1Api(api)

    def left() -> int:
        names = {n.metadata.name for n in core.list_namespace().items}
        return -1 if names.isdisjoint(spaces) else len(names.intersection(spaces))

    wait_for("namespaces being deleted", left, 900)
    log("deleted")


if __name__ == "__main__":
    sys.exit(main())
