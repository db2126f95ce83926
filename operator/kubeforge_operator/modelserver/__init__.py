"""The ModelServer kind: a KServe InferenceService (v1beta1) serving the model, and the canary
rollout of every new revision, gated on Prometheus metrics.

A *revision* is what is served: model URI, format, runtime and injected faults, named by a digest
(``r<10 hex>``). The operator puts it on the predictor (``KUBEFORGE_RUNTIME_REVISION``) and the
runtime labels its metrics with it, so the analysis can tell canary from stable. Resources and
replicas are not part of it: they apply in place.

The rollout lives in status (``stable``, ``canary``, ``rollout``, ``rolledBack``, ``decisions``):
a restarted operator carries on from there. Who splits the traffic depends on KServe's mode
(``traffic``): in Standard mode KServe (v0.20) runs the canary beside the stable predictor
(``spec.canary``) and the operator's HTTPRoute weighs the two; in Serverless mode the predictor is
the canary's with ``canaryTrafficPercent`` and Knative keeps the last rolled-out revision serving
the rest. A rollback puts the stable predictor back; the rolled-back
revision is remembered and not rolled out again until the spec names something else, so the
ModelServer shows ``RolledBack`` instead of fighting a GitOps tool that keeps applying the spec.

Each analysis (``spec.rollout.interval`` apart, or one scrape interval after a failed one, to
confirm a failure quickly) queries Prometheus (``prometheus``) and the pure ``canary.analyse``
decides.

Where to look: ``revisions`` (what a revision is), ``builders`` (the InferenceService),
``traffic`` (KServe's mode, the HTTPRoute),
``observe`` (each child read once per reconcile), ``resolve`` (preconditions), ``rollout`` (the
state machine), ``canary`` and ``analysis`` (the decision on measurements), ``prometheus`` (the
queries), ``status`` (conditions), ``reconcile`` (observe -> decide -> apply -> status).
"""

from kubeforge_operator.modelserver.conditions import OWNED
from kubeforge_operator.modelserver.reconcile import reconcile_modelserver

__all__ = ["OWNED", "reconcile_modelserver"]
