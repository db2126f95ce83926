"""The OpenAI-compatible API (``openai_api``) as a bare ASGI app: ``server.InferenceMetrics``
hands it every request under ``/openai/v1/``, ahead of kserve's FastAPI app.

Written by hand rather than as FastAPI routes because of what those cost a small model's
requests: FastAPI's routing, its exception and exit-stack middlewares and Starlette's
``StreamingResponse`` (an anyio task group per stream, each event through every middleware's
``send``) were about 1 ms of the event loop's time before a request's first token could go out,
as long as the tiny model's whole prefill (``bench/generation.py``; docs/benchmarks.md). What
they did for these routes is done here: the body read with a size limit, every error in
OpenAI's shape, and a stream stopped when its client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from kubeforge_runtimes.asgi import send_json
from kubeforge_runtimes.generation import GenerationError
from kubeforge_runtimes.labels import ADAPTER_STATE
from kubeforge_runtimes.openai_api import PREFIX, OpenAIServer
from kubeforge_runtimes.openai_requests import OpenAIError

# far beyond any prompt a context here holds (that is checked in tokens, with its own 400)
MAX_BODY_BYTES = 8 * 1024 * 1024
EVENTS = b"text/event-stream; charset=utf-8"

log = logging.getLogger(__name__)


class _ClientLeftError(Exception):
    """The client went away before it was answered."""


class OpenAIApp:
    """``GET /openai/v1/models``, ``POST /openai/v1/completions`` and
    ``POST /openai/v1/chat/completions`` of one ``OpenAIServer``; anything else under the
    prefix is a 404 or 405 in OpenAI's shape."""

    def __init__(self, server: OpenAIServer) -> None:
        self.server = server
        self.routes: dict[tuple[str, str], Any] = {
            ("GET", f"{PREFIX}/models"): None,
            ("POST", f"{PREFIX}/completions"): server.completion,
            ("POST", f"{PREFIX}/chat/completions"): server.chat,
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        key = (scope["method"], scope["path"])
        try:
            if key not in self.routes:
                raise self._unrouted(*key)
            if key[0] == "GET":
                await send_json(send, 200, json.dumps(self.server.models()).encode())
                return
            result = await self._answer(self.routes[key], scope, receive)
        except OpenAIError as err:
            allow = [(b"allow", err.allow.encode())] if err.allow else []
            await send_json(send, err.status, json.dumps(err.body()).encode(), allow)
            return
        except _ClientLeftError:
            return
        except Exception as err:  # a bug: said in OpenAI's shape, and logged with its trace
            log.exception("%s %s failed", *key)
            failed = OpenAIError(500, f"the server failed: {type(err).__name__}: {err}")
            await send_json(send, 500, json.dumps(failed.body()).encode())
            return
        if isinstance(result, BaseModel):
            await send_json(send, 200, result.model_dump_json(exclude_none=True).encode())
        else:
            await stream(result, receive, send)

    def _unrouted(self, method: str, path: str) -> OpenAIError:
        takes = [m for m, p in self.routes if p == path]
        if takes:
            refused = OpenAIError(405, f"{path} takes {takes[0]}, not {method}")
            refused.allow = takes[0]
            return refused
        served = ", ".join(sorted({p for _, p in self.routes}))
        return OpenAIError(404, f"{path} is not served here; this server serves {served}")

    async def _answer(self, handler: Any, scope: dict[str, Any], receive: Any) -> Any:
        raw = await read_body(receive)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise OpenAIError(400, f"the request body is not JSON: {err}") from None
        model = body.get("model") if isinstance(body, dict) else None
        scope.setdefault("state", {})[ADAPTER_STATE] = self.server.adapter_label(model)
        if await self.server.injector.delay_then_fail(model if isinstance(model, str) else ""):
            raise OpenAIError(500, "injected fault (fault injection)")
        streamed = isinstance(body, dict) and body.get("stream") is True
        try:
            if streamed:  # the response is the stream, which watches its client itself
                return await handler(body)
            return await until_client_leaves(handler(body), receive)
        except GenerationError as err:
            raise OpenAIError(500, str(err)) from None


async def read_body(receive: Any, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body; a 413 past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientLeftError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise OpenAIError(413, f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def until_client_leaves(answer: Any, receive: Any) -> Any:
    """What ``answer`` (a coroutine) returns, unless the client leaves first: ``answer`` is then
    cancelled (a whole answer being generated or streamed stops at its next token, and its place
    in the batch goes to the next request) and _ClientLeftError raised."""
    answering = asyncio.ensure_future(answer)
    leaving = asyncio.ensure_future(_client_leaves(receive))
    try:
        await asyncio.wait((answering, leaving), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        answering.cancel()
        raise
    finally:
        leaving.cancel()
    if not answering.done():  # the client left first
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering
        raise _ClientLeftError
    return answering.result()


async def stream(events: AsyncIterator[str], receive: Any, send: Any) -> None:
    """``events`` as a server-sent event stream. When the client leaves (uvicorn says so to
    ``receive``; its ``send`` to a closed connection does nothing) the writing stops and
    ``events`` is closed, which ends the generation at its next token; a failure of the writing
    is raised once both have stopped."""
    headers = [(b"content-type", EVENTS)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    with contextlib.suppress(_ClientLeftError):
        await until_client_leaves(_write(events, send), receive)


async def _write(events: AsyncIterator[str], send: Any) -> None:
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for event in events:
            await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _client_leaves(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
