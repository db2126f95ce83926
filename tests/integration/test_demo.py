"""`make demo` does what the README says: examples applied and reconciled, the overview printed,
and everything it started stopped again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kubeforge_labs.kit import free_port
from tests.cases import REPO
from tests.integration.conftest import Cluster

# the whole demo, fine-tuning included: the slow tier (make test-slow)
pytestmark = [pytest.mark.usefixtures("local_cluster"), pytest.mark.slow]


@pytest.mark.timeout(900)  # it fine-tunes for real; the default 300 s is for ordinary tests
def test_demo_applies_and_reconciles_the_examples(cluster: Cluster) -> None:
    env = {
        **os.environ,
        "DEMO_METRICS_PORT": str(free_port()),
        "DEMO_HEALTH_PORT": str(free_port()),
    }
    env.pop("KUBECONFIG", None)
    demo = [sys.executable, str(REPO / "hack" / "demo.py")]
    try:
        proc = subprocess.run(
            [*demo, "--once"], capture_output=True, text=True, timeout=840, env=env
        )
    finally:
        # whatever happened, the demo's operator (cluster-wide) must not outlive the test: it
        # would reconcile every other test's objects
        subprocess.run([*demo, "--down"], capture_output=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "kubectl get kubeforge -A" in out
    for name in (
        "workbench.kubeforge.io/notebook",
        "finetunejob.kubeforge.io/support-bot-v1",
        "modelserver.kubeforge.io/support-bot",
        "driftmonitor.kubeforge.io/support-bot-drift",
    ):
        assert name in out
    assert "What to look at next" in out
    # the local FineTuneJob really trained and registered a version
    assert '"phase": "Succeeded"' in out
    assert '"version": "v' in out
    # the drift report of shifted live traffic against the fine-tuning data
    assert "drift found:" in out
    assert "product: psi" in out
    assert (REPO / ".cache" / "demo" / "drift-report.html").is_file()
    assert "Stopped the operator" in out
    assert not (REPO / ".cache" / "demo" / "operator.pid").exists()
