"""The closed loop end to end (`make loop-demo`, hack/loop.py), as CI runs it: on the local
control plane, with the operator, the REST API, Prometheus, real fine-tuning, real runtimes and
the real drift service: drift -> exactly one retraining run on the training data plus the live
window -> version 2 registered -> canary promoted step by step. Every step is checked where a user
would look: status, Events, the operator's metrics, the API's catalog and lineage. The loop's
second run (`--only rollback`: version 2 failing half its requests, rolled back) is not run here:
tests/e2e/test_modelserver_real.py rolls a faulty version back on KServe's real controller with
real traffic, and tests/integration/test_modelserver.py the rollback's status and lineage."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.integration.conftest import ISOLATED_PREFIX, REPO, Cluster

# minutes of real training, serving and canary steps: the slow tier (make test-slow)
pytestmark = [pytest.mark.usefixtures("local_cluster"), pytest.mark.slow]


@pytest.fixture(scope="module")
def records(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("loop") / "record.json"
    prefix = f"{ISOLATED_PREFIX}loop"  # the session's operator leaves these namespaces alone
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "hack" / "loop.py"),
            "--namespace-prefix",
            prefix,
            "--record",
            str(out),
            "--only",
            "promote",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "loop-demo.log").write_text(proc.stdout + proc.stderr)
    for ns in (prefix, f"{prefix}-faulty"):
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data: list[dict[str, Any]] = json.loads(out.read_text())
    (artifacts / "loop-record.json").write_text(json.dumps(data, indent=2))
    return data


def steps(record: dict[str, Any]) -> dict[str, float]:
    """Step -> seconds since the run started (Kubernetes timestamps have one-second resolution,
    so steps the operator took in the same second compare equal)."""
    return {e["step"]: e["t"] for e in record["timeline"]}


@pytest.mark.timeout(1800)
def test_drift_retrains_and_version_2_is_promoted(records: list[dict[str, Any]]) -> None:
    run = records[0]
    assert run["outcome"] == "promoted"
    t = steps(run)
    assert (
        t["v1 registered"]
        < t["drift injected"]
        <= t["drift detected"]
        <= t["retrain started"]
        < t["v2 registered"]
        <= t["canary start"]
        < t["canary promote"]
    )
    assert "alert firing" in t
    actions = [d["action"] for d in run["decisions"]]
    assert actions[0] == "start"
    assert actions[-1] == "promote"
    assert "rollback" not in actions
    assert [d["trafficSplit"] for d in run["decisions"] if d["action"] == "advance"] == [
        "50/50",
        "0/100",
    ]
    # the 100% step compares version 2 with version 1 measured at full load before the rollout
    full_load = re.search(
        r"stable at full load: latency-p95 ([0-9.e-]+)", run["decisions"][0]["reason"]
    )
    assert full_load, run["decisions"][0]["reason"]
    assert f"vs {float(full_load.group(1)):.4g})" in run["decisions"][-1]["reason"]
    assert run["v1"]["version"] != run["v2"]["version"]
    # exactly one retraining run, trained on the training data plus the live window
    assert run["retrain"] == "tickets-drift-retrain-1"
    lineage = run["lineage"]
    assert lineage["source"] == {"modelName": "tickets"}
    stable = lineage["versions"]["stable"]["fineTuneJob"]
    assert stable["name"] == "tickets-drift-retrain-1"  # version 2 serves now
    assert stable["trigger"].startswith(f"drift:{run['namespace']}/tickets-drift: product")
    assert "training rows +" in stable["liveData"]
    assert lineage["dataset"]["digest"] == stable["datasetDigest"]
    catalog = {m["name"]: m for m in run["catalog"]["models"]}
    assert catalog["tickets-drift-retrain-1"]["servedBy"] == ["tickets"]
    assert catalog["tickets-v1"]["datasetDigest"] != stable["datasetDigest"]
    assert any(
        line.startswith("kubeforge_rollout_decisions_total")
        and 'action="promote"' in line
        and line.endswith(" 1.0")
        for line in run["operator_metrics"]
    )
    for reason in ("ActionAlert", "ActionRetrain", "RolloutStart", "RolloutPromote"):
        assert reason in run["events"]
    # nothing failed while the versions changed hands
    assert all(code == "200" for codes in run["requests"].values() for code in codes)
