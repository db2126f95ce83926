"""The conditions the DriftMonitor controller owns, declared once. Ready summarises Accepted,
TargetFound, ReferenceResolved, ServiceReady and LoggerConfigured; DriftDetected, BiasDetected
and MonitoringConfigured are reported beside it."""

from __future__ import annotations

TARGET_FOUND = "TargetFound"


REFERENCE_RESOLVED = "ReferenceResolved"


SERVICE_READY = "ServiceReady"


LOGGER_CONFIGURED = "LoggerConfigured"


DRIFT_DETECTED = "DriftDetected"


BIAS_DETECTED = "BiasDetected"


MONITORING_READY = "MonitoringConfigured"
