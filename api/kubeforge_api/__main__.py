"""``python -m kubeforge_api``: serve the REST API (settings: KUBEFORGE_API_*)."""

from __future__ import annotations

import logging

import uvicorn

from kubeforge_api.app import create_app
from kubeforge_api.settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    # open watches (server-sent events, up to two minutes each) would otherwise hold a stop for
    # as long: the portal reconnects to another replica
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
