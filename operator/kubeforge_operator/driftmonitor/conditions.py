"""The conditions the DriftMonitor controller owns, declared once. Ready summarises Accepted,
TargetFound, ReferenceResolved, ServiceReady and LoggerConfigured; DriftDetected, BiasDetected,
QualityDegraded, AnomaliesDetected and MonitoringConfigured are reported beside it."""

from __future__ import annotations

from kubeforge_operator.runtime.conditions import ACCEPTED, READY

TARGET_FOUND = "TargetFound"
REFERENCE_RESOLVED = "ReferenceResolved"
SERVICE_READY = "ServiceReady"
LOGGER_CONFIGURED = "LoggerConfigured"
DRIFT_DETECTED = "DriftDetected"
BIAS_DETECTED = "BiasDetected"
QUALITY_DEGRADED = "QualityDegraded"
ANOMALIES_DETECTED = "AnomaliesDetected"
MONITORING_READY = "MonitoringConfigured"
OWNED = (
    READY,
    ACCEPTED,
    TARGET_FOUND,
    REFERENCE_RESOLVED,
    SERVICE_READY,
    LOGGER_CONFIGURED,
    MONITORING_READY,
    DRIFT_DETECTED,
    BIAS_DETECTED,
    QUALITY_DEGRADED,
    ANOMALIES_DETECTED,
)
