"""ASGI pieces shared by the runtime's metrics middleware (``server``) and its OpenAI-compatible
API (``openai_asgi``)."""

from __future__ import annotations

from typing import Any


async def send_json(send: Any, code: int, body: bytes) -> None:
    """A whole JSON response of ``body``."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
