"""What the canary analysis asks Prometheus, and asking it.

The queries read the built-in runtime's metrics (``kubeforge_runtimes.server``), which carry the
ModelServer's namespace, name (``model``) and the revision the operator gave each predictor, so
the canary and the stable version are told apart by label, wherever they run.

- errorRate: share of 5xx responses over the window;
- latencyP95: the 95th percentile of request latency over the window, from the histogram;
- promql: the user's template with ``{{namespace}}``, ``{{name}}``, ``{{revision}}`` and
  ``{{window}}`` substituted; it must return one number.

No traffic gives NaN (0/0), which the analysis treats as no data, never as a pass.

The HTTP API client is a few lines of httpx on purpose: the Python Prometheus clients on PyPI are
either unmaintained or pull in pandas/matplotlib for what is one GET.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import httpx

from kubeforge_crds.modelserver import AnalysisMetric, MetricType
from kubeforge_operator.modelserver.canary import Measurement

REQUESTS = "kubeforge_inference_requests_total"
DURATION = "kubeforge_inference_request_duration_seconds_bucket"


class PrometheusError(Exception):
    """A query that did not give an answer: Prometheus unreachable, or it rejected the query."""


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str
    canary: str  # revision label of the canary
    stable: str  # revision label of the stable version


def window(interval_seconds: float, scrape_seconds: float) -> str:
    """The range of rate(): one analysis interval, but at least four scrapes so that rate()
    always has samples to work with."""
    return f"{max(math.ceil(interval_seconds), math.ceil(4 * scrape_seconds))}s"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _selector(namespace: str, name: str, revision: str, extra: str = "") -> str:
    labels = f'namespace="{_quote(namespace)}",model="{_quote(name)}",revision="{_quote(revision)}"'
    return "{" + labels + extra + "}"


def render_template(template: str, namespace: str, name: str, revision: str, win: str) -> str:
    values = {"namespace": namespace, "name": name, "revision": revision, "window": win}
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values.get(m.group(1), m.group(0)), template)


def metric_query(metric: AnalysisMetric, namespace: str, name: str, revision: str, win: str) -> str:
    if metric.type == MetricType.ERROR_RATE:
        errors = _selector(namespace, name, revision, ',code=~"5.."')
        total = _selector(namespace, name, revision)
        return (
            f"(sum(rate({REQUESTS}{errors}[{win}])) or vector(0)) / "
            f"sum(rate({REQUESTS}{total}[{win}]))"
        )
    if metric.type == MetricType.LATENCY_P95:
        sel = _selector(namespace, name, revision)
        return f"histogram_quantile(0.95, sum by (le) (rate({DURATION}{sel}[{win}])))"
    assert metric.query is not None  # the model's rule: promql needs a query
    return render_template(metric.query, namespace, name, revision, win)


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

    def measure(
        self, metrics: list[AnalysisMetric], target: Target, win: str
    ) -> dict[str, Measurement]:
        """Canary and stable values of each metric (the stable one only where a relative check
        needs it). A failed query becomes the measurement's error, never an exception."""
        out: dict[str, Measurement] = {}
        for metric in metrics:
            try:
                canary = self.query(
                    metric_query(metric, target.namespace, target.name, target.canary, win)
                )
                stable = None
                if metric.relative_to_stable:
                    stable = self.query(
                        metric_query(metric, target.namespace, target.name, target.stable, win)
                    )
            except PrometheusError as err:
                out[metric.name] = Measurement(error=str(err))
                continue
            out[metric.name] = Measurement(canary=canary, stable=stable)
        return out
