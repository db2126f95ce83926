"""Errors, mapped once: every domain error the routes can raise becomes one HTTP answer with a
``detail`` (a message, or field errors ``{field, message, type}`` named as the apiserver names
them). 401 (no or bad token, saying which), 403 (the apiserver's reason), 404, 409, 422, 502/503
when the apiserver or Prometheus fails or cannot be reached. No input produces a 500."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from kubeforge_api.cluster import ApiserverError, UnauthenticatedError


class Problem(BaseModel):
    """Every error's body."""

    detail: Any


class ProblemError(Exception):
    """An answer a route gives instead of its result (e.g. 503: no Prometheus configured)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No or invalid bearer token."},
    403: {"model": Problem, "description": "Kubernetes RBAC does not allow it for the caller."},
    422: {"model": Problem, "description": "Invalid input; field paths in detail."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {**ERRORS, 404: {"model": Problem}}


def problem(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def field_error(error: Any) -> dict[str, str]:
    """A validation error as ``{field, message, type}``, the field in the wire's terms
    (``spec.culling.idleTimeout``, list indices in brackets; for a cross-field rule the field the
    rule names), as the apiserver would name it."""
    path = ""
    for part in error["loc"]:
        if part == "body" and not path:
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    ctx = error.get("ctx") or {}
    if error["type"] == "cel_rule" and ctx.get("field_path"):
        path += str(ctx["field_path"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "Required value"
    elif error["type"] == "extra_forbidden":
        message = "unknown field"
    return {"field": path, "message": message, "type": str(error["type"])}


def apiserver_problem(err: ApiserverError) -> JSONResponse:
    """The apiserver's refusal, passed on: its field causes for 422, its status for the client
    errors, 502 for anything else it failed at."""
    if err.status == 422:
        causes = (err.body.get("details") or {}).get("causes") or []
        detail: Any = [
            {
                "field": c.get("field", ""),
                "message": c.get("message", ""),
                "type": c.get("reason", ""),
            }
            for c in causes
        ] or str(err)
        return problem(422, detail)
    if err.status == 413 or "too large" in str(err):
        return problem(413, f"the object is too large to store: {err}")
    if err.status in (400, 401, 403, 404, 409, 410, 429):
        return problem(err.status, str(err))
    return problem(502, f"the apiserver failed: {err}")


def install(app: FastAPI) -> None:
    """Map each domain error to its answer, once for every route."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return problem(422, [field_error(e) for e in err.errors()])

    @app.exception_handler(UnauthenticatedError)
    async def unauthenticated(_: Request, err: UnauthenticatedError) -> JSONResponse:
        return problem(401, str(err), {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ApiserverError)
    async def refused(_: Request, err: ApiserverError) -> JSONResponse:
        return apiserver_problem(err)

    @app.exception_handler(ProblemError)
    async def answered(_: Request, err: ProblemError) -> JSONResponse:
        return problem(err.status, err.detail)

    @app.exception_handler(httpx.HTTPError)
    async def unreachable(_: Request, err: httpx.HTTPError) -> JSONResponse:
        return problem(503, f"the apiserver cannot be reached: {type(err).__name__}")
