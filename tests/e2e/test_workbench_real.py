"""Workbenches on the real node: a real Jupyter server answering through its Service, its home
volume surviving a stop and a start, culling after real inactivity, and each way a container
fails to start reported with the kubelet's reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.e2e.conftest import call_api, condition, get, node_control, wait_for_condition
from tests.integration.conftest import Cluster, wait_until


def workbench(name: str, namespace: str, **spec: Any) -> str:
    body = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "Workbench",
        "metadata": {"name": name, "namespace": namespace},
        # the real node's local volumes: the kubelet applies the pod's fsGroup to them (the
        # default class's hostPath volumes are root's alone), so the notebook writes its home
        "spec": {
            "resources": {"cpu": "200m", "memory": "512Mi"},
            "storage": {"size": "1Gi", "storageClassName": "real-node"},
        }
        | ({} if "image" in spec else {"catalogImage": "jupyter"})
        | spec,
    }
    return json.dumps(body)


def in_pod(cluster: Cluster, namespace: str, pod: str, *command: str) -> str:
    return cluster.kubectl("exec", "-n", namespace, pod, "--", *command).stdout


@pytest.mark.slow  # a minute of real inactivity before the culler may act: a slow scenario
def test_jupyter_serves_keeps_home_and_is_culled(cluster: Cluster, e2e_namespace: str) -> None:
    ns = e2e_namespace
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        stdin=workbench("nb", ns, culling={"enabled": True, "idleTimeout": "1m"}),
    )
    obj = wait_for_condition(cluster, "workbench", ns, "nb", "Ready", status="True", timeout=240)
    assert obj["status"]["phase"] == "Running"
    pod = get(cluster, "pod", ns, "nb-0")
    assert pod["spec"]["nodeName"] == "kf-node-0"  # a real container, not a kwok pod
    # the server answers through its Service, from another pod (cluster DNS and kube-proxy)
    status = in_pod(
        cluster,
        ns,
        "nb-0",
        "python",
        "-c",
        f"import urllib.request; print(urllib.request.urlopen('http://nb.{ns}.svc/api/status').read().decode())",
    )
    assert "last_activity" in json.loads(status)
    # its log, through kubeforge's API as a user would read it (pods/log, the kubelet's answer)
    logs = call_api(cluster, f"/api/v1/namespaces/{ns}/workbenches/nb/logs?lines=200")["items"]
    assert [(c["pod"], c["container"], c["problem"]) for c in logs] == [("nb-0", "notebook", None)]
    assert "ServerApp" in logs[0]["text"]
    # a file in the home volume outlives a stop and a start
    in_pod(cluster, ns, "nb-0", "sh", "-c", "echo kept > /home/jovyan/notes.txt")
    cluster.kubectl(
        "patch", "workbench", "nb", "-n", ns, "--type=merge", "-p", '{"spec":{"stopped":true}}'
    )
    wait_until(
        lambda: get(cluster, "workbench", ns, "nb")["status"]["phase"] == "Stopped",
        120,
        1,
        "stopped",
    )
    cluster.kubectl(
        "patch", "workbench", "nb", "-n", ns, "--type=merge", "-p", '{"spec":{"stopped":false}}'
    )
    wait_for_condition(cluster, "workbench", ns, "nb", "Ready", status="True", timeout=180)
    assert in_pod(cluster, ns, "nb-0", "cat", "/home/jovyan/notes.txt").strip() == "kept"
    # nobody uses it: the culler reads the server's own activity and stops it after 1m
    culled = wait_for_condition(
        cluster, "workbench", ns, "nb", "Culled", status="True", timeout=240
    )
    assert culled["status"]["phase"] in ("Stopping", "Stopped")
    assert "idle" in condition(culled, "Culled")["message"]


@pytest.mark.parametrize(
    ("case", "spec", "reason"),
    [
        ("missing", {"image": "localhost/kubeforge/no-such-notebook:1"}, "ErrImageNeverPull"),
        ("invalid", {"image": "localhost/kubeforge/Not_Valid:1"}, "InvalidImageName"),
        # the base image's command (python3 without a terminal) exits at once, again and again
        ("crash", {"image": "localhost/kubeforge/base:bookworm"}, "CrashLoopBackOff"),
        # Jupyter does not fit in 40Mi
        ("oom", {"resources": {"cpu": "200m", "memory": "40Mi"}}, "OOMKilled"),
    ],
)
def test_container_failures_reach_the_status(
    cluster: Cluster, e2e_namespace: str, case: str, spec: dict[str, Any], reason: str
) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=workbench(case, e2e_namespace, **spec))
    obj = wait_for_condition(
        cluster, "workbench", e2e_namespace, case, "ServerReady", reason=reason, timeout=240
    )
    cond = condition(obj, "ServerReady")
    assert cond["status"] == "False"
    assert f"pod {case}-0" in cond["message"]
    ready = condition(obj, "Ready")
    assert ready["status"] == "False"
    if reason in ("ErrImageNeverPull", "InvalidImageName"):
        assert obj["status"]["phase"] == "Failed"


@pytest.mark.slow  # the node controller waits 40 s before it marks the node: a slow scenario
def test_a_stopped_kubelet_is_reported_on_the_workbench(
    cluster: Cluster, e2e_namespace: str
) -> None:
    """The node's kubelet stops: the node controller marks the node and its pods not ready, and
    the Workbench says why. Started again, the notebook is Ready again."""
    ns = e2e_namespace
    cluster.kubectl("apply", "-f", "-", stdin=workbench("lost", ns, culling={"enabled": False}))
    wait_for_condition(cluster, "workbench", ns, "lost", "Ready", status="True", timeout=240)
    node = node_control()
    kubelet = node.proc("kubelet")
    kubelet.stop()
    try:
        obj = wait_for_condition(
            cluster, "workbench", ns, "lost", "ServerReady", reason="NodeNotReady", timeout=180
        )
        assert "kf-node-0" in condition(obj, "ServerReady")["message"]
    finally:
        if kubelet.pid() is None:
            node.start_kubelet()
    wait_for_condition(cluster, "workbench", ns, "lost", "Ready", status="True", timeout=180)
