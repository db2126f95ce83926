"""The kubelet's reasons, read from pod statuses as the kubelet writes them, and the pull policy
and default placement that steer kubeforge's pods."""

from __future__ import annotations

from typing import Any

import pytest

from kubeforge_crds.platform import PlatformConfig
from kubeforge_operator.finetunejob.builders import observe_job
from kubeforge_operator.runtime.children import with_pull_policy
from kubeforge_operator.runtime.placement import resolve_placement
from kubeforge_operator.runtime.pods import (
    first_problem,
    node_problem,
    pod_problem,
    running_not_ready,
    unready_node,
)


def pod(*statuses: dict[str, Any], node: str = "kf-node-0", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p-0"},
        "spec": {"nodeName": node},
        "status": {"phase": "Pending", "containerStatuses": list(statuses), **status},
    }


def waiting(reason: str, message: str = "", name: str = "main") -> dict[str, Any]:
    return {"name": name, "state": {"waiting": {"reason": reason, "message": message}}}


@pytest.mark.parametrize(
    ("reason", "permanent"),
    [
        ("ErrImageNeverPull", True),
        ("InvalidImageName", True),
        ("ImagePullBackOff", False),
        ("CrashLoopBackOff", False),
        ("CreateContainerConfigError", False),
    ],
)
def test_stuck_container_reasons_are_reported(reason: str, permanent: bool) -> None:
    problem = pod_problem(pod(waiting(reason, 'Container image "x" is not present')))
    assert problem is not None
    assert problem.reason == reason
    assert problem.permanent is permanent
    assert "container main of pod p-0" in problem.message
    assert "is not present" in problem.message


@pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing", ""])
def test_containers_on_their_way_are_no_problem(reason: str) -> None:
    assert pod_problem(pod(waiting(reason))) is None
    assert pod_problem(pod()) is None
    assert pod_problem(None) is None


def test_a_crash_loop_after_an_oom_kill_is_named_oom() -> None:
    status = waiting("CrashLoopBackOff") | {
        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    }
    problem = pod_problem(pod(status))
    assert problem is not None
    assert problem.reason == "OOMKilled"
    assert "memory limit" in problem.message


def test_an_oom_killed_container_that_does_not_restart() -> None:
    status = {"name": "train", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
    problem = pod_problem(pod(status, phase="Failed"))
    assert problem is not None
    assert problem.reason == "OOMKilled"
    assert "container train" in problem.message


def test_init_containers_count_too() -> None:
    p = pod()
    p["status"]["initContainerStatuses"] = [waiting("ErrImageNeverPull", name="fetch")]
    problem = first_problem([pod(), p])
    assert problem is not None
    assert "container fetch" in problem.message


def test_node_gone_or_not_ready() -> None:
    p = pod()
    lost = node_problem(p, None)
    assert lost is not None
    assert lost.reason == "NodeLost"
    not_ready = {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "Unknown", "message": "Kubelet stopped posting"}
            ]
        }
    }
    problem = node_problem(p, not_ready)
    assert problem is not None
    assert problem.reason == "NodeNotReady"
    assert "Kubelet stopped posting" in problem.message
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert node_problem(p, ready) is None
    assert node_problem(pod(node=""), None) is None  # not scheduled: no node to lose


def test_job_state_names_the_kubelet_reason() -> None:
    job = {"status": {"active": 1, "startTime": "2026-11-30T10:00:00Z"}, "spec": {}}
    state = observe_job(job, [pod(waiting("ErrImageNeverPull"))])
    assert state is not None
    assert (state.state, state.reason) == ("Queued", "ErrImageNeverPull")
    healthy = observe_job(job, [pod(waiting("ContainerCreating"))])
    assert healthy is not None
    assert healthy.reason == "JobRunning"


def test_a_job_failed_by_oom_says_so() -> None:
    job = {
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
        },
        "spec": {},
    }
    oom = {"name": "train", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
    state = observe_job(job, [pod(oom, phase="Failed")])
    assert state is not None
    assert (state.state, state.reason) == ("Failed", "OOMKilled")
    plain = observe_job(job, [pod(phase="Failed")])
    assert plain is not None
    assert plain.reason == "BackoffLimitExceeded"


def test_pull_policy_reaches_every_container() -> None:
    manifest = {
        "spec": {
            "replicatedJobs": {
                "leader": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}},
                "node": {
                    "template": {
                        "spec": {
                            "initContainers": [{"name": "i", "image": "y"}],
                            "containers": [{"name": "b", "image": "x"}],
                        }
                    }
                },
            }
        }
    }
    out = with_pull_policy(manifest, "Never")
    replicas = out["spec"]["replicatedJobs"]
    assert replicas["leader"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Never"
    worker = replicas["node"]["template"]["spec"]
    assert worker["initContainers"][0]["imagePullPolicy"] == "Never"
    assert worker["containers"][0]["imagePullPolicy"] == "Never"
    untouched = with_pull_policy({"spec": {"containers": [{"image": "x"}]}}, None)
    assert "imagePullPolicy" not in untouched["spec"]["containers"][0]


def test_default_placement_applies_to_cpu_workloads_only() -> None:
    platform = PlatformConfig.model_validate(
        {
            "defaultPlacement": {
                "nodeSelector": {"kubeforge.io/node": "real"},
                "tolerations": [
                    {"key": "kubeforge.io/node", "value": "real", "effect": "NoSchedule"}
                ],
            }
        }
    )
    cpu = resolve_placement(None, "q", platform)
    assert not isinstance(cpu, type(None))
    fields = cpu.pod_fields()  # type: ignore[union-attr]
    assert fields["nodeSelector"] == {"kubeforge.io/node": "real"}
    assert fields["tolerations"][0]["key"] == "kubeforge.io/node"
    assert PlatformConfig().default_placement.node_selector == {}


def test_the_node_is_read_only_for_a_pod_that_is_not_ready() -> None:
    reads: list[str] = []

    def get_node(name: str) -> dict[str, Any] | None:
        reads.append(name)
        return {"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}

    ready = pod(conditions=[{"type": "Ready", "status": "True"}])
    assert unready_node(ready, get_node) is None
    assert reads == []
    unready = pod(conditions=[{"type": "Ready", "status": "False"}])
    problem = unready_node(unready, get_node)
    assert problem is not None
    assert problem.reason == "NodeNotReady"
    assert reads == ["kf-node-0"]
    assert unready_node(pod(node=""), get_node) is None  # not scheduled: no node to ask


def test_a_running_pod_that_is_not_ready_points_at_its_log() -> None:
    running = {"name": "drift", "state": {"running": {"startedAt": "2026-11-30T10:00:00Z"}}}
    p = pod(running, phase="Running", conditions=[{"type": "Ready", "status": "False"}])
    p["metadata"]["namespace"] = "team-a"
    problem = running_not_ready(p)
    assert problem is not None
    assert problem.reason == "PodNotReady"
    assert "kubectl logs -n team-a p-0" in problem.message
    p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert running_not_ready(p) is None
    assert running_not_ready(pod(waiting("ContainerCreating"), phase="Pending")) is None
