"""``python -m kubeforge_operator`` (or ``kubeforge-operator``): run the operator."""

from __future__ import annotations

import logging
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kopf
from kubernetes import client
from prometheus_client import start_http_server

from kubeforge_operator.runtime.kube import load_config
from kubeforge_operator.runtime.leader import LeaderElector
from kubeforge_operator.runtime.metrics import LEADER
from kubeforge_operator.runtime.settings import OperatorSettings

log = logging.getLogger("kubeforge_operator")


class _Standby(BaseHTTPRequestHandler):
    """/healthz of a replica waiting for the Lease: alive, not leading (kopf serves /healthz once
    this replica leads)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"standby: waiting for the leader Lease\n")

    def log_message(self, *_: object) -> None:
        pass


def _lead(settings: OperatorSettings) -> LeaderElector | None:
    """With leader election on: block until this replica holds the Lease, serving /healthz
    meanwhile; then keep renewing it, and exit the process at once should it be lost."""
    if not settings.leader_election:
        LEADER.set(1)
        return None

    def lost() -> None:
        LEADER.set(0)
        log.error("Leader Lease lost; exiting so that only the new leader reconciles")
        logging.shutdown()
        os._exit(1)

    elector = LeaderElector(
        client.CoordinationV1Api(load_config()),
        settings.leader_election_namespace,
        settings.leader_election_lease,
        settings.leader_election_identity,
        lease_seconds=settings.lease_seconds,
        renew_deadline=settings.renew_deadline_seconds,
        retry_period=settings.retry_period_seconds,
        on_lost=lost,
    )
    LEADER.set(0)
    standby = ThreadingHTTPServer((settings.liveness_host, settings.liveness_port), _Standby)
    threading.Thread(target=standby.serve_forever, name="standby-healthz", daemon=True).start()
    try:
        elector.acquire()
    finally:
        standby.shutdown()
        standby.server_close()
    LEADER.set(1)
    elector.start_renewing()
    return elector


def main() -> int:
    settings = OperatorSettings()
    kopf.configure(
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
        verbose=settings.log_level == "DEBUG",
    )
    logging.getLogger().setLevel(settings.log_level)
    start_http_server(settings.metrics_port, addr=settings.metrics_host)
    # registers the handlers; imported before waiting for the Lease, so that a standby that
    # takes over starts reconciling at once
    import kubeforge_operator.handlers  # noqa: F401

    try:
        elector = _lead(settings)
    except KeyboardInterrupt:
        return 0

    try:
        kopf.run(
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=f"http://{settings.liveness_host}:{settings.liveness_port}/healthz",
            standalone=True,
        )
    finally:
        if elector is not None:
            elector.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
