"""The FineTuneJob kind: validate, run the fine-tuning pipeline on the chosen backend, and
mirror the run into status (phase; Succeeded, Failed and Validated conditions; times; metrics;
the registered model version and its lineage).

A FineTuneJob is a record of one run: once it has Succeeded or Failed it is never run again
(the spec is immutable), and its status stays even when its Jobs are cleaned up.

Backends (``spec.backend``):
- ``job``: a CPU-only validation Job, then the training Job or, on several nodes, a
  Kubeflow Trainer TrainJob (``builders``, ``trainjob``);
- ``local``: kfp's local runner in a subprocess beside the operator (``backends.local``);
- ``kfp``: a run on the Kubeflow Pipelines API named in the settings (``backends.kfp``).

Where to look: ``builders`` (the validation and training Jobs and reading their state back),
``trainjob`` (the TrainJob of a multi-node run), ``backends/`` (``local``: kfp's local runner
in a subprocess; ``kfp``: a KFP API), ``reconcile`` (preconditions -> run on the backend -> status).
"""

from kubeforge_operator.finetunejob.reconcile import OWNED, reconcile_finetunejob

__all__ = ["OWNED", "reconcile_finetunejob"]
