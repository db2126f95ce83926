"""User-supplied PromQL, confined to the object's own namespace, the way prom-label-proxy
enforces a label: the query is parsed with a real PromQL parser (``promql-parser``, Prometheus's
grammar), every series selector (in ranges, subqueries and ``or`` groups too) gets
``namespace="<ns>"``, and a selector that names another namespace is refused. The operator runs
these queries with its own identity and writes their values into the object's status, which the
object's owner reads, so an unconfined query would read another team's series.

The rewritten query is parsed once more and checked: every selector it holds is confined, and it
prints back to itself. A query whose text does not survive the round trip (the parser prints
string values without escaping them) is refused rather than sent.
"""

from __future__ import annotations

import promql_parser as promql

from kubeforge_operator.runtime.prometheus import PrometheusError

LABEL = "namespace"


class PromQLError(PrometheusError):
    """A query that is not valid PromQL, or that reads outside its namespace."""


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# MatchOp values are not hashable: looked up by their names
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def _matcher(m: promql.Matcher) -> str:
    return f"{m.name}{_OPS[str(m.op)]}{_quote(str(m.value))}"


def _check_group(group: list[promql.Matcher], namespace: str) -> None:
    for m in group:
        if m.name == LABEL and not (m.op == promql.MatchOp.Equal and m.value == namespace):
            raise PromQLError(
                f"it selects {_matcher(m)}; a query reads only its own namespace ({namespace}): "
                f"drop the {LABEL} matcher (it is added) or use {LABEL}={_quote(namespace)}"
            )


def _confined_selector(node: promql.VectorSelector, namespace: str) -> promql.Expr:
    groups = node.matchers.or_matchers or [node.matchers.matchers]
    rendered = []
    for group in groups:
        _check_group(group, namespace)
        kept = [_matcher(m) for m in group if m.name != LABEL]
        rendered.append(", ".join([*kept, f"{LABEL}={_quote(namespace)}"]))
    text = (node.name or "") + "{" + " or ".join(rendered) + "}"
    if node.offset is not None:
        text += f" offset {_duration(node.offset.total_seconds())}"
    if node.at is not None:
        text += f" {node.at}"
    return promql.parse(text)


def _duration(seconds: float) -> str:
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    return f"{sign}{round(seconds * 1000)}ms"


def _selectors(expr: promql.Expr) -> list[promql.VectorSelector]:
    found: list[promql.VectorSelector] = []

    def visit(node: promql.Expr) -> None:
        if isinstance(node, promql.VectorSelector):
            found.append(node)

    promql.walk(expr, visit)
    return found


def confine(query: str, namespace: str) -> str:
    """``query`` with every series selector confined to ``namespace``; PromQLError says why a
    query cannot be."""
    try:
        expr = promql.parse(query)
    except ValueError as err:
        raise PromQLError(f"not valid PromQL (parse error: {err})") from None
    confined = promql.transform(
        expr,
        lambda node: (
            _confined_selector(node, namespace) if isinstance(node, promql.VectorSelector) else None
        ),
    )
    text = str(confined)
    try:
        again = promql.parse(text)
    except ValueError as err:
        raise PromQLError(f"cannot be confined safely: {err}") from None
    if str(again) != text:
        raise PromQLError("cannot be confined safely: it does not print back to itself")
    for selector in _selectors(again):
        for group in selector.matchers.or_matchers or [selector.matchers.matchers]:
            _check_group(group, namespace)
            if not any(m.name == LABEL for m in group):
                raise PromQLError("cannot be confined safely: a selector escapes the namespace")
    return text
