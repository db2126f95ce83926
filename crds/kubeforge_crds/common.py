"""Spec fragments that several kinds share: compute resources, accelerators, environment
variables, data connections and model cards."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from kubeforge_crds.base import (
    CelRule,
    KubeModel,
    LabelName,
    ObjectName,
    PositiveQuantity,
    StatusModel,
    positive_quantity_rule,
)

_MAX_GPUS = 64


class Accelerator(KubeModel):
    """GPUs for the workload: a count and optionally a product, or the name of a hardware profile
    the platform team defines (with a count within the profile's range, or its default)."""

    count: int | None = Field(
        default=None,
        ge=0,
        le=_MAX_GPUS,
        description="Number of GPUs per pod. 0 means no GPU. With a profile, defaults to the "
        "profile's default count and must lie within its range.",
    )
    product: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        description="GPU product to select (the nvidia.com/gpu.product node label), "
        "e.g. NVIDIA-A100-SXM4-80GB.",
    )
    profile: LabelName | None = Field(
        default=None,
        description="Name of a hardware profile defined by the platform team (resource "
        "identifiers, node selector, tolerations, queue). Mutually exclusive with product.",
    )

    cel_rules = (
        CelRule(
            rule="!has(self.profile) || !has(self.product)",
            message="a hardware profile chooses the product; set profile or product, not both",
            check=lambda s: s.profile is None or s.product is None,
            field_path=".profile",
        ),
        CelRule(
            rule="!has(self.product) || (has(self.count) && self.count > 0)",
            message="product needs a count of at least 1",
            check=lambda s: s.product is None or (s.count or 0) > 0,
            field_path=".product",
        ),
    )


class ModelCard(KubeModel):
    """What a model is for, as its owners declare it: shown in the model map and the API, and
    written into the model card (README.md) of each version a FineTuneJob registers. Plain
    text; the portal shows it escaped. The base model, training data and evaluation results
    come from the lineage, not from here."""

    purpose: str | None = Field(
        default=None, max_length=512, description="What the model does, in a sentence or two."
    )
    intended_use: str | None = Field(
        default=None, max_length=2048, description="Who should use it, for what, and how."
    )
    limitations: str | None = Field(
        default=None, max_length=2048, description="What it is not good at; known risks."
    )
    owner: str | None = Field(
        default=None, max_length=253, description="The team or person answerable for it."
    )
    license: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9.+ ()]*$",
        description="Its licence, e.g. an SPDX identifier such as Apache-2.0.",
    )


class ComputeResources(KubeModel):
    """CPU and memory for each pod; requests equal limits (Guaranteed QoS) unless stated."""

    cpu: PositiveQuantity = Field(default="1", description="CPU for the pod, e.g. 2 or 500m.")
    memory: PositiveQuantity = Field(default="2Gi", description="Memory for the pod, e.g. 8Gi.")
    accelerator: Accelerator | None = Field(
        default=None, description="GPUs for the pod. Omit for a CPU-only pod."
    )

    cel_rules = (positive_quantity_rule("cpu"), positive_quantity_rule("memory"))


class EnvVar(KubeModel):
    """An environment variable set in the workload's containers."""

    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Variable name: letters, digits and underscores, not starting with a digit.",
    )
    value: str = Field(default="", max_length=32768, description="Variable value.")


class DataConnection(KubeModel):
    """A reference to a Secret holding S3-style credentials (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_S3_ENDPOINT, AWS_DEFAULT_REGION, AWS_S3_BUCKET), exposed to the
    workload as environment variables."""

    name: LabelName = Field(description="Name of the connection, unique within the object.")
    secret_name: ObjectName = Field(description="Name of the Secret in the same namespace.")


QueueName = Annotated[
    LabelName,
    Field(
        description="Name of the Kueue LocalQueue to submit the workload to. The pod then carries "
        "the kueue.x-k8s.io/queue-name label and waits for quota."
    ),
]


class QueueStatus(StatusModel):
    """Where a workload waits for quota, as Kueue reports it: set while Kueue has not admitted
    it, absent once it runs."""

    local_queue: str = Field(description="The LocalQueue the workload was submitted to.")
    cluster_queue: str | None = Field(
        default=None, description="The ClusterQueue behind it (absent when the LocalQueue is)."
    )
    workload: str | None = Field(default=None, description="Kueue's Workload object.")
    position: int | None = Field(
        default=None,
        ge=1,
        description="Place among the LocalQueue's pending workloads (1: next), from Kueue's "
        "visibility API.",
    )
    position_in_cluster_queue: int | None = Field(
        default=None, ge=1, description="Place among the ClusterQueue's pending workloads."
    )
    reason: str | None = Field(
        default=None, description="Kueue's reason (Pending, Inadmissible, ...)."
    )
    message: str | None = Field(default=None, description="Kueue's message: what is short.")
