"""Instant queries against Prometheus's HTTP API: one client per operator process, carried by
the reconcile context.

The client is a few lines of httpx on purpose: the Python Prometheus clients on PyPI are either
unmaintained or pull in pandas/matplotlib for what is one GET.
"""

from __future__ import annotations

import httpx


class PrometheusError(Exception):
    """A query that did not give an answer: Prometheus unreachable, or it rejected the query."""


class Prometheus:
    """Instant queries against Prometheus's HTTP API."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str) -> float | None:
        """The single number the query returns; None when it returns no sample."""
        try:
            response = httpx.get(
                f"{self.url}/api/v1/query", params={"query": promql}, timeout=self.timeout
            )
        except httpx.HTTPError as err:
            raise PrometheusError(f"Prometheus at {self.url} unreachable: {err}") from err
        try:
            body = response.json()
        except ValueError as err:
            raise PrometheusError(f"HTTP {response.status_code} from {self.url}") from err
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType', 'error')}: {body.get('error', '')}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return float(data["result"][1])
        result = data["result"]
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(
                f"the query returned {len(result)} series; aggregate it to one number"
            )
        return float(result[0]["value"][1])

    def check(self, promql: str) -> str | None:
        """Prometheus's parse error for ``promql``, or None when it parses."""
        try:
            response = httpx.get(
                f"{self.url}/api/v1/format_query", params={"query": promql}, timeout=self.timeout
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as err:
            raise PrometheusError(f"Prometheus at {self.url} unreachable: {err}") from err
        if body.get("status") == "success":
            return None
        return str(body.get("error", "invalid query"))
