"""ASGI pieces shared by the runtime's metrics middleware (``server``) and its OpenAI-compatible
API (``openai_asgi``)."""

from __future__ import annotations

from typing import Any


async def send_json(
    send: Any, code: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A whole JSON response of ``body`` (``extra``: more headers)."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += extra or []
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
