#!/usr/bin/env python3
"""`make demo`: kubeforge on the embedded local cluster (or the cluster KUBECONFIG names), with
the examples applied and reconciled.

With the local cluster's real node (root and `make deps`), demo_real.py installs kubeforge by its
chart and runs examples/local in real containers, then leaves it running (`make demo-down`
removes it). Otherwise (another cluster, or no real node) it runs the operator on this host,
applies examples/ into the namespace kubeforge-demo, waits until each example reports status,
fine-tunes with the local backend, prints `kubectl get kubeforge -A` and what to look at next,
then keeps the operator running until Ctrl-C. `make demo-down` (this script with --down) stops
whatever the demo started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_real
import localcluster as lc
from kfcluster import kserve

sys.path.insert(0, str(lc.REPO))
from kubeforge_labs import kit

REPO = lc.REPO
DEMO_DIR = REPO / ".cache" / "demo"
NAMESPACE = os.environ.get("DEMO_NAMESPACE", "kubeforge-demo")
# the chart's release namespace when kubeforge runs on the real node (demo_real.py)
SYSTEM = os.environ.get("DEMO_SYSTEM_NAMESPACE", "kubeforge-demo-system")
RELEASE_MARKER = DEMO_DIR / "installed-release"


_STARTED = time.monotonic()


def say(msg: str) -> None:
    """A step, with the seconds since the demo started (where a run spends its time)."""
    print(f"\033[1m==> {msg}\033[0m  [{time.monotonic() - _STARTED:.0f}s]", flush=True)


def kubectl(kubeconfig: str, *args: str, check: bool = True) -> str:
    """``kit.kubectl``; a failure ends the demo with kubectl's message."""
    try:
        return kit.kubectl(
            *args, kubeconfig=kubeconfig, binary=lc.bin_dir() / "kubectl", check=check
        )
    except kit.KubectlError as err:
        raise SystemExit(str(err)) from None


def choose_cluster() -> tuple[str, bool]:
    """(kubeconfig, started_local)."""
    external = os.environ.get("KUBECONFIG")
    if external and Path(external).resolve() != lc.kubeconfig_path().resolve():
        say(f"Using the cluster in KUBECONFIG={external}")
        lc.build()  # for kubectl
        kubectl(external, "version")
        return external, False
    say("Starting the embedded local control plane (etcd, kube-apiserver, scheduler, kwok)")
    was_up = lc.is_up()
    lc.up()
    return str(lc.kubeconfig_path()), not was_up


def start_operator(kubeconfig: str) -> subprocess.Popen[bytes]:
    """The operator, left running after the demo script ends (``make demo-down`` stops it)."""
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    log = DEMO_DIR / "operator.log"
    log.unlink(missing_ok=True)
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "KUBEFORGE_OPERATOR_LOG_FORMAT": "plain",
        "KUBEFORGE_OPERATOR_METRICS_HOST": "127.0.0.1",
        "KUBEFORGE_OPERATOR_METRICS_PORT": os.environ.get("DEMO_METRICS_PORT", "18080"),
        "KUBEFORGE_OPERATOR_LIVENESS_HOST": "127.0.0.1",
        "KUBEFORGE_OPERATOR_LIVENESS_PORT": os.environ.get("DEMO_HEALTH_PORT", "18081"),
        "KUBEFORGE_OPERATOR_LOCAL_RUNS_DIR": str(DEMO_DIR / "finetune-runs"),
    }
    proc = kit.launch(
        "the operator",
        [sys.executable, "-m", "kubeforge_operator"],
        log,
        env=env,
        new_session=True,
        keep=True,
    ).proc
    (DEMO_DIR / "operator.pid").write_text(str(proc.pid))
    return proc


