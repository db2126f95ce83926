"""The conditions the ModelServer controller owns, declared once. Ready summarises the
dependents (Accepted, ModelResolved, InferenceServiceReady); RolledBack is reported beside it."""

from __future__ import annotations

from typing import Final

from kubeforge_operator.runtime.conditions import ACCEPTED, READY

MODEL_RESOLVED: Final = "ModelResolved"
ISVC_READY: Final = "InferenceServiceReady"
ROLLED_BACK: Final = "RolledBack"
OWNED: Final = (READY, ACCEPTED, MODEL_RESOLVED, ISVC_READY, ROLLED_BACK)
