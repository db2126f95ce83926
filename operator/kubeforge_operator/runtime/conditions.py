"""Pure functions over conditions: set one without losing its transition time, summarise Ready.

Shaped after metav1.Condition and cluster-api's conditions utilities: a condition's
lastTransitionTime moves only when its status changes; Ready aggregates the named dependents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from kubeforge_crds import Condition, ConditionStatus

# Condition types and reasons every kind reports (CamelCase constants, as in cert-manager and
# cluster-api); each kind declares its own beside its status code.
READY = "Ready"
ACCEPTED = "Accepted"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_SPEC_VALID = "SpecValid"
REASON_NOT_REACHED = "NotReached"  # an owned condition a pass stopped before evaluating


@dataclass(frozen=True)
class Observation:
    """What a policy concluded about one condition type."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def set_condition(
    conditions: Iterable[Condition], new: Observation, generation: int | None, now: datetime
) -> list[Condition]:
    """Return the conditions with ``new`` set; order is kept, a new type goes last."""
    out = list(conditions)
    index = next((i for i, c in enumerate(out) if c.type == new.type), None)
    previous = out[index] if index is not None else None
    moved = previous is None or previous.status != new.status
    condition = Condition(
        type=new.type,
        status=new.status,
        reason=new.reason,
        message=new.message,
        last_transition_time=now if moved or previous is None else previous.last_transition_time,
        observed_generation=generation,
    )
    if index is None:
        out.append(condition)
    else:
        out[index] = condition
    return out


def summarise_ready(dependents: Iterable[Observation]) -> Observation:
    """Ready is True when every dependent is True; otherwise it takes the first dependent that is
    False, or else the first that is Unknown (KServe's living condition set)."""
    deps = list(dependents)
    for wanted in (ConditionStatus.FALSE, ConditionStatus.UNKNOWN):
        for dep in deps:
            if dep.status == wanted:
                return Observation(READY, wanted, dep.reason, dep.message)
    return Observation(READY, ConditionStatus.TRUE, "Ready", "all dependents are ready")


def get_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
