"""Workbench controller. For now it validates the spec and reports that the controller is not
built yet; issue #3 fills it in."""

from __future__ import annotations

from kubeforge_crds.workbench import WorkbenchSpec
from kubeforge_operator.pending import not_implemented_outcome
from kubeforge_operator.reconcile import Outcome, ReconcileContext


def reconcile_workbench(ctx: ReconcileContext, spec: WorkbenchSpec) -> Outcome:
    return not_implemented_outcome(ctx, issue=3)
