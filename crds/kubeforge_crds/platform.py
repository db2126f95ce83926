"""What the platform team configures for everyone: the notebook image catalog and the hardware
profiles. The operator reads it from a YAML file (``KUBEFORGE_OPERATOR_PLATFORM_CONFIG``, mounted
from a ConfigMap by the chart); the REST API will offer it to the portal.

Example::

    notebookImages:
      - name: minimal
        image: quay.io/jupyter/minimal-notebook:2025-10-20
    hardwareProfiles:
      - name: a100
        accelerator: {identifier: nvidia.com/gpu, minCount: 1, maxCount: 8, defaultCount: 1}
        nodeSelector: {nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB}
        tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
        queueName: gpu-queue
    defaultPlacement:            # pods that ask for no accelerator
      nodeSelector: {pool: general}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubeforge_crds.base import CelRule, KubeModel, LabelName


class NotebookImage(KubeModel):
    """An entry of the notebook image catalog."""

    name: LabelName = Field(description="Name a Workbench's spec.catalogImage refers to.")
    image: str = Field(min_length=1, max_length=512, description="Container image reference.")
    description: str = Field(default="", max_length=1024, description="Shown in the portal.")


class AcceleratorRange(KubeModel):
    """The accelerator a profile grants, and how many a workload may ask for."""

    identifier: str = Field(
        default="nvidia.com/gpu",
        min_length=1,
        max_length=253,
        description="Extended resource name, e.g. nvidia.com/gpu or amd.com/gpu.",
    )
    min_count: int = Field(default=1, ge=0, le=64, description="Fewest a workload may request.")
    max_count: int = Field(default=1, ge=0, le=64, description="Most a workload may request.")
    default_count: int = Field(default=1, ge=0, le=64, description="Used when none is given.")

    cel_rules = (
        CelRule(
            rule="self.minCount <= self.defaultCount && self.defaultCount <= self.maxCount",
            message="minCount <= defaultCount <= maxCount must hold",
            check=lambda s: s.min_count <= s.default_count <= s.max_count,
            field_path=".defaultCount",
        ),
    )


class Toleration(KubeModel):
    """A pod toleration (core/v1 Toleration)."""

    key: str = Field(default="", max_length=316, description="Taint key; empty matches all.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str = Field(default="", max_length=63, description="Taint value for Equal.")
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        default="", description="Taint effect; empty matches all."
    )


class HardwareProfile(KubeModel):
    """A named kind of machine that workloads may ask for by name."""

    name: LabelName = Field(description="Name a spec's accelerator.profile refers to.")
    description: str = Field(default="", max_length=1024, description="Shown in the portal.")
    accelerator: AcceleratorRange = Field(
        default_factory=AcceleratorRange, description="The accelerator and its allowed counts."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the workload's pods must match."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=16, description="Taints the pods tolerate."
    )
    queue_name: LabelName | None = Field(
        default=None,
        description="Kueue LocalQueue for workloads of this profile, unless they name one.",
    )


class DefaultPlacement(KubeModel):
    """Where the pods of workloads that ask for no accelerator run."""

    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the pods must match."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=16, description="Taints the pods tolerate."
    )


class PlatformConfig(KubeModel):
    """The platform team's configuration."""

    notebook_images: list[NotebookImage] = Field(default_factory=list, max_length=256)
    hardware_profiles: list[HardwareProfile] = Field(default_factory=list, max_length=256)
    default_placement: DefaultPlacement = Field(
        default_factory=DefaultPlacement,
        description="Node labels and tolerations of the pods of CPU workloads (no accelerator): "
        "notebooks, CPU training, model servers and drift services. A pool of general nodes, "
        "or, on the local cluster, its real node.",
    )

    def image(self, name: str) -> NotebookImage | None:
        return next((i for i in self.notebook_images if i.name == name), None)

    def profile(self, name: str) -> HardwareProfile | None:
        return next((p for p in self.hardware_profiles if p.name == name), None)
