"""The reconcile shape every kind shares (DESIGN.md "The reconcile shape").

1. parse the object into its model; a name or spec that cannot work (admitted before the CRD
   had the rule that refuses it) gets Accepted=False and Ready=False with reason InvalidSpec,
   naming each field, and no retry;
2. the kind's reconciler builds and applies children and observes them, returning an
   :class:`Outcome` (phase, condition observations, status fields);
3. :func:`compute_status` (pure) merges that into the status with ``observedGeneration``;
4. the status is written only when it changed, and an Event is posted when Ready changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubeforge_crds import ConditionStatus, KindInfo
from kubeforge_crds.kind import InvalidObjectError
from kubeforge_operator.runtime.conditions import (
    ACCEPTED,
    READY,
    REASON_INVALID_SPEC,
    REASON_NOT_REACHED,
    REASON_SPEC_VALID,
    Observation,
    get_condition,
    set_condition,
    summarise_ready,
)
from kubeforge_operator.runtime.kube import Kube
from kubeforge_operator.runtime.metrics import OBJECT_PHASES, RECONCILE_DURATION, RECONCILES
from kubeforge_operator.runtime.prometheus import Prometheus
from kubeforge_operator.runtime.settings import OperatorSettings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a kind's reconciler observed."""

    phase: str
    dependents: list[Observation]  # conditions that Ready summarises
    fields: dict[str, Any] = field(default_factory=dict)  # kind-specific status, wire names
    info: list[Observation] = field(default_factory=list)  # conditions outside Ready
    requeue_after: float | None = None  # reconcile again after this many seconds
    kept: tuple[str, ...] = ()  # owned conditions deliberately left as they are this pass


