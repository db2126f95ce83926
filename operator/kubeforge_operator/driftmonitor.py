"""DriftMonitor controller. For now it validates the spec and reports that the
controller is not built yet; issue #6 fills it in."""

from __future__ import annotations

from kubeforge_crds.driftmonitor import DriftMonitorSpec
from kubeforge_operator.pending import not_implemented_outcome
from kubeforge_operator.reconcile import Outcome, ReconcileContext


def reconcile_driftmonitor(ctx: ReconcileContext, spec: DriftMonitorSpec) -> Outcome:
    return not_implemented_outcome(ctx, issue=6)
