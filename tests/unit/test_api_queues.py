"""The quota view of a team's queues and the dry run, from Kueue's objects as Kueue writes them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kubeforge_api.models import FitRequest
from kubeforge_api.queues import fit, pending_rows, queue_view, quota_rows


def cluster_queue(cohort: str | None = None, borrowing: str | None = None) -> dict[str, Any]:
    gpu: dict[str, Any] = {"name": "nvidia.com/gpu", "nominalQuota": "2"}
    if borrowing is not None:
        gpu["borrowingLimit"] = borrowing
    resources = [{"name": "cpu", "nominalQuota": "16"}, gpu]
    return {
        "metadata": {"name": "team-a"},
        "spec": {
            "resourceGroups": [
                {
                    "coveredResources": ["cpu", "nvidia.com/gpu"],
                    "flavors": [{"name": "a100", "resources": resources}],
                }
            ]
        }
        | ({"cohortName": cohort} if cohort else {}),
        "status": {
            "flavorsUsage": [
                {
                    "name": "a100",
                    "resources": [
                        {"name": "cpu", "total": "1500m", "borrowed": "0"},
                        {"name": "nvidia.com/gpu", "total": "2", "borrowed": "0"},
                    ],
                }
            ]
        },
    }


LOCAL_QUEUE = {
    "metadata": {"name": "gpu", "namespace": "team-a"},
    "spec": {"clusterQueue": "team-a"},
    "status": {
        "admittedWorkloads": 2,
        "pendingWorkloads": 1,
        "flavorsUsage": [{"name": "a100", "resources": [{"name": "nvidia.com/gpu", "total": "1"}]}],
    },
}
PENDING = [
    {
        "metadata": {
            "name": "statefulset-wb3-f00fd",
            "ownerReferences": [
                {"kind": "StatefulSet", "name": "wb3"},
                {"kind": "Pod", "name": "wb3-0"},
            ],
        },
        "priority": 0,
        "positionInLocalQueue": 0,
        "positionInClusterQueue": 1,
    }
]


def test_quota_rows_are_kueues_figures_per_flavor_and_resource() -> None:
    rows = quota_rows(cluster_queue(), LOCAL_QUEUE)
    assert rows == [
        {"flavor": "a100", "resource": "cpu", "nominal": 16.0, "borrowingLimit": 0.0,
         "used": 1.5, "borrowed": 0.0, "usedByThisQueue": 0.0},
        {"flavor": "a100", "resource": "nvidia.com/gpu", "nominal": 2.0, "borrowingLimit": 0.0,
         "used": 2.0, "borrowed": 0.0, "usedByThisQueue": 1.0},
    ]  # fmt: skip


def test_in_a_cohort_no_borrowing_limit_means_no_limit() -> None:
    gpu = quota_rows(cluster_queue(cohort="gpus"))[1]
    assert gpu["borrowingLimit"] is None
    assert quota_rows(cluster_queue(cohort="gpus", borrowing="4"))[1]["borrowingLimit"] == 4.0


def test_pending_workloads_are_numbered_from_one_and_name_what_they_run() -> None:
    assert pending_rows(PENDING) == [
        {"workload": "statefulset-wb3-f00fd", "owner": "StatefulSet/wb3", "priority": 0,
         "position": 1, "positionInClusterQueue": 2}
    ]  # fmt: skip


def test_the_queue_view_says_when_positions_or_the_cluster_queue_are_missing() -> None:
    view = queue_view(LOCAL_QUEUE, cluster_queue(), None)
    assert (view["admittedWorkloads"], view["pendingWorkloads"], view["pending"]) == (2, 1, None)
    orphan = queue_view(LOCAL_QUEUE, None, [])
    assert orphan["quota"] == []
    assert orphan["problem"] == "ClusterQueue team-a does not exist: ask the platform team"


@pytest.mark.parametrize(
    ("request_", "answer"),
    [
        ({"cpu": 4.0}, {"fits": True, "flavor": "a100", "short": []}),
        ({"nvidia.com/gpu": 1.0, "cpu": 1.0}, {"fits": False, "flavor": "a100", "short": [
            {"resource": "nvidia.com/gpu", "requested": 1.0, "free": 0.0}]}),
        ({"amd.com/gpu": 1.0}, {"fits": False, "flavor": "a100", "short": [
            {"resource": "amd.com/gpu", "requested": 1.0, "free": 0.0}]}),
    ],
)  # fmt: skip
def test_fit_says_what_is_short_now(request_: dict[str, float], answer: dict[str, Any]) -> None:
    assert fit(request_, cluster_queue()) == answer


def test_a_quantity_that_is_not_one_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match=r"requests.cpu: 'lots' is not a Kubernetes quantity"):
        FitRequest.model_validate({"requests": {"cpu": "lots"}})
    with pytest.raises(ValidationError):
        FitRequest.model_validate({"requests": {}})
    for odd in ("NaN", "Infinity", "-1"):  # numbers, but no amount of a resource
        with pytest.raises(ValidationError, match=f"requests.cpu: '{odd}' is not a Kubernetes"):
            FitRequest.model_validate({"requests": {"cpu": odd}})
    with pytest.raises(ValidationError, match="a resource name is empty"):
        FitRequest.model_validate({"requests": {"": "1"}})
