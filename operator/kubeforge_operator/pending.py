"""The outcome for a kind whose controller has not been built yet: the spec is validated and
Accepted, and Ready says plainly that nothing runs it yet. Used by the kinds still on their way
(see each kind's module), never as a stand-in for a built controller."""

from __future__ import annotations

from kubeforge_crds import ConditionStatus
from kubeforge_operator.conditions import Observation
from kubeforge_operator.constants import REASON_NOT_IMPLEMENTED
from kubeforge_operator.reconcile import Outcome, ReconcileContext, accepted


def not_implemented_outcome(ctx: ReconcileContext, issue: int) -> Outcome:
    return Outcome(
        phase="Pending",
        dependents=[
            accepted(),
            Observation(
                "Reconciled",
                ConditionStatus.FALSE,
                REASON_NOT_IMPLEMENTED,
                f"the spec is valid; the {ctx.kind.kind} controller is not built yet "
                f"(kubeforge issue #{issue})",
            ),
        ],
    )
