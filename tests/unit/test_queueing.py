"""Queueing: Kueue's account of a held pod (its Workload, LocalQueue, ClusterQueue and the
visibility API's pending entry) turned into status.queue and a Queued condition."""

from __future__ import annotations

from typing import Any

import pytest

from kubeforge_crds import ConditionStatus
from kubeforge_operator.runtime.queueing import (
    EXCEEDS_QUOTA,
    INADMISSIBLE,
    exceeds_quota,
    held_by_kueue,
    preemptions,
    queue_status,
    queued_observation,
    workload_name,
)

KUEUE_MESSAGE = (
    "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in "
    "flavor a100, 1 more needed"
)


def pod(gated: bool = True, **labels: str) -> dict[str, Any]:
    spec = {"schedulingGates": [{"name": "kueue.x-k8s.io/admission"}]} if gated else {}
    return {"metadata": {"name": "nb-0", "namespace": "team-a", "labels": labels}, "spec": spec}


def workload(gpus: str = "1", reason: str = "Pending") -> dict[str, Any]:
    return {
        "metadata": {"name": "statefulset-nb-1a2b3"},
        "status": {
            "conditions": [
                {"type": "QuotaReserved", "status": "False", "reason": reason,
                 "message": KUEUE_MESSAGE}
            ],
            "resourceRequests": [
                {"name": "main", "resources": {"nvidia.com/gpu": gpus, "cpu": "500m"}}
            ],
        },
    }  # fmt: skip


def cluster_queue(
    gpus: str = "2", cohort: str | None = None, borrowing: str | None = None
) -> dict[str, Any]:
    gpu: dict[str, Any] = {"name": "nvidia.com/gpu", "nominalQuota": gpus}
    if borrowing is not None:
        gpu["borrowingLimit"] = borrowing
    spec: dict[str, Any] = {
        "resourceGroups": [
            {
                "coveredResources": ["cpu", "nvidia.com/gpu"],
                "flavors": [
                    {"name": "a100", "resources": [{"name": "cpu", "nominalQuota": "32"}, gpu]}
                ],
            }
        ]
    }
    if cohort:
        spec["cohortName"] = cohort
    return {"metadata": {"name": "team-a"}, "spec": spec}


def test_only_a_pod_behind_kueues_gate_is_held() -> None:
    assert held_by_kueue(pod())
    assert not held_by_kueue(pod(gated=False))
    assert not held_by_kueue(None)
    other = pod(gated=False)
    other["spec"]["schedulingGates"] = [{"name": "example.com/other"}]
    assert not held_by_kueue(other)


def test_the_workload_is_named_by_the_pod_group_labels() -> None:
    assert workload_name(pod(**{"kueue.x-k8s.io/prebuilt-workload-name": "w1"})) == "w1"
    assert workload_name(pod(**{"kueue.x-k8s.io/pod-group-name": "g1"})) == "g1"
    assert workload_name(pod()) is None


def test_a_pending_workload_reports_its_queue_position_and_kueues_reason() -> None:
    pending = {"positionInLocalQueue": 0, "positionInClusterQueue": 2}
    status = queue_status("gpu", "w1", workload(), cluster_queue(), pending)
    assert status.to_wire() == {
        "localQueue": "gpu",
        "clusterQueue": "team-a",
        "workload": "w1",
        "position": 1,
        "positionInClusterQueue": 3,
        "reason": "Pending",
        "message": KUEUE_MESSAGE,
    }
    obs = queued_observation("Scheduled", status)
    assert (obs.status, obs.reason) == (ConditionStatus.FALSE, "Queued")
    assert obs.message == (
        f"waiting for quota in LocalQueue gpu (ClusterQueue team-a), position 1: {KUEUE_MESSAGE}"
    )


def test_without_the_visibility_api_the_position_is_left_out() -> None:
    status = queue_status("gpu", "w1", workload(), cluster_queue(), None)
    assert status.position is None
    assert status.position_in_cluster_queue is None
    assert ", position" not in queued_observation("Scheduled", status).message


def test_a_missing_local_queue_is_inadmissible_and_says_what_to_fix() -> None:
    status = queue_status("nope", "w1", workload(reason="Inadmissible"), None, None)
    obs = queued_observation("Scheduled", status)
    assert obs.reason == INADMISSIBLE
    assert "LocalQueue nope or its ClusterQueue does not exist: fix the queue name" in obs.message


def test_no_workload_yet_is_pending() -> None:
    status = queue_status("gpu", None, None, cluster_queue(), None)
    assert (status.reason, status.message) == ("Pending", "Kueue has not created the Workload yet")


def test_a_workload_kueue_has_not_tried_yet_is_pending_with_a_message() -> None:
    untried = workload()
    del untried["status"]["conditions"]
    pending = {"positionInLocalQueue": 0, "positionInClusterQueue": 0}
    status = queue_status("gpu", "w1", untried, cluster_queue(), pending)
    assert (status.reason, status.position) == ("Pending", 1)
    assert status.message == "Kueue's scheduler has not considered the Workload yet"


@pytest.mark.parametrize(
    ("gpus", "queue", "never"),
    [
        ("3", cluster_queue("2"), "asks for 3 nvidia.com/gpu, more than ClusterQueue team-a can "
         "ever give (2, with what it may borrow): ask for less, or for a larger quota"),
        ("2", cluster_queue("2"), None),
        ("3", cluster_queue("2", cohort="gpus"), None),  # the cohort's unused quota, unbounded
        ("3", cluster_queue("2", cohort="gpus", borrowing="1"), None),
        ("4", cluster_queue("2", cohort="gpus", borrowing="1"), "asks for 4 nvidia.com/gpu, "
         "more than ClusterQueue team-a can ever give (3, with what it may borrow): ask for "
         "less, or for a larger quota"),
    ],
)  # fmt: skip
def test_a_request_above_what_the_cluster_queue_can_ever_give_is_named(
    gpus: str, queue: dict[str, Any], never: str | None
) -> None:
    assert exceeds_quota(workload(gpus), queue) == never
    status = queue_status("gpu", "w1", workload(gpus), queue, None)
    if never:
        assert status.reason == EXCEEDS_QUOTA
        assert queued_observation("Scheduled", status).reason == EXCEEDS_QUOTA
    else:
        assert status.reason == "Pending"


def test_a_resource_the_cluster_queue_does_not_cover_is_named() -> None:
    w = workload()
    w["status"]["resourceRequests"][0]["resources"]["amd.com/gpu"] = "1"
    assert exceeds_quota(w, cluster_queue()) == (
        "asks for amd.com/gpu, which ClusterQueue team-a does not cover: ask the platform team "
        "to add it, or do not request it"
    )


def test_preemptions_count_only_kueues_preempted_evictions() -> None:
    w = workload()
    w["status"]["schedulingStats"] = {
        "evictions": [
            {"reason": "Preempted", "underlyingCause": "InCohortReclamation", "count": 1},
            {"reason": "Preempted", "underlyingCause": "InClusterQueue", "count": 2},
            {"reason": "PodsReadyTimeout", "underlyingCause": "", "count": 5},
        ]
    }
    assert preemptions(w) == 3
    assert preemptions(workload()) == 0
    assert preemptions(None) == 0
