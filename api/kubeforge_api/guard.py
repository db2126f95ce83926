"""The API's front door, as plain ASGI middleware (it runs before FastAPI reads a body):

- headers over ``max_header_bytes`` are refused (431), bodies over ``max_body_bytes`` too (413:
  by Content-Length at once, or as a chunked body grows past it);
- on ``/api/`` a request is authenticated before its body is read: no bearer token is 401 at
  once, and the token is reviewed (TokenReview, cached by the cluster client, failures too) so
  that an anonymous caller can make the API neither parse a large body nor call the apiserver
  for every request; the reviewed user goes to the routes in the request's state;
- every answer carries the browser security headers (a Content-Security-Policy that allows only
  the API's own origin and no framing, nosniff, no referrer).

Written by hand because it must run before the framework touches the body; each part is a few
lines of the ASGI protocol.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubeforge_api.cluster import ApiserverError, Cluster, UnauthenticatedError, bearer_token

PORTAL_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI and ReDoc start from a small inline script; their assets are served from here
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    csp = DOCS_CSP if path.startswith(DOCS_PATHS) else PORTAL_CSP
    return [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]


async def _answer(
    send: Send,
    status: int,
    detail: Any,
    path: str,
    extra: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *_security_headers(path),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: ASGIApp, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.max_headers = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        refused = await self._refuse(scope, path, send)
        if refused:
            return
        over = {"limit": False, "answered": False}

        async def send_with_headers(message: Message) -> None:
            if over["limit"]:  # the app saw a cut-off body: whatever it answers becomes a 413
                if not over["answered"]:
                    over["answered"] = True
                    await _answer(send, 413, self._too_large(), path)
                return
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_security_headers(path)]
            await send(message)

        await self.app(scope, self._bounded(receive, over), send_with_headers)

    async def _refuse(self, scope: Scope, path: str, send: Send) -> bool:
        """Answer at once, before any body is read, when the request cannot go on."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if sum(len(k) + len(v) for k, v in headers) > self.max_headers:
            await _answer(send, 431, f"request headers over {self.max_headers} bytes", path)
            return True
        length = dict(headers).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _answer(send, 413, self._too_large(), path)
            return True
        if not path.startswith("/api/"):
            return False
        try:
            scope.setdefault("state", {})["user"] = await self._authenticate(scope, headers)
        except UnauthenticatedError as err:
            await _answer(send, 401, str(err), path, [(b"www-authenticate", b"Bearer")])
            return True
        except (ApiserverError, httpx.HTTPError) as err:
            why = err if isinstance(err, ApiserverError) else type(err).__name__
            await _answer(send, 503, f"the token could not be reviewed: {why}", path)
            return True
        return False

    async def _authenticate(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> Any:
        token = bearer_token(dict(headers).get(b"authorization", b"").decode("latin-1"))
        cluster: Cluster | None = scope["app"].state.cluster
        if cluster is None:
            return None  # no cluster (a unit test's app): the routes' dependency decides
        return await run_in_threadpool(cluster.authenticate, token)

    def _bounded(self, receive: Receive, over: dict[str, bool]) -> Receive:
        """``receive`` that stops a body at the limit: the rest is not read, and the app gets
        an end of body (its answer is replaced by a 413)."""
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            if over["limit"]:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    over["limit"] = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        return bounded

    def _too_large(self) -> str:
        return f"request body over {self.max_body} bytes; an object's spec is far smaller"
