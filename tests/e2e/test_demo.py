"""`make demo` does what the README says, on the real node: kubeforge installed by its chart, the
local examples running in real containers (a Jupyter server, a training Job, a model served by
KServe's controller behind the Gateway, a drift service that finds drift and whose alert fires),
the closed loop (the retraining run it starts, the new version's canary promoted under real
traffic), and everything it started removed again by `make demo-down`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from tests.cases import REPO
from tests.integration.conftest import Cluster, helm_binary, run_helm

# the whole demo, fine-tuning included: the slow tier (make test-slow)
pytestmark = pytest.mark.slow

NAMESPACE, SYSTEM = "kf-iso-demo", "kf-iso-demo-system"  # left alone by the tests' operator


@pytest.mark.timeout(1800)
def test_demo_runs_the_examples_on_real_containers(cluster: Cluster, real_node: str) -> None:
    env = {**os.environ, "DEMO_NAMESPACE": NAMESPACE, "DEMO_SYSTEM_NAMESPACE": SYSTEM}
    env.pop("KUBECONFIG", None)
    demo = [sys.executable, str(REPO / "hack" / "demo.py")]
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    try:
        proc = subprocess.run(
            [*demo, "--once"], capture_output=True, text=True, timeout=1300, env=env
        )
    except subprocess.TimeoutExpired as err:
        # (a timeout's output is bytes, whatever text=True says)
        out = [
            o.decode(errors="replace") if isinstance(o, bytes) else o or ""
            for o in (err.stdout, err.stderr)
        ]
        (artifacts / "demo.log").write_text("".join(out))
        raise
    finally:
        # whatever happened, the demo's release must not outlive the test
        subprocess.run([*demo, "--down"], capture_output=True, timeout=400, env=env, check=False)
    # what the demo printed, for whoever reads the run afterwards (CI keeps test-artifacts/)
    (artifacts / "demo.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert f"release kubeforge-demo in {SYSTEM}" in out
    for name in (
        "workbench.kubeforge.io/notebook",
        "finetunejob.kubeforge.io/support-bot-v1",
        "modelserver.kubeforge.io/support-bot",
        "driftmonitor.kubeforge.io/support-bot-drift",
    ):
        assert name in out
    # trained in a real pod: a version on the volume, loss below the base model's
    base_loss = float(re.search(r'"baseLoss": ([0-9.]+)', out)[1])  # type: ignore[index]
    loss = float(re.search(r'"loss": ([0-9.]+)', out)[1])  # type: ignore[index]
    assert loss < base_loss
    assert '"uri": "pvc://models/support-bot/v1"' in out
    # the drift service pod found the shifted traffic, and Prometheus fires the alert
    assert '"phase": "Drifted"' in out
    assert '"sent": 200' in out
    assert "KubeforgeDriftDetected firing for support-bot-drift" in out
    # the pods ran on the real node, the model's predictor too: KServe's controller made it
    # from the operator's InferenceService, and it answered a prompt through the Gateway
    assert re.search(r"notebook-0 +1/1 +Running .* kf-node-0", out)
    assert re.search(r"support-bot-predictor-\S+ +(\d)/\1 +Running .* kf-node-0", out), out
    assert "ModelServer support-bot served by KServe at http://support-bot-" in out
    answer = json.loads(re.search(r'(\{\n  "prompt".*?\n\})', out, re.S)[1])  # type: ignore[index]
    assert answer["revision"].startswith("r")
    assert answer["answer"].strip()
    # the drift service got the traffic from KServe's agent (nothing else sends it any): a
    # request and a response event per request, at least the 100 rows of its window (ten
    # tickets a request) when it reported drift, none malformed
    drift = json.loads(re.search(r'(\{\n  "phase".*?\n\})', out, re.S)[1])  # type: ignore[index]
    assert drift["payloads"]["ok"] >= 20, drift
    assert drift["payloads"].get("malformed", 0) == 0, drift
    # the loop closed: the monitor's one retraining run learnt from the training data plus the
    # drifted window, and its version went out as a canary under real traffic through the
    # Gateway, gated on Prometheus, and was promoted without a failed request
    loop = json.loads(re.search(r'(\{\n  "retrain".*?\n\})', out, re.S)[1])  # type: ignore[index]
    assert loop["retrain"] == "support-bot-drift-retrain-1"
    assert loop["trigger"].startswith(f"drift:{NAMESPACE}/support-bot-drift: product")
    assert "training rows +" in loop["liveData"], loop
    assert loop["version"] == "v2"
    v1, v2 = loop["stable"]["before"], loop["stable"]["after"]
    assert v2 != v1
    actions = [d.split(":")[0].split()[0] for d in loop["decisions"]]
    assert (actions[0], actions[-1]) == ("start", "promote"), loop
    assert "rollback" not in actions, loop
    assert loop["answers"].get(v1, {}).get("200", 0) > 0, loop
    assert loop["answers"].get(v2, {}).get("200", 0) > 0, loop
    assert {code for codes in loop["answers"].values() for code in codes} == {"200"}, loop
    assert "Version v2 promoted" in out
    assert "What to look at next" in out
    # --once ends with demo-down: the namespace and the release are gone
    assert f"Deleted namespace {NAMESPACE}" in out
    assert f"Uninstalled kubeforge from {SYSTEM}" in out
    left = cluster.kubectl("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name")
    assert left.stdout.strip() == ""
    # the release went with it, the user roles are back, and its volumes are available again
    releases = json.loads(
        run_helm(helm_binary(), "list", "-A", "-o", "json", kubeconfig=cluster.kubeconfig).stdout
    )
    assert "kubeforge-demo" not in [r["name"] for r in releases]
    cluster.kubectl("get", "clusterrole", "kubeforge-edit", "kubeforge-view")
    volumes = json.loads(
        cluster.kubectl("get", "pv", "-l", "kubeforge.io/node=real", "-o", "json").stdout
    )["items"]
    assert not [v for v in volumes if v["status"]["phase"] == "Released"]
    assert not (REPO / ".cache" / "demo" / "installed-release").exists()
    # KServe went with the demo that started it
    kserve = cluster.kubectl("get", "namespace", "kserve", "--ignore-not-found", "-o", "name")
    assert kserve.stdout.strip() == ""
