"""Readiness preconditions shared by the kinds, as small policies applied in one order: the
platform config must load, then the placement (accelerator, hardware profile, queue) must fit
it, then the Secrets the spec names must exist. Each returns what it resolved, or the Outcome
that stops the reconcile (with the reason and the field), as cert-manager's
``certificates/policies`` chain does."""

from __future__ import annotations

from collections.abc import Iterable

from kubeforge_crds import ConditionStatus
from kubeforge_crds.common import Accelerator
from kubeforge_crds.platform import PlatformConfig
from kubeforge_operator.runtime.conditions import ACCEPTED, Observation
from kubeforge_operator.runtime.placement import Placement, SpecProblem, resolve_placement
from kubeforge_operator.runtime.platform import PlatformConfigError, load_platform_config
from kubeforge_operator.runtime.reconcile import Outcome, ReconcileContext, accepted

FAILED = "Failed"
PENDING = "Pending"


def platform_or_problem(
    ctx: ReconcileContext, waiting_phase: str = PENDING
) -> PlatformConfig | Outcome:
    """The platform config (re-read when its file changes); an unreadable one holds the object
    (Accepted=Unknown) in ``waiting_phase`` until it is fixed."""
    try:
        return load_platform_config(ctx.settings.platform_config)
    except PlatformConfigError as err:
        invalid = Observation(ACCEPTED, ConditionStatus.UNKNOWN, "PlatformConfigInvalid", str(err))
        return Outcome(phase=waiting_phase, dependents=[invalid])


def placement_or_problem(
    ctx: ReconcileContext,
    accelerator: Accelerator | None,
    queue_name: str | None,
    waiting_phase: str = PENDING,
    platform: PlatformConfig | None = None,
) -> Placement | Outcome:
    """Where the pods run; a spec the platform cannot place fails (Accepted=False)."""
    if platform is None:
        loaded = platform_or_problem(ctx, waiting_phase)
        if isinstance(loaded, Outcome):
            return loaded
        platform = loaded
    placement = resolve_placement(accelerator, queue_name, platform)
    if isinstance(placement, SpecProblem):
        return Outcome(phase=FAILED, dependents=[placement.observation()])
    return placement


def data_connections(
    ctx: ReconcileContext, condition: str, refs: Iterable[tuple[str, str]]
) -> Outcome | Observation | None:
    """``refs`` are (field path, Secret name). A Secret that does not exist would keep the pod
    from starting, so nothing is created: the Outcome holds the object (Pending) and
    ``condition`` names each missing Secret with its field. When all exist, ``condition`` is
    True (so that a Secret created later clears it); None when the spec names none."""
    refs = list(refs)
    if not refs:
        return None
    gone = [
        f"{path}: Secret {name!r} not found"
        for path, name in refs
        if ctx.kube.get_child("v1", "Secret", ctx.namespace, name) is None
    ]
    if not gone:
        names = ", ".join(sorted({name for _, name in refs}))
        return Observation(condition, ConditionStatus.TRUE, "SecretsFound", names)
    missing = Observation(condition, ConditionStatus.FALSE, "SecretNotFound", "; ".join(gone))
    return Outcome(phase=PENDING, dependents=[accepted(), missing])
