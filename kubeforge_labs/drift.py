"""Real processes for drift tests and ``bench/``: the drift service
(``python -m kubeforge_runtimes drift serve``) on 127.0.0.1, and inference traffic posted to it
the way KServe's logger posts it (a request and a response CloudEvent per inference, binary
content mode, one ``ce-id`` for both)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from kubeforge_crds.contracts.drift import MonitorConfig
from kubeforge_labs.canary import launch
from kubeforge_labs.kit import Proc, free_port
from kubeforge_runtimes.drift.payloads import REQUEST_TYPE, RESPONSE_TYPE


def start_drift_service(
    workdir: Path, config: MonitorConfig, *, ready: bool = True, port: int | None = None
) -> Proc:
    """The drift service with ``config``; waits until it answers (and, with ``ready``, until
    its reference is loaded)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / f"{config.name}.json"
    cfg.write_text(config.model_dump_json(by_alias=True))
    port = port or free_port()
    log = workdir / f"drift-{config.name}.log"
    return launch(
        [
            sys.executable,
            "-m",
            "kubeforge_runtimes",
            "drift",
            "serve",
            "--config",
            str(cfg),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        log,
        port,
        "/readyz" if ready else "/healthz",
        "drift service",
        60,
    )


def logger_headers(
    ce_type: str, event_id: str, isvc: str = "support-bot", namespace: str = "default"
) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": ce_type,
        "ce-source": "http://localhost:9081/",
        "ce-inferenceservicename": isvc,
        "ce-namespace": namespace,
        "ce-component": "predictor",
        "ce-endpoint": f"{isvc}-predictor",
        "content-type": "application/json",
    }


def log_inference(
    client: httpx.Client, url: str, request: dict[str, Any], response: dict[str, Any] | None = None
) -> list[httpx.Response]:
    """Post one inference's request (and response) events; returns the service's answers."""
    event_id = str(uuid.uuid4())
    answers = [
        client.post(
            url, content=json.dumps(request), headers=logger_headers(REQUEST_TYPE, event_id)
        )
    ]
    if response is not None:
        answers.append(
            client.post(
                url, content=json.dumps(response), headers=logger_headers(RESPONSE_TYPE, event_id)
            )
        )
    return answers


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
