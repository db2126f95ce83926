"""The least time a streamed answer's first event takes over HTTP on this machine: an ASGI app
that reads the request's JSON body and answers one server-sent event at once, served by uvicorn
as the runtime is (uvloop, httptools, no access log), asked as ``bench/generation.py`` asks the
runtime (``first_token_over_http``). No model, no tokenizer, no thread: what any Python server
and client pay for the request itself, which the in-process ``generate`` loop does not.

    python -m uvicorn --app-dir bench http_floor:app   # started by bench/generation.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

EVENT = b'data: {"choices":[{"index":0,"text":"x"}]}\n\n'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST: the body read and parsed, one event, then ``[DONE]``; GET: 200 (ready)."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] == "POST":
        json.loads(body)
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if scope["method"] != "POST":
        await send({"type": "http.response.body", "body": b"ready"})
        return
    await send({"type": "http.response.body", "body": EVENT, "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def start(workdir: Path) -> Any:
    """This app under uvicorn on 127.0.0.1 (a ``kit.Proc``; its ``url``), ready when it answers."""
    from kubeforge_labs.canary import launch
    from kubeforge_labs.kit import free_port

    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).parent),
        "--host", "127.0.0.1", f"--port={port}", "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning", "http_floor:app",
    ]  # fmt: skip
    return launch(cmd, workdir / "http-floor.log", port, "/", "HTTP floor", 30)
