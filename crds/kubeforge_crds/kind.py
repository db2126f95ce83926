"""What the CRD generator, the operator and the REST API need to know about a kind beyond its
spec and status models: names, printer columns and the top-level object model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kubeforge_crds.base import API_VERSION, CATEGORY, GROUP, VERSION, KubeModel, ResourceStatus

READY_COLUMN = {
    "name": "Ready",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    "description": "Whether the object is ready (the Ready condition's status).",
}
PHASE_COLUMN = {
    "name": "Phase",
    "type": "string",
    "jsonPath": ".status.phase",
    "description": "Where the object is in its lifecycle.",
}
AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


@dataclass(frozen=True)
class KindInfo:
    """One custom resource kind of the kubeforge.io API."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec_model: type[KubeModel]
    status_model: type[ResourceStatus]
    description: str
    printer_columns: tuple[dict[str, Any], ...] = field(default=())
    immutable_spec: bool = False  # a transition rule (self == oldSelf) on .spec

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group(self) -> str:
        return GROUP

    @property
    def version(self) -> str:
        return VERSION

    @property
    def api_version(self) -> str:
        return API_VERSION

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def categories(self) -> tuple[str, ...]:
        return (CATEGORY,)

    def columns(self) -> list[dict[str, Any]]:
        return [READY_COLUMN, PHASE_COLUMN, *self.printer_columns, AGE_COLUMN]

    def parse_spec(self, spec: dict[str, Any] | None) -> KubeModel:
        """Validate a spec as the apiserver would: JSON types, strictly (no "yes" for true, no
        "2" for 2). Raises pydantic.ValidationError."""
        return self.spec_model.model_validate_json(json.dumps(spec or {}), strict=True)

    def parse_status(self, status: dict[str, Any] | None) -> ResourceStatus:
        return self.status_model.model_validate(status or {})


class ObjectMeta(BaseModel):
    """The subset of metav1.ObjectMeta the models read; everything else passes through."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str | None = None
    namespace: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