@dataclass
class ReconcileContext:
    """What a kind's reconciler gets: the object, the cluster, the time of this pass, the
    operator's settings and its Prometheus client (None when none is configured). Reconcilers
    use these and nothing global, so a test hands them its own."""

    kind: KindInfo
    obj: dict[str, Any]
    kube: Kube
    now: datetime
    settings: OperatorSettings = field(default_factory=get_settings)
    prometheus: Prometheus | None = None
    # the pass was started only by events of the object's own pods: children other than the
    # pods' controller cannot have changed because of them, so those this process applied are
    # trusted without reading them back (the resync and any other event still read them)
    pods_only: bool = False
    # (kind, name) -> the resourceVersion of the newest watch event of a child that asked for
    # this pass: the child is read from the apiserver's watch cache, at least that new
    seen: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def child(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        """A child in the object's namespace, read now: from the apiserver's watch cache when
        a watch event of it asked for this pass (at least as new as that event: as fresh as a
        quorum read for the purpose, and far cheaper), else from etcd."""
        return self.kube.get_child(
            api_version, kind, self.namespace, name, self.seen.get((kind, name))
        )

    @property
    def namespace(self) -> str:
        """The object's namespace; empty for a cluster-scoped object (a Team)."""
        return str(self.obj["metadata"].get("namespace") or "")

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def generation(self) -> int | None:
        gen = self.obj["metadata"].get("generation")
        return int(gen) if gen is not None else None


Reconciler = Callable[[ReconcileContext, Any], Outcome]


class OwnWrites:
    """The resourceVersion of each object's last status write by this process, so that the
    watch event it causes does not start another (pointless) reconcile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, str, str], str] = {}

    def remember(self, kind: str, namespace: str, name: str, resource_version: str) -> None:
        with self._lock:
            self._versions[(kind, namespace, name)] = resource_version

    def is_own(self, kind: str, namespace: str, name: str, resource_version: str | None) -> bool:
        with self._lock:
            return self._versions.get((kind, namespace, name)) == resource_version

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._versions.pop((kind, namespace, name), None)


OWN_WRITES = OwnWrites()


def accepted() -> Observation:
    return Observation(ACCEPTED, ConditionStatus.TRUE, REASON_SPEC_VALID, "the spec is valid")


def invalid_spec_outcome(errors: list[str], failed_phase: str = "Failed") -> Outcome:
    message = "; ".join(errors)
    return Outcome(
        phase=failed_phase,
        dependents=[Observation(ACCEPTED, ConditionStatus.FALSE, REASON_INVALID_SPEC, message)],
    )


def compute_status(
    kind: KindInfo,
    current: dict[str, Any] | None,
    outcome: Outcome,
    generation: int | None,
    now: datetime,
    owned: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The new status (wire form): the outcome's fields and phase, each dependent condition and
    Ready set, observedGeneration advanced. Every ``owned`` condition the pass did not reach
    (an early return) is set Unknown, so none is left stale from an earlier pass, unless the
    outcome keeps it on purpose. Pure."""
    status = kind.parse_status(current)
    conditions = list(status.conditions)
    ready = summarise_ready(outcome.dependents)
    observed = [*outcome.dependents, *outcome.info, ready]
    reached = {o.type for o in observed} | set(outcome.kept)
    why = f"not evaluated on this pass: {ready.reason}"
    observed += [
        Observation(t, ConditionStatus.UNKNOWN, REASON_NOT_REACHED, why)
        for t in owned
        if t not in reached
    ]
    for obs in observed:
        conditions = set_condition(conditions, obs, generation, now)
    wire = {**status.to_wire(), **outcome.fields}
    wire["observedGeneration"] = generation
    wire["phase"] = outcome.phase
    wire["conditions"] = [c.to_wire() for c in conditions]
    return {k: v for k, v in wire.items() if v is not None}


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: a field ``new`` no
    longer has is sent as null, or the apiserver would keep it. Pure."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            if value != before:
                patch[key] = merge_patch(before, value)
        elif value != before or key not in old:
            patch[key] = value
    return patch


@dataclass(frozen=True)
class Report:
    result: str  # success | invalid | error
    status: dict[str, Any]
    changed: bool
    requeue_after: float | None = None


def _write_status(ctx: ReconcileContext, current: dict[str, Any], status: dict[str, Any]) -> None:
    """Merge-patch the new status (remembering the write, so that its echo is not reconciled)
    and post an Event when Ready changed."""
    patch = merge_patch(current, status)
    written = ctx.kube.patch_status(ctx.kind, ctx.namespace, ctx.name, patch)
    OWN_WRITES.remember(ctx.kind.kind, ctx.namespace, ctx.name, written)
    _announce(ctx, current, status)


def reconcile_object(
    kind: KindInfo,
    obj: dict[str, Any],
    kube: Kube,
    reconciler: Reconciler,
    now: datetime | None = None,
    settings: OperatorSettings | None = None,
    prometheus: Prometheus | None = None,
    owned: tuple[str, ...] = (),
    pods_only: bool = False,
    seen: Mapping[tuple[str, str], str] | None = None,
) -> Report:
    """Run one reconcile of ``obj`` and write its status if it changed."""
    started = time.perf_counter()
    ctx = ReconcileContext(
        kind=kind,
        obj=obj,
        kube=kube,
        now=now or datetime.now(UTC),
        settings=settings or get_settings(),
        prometheus=prometheus,
        pods_only=pods_only,
        seen=seen or {},
    )
    result = "success"
    try:
        try:
            spec = kind.parse_object(obj)
        except InvalidObjectError as err:
            result = "invalid"
            outcome = invalid_spec_outcome(err.errors)
        else:
            outcome = reconciler(ctx, spec)
        current = obj.get("status") or {}
        status = compute_status(kind, current, outcome, ctx.generation, ctx.now, owned)
        changed = status != current
        if changed:
            _write_status(ctx, current, status)
        OBJECT_PHASES.set(
            kind.kind,
            ctx.namespace,
            ctx.name,
            outcome.phase,
            int(status.get("gpus") or 0),
            str(status.get("gpuProduct") or ""),
            status.get("quota"),
        )
        log.info(
            "Reconciled %s",
            kind.kind,
            extra={
                "object": f"{ctx.namespace}/{ctx.name}",
                "generation": ctx.generation,
                "phase": outcome.phase,
                "result": result,
                "statusChanged": changed,
            },
        )
        return Report(result, status, changed, outcome.requeue_after)
    except Exception:
        result = "error"
        raise
    finally:
        RECONCILES.labels(kind.kind, result).inc()
        RECONCILE_DURATION.labels(kind.kind).observe(time.perf_counter() - started)


def _announce(ctx: ReconcileContext, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Post an Event when Ready changes status, or gives a new reason for being False. Not for
    a first status that says only that readiness is not known yet (the pod is being created):
    such an Event tells nothing the object's creation did not, and at a thousand objects it is a
    thousand writes."""
    kind = ctx.kind
    before = get_condition(kind.parse_status(old).conditions, READY)
    after = get_condition(kind.parse_status(new).conditions, READY)
    if after is None or (before is None and after.status == ConditionStatus.UNKNOWN):
        return
    if (
        before is not None
        and before.status == after.status
        and (after.status != ConditionStatus.FALSE or before.reason == after.reason)
    ):
        return  # only a new status, or a new reason for not being ready, is worth an Event
    type_ = "Normal" if after.status != ConditionStatus.FALSE else "Warning"
    ctx.kube.record_event(ctx.obj, type_, after.reason, after.message or after.reason)
