"""The DriftMonitor kind.

A DriftMonitor becomes, in its namespace:

- ``<name>-drift`` ConfigMap (the drift service's ``config.json``, rendered from the spec and the
  resolved reference), Deployment (``python -m kubeforge_runtimes drift serve``) and Service;
- ``<name>-drift`` ServiceMonitor (the service's ``/metrics``) and, with ``actions.alert``, a
  PrometheusRule (DriftDetected, BiasDetected, stale evaluations, malformed payloads);
- the target ModelServer's InferenceService logs to the Service: the ModelServer controller
  sets ``spec.predictor.logger`` from the DriftMonitors that target it (one writer per child), so
  deleting the monitor removes the logger on the next ModelServer reconcile.

Each reconcile reads the drift service's ``/status`` and copies the latest scores into the
status, with the conditions DriftDetected and BiasDetected, then acts: a retraining FineTuneJob
from the template (at most one running, none within the cool-down of the last), or a rollback of
the ModelServer's rollout in progress (through the ``kubeforge.io/rollback-revision``
annotation that the ModelServer controller honours). Every action is recorded in
``status.actions`` and as an Event. The retraining FineTuneJobs are labelled with the monitor's
name but not owned by it: deleting the monitor keeps the training history.

Where to look: ``builders`` (the drift service's children), ``alerts`` (the PrometheusRule),
``observe`` (what is read), ``reading`` (the service's status as conditions), ``actions``
(alert, rollback, retrain), ``reconcile`` (the order of it all).
"""

from kubeforge_operator.driftmonitor.conditions import OWNED
from kubeforge_operator.driftmonitor.reconcile import reconcile_driftmonitor

__all__ = ["OWNED", "reconcile_driftmonitor"]
