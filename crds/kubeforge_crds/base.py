"""Shared building blocks of the kubeforge API: the model base class, CEL rules, quantities,
durations and the Condition type.

Every field of every kind is declared once, in this package, with its description. The same
pydantic models validate objects in Python (operator, REST API) and generate the CRD schemas that
the apiserver enforces (see :mod:`kubeforge_crds.generate`). Cross-field rules are declared once as
:class:`CelRule` objects that carry both the CEL expression (for ``x-kubernetes-validations``) and
the equivalent Python check, side by side, so the two cannot drift apart unnoticed: the
invalid-object table in the tests runs against both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

GROUP = "kubeforge.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "kubeforge"


@dataclass(frozen=True)
class CelRule:
    """A cross-field rule, written once as CEL for the apiserver and once as Python.

    ``field_path`` is relative to the object the rule sits on (``.image``), and is what the
    apiserver reports in its rejection; ``reason`` is one of the apiserver's field error types.
    """

    rule: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None
    reason: str = "FieldValueInvalid"

    def to_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason != "FieldValueInvalid":
            out["reason"] = self.reason
        return out


class KubeModel(BaseModel):
    """Base of every spec model: camelCase on the wire, unknown fields rejected (as kubectl's
    strict field validation does), and the class's CEL rules enforced in Python too."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
        allow_inf_nan=False,  # JSON (and so the apiserver) has no Infinity or NaN
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cel_rules(self) -> Self:
        for rule in type(self).cel_rules:
            if not rule.check(self):
                # ctx carries the rule's field path so error messages can name the field the
                # apiserver would name (see kubeforge_crds.errors.field_errors)
                raise PydanticCustomError(
                    "cel_rule",
                    "{message}",
                    {"message": rule.message, "field_path": rule.field_path},
                )
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema: dict[str, Any] = handler(core_schema)
        if cls.cel_rules:
            target = handler.resolve_ref_schema(schema)
            target["x-kubernetes-validations"] = [r.to_schema() for r in cls.cel_rules]
        return schema

    def to_wire(self) -> dict[str, Any]:
        """The object as it is stored in Kubernetes: camelCase keys, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusPart(KubeModel):
    """Base of a status's parts that are models of their own (a rollout's progress, a drift
    score): as :class:`KubeModel`, but unknown fields are ignored, as :class:`StatusModel`
    ignores them, so that an older operator reads a status a newer one wrote (the operator
    rolled back in the middle of a rollout)."""

    model_config = ConfigDict(**{**KubeModel.model_config, "extra": "ignore"})


class StatusModel(BaseModel):
    """Base of status models. Written by the operator; unknown fields are ignored so that an
    older operator can read a status written by a newer one."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", use_enum_values=True
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- Scalars with Kubernetes semantics -----------------------------------------------------------

# The apiserver's own quantity grammar (resource.Quantity), as used in every generated CRD.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]+))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


def _to_quantity(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a quantity must be a number or a string such as '500m' or '4Gi'")
    if isinstance(value, int | float):
        value = str(value)
    if isinstance(value, str) and not _QUANTITY_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: '2', '500m', '4Gi')")
    return value


def _quantity_schema(pattern: str) -> WithJsonSchema:
    """An int-or-string field whose strings match ``pattern`` (as the apiserver checks it)."""
    return WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": pattern,
            "x-kubernetes-int-or-string": True,
        }
    )


Quantity = Annotated[str, BeforeValidator(_to_quantity), _quantity_schema(QUANTITY_PATTERN)]
"""A Kubernetes resource quantity: ``2``, ``"500m"``, ``"4Gi"``."""

# A quantity above zero: no sign, and a non-zero digit before the suffix. The apiserver checks
# the pattern on strings and the CEL rule of ``positive_quantity_rule`` on integers.
POSITIVE_QUANTITY_PATTERN = (
    r"^(([0-9]*[1-9][0-9]*(\.[0-9]*)?)|([0-9]*\.[0-9]*[1-9][0-9]*))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]+))?$"
)


def _bounded_quantity(pattern: str, what: str, examples: str) -> Any:
    """A quantity type whose strings must also match ``pattern`` (a bound on its sign)."""
    matcher = re.compile(pattern)

    def check(value: Any) -> Any:
        quantity = _to_quantity(value)
        if isinstance(quantity, str) and not matcher.match(quantity):
            raise ValueError(f"{value!r} must be a quantity {what} (examples: {examples})")
        return quantity

    return Annotated[str, BeforeValidator(check), _quantity_schema(pattern)]


PositiveQuantity = _bounded_quantity(POSITIVE_QUANTITY_PATTERN, "above zero", "'1', '500m', '4Gi'")
"""A resource quantity above zero (CPU, memory, a volume's size)."""


