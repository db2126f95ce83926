"""Where a workload's pods may run: GPUs, node selector, tolerations and Kueue queue, from a spec's
accelerator (an explicit count and product, or a hardware profile of the platform config).

Shared by every kind that runs pods. Problems a schema cannot catch (an unknown profile, a count
outside the profile's range) come back as a :class:`SpecProblem` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubeforge_crds import ConditionStatus
from kubeforge_crds.common import Accelerator
from kubeforge_crds.platform import PlatformConfig
from kubeforge_operator.runtime.conditions import ACCEPTED, Observation

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


@dataclass(frozen=True)
class SpecProblem:
    """A spec the schema accepted but the platform cannot run."""

    reason: str
    message: str

    def observation(self) -> Observation:
        return Observation(ACCEPTED, ConditionStatus.FALSE, self.reason, self.message)


@dataclass(frozen=True)
class Placement:
    gpus: int = 0
    gpu_resource: str = GPU_RESOURCE
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    queue_name: str | None = None

    def limits(self) -> dict[str, str]:
        return {self.gpu_resource: str(self.gpus)} if self.gpus else {}

    @property
    def product(self) -> str | None:
        """The GPU product the pods select (explicitly or through a hardware profile), if
        any: what the model map prices their GPU-hours by."""
        return self.node_selector.get(GPU_PRODUCT_LABEL) if self.gpus else None

    def pod_fields(self) -> dict[str, Any]:
        """nodeSelector and tolerations for a pod spec (absent when there are none)."""
        out: dict[str, Any] = {}
        if self.node_selector:
            out["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            out["tolerations"] = [dict(t) for t in self.tolerations]
        return out

    def pod_labels(self) -> dict[str, str]:
        return {QUEUE_LABEL: self.queue_name} if self.queue_name else {}


def resolve_placement(
    accelerator: Accelerator | None,
    queue_name: str | None,
    platform: PlatformConfig,
    path: str = "spec.resources.accelerator",
) -> Placement | SpecProblem:
    if accelerator is None or (accelerator.profile is None and not accelerator.count):
        default = platform.default_placement
        return Placement(
            node_selector=dict(default.node_selector),
            tolerations=[t.to_wire() for t in default.tolerations],
            queue_name=queue_name,
        )
    if accelerator.profile is None:
        gpus = accelerator.count or 0
        return Placement(
            gpus=gpus,
            node_selector={GPU_PRODUCT_LABEL: accelerator.product} if accelerator.product else {},
            tolerations=[{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
            queue_name=queue_name,
        )
    profile = platform.profile(accelerator.profile)
    if profile is None:
        known = ", ".join(p.name for p in platform.hardware_profiles) or "none configured"
        return SpecProblem(
            "UnknownHardwareProfile",
            f"{path}.profile: {accelerator.profile!r} is not a hardware profile (known: {known})",
        )
    rng = profile.accelerator
    count = rng.default_count if accelerator.count is None else accelerator.count
    if not rng.min_count <= count <= rng.max_count:
        return SpecProblem(
            "OutsideHardwareProfile",
            f"{path}.count: {count} is outside what hardware profile {profile.name!r} allows "
            f"({rng.min_count} to {rng.max_count} {rng.identifier})",
        )
    return Placement(
        gpus=count,
        gpu_resource=rng.identifier,
        node_selector=dict(profile.node_selector),
        tolerations=[t.to_wire() for t in profile.tolerations],
        queue_name=queue_name or profile.queue_name,
    )
