"""Placement: GPUs, node selector, tolerations and queue from a count or a hardware profile."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubeforge_crds.common import Accelerator
from kubeforge_crds.platform import PlatformConfig
from kubeforge_operator.runtime.placement import Placement, SpecProblem, resolve_placement

PLATFORM = PlatformConfig.model_validate(
    {
        "hardwareProfiles": [
            {
                "name": "a100",
                "accelerator": {"minCount": 1, "maxCount": 4, "defaultCount": 2},
                "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
                "queueName": "gpu-queue",
            },
            {"name": "mi300", "accelerator": {"identifier": "amd.com/gpu", "maxCount": 8}},
        ],
    }
)


def _resolve(queue: str | None = None, **acc: object) -> Placement | SpecProblem:
    return resolve_placement(Accelerator.model_validate(acc), queue, PLATFORM)


def test_no_accelerator_is_a_plain_cpu_pod() -> None:
    placement = resolve_placement(None, "team", PLATFORM)
    assert placement == Placement(queue_name="team")
    assert isinstance(placement, Placement)
    assert placement.limits() == {}
    assert placement.pod_fields() == {}
    assert placement.pod_labels() == {"kueue.x-k8s.io/queue-name": "team"}


def test_explicit_count_and_product() -> None:
    placement = _resolve(count=2, product="NVIDIA-H100-80GB-HBM3")
    assert isinstance(placement, Placement)
    assert placement.limits() == {"nvidia.com/gpu": "2"}
    assert placement.pod_fields() == {
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }


def test_profile_gives_its_default_count_selector_tolerations_and_queue() -> None:
    placement = _resolve(profile="a100")
    assert isinstance(placement, Placement)
    assert placement.gpus == 2
    assert placement.node_selector == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert placement.tolerations[0]["key"] == "nvidia.com/gpu"
    assert placement.queue_name == "gpu-queue"


def test_the_specs_queue_wins_over_the_profiles() -> None:
    placement = _resolve("mine", profile="a100", count=1)
    assert isinstance(placement, Placement)
    assert placement.queue_name == "mine"


def test_profile_with_another_vendors_resource() -> None:
    placement = _resolve(profile="mi300", count=8)
    assert isinstance(placement, Placement)
    assert placement.limits() == {"amd.com/gpu": "8"}


@pytest.mark.parametrize("count", [0, 5])
def test_count_outside_the_profile_names_the_field_and_the_range(count: int) -> None:
    problem = _resolve(profile="a100", count=count)
    assert isinstance(problem, SpecProblem)
    assert problem.reason == "OutsideHardwareProfile"
    assert problem.message == (
        f"spec.resources.accelerator.count: {count} is outside what hardware profile 'a100' "
        "allows (1 to 4 nvidia.com/gpu)"
    )


def test_unknown_profile_lists_the_known_ones() -> None:
    problem = _resolve(profile="tpu")
    assert isinstance(problem, SpecProblem)
    assert problem.reason == "UnknownHardwareProfile"
    assert "'tpu' is not a hardware profile (known: a100, mi300)" in problem.message


def test_a_profile_must_have_a_consistent_range() -> None:
    with pytest.raises(ValidationError, match="minCount <= defaultCount <= maxCount"):
        PlatformConfig.model_validate(
            {
                "hardwareProfiles": [
                    {
                        "name": "bad",
                        "accelerator": {"minCount": 2, "maxCount": 1, "defaultCount": 1},
                    }
                ]
            }
        )