# A quantity of zero or more: no minus sign (a quota, which may be 0). Integers: the CEL rule
# of ``non_negative_quantity_rule``.
NON_NEGATIVE_QUANTITY_PATTERN = QUANTITY_PATTERN.replace(r"^(\+|-)?", "^", 1)
NonNegativeQuantity = _bounded_quantity(
    NON_NEGATIVE_QUANTITY_PATTERN, "of zero or more", "'0', '4Gi'"
)
"""A resource quantity of zero or more (a quota)."""


def non_negative_quantity_rule(wire_name: str) -> CelRule:
    """The integer form of a NonNegativeQuantity is not below zero."""
    return CelRule(
        rule=f"!has(self.{wire_name}) || type(self.{wire_name}) != int || self.{wire_name} >= 0",
        message=f"{wire_name} must be a quantity of zero or more",
        check=lambda _: True,
        field_path=f".{wire_name}",
    )


def positive_quantity_rule(wire_name: str) -> CelRule:
    """The integer form of a PositiveQuantity is above zero (the pattern covers strings; in
    Python the type itself refuses both)."""
    return CelRule(
        rule=f"!has(self.{wire_name}) || type(self.{wire_name}) != int || self.{wire_name} > 0",
        message=f"{wire_name} must be a quantity above zero",
        check=lambda _: True,
        field_path=f".{wire_name}",
    )


# Go's time.ParseDuration grammar restricted to the units that make sense here.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_RE = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


# Go's time.Duration is an int64 of nanoseconds: CEL's duration() fails beyond it.
MAX_DURATION_SECONDS = (2**63 - 1) / 1e9


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration (``90s``, ``1h30m``) as CEL's ``duration()`` does, including
    its range (about 292 years)."""
    if not _DURATION_RE.match(text):
        raise ValueError(f"{text!r} is not a duration (examples: '30s', '5m', '1h30m')")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is out of range: a duration is at most 2562047h")
    return timedelta(seconds=seconds)


def _duration_in_range(text: str) -> str:
    if _DURATION_RE.match(text):
        parse_duration(text)
    return text


Duration = Annotated[
    str, Field(pattern=DURATION_PATTERN, max_length=32), AfterValidator(_duration_in_range)
]
"""A duration such as ``30s``, ``5m`` or ``1h30m``."""


def min_duration_rule(field: str, wire_name: str, minimum: str) -> CelRule:
    """``field`` (a Duration) is at least ``minimum``. The CEL side only parses values that match
    the pattern, so a malformed value is reported once, by the pattern, not again by CEL."""
    return CelRule(
        rule=f"!self.{wire_name}.matches(r'{DURATION_PATTERN}') || "
        f"duration(self.{wire_name}) >= duration('{minimum}')",
        message=f"{wire_name} must be at least {minimum}",
        check=lambda s: (
            not _DURATION_RE.match(getattr(s, field))
            or parse_duration(getattr(s, field)) >= parse_duration(minimum)
        ),
        field_path=f".{wire_name}",
    )


# RFC 1123 label (DNS_LABEL) and subdomain, as the apiserver validates object names.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
LabelName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]

UriString = Annotated[
    str,
    Field(
        min_length=3,
        max_length=2048,
        pattern=r"^(s3|gs|hf|pvc|file|https?|oci)://.+$",
        examples=["s3://models/llama", "pvc://datasets/train.jsonl", "hf://gpt2"],
    ),
]


def nested(model: type[KubeModel], description: str) -> Any:
    """A sub-object that is always present, with its own defaults.

    The CRD default is the model's defaults written out in full (not ``{}``): the apiserver checks
    a default against the CEL rules without applying the nested defaults first.
    """

    def add_default(schema: dict[str, Any]) -> None:
        schema["default"] = model().to_wire()

    return Field(default_factory=model, description=description, json_schema_extra=add_default)


def serialize_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[datetime, PlainSerializer(serialize_datetime, return_type=str)]
"""An RFC 3339 timestamp in UTC with second precision, as metav1.Time is serialised."""


# --- Conditions -----------------------------------------------------------------------------------


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """One aspect of the object's current state, shaped like metav1.Condition so that kubectl
    wait, kstatus and Argo CD understand it."""

    type: str = Field(
        description="Type of condition in CamelCase, e.g. Ready.",
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    reason: str = Field(
        description="A programmatic identifier in CamelCase for the last transition.",
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field(
        default="",
        description="A human readable message about the last transition.",
        max_length=32768,
    )
    last_transition_time: Timestamp = Field(
        description="When the condition last changed from one status to another."
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The metadata.generation the condition was computed from.",
    )


def conditions_field() -> Any:
    return Field(
        default_factory=list,
        description="The latest observations of the object's state. Ready summarises them.",
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class ResourceStatus(StatusModel):
    """Fields every kind's status carries."""

    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The metadata.generation the operator last reconciled.",
    )
    conditions: list[Condition] = conditions_field()
