"""Where a FineTuneJob runs besides Kubernetes Jobs: ``local`` (kfp's local runner in a
subprocess beside the operator) and ``kfp`` (a Kubeflow Pipelines API)."""
