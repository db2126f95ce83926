"""``python -m kubeforge_operator`` (or ``kubeforge-operator``): run the operator."""

from __future__ import annotations

import logging
import sys

import kopf
from prometheus_client import start_http_server

from kubeforge_operator.settings import OperatorSettings


def main() -> int:
    settings = OperatorSettings()
    kopf.configure(
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
        verbose=settings.log_level == "DEBUG",
    )
    logging.getLogger().setLevel(settings.log_level)
    start_http_server(settings.metrics_port, addr=settings.metrics_host)

    import kubeforge_operator.handlers  # noqa: F401 - registers the handlers

    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=f"http://{settings.liveness_host}:{settings.liveness_port}/healthz",
        standalone=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
