"""Workbench builders and policies, without a cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeforge_crds import ConditionStatus
from kubeforge_crds.platform import PlatformConfig
from kubeforge_crds.workbench import WorkbenchPhase, WorkbenchSpec
from kubeforge_operator.runtime.placement import Placement, SpecProblem, resolve_placement
from kubeforge_operator.workbench.builders import (
    build_home_pvc,
    build_network_policy,
    build_service,
    build_statefulset,
    resolve_image,
)
from kubeforge_operator.workbench.status import (
    decide_phase,
    observe_scheduled,
    observe_server,
    volume_wait_left,
)

OWNER = {
    "apiVersion": "kubeforge.io/v1alpha1",
    "kind": "Workbench",
    "metadata": {"name": "nb", "namespace": "team-a", "uid": "1234"},
}


def _spec(**kw: Any) -> WorkbenchSpec:
    return WorkbenchSpec.model_validate({"image": "jupyter:1", **kw})


def _sts(spec: WorkbenchSpec, image: str = "img") -> dict[str, Any]:
    placement = resolve_placement(spec.resources.accelerator, spec.queue_name, PlatformConfig())
    assert isinstance(placement, Placement)
    return build_statefulset(OWNER, spec, image, placement)


def _pod_spec(sts: dict[str, Any]) -> dict[str, Any]:
    return dict(sts["spec"]["template"]["spec"])


def test_children_are_owned_and_named_deterministically() -> None:
    for child in (
        build_home_pvc(OWNER, _spec()),
        build_service(OWNER),
        _sts(_spec(), "jupyter:1"),
    ):
        ref = child["metadata"]["ownerReferences"][0]
        assert ref["uid"] == "1234"
        assert ref["controller"] is True
        assert child["metadata"]["namespace"] == "team-a"
    assert build_home_pvc(OWNER, _spec())["metadata"]["name"] == "nb-home"


def test_the_notebook_runs_one_replica_on_its_home_volume() -> None:
    # a stopped Workbench has no StatefulSet at all (reconcile.remove_notebook), so the
    # builder makes only the running one; stopping must not change the volume it mounts
    running = _sts(_spec(), "jupyter:1")
    assert running["spec"]["replicas"] == 1
    assert _sts(_spec(stopped=True), "jupyter:1") == running
    assert _pod_spec(running)["volumes"][0]["persistentVolumeClaim"]["claimName"] == "nb-home"


def test_gpus_become_limits_tolerations_and_a_node_selector() -> None:
    spec = _spec(
        resources={
            "cpu": 4,
            "memory": "16Gi",
            "accelerator": {"count": 2, "product": "NVIDIA-A100-SXM4-80GB"},
        }
    )
    pod = _pod_spec(_sts(spec, "img"))
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}


def test_cpu_only_pod_has_no_gpu_scheduling_constraints() -> None:
    pod = _pod_spec(_sts(_spec(), "img"))
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert "tolerations" not in pod
    assert "nodeSelector" not in pod


def test_pod_meets_the_restricted_pod_security_standard() -> None:
    pod = _pod_spec(_sts(_spec(), "img"))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctr = pod["containers"][0]["securityContext"]
    assert ctr["allowPrivilegeEscalation"] is False
    assert ctr["capabilities"] == {"drop": ["ALL"]}


def test_queue_label_env_and_data_connections() -> None:
    spec = _spec(
        queueName="team-gpus",
        env=[{"name": "A", "value": "1"}],
        dataConnections=[{"name": "s3", "secretName": "creds"}],
    )
    sts = _sts(spec, "img")
    assert sts["spec"]["template"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"
    # Kueue's StatefulSet integration reads it from the StatefulSet itself
    assert sts["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"
    assert "kueue.x-k8s.io/queue-name" not in _sts(_spec(), "img")["metadata"]["labels"]
    ctr = _pod_spec(sts)["containers"][0]
    assert ctr["env"][0] == {"name": "A", "value": "1"}
    assert ctr["env"][1]["name"] == "NOTEBOOK_ARGS"
    assert ctr["envFrom"] == [{"secretRef": {"name": "creds"}}]


def test_service_selects_the_notebook_pod() -> None:
    svc = build_service(OWNER)
    sts = _sts(_spec(), "img")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())


def test_catalog_images_resolve_and_unknown_ones_name_the_field() -> None:
    platform = PlatformConfig.model_validate(
        {"notebookImages": [{"name": "minimal", "image": "quay.io/jupyter/minimal-notebook:1"}]}
    )
    spec = WorkbenchSpec.model_validate({"catalogImage": "minimal"})
    assert resolve_image(spec, platform) == "quay.io/jupyter/minimal-notebook:1"
    problem = resolve_image(WorkbenchSpec.model_validate({"catalogImage": "other"}), platform)
    assert isinstance(problem, SpecProblem)
    assert problem.reason == "UnknownCatalogImage"
    assert problem.message.startswith("spec.catalogImage: 'other' is not in the notebook image")
    assert "(known: minimal)" in problem.message


def _pod(phase: str, node: str | None, **conds: str) -> dict[str, Any]:
    """A pod as the API returns it; each condition is given as "Status" or "Status:Reason"."""
    conditions = []
    for type_, value in conds.items():
        status, _, reason = value.partition(":")
        conditions.append(
            {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
                if reason == "Unschedulable"
                else "",
            }
        )
    return {
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": phase, "conditions": conditions},
    }


NODE = "kwok-cpu-0"
UNSCHEDULABLE = _pod("Pending", None, PodScheduled="False:Unschedulable")
STARTING = _pod("Pending", NODE, PodScheduled="True", Ready="False:ContainersNotReady")
RUNNING = _pod("Running", NODE, PodScheduled="True", Ready="True")
FAILED = _pod("Failed", NODE, PodScheduled="True", Ready="False")


@pytest.mark.parametrize(
    ("pod", "stopped", "phase", "scheduled", "server"),
    [
        (None, False, WorkbenchPhase.PENDING, ConditionStatus.UNKNOWN, ConditionStatus.UNKNOWN),
        (
            UNSCHEDULABLE,
            False,
            WorkbenchPhase.PENDING,
            ConditionStatus.FALSE,
            ConditionStatus.UNKNOWN,
        ),
        (STARTING, False, WorkbenchPhase.STARTING, ConditionStatus.TRUE, ConditionStatus.UNKNOWN),
        (RUNNING, False, WorkbenchPhase.RUNNING, ConditionStatus.TRUE, ConditionStatus.TRUE),
        (FAILED, False, WorkbenchPhase.FAILED, ConditionStatus.TRUE, ConditionStatus.FALSE),
        (RUNNING, True, WorkbenchPhase.STOPPING, ConditionStatus.UNKNOWN, ConditionStatus.FALSE),
        (None, True, WorkbenchPhase.STOPPED, ConditionStatus.UNKNOWN, ConditionStatus.FALSE),
    ],
    ids=["no-pod", "unschedulable", "starting", "running", "failed", "stopping", "stopped"],
)
def test_phase_and_conditions_follow_the_pod(
    pod: dict[str, Any] | None,
    stopped: bool,
    phase: WorkbenchPhase,
    scheduled: ConditionStatus,
    server: ConditionStatus,
) -> None:
    sched = observe_scheduled(pod, stopped)
    serv = observe_server(pod, stopped)
    assert (sched.status, serv.status) == (scheduled, server)
    assert decide_phase(pod, stopped, sched, serv) == phase


def test_unschedulable_carries_the_schedulers_reason() -> None:
    obs = observe_scheduled(UNSCHEDULABLE, stopped=False)
    assert obs.reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in obs.message


def _waiting_for_volume(since: datetime) -> dict[str, Any]:
    """A pod the scheduler holds back because its claim is not bound yet (an Immediate
    StorageClass whose provisioner has not made the volume), as kube-scheduler words it."""
    pod = _pod("Pending", None)
    pod["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "message": "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
            " preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
        }
    ]
    return pod


def test_a_pod_waiting_for_its_volume_is_progress_until_it_has_waited_too_long() -> None:
    since = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    pod = _waiting_for_volume(since)
    # the first half minute of the wait (an Immediate StorageClass's provisioner at work, nearly
    # every new Workbench there): what a pod not made yet is, so no status write for it; the
    # Workbench looks again when the wait has lasted 30 s
    first = observe_scheduled(pod, False, since + timedelta(seconds=3))
    assert first == observe_scheduled(None, False, since)
    assert observe_server(pod, False) == observe_server(None, False)  # nor ServerReady
    assert (first.status, first.reason) == (ConditionStatus.UNKNOWN, "PodPending")
    assert volume_wait_left(pod, since + timedelta(seconds=3)) == 27.0
    # then, while a provisioner may still be at work: Unknown (no Warning, Ready not False),
    # and the Workbench looks again when the wait would be too long
    early = observe_scheduled(pod, False, since + timedelta(seconds=35))
    assert (early.status, early.reason) == (ConditionStatus.UNKNOWN, "WaitingForVolume")
    assert "unbound immediate PersistentVolumeClaims" in early.message
    server = observe_server(pod, False)
    assert decide_phase(pod, False, early, server) == WorkbenchPhase.PENDING
    assert volume_wait_left(pod, since + timedelta(seconds=35)) == 85.0
    # two minutes on: the failure it is, with what to look at
    late = observe_scheduled(pod, False, since + timedelta(minutes=2, seconds=1))
    assert (late.status, late.reason) == (ConditionStatus.FALSE, "VolumeNotBound")
    assert "not been bound within 120 s" in late.message
    assert "provisioner" in late.message
    # said once: the same words a minute later (no status write), and no more timed re-reads
    assert observe_scheduled(pod, False, since + timedelta(minutes=3)) == late
    assert volume_wait_left(pod, since + timedelta(minutes=2, seconds=1)) is None
    assert volume_wait_left(pod, since + timedelta(minutes=10)) is None
    # a pod that does not fit any node is not waiting for a volume: False at once
    assert observe_scheduled(UNSCHEDULABLE, False, since).status == ConditionStatus.FALSE
    assert volume_wait_left(UNSCHEDULABLE, since) is None
    assert volume_wait_left(RUNNING, since) is None


def test_network_policy_admits_the_namespace_and_the_api_only() -> None:
    policy = build_network_policy(OWNER, "kubeforge-system")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"kubeforge.io/workbench": "nb"}}
    peers = policy["spec"]["ingress"][0]["from"]
    assert {"podSelector": {}} in peers
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeforge-system"}}
    } in peers
    assert len(peers) == 2
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8888}]


def test_the_server_is_asked_every_second_while_it_starts_on_the_culling_probe_path() -> None:
    # Ready about a second after Jupyter listens (the kubelet probes readiness at once when the
    # startup probe succeeds), and a slow start is given half an hour before the kubelet restarts it
    spec = _spec(culling={"probePath": "/lab/api/status"})
    container = _pod_spec(_sts(spec))["containers"][0]
    startup, ready = container["startupProbe"], container["readinessProbe"]
    assert startup["httpGet"] == ready["httpGet"] == {"path": "/lab/api/status", "port": "http"}
    assert startup["periodSeconds"] == 1
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800
    assert ready["periodSeconds"] == 10