def wait_for_status(kubeconfig: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        items = json.loads(kubectl(kubeconfig, "get", "kubeforge", "-n", NAMESPACE, "-o", "json"))[
            "items"
        ]
        pending = [
            f"{i['kind']}/{i['metadata']['name']}"
            for i in items
            if i.get("status", {}).get("observedGeneration") != i["metadata"]["generation"]
        ]
        if items and not pending:
            return
        if time.monotonic() > deadline:
            raise SystemExit(
                f"no status after {timeout:.0f}s: {', '.join(pending)}; "
                f"see {DEMO_DIR / 'operator.log'}"
            )
        time.sleep(1)


def finetune_for_real(kubeconfig: str, timeout: float = 300) -> None:
    """A FineTuneJob with backend local: the tiny model the project builds is fine-tuned on the
    CPU by kfp's local runner beside the operator, and the result lands in status."""
    work = DEMO_DIR / "finetune"
    base, data = work / "base", work / "tickets.jsonl"
    if not (base / "config.json").is_file():
        say("Building the tiny base model and the ticket dataset (once; .cache/demo/finetune)")
        for args in (["build-base-model", str(base)], ["make-dataset", str(data)]):
            subprocess.run([sys.executable, "-m", "kubeforge_pipelines", *args], check=True)
    ftj = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "tickets-local"},
        "spec": {
            "baseModel": {"uri": base.as_uri()},
            "dataset": {"uri": data.as_uri()},
            "method": {"type": "lora", "lora": {"targetModules": ["c_attn", "c_proj", "c_fc"]}},
            "hyperparameters": {
                "maxSteps": 80,
                "batchSize": 8,
                "maxSeqLength": 64,
                "learningRate": 0.002,
            },
            "backend": "local",
            "output": {"uri": (work / "models" / "tickets").as_uri(), "modelName": "tickets"},
        },
    }
    kubectl(kubeconfig, "delete", "ftj", "tickets-local", "-n", NAMESPACE, "--ignore-not-found")
    say("Fine-tuning for real: FineTuneJob tickets-local (backend local, LoRA on the CPU)")
    subprocess.run(
        [
            str(lc.bin_dir() / "kubectl"),
            "--kubeconfig",
            kubeconfig,
            "apply",
            "-n",
            NAMESPACE,
            "-f",
            "-",
        ],
        input=json.dumps(ftj).encode(),
        check=True,
    )
    deadline = time.monotonic() + timeout
    while True:
        obj = json.loads(
            kubectl(kubeconfig, "get", "ftj", "tickets-local", "-n", NAMESPACE, "-o", "json")
        )
        phase = obj.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"FineTuneJob tickets-local still {phase} after {timeout:.0f}s")
        time.sleep(2)
    status = obj["status"]
    shown = {k: status.get(k) for k in ("phase", "model", "metrics", "datasetDigest", "lineage")}
    print(json.dumps(shown, indent=2))
    if phase != "Succeeded":
        conds = {c["type"]: c for c in status.get("conditions", [])}
        raise SystemExit(f"fine-tuning failed: {conds.get('Failed', {}).get('message')}")


def drift_report() -> None:
    """The drift report of "live traffic" whose product mix moved, against the tickets the model
    was fine-tuned on: the same code the DriftMonitor's service runs."""
    work = DEMO_DIR / "finetune"
    live = DEMO_DIR / "live-traffic.jsonl"
    say("Drift: live traffic (only vpn and email tickets) against the fine-tuning data")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kubeforge_pipelines",
            "make-dataset",
            str(live),
            "--rows",
            "400",
            "--products",
            "vpn,email",
            "--seed",
            "7",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kubeforge_runtimes",
            "drift",
            "report",
            "--reference",
            str(work / "tickets.jsonl"),
            "--current",
            str(live),
            "--metric",
            "psi=0.2",
            "--metric",
            "chiSquare=0.001",
            "--out",
            str(DEMO_DIR / "drift-report.html"),
        ],
        check=True,
    )


