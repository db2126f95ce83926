"""Workbench: a notebook environment on (optionally) GPU nodes, with a home volume that survives
stops and idle culling that gives the GPU back."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from kubeforge_crds.base import (
    CelRule,
    Duration,
    KubeModel,
    PositiveQuantity,
    ResourceStatus,
    Timestamp,
    min_duration_rule,
    nested,
    positive_quantity_rule,
)
from kubeforge_crds.common import (
    ComputeResources,
    DataConnection,
    EnvVar,
    QueueName,
    QueueStatus,
)
from kubeforge_crds.health import PhaseHealth
from kubeforge_crds.kind import KindInfo, NameRule

_MIN_IDLE = "1m"


class HomeStorage(KubeModel):
    """The persistent home volume, mounted at /home/jovyan (kept while the Workbench is stopped,
    removed only when it is deleted)."""

    size: PositiveQuantity = Field(
        default="10Gi", description="Size of the home volume, e.g. 20Gi."
    )
    storage_class_name: str | None = Field(
        default=None,
        max_length=253,
        description="StorageClass of the home volume. Omit for the cluster's default class.",
    )

    cel_rules = (positive_quantity_rule("size"),)


class Culling(KubeModel):
    """Idle culling: stop the Workbench (and release its GPUs) after a period without activity."""

    enabled: bool = Field(default=True, description="Whether an idle Workbench is stopped.")
    idle_timeout: Duration = Field(
        default="1h",
        description=f"How long without activity before the Workbench is stopped, e.g. 30m or 2h. "
        f"At least {_MIN_IDLE}.",
    )
    probe_path: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^/.*$",
        description="Path on the notebook server that reports activity as JSON with a "
        "last_activity timestamp. Defaults to Jupyter's /api/status.",
    )

    cel_rules = (min_duration_rule("idle_timeout", "idleTimeout", _MIN_IDLE),)


class WorkbenchSpec(KubeModel):
    """The desired notebook environment."""

    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Container image of the notebook server, e.g. "
        "quay.io/jupyter/minimal-notebook:2025-10-20. Mutually exclusive with catalogImage.",
    )
    catalog_image: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Name of an image in the notebook image catalog the platform team "
        "configures. Mutually exclusive with image.",
    )
    resources: ComputeResources = nested(
        ComputeResources, "CPU, memory and GPUs of the notebook pod."
    )
    storage: HomeStorage = nested(HomeStorage, "The persistent home volume.")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=128,
        description="Environment variables of the notebook container.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    data_connections: list[DataConnection] = Field(
        default_factory=list,
        max_length=16,
        description="Secrets with S3-style credentials, exposed as environment variables.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    stopped: bool = Field(
        default=False,
        description="Stop the notebook server (its pod) but keep the home volume.",
    )
    culling: Culling = nested(Culling, "Idle culling.")
    queue_name: QueueName | None = None

    cel_rules = (
        CelRule(
            rule="has(self.image) != has(self.catalogImage)",
            message="set exactly one of image or catalogImage",
            check=lambda s: (s.image is None) != (s.catalog_image is None),
            field_path=".image",
            reason="FieldValueRequired",
        ),
    )


class WorkbenchPhase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"  # waiting for Kueue to admit it (status.queue says where and why)
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    FAILED = "Failed"


class WorkbenchStatus(ResourceStatus):
    """The observed state of the notebook environment."""

    phase: WorkbenchPhase | None = Field(default=None, description="Lifecycle phase.")
    url: str | None = Field(default=None, description="Where the notebook server is reached.")
    last_activity: Timestamp | None = Field(
        default=None, description="Last activity the notebook server reported."
    )
    gpus: int | None = Field(default=None, ge=0, description="GPUs the Workbench holds now.")
    gpu_product: str | None = Field(
        default=None,
        max_length=128,
        description="The GPU product asked for (the nvidia.com/gpu.product node label its "
        "pods select), when one was: what GPU-hours are priced by.",
    )
    queue: QueueStatus | None = Field(
        default=None,
        description="Set while the Workbench waits for quota in its Kueue queue (phase Queued).",
    )


WORKBENCH = KindInfo(
    kind="Workbench",
    plural="workbenches",
    short_names=("wb",),
    spec_model=WorkbenchSpec,
    status_model=WorkbenchStatus,
    description="A notebook environment with persistent storage, optional GPUs and idle culling.",
    printer_columns=(
        {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus"},
        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
    ),
    name_rule=NameRule(
        52,
        "so that the notebook's StatefulSet, its pod and the controller-revision-hash label "
        "(<name>-<10 characters>) fit 63; it also names the Workbench's Service",
        dns1035=True,
    ),
    health=(
        PhaseHealth("Running", "Healthy", "Notebook server running", needs_ready=True, plain=True),
        PhaseHealth("Stopped", "Suspended", "Stopped"),
        PhaseHealth("Failed", "Degraded", "Failed"),
        PhaseHealth("Queued", "Suspended", "Queued for quota"),
    ),
)
