"""The drift service: live inference traffic (KServe logger CloudEvents) compared with a reference
dataset; drift, bias and anomaly scores exported to Prometheus, a JSON status and HTML reports."""