def down() -> None:
    if RELEASE_MARKER.exists():
        # what the demo installed, whatever DEMO_NAMESPACE says now
        installed = json.loads(RELEASE_MARKER.read_text())
        ns, system = installed["namespace"], installed["system"]
        demo_real.down(installed["kubeconfig"], ns, system, installed.get("kserve", False), say)
        RELEASE_MARKER.unlink()
        say("The demo's volumes emptied for the next run")
    pidfile = DEMO_DIR / "operator.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pidfile.read_text()), signal.SIGTERM)
        pidfile.unlink()
        say("Stopped the operator")
    marker = DEMO_DIR / "started-cluster"
    if marker.exists():
        lc.down()
        marker.unlink()
        say("Stopped the local control plane")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--down", action="store_true", help="stop what the demo started")
    parser.add_argument(
        "--once", action="store_true", help="stop after printing the result (used by the tests)"
    )
    args = parser.parse_args()
    if args.down:
        down()
        return 0
    started = time.monotonic()
    try:
        kubeconfig, started_local = choose_cluster()
    except lc.ClusterError as err:
        raise SystemExit(str(err)) from err
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    if started_local:
        (DEMO_DIR / "started-cluster").touch()
    say("Installing the kubeforge CRDs")
    kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(REPO / "crds" / "manifests"),
    )
    # the aggregated ClusterRoles: whoever may edit a namespace may manage the four kinds there
    kubectl(kubeconfig, "apply", "--server-side", "-f", str(REPO / "crds" / "rbac"))
    kubectl(
        kubeconfig,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=kubeforge",
    )
    if demo_real.available(kubeconfig):
        installed = {"kubeconfig": kubeconfig, "namespace": NAMESPACE, "system": SYSTEM}
        # KServe goes with the demo only where a demo started it (this one, or the one before
        # that was not taken down)
        before = json.loads(RELEASE_MARKER.read_text()) if RELEASE_MARKER.exists() else {}
        started_kserve = before.get("kserve", False) or not kserve.is_up()
        RELEASE_MARKER.write_text(json.dumps(installed | {"kserve": started_kserve}))
        demo = demo_real.Demo(kubeconfig, NAMESPACE, SYSTEM, say)
        modelserver = demo.run()
        say(
            f"kubectl get kubeforge -n {NAMESPACE}   "
            f"({time.monotonic() - started:.0f}s after start)"
        )
        print(kubectl(kubeconfig, "get", "kubeforge", "-n", NAMESPACE))
        demo.next_steps(modelserver)
        if args.once:
            down()
            return 0
        say("kubeforge keeps running on the real node; `make demo-down` stops everything")
        return 0
    if Path(kubeconfig).resolve() == lc.kubeconfig_path().resolve():
        say(
            "No real node here (it needs root and `make deps`): the operator runs on this host "
            "and kwok's pods run no container"
        )
    say("Starting the operator (log: .cache/demo/operator.log)")
    operator = start_operator(kubeconfig)
    say(f"Applying examples/ into namespace {NAMESPACE}")
    kubectl(kubeconfig, "create", "namespace", NAMESPACE, check=False)
    print(kubectl(kubeconfig, "apply", "-n", NAMESPACE, "-f", str(REPO / "examples")), end="")
    say("Waiting until every example reports status")
    wait_for_status(kubeconfig)
    finetune_for_real(kubeconfig)
    drift_report()
    say(f"kubectl get kubeforge -A   ({time.monotonic() - started:.0f}s after start)")
    print(kubectl(kubeconfig, "get", "kubeforge", "-A"))
    env_hint = 'eval "$(python3 hack/localcluster.py env)"' if started_local or lc.is_up() else ""
    metrics = os.environ.get("DEMO_METRICS_PORT", "18080")
    bad = json.dumps(
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "Workbench",
            "metadata": {"name": "bad"},
            "spec": {"image": "x", "culling": {"idleTimeout": "30s"}},
        }
    )
    print("What to look at next:")
    if env_hint:
        print(f"  {env_hint}")
    print(f"  kubectl describe workbench notebook -n {NAMESPACE}   # conditions and Events")
    print(f"  kubectl get ftj tickets-local -n {NAMESPACE} -o yaml  # metrics, model, lineage")
    print("  cat .cache/demo/finetune/models/tickets/v1/README.md   # the model card")
    print("  kubectl explain modelserver.spec.rollout              # every field is documented")
    print("  open .cache/demo/drift-report.html                    # the drift report")
    print(f"  curl -s 127.0.0.1:{metrics}/metrics | grep kubeforge_  # the operator's metrics")
    print(f"  echo '{bad}' | kubectl apply -n {NAMESPACE} -f -")
    print("      # rejected at admission, naming spec.culling.idleTimeout")
    if args.once:
        operator.terminate()
        operator.wait(timeout=20)
        down()
        return 0
    say("The operator keeps running; Ctrl-C (or `make demo-down` elsewhere) stops everything")

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # explicit handlers: a shell may have started us with SIGINT ignored, and `kill` sends TERM
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    with contextlib.suppress(KeyboardInterrupt):
        operator.wait()
    down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
