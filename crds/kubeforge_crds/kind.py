"""What the CRD generator, the operator and the REST API need to know about a kind beyond its
spec and status models: names, printer columns and the top-level object model."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubeforge_crds.base import API_VERSION, CATEGORY, GROUP, VERSION, KubeModel, ResourceStatus
from kubeforge_crds.errors import field_errors
from kubeforge_crds.health import PhaseHealth

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


class InvalidObjectError(ValueError):
    """An object the models refuse: ``errors`` name each field (``metadata.name: ...``,
    ``spec.culling.idleTimeout: ...``)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


DNS1035_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
_DNS1035_RE = re.compile(DNS1035_PATTERN)


@dataclass(frozen=True)
class ShorterName:
    """A shorter name where the spec makes longer child names: ``condition`` in CEL on the
    object (the apiserver's check), ``applies`` the same in Python."""

    condition: str
    applies: Callable[[dict[str, Any]], bool]
    max_length: int
    why: str

    @property
    def message(self) -> str:
        return f"metadata.name: at most {self.max_length} characters {self.why}"


@dataclass(frozen=True)
class NameRule:
    """What an object's name must be so that the children made from it are valid: at most
    ``max_length`` characters (the longest suffixed child name, or a label value, still fits
    63), and with ``dns1035`` a DNS-1035 label (it names a Service: it starts with a letter).
    Written once as CEL for the apiserver (a rule on the object's root, where ``metadata.name``
    may be read) and once as Python (the operator, for objects admitted before the rule)."""

    max_length: int
    why: str
    dns1035: bool = False
    # shorter where the spec makes longer child names
    shorter_when: tuple[ShorterName, ...] = ()

    def cel_rules(self) -> list[dict[str, str]]:
        rules = [
            {
                "rule": f"self.metadata.name.size() <= {self.max_length}",
                "message": f"metadata.name: at most {self.max_length} characters, {self.why}",
            }
        ]
        rules += [
            {
                "rule": f"!({r.condition}) || self.metadata.name.size() <= {r.max_length}",
                "message": r.message,
            }
            for r in self.shorter_when
        ]
        if self.dns1035:
            rules.append(
                {
                    "rule": f"self.metadata.name.matches('{DNS1035_PATTERN}')",
                    "message": "metadata.name: must be a DNS-1035 label (a lower-case letter "
                    "first, then lower-case letters, digits and '-'): it names a Service",
                }
            )
        return rules

    def problems(self, name: str, obj: dict[str, Any] | None = None) -> list[str]:
        """The same checks in Python: each a message naming metadata.name."""
        rules = self.cel_rules()
        found = [
            r["message"]
            for r, ok in zip(
                rules[:1] + rules[1 + len(self.shorter_when) :],
                (len(name) <= self.max_length, bool(_DNS1035_RE.match(name))),
                strict=False,
            )
            if not ok
        ]
        return found + [
            r.message
            for r in self.shorter_when
            if len(name) > r.max_length and obj is not None and r.applies(obj)
        ]


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
    name_rule: NameRule = NameRule(253, "the apiserver's own limit")
    health: tuple[PhaseHealth, ...] = ()  # phase -> Argo CD health (kubeforge_crds.health)
    namespaced: bool = True  # False: cluster-scoped (a Team)

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
        """``kubectl get kubeforge`` lists a namespace's objects; the platform admin's
        cluster-scoped kinds are ``kubectl get kubeforge-platform``."""
        return (CATEGORY,) if self.namespaced else (f"{CATEGORY}-platform",)

    def columns(self) -> list[dict[str, Any]]:
        return [READY_COLUMN, PHASE_COLUMN, *self.printer_columns, AGE_COLUMN]

    def parse_spec(self, spec: dict[str, Any] | None) -> KubeModel:
        """Validate a spec as the apiserver would: JSON types, strictly (no "yes" for true, no
        "2" for 2). Raises pydantic.ValidationError."""
        return self.spec_model.model_validate_json(json.dumps(spec or {}), strict=True)

    def parse_object(self, obj: dict[str, Any]) -> KubeModel:
        """The object's spec, once its name and spec are both valid; otherwise
        :class:`InvalidObjectError` with every problem, each naming its field."""
        errors = self.name_rule.problems(str((obj.get("metadata") or {}).get("name") or ""), obj)
        try:
            spec = self.parse_spec(obj.get("spec"))
        except ValidationError as err:
            errors += field_errors(err)
        if errors:
            raise InvalidObjectError(errors)
        return spec

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
