"""The conditions the ModelServer controller owns, declared once. Ready summarises the
dependents (Accepted, ModelResolved, InferenceServiceReady, TrafficRouted); RolledBack and
CanaryReady are reported beside it (a canary that is not ready leaves the stable version
serving)."""

from __future__ import annotations

from typing import Final

from kubeforge_operator.runtime.conditions import ACCEPTED, READY

MODEL_RESOLVED: Final = "ModelResolved"
ISVC_READY: Final = "InferenceServiceReady"
ROLLED_BACK: Final = "RolledBack"
TRAFFIC_ROUTED: Final = "TrafficRouted"
CANARY_READY: Final = "CanaryReady"
OWNED: Final = (
    READY,
    ACCEPTED,
    MODEL_RESOLVED,
    ISVC_READY,
    TRAFFIC_ROUTED,
    ROLLED_BACK,
    CANARY_READY,
)
