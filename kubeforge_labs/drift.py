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
    client: httpx.Client,
    url: str,
    request: dict[str, Any],
    response: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> list[httpx.Response]:
    """Post one inference's request (and response) events, with ``event_id`` as their ce-id (a
    new one by default); returns the service's answers."""
    event_id = event_id or str(uuid.uuid4())
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


_SENDER = """
import json, sys, urllib.request, uuid
url, rows = sys.argv[1], [json.loads(line) for line in sys.stdin if line.strip()]
base, prefix = json.loads(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else None)
for start in range(0, len(rows), 10):
    batch = rows[start:start + 10]
    event = f"{prefix}-{start // 10}" if prefix else str(uuid.uuid4())
    answer = {"predictions": [1] * len(batch)}
    for kind, body in ((%r, {"instances": batch}), (%r, answer)):
        headers = {**base, "ce-id": event, "ce-type": kind}
        req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        assert urllib.request.urlopen(req, timeout=10).status == 202
print("sent", len(rows))
"""


def in_pod_sender(
    url: str, isvc: str = "support-bot", namespace: str = "default", ids: str | None = None
) -> list[str]:
    """A command for a pod with Python (standard library only) that posts the JSONL rows on its
    stdin to the drift service at ``url`` as KServe's logger does, ten rows an inference (every
    prediction 1; the inferences' ids ``<ids>-0``, ``<ids>-1``, ... when ``ids`` is given): for
    ``kubectl exec -i POD -- <command>``, where the service is reachable by its cluster DNS."""
    base = {
        k: v
        for k, v in logger_headers("", "", isvc, namespace).items()
        if k not in ("ce-id", "ce-type")
    }
    command = ["python3", "-c", _SENDER % (REQUEST_TYPE, RESPONSE_TYPE), url, json.dumps(base)]
    return [*command, ids] if ids else command


def in_pod_json_post(url: str) -> list[str]:
    """A command for a pod with Python that posts the JSON on its stdin to ``url`` and prints
    the status and the answer."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1], sys.stdin.buffer.read(), "
        "{'content-type': 'application/json'}, method='POST')\n"
        "try:\n    resp = urllib.request.urlopen(req, timeout=10)\n"
        "except urllib.error.HTTPError as err:\n    resp = err\n"
        "print(resp.status, resp.read().decode())\n"
    )
    return ["python3", "-c", script, url]
