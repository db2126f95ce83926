"""Label and annotation keys shared by the kinds, the data plane and the REST API."""

from __future__ import annotations

from typing import Final

from kubeforge_crds.base import GROUP

# The standard labels on every child (app.kubernetes.io/*).
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "kubeforge-operator"
PART_OF: Final = "kubeforge"

# Which kubeforge object a pod or a child belongs to (the operator watches pods by these).
WORKBENCH_LABEL: Final = f"{GROUP}/workbench"
FINETUNEJOB_LABEL: Final = f"{GROUP}/finetunejob"
STAGE_LABEL: Final = f"{GROUP}/stage"
# A retraining FineTuneJob names the DriftMonitor that created it (not owned: history stays).
DRIFT_MONITOR_LABEL: Final = f"{GROUP}/drift-monitor"

# The ModelServer revision a serving workload runs (for PodMonitors to keep as a label).
REVISION_LABEL: Final = f"{GROUP}/revision"
# The ModelServer a workload whose own labels belong to another controller serves (vLLM's pods
# of an LLMInferenceService: KServe's app.kubernetes.io/* labels select them).
MODEL_SERVER_LABEL: Final = f"{GROUP}/modelserver"

# DriftMonitor -> ModelServer: roll back the canary of this revision, and why.
ROLLBACK_ANNOTATION: Final = f"{GROUP}/rollback-revision"
ROLLBACK_REASON_ANNOTATION: Final = f"{GROUP}/rollback-reason"
# DriftMonitor -> ModelServer: a monitor waits for the InferenceService's logger (a nudge).
LOGGER_REQUEST_ANNOTATION: Final = f"{GROUP}/logger-requested-by"
# On a FineTuneJob: what started it (e.g. ``drift:<ns>/<monitor>: <summary>``), and the live data
# it trained on (rows and digest of the exported dataset).
TRIGGER_ANNOTATION: Final = f"{GROUP}/trigger"
LIVE_DATA_ANNOTATION: Final = f"{GROUP}/live-data"
# On a Workbench: when idle culling stopped it (removing it starts the Workbench again).
CULLED_ANNOTATION: Final = f"{GROUP}/culled-at"
