"""Turning validation errors into messages that name the field, as the apiserver does."""

from __future__ import annotations

from pydantic import ValidationError


def field_errors(err: ValidationError, root: str = "spec") -> list[str]:
    """``["spec.culling.idleTimeout: idleTimeout must be at least 5m", ...]``.

    Paths use the wire (camelCase) names, list indices in brackets, and for cross-field rules the
    field the rule names, so the text matches what ``kubectl apply`` would have printed.
    """
    out = []
    for e in err.errors():
        path = root
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        ctx = e.get("ctx") or {}
        if e["type"] == "cel_rule" and ctx.get("field_path"):
            path += str(ctx["field_path"])
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            message = "Required value"
        elif e["type"] == "extra_forbidden":
            message = "unknown field"
        out.append(f"{path}: {message}")
    return out
