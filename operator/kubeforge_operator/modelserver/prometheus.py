"""What the canary analysis asks Prometheus, and asking it.

The queries read the built-in runtime's metrics (``kubeforge_runtimes.server``), which carry the
ModelServer's namespace, name (``model``) and the revision the operator gave each predictor, so
the canary and the stable version are told apart by label, wherever they run; and the adapter a
request named (``adapter``), so that a rollout that changes adapters alone is judged on their
requests (``Target.adapters``, ``analysis.judged_adapters``).

- errorRate: share of 5xx responses over the window;
- latencyP95: the 95th percentile of request latency over the window, from the histogram;
- timeToFirstTokenP95 / interTokenLatencyP95: the same of vLLM's token histograms (the runtime's
  OpenAI-compatible API exports them with ``model_name`` where the others have ``model``);
- generationThroughput: tokens generated per second that requests ran (vLLM's generation token
  counter over the sum of its end-to-end latency histogram): the speed a client sees, whatever
  share of the traffic the revision gets;
- promql: the user's template with ``{{namespace}}``, ``{{name}}``, ``{{revision}}``,
  ``{{window}}`` and ``{{adapters}}`` (a regex of the judged adapters, ``.*`` for every request)
  substituted, then confined to the ModelServer's namespace (``runtime.promql``:
  every selector gets ``namespace="<ns>"``; one naming another namespace is refused); it must
  return one number.

No traffic gives NaN (0/0), which the analysis treats as no data, never as a pass. The HTTP
client is ``runtime.prometheus``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from kubeforge_crds.contracts.serving import DURATION_BUCKET_METRIC as DURATION
from kubeforge_crds.contracts.serving import (
    E2E_METRIC,
    GENERATION_TOKENS_METRIC,
    ITL_METRIC,
    TTFT_METRIC,
)
from kubeforge_crds.contracts.serving import REQUESTS_METRIC as REQUESTS
from kubeforge_crds.modelserver import AnalysisMetric, MetricType
from kubeforge_operator.modelserver.canary import Measurement
from kubeforge_operator.runtime.prometheus import Prometheus, PrometheusError
from kubeforge_operator.runtime.promql import confine


@dataclass(frozen=True)
class Series:
    """The requests a query selects: one revision of a ModelServer, and of those only the
    requests to ``adapters`` (the ``adapter`` label) when any are given."""

    namespace: str
    name: str
    revision: str
    adapters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str
    canary: str  # revision label of the canary
    stable: str  # revision label of the stable version
    # only the requests to these adapters (the ``adapter`` label) count; empty: every request
    adapters: tuple[str, ...] = ()

    def series(self, revision: str) -> Series:
        return Series(self.namespace, self.name, revision, self.adapters)


def window(interval_seconds: float, scrape_seconds: float) -> str:
    """The range of rate(): one analysis interval, but at least four scrapes so that rate()
    always has samples to work with."""
    return f"{max(math.ceil(interval_seconds), math.ceil(4 * scrape_seconds))}s"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def adapters_regex(adapters: tuple[str, ...]) -> str:
    """A label regex matching exactly ``adapters`` (``.*``, every value and none, if empty)."""
    return "|".join(re.escape(a) for a in adapters) if adapters else ".*"


def _selector(series: Series, extra: str = "", model_label: str = "model") -> str:
    labels = (
        f'namespace="{_quote(series.namespace)}",{model_label}="{_quote(series.name)}",'
        f'revision="{_quote(series.revision)}"'
    )
    if series.adapters:
        labels += f',adapter=~"{_quote(adapters_regex(series.adapters))}"'
    return "{" + labels + extra + "}"


TOKEN_HISTOGRAMS = {
    MetricType.TIME_TO_FIRST_TOKEN_P95: TTFT_METRIC,
    MetricType.INTER_TOKEN_LATENCY_P95: ITL_METRIC,
}


def _vllm(name: str, sel: str) -> str:
    """A selector of vLLM's metric ``name`` (its colon, which a Prometheus 3 scrape may store
    as an underscore: either is matched) with the labels of ``sel``."""
    pattern = re.escape(name).replace(":", "[:_]")
    return "{" + f'__name__=~"{pattern}",' + sel[1:]


def render_template(template: str, series: Series, win: str) -> str:
    values = {
        "namespace": series.namespace,
        "name": series.name,
        "revision": series.revision,
        "window": win,
        "adapters": _quote(adapters_regex(series.adapters)),
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values.get(m.group(1), m.group(0)), template)


def checked_query(template: str, namespace: str) -> str:
    """A promql gate's template as admission and the check before a rollout see it: rendered
    for a placeholder revision (every adapter), confined to ``namespace`` (PromQLError if it
    cannot be)."""
    return confine(render_template(template, Series(namespace, "name", "r0"), "1m"), namespace)


def metric_query(metric: AnalysisMetric, series: Series, win: str) -> str:
    """The query of ``metric`` over ``series``'s requests in the last ``win``."""
    if metric.type == MetricType.ERROR_RATE:
        errors, total = _selector(series, ',code=~"5.."'), _selector(series)
        return (
            f"(sum(rate({REQUESTS}{errors}[{win}])) or vector(0)) / "
            f"sum(rate({REQUESTS}{total}[{win}]))"
        )
    if metric.type == MetricType.LATENCY_P95:
        sel = _selector(series)
        return f"histogram_quantile(0.95, sum by (le) (rate({DURATION}{sel}[{win}])))"
    if metric.type in TOKEN_HISTOGRAMS:
        sel = _selector(series, model_label="model_name")
        bucket = _vllm(f"{TOKEN_HISTOGRAMS[metric.type]}_bucket", sel)
        return f"histogram_quantile(0.95, sum by (le) (rate({bucket}[{win}])))"
    if metric.type == MetricType.GENERATION_THROUGHPUT:
        sel = _selector(series, model_label="model_name")
        tokens, seconds = _vllm(GENERATION_TOKENS_METRIC, sel), _vllm(f"{E2E_METRIC}_sum", sel)
        return f"sum(rate({tokens}[{win}])) / sum(rate({seconds}[{win}]))"
    assert metric.query is not None  # the model's rule: promql needs a query
    # the user's template, confined to the ModelServer's namespace (PromQLError if it cannot be)
    return confine(render_template(metric.query, series, win), series.namespace)


def adapters_unlabelled(client: Prometheus, series: Series) -> bool:
    """Whether ``series``'s revision is scraped but has no request series of some of its
    adapters. kubeforge's runtime makes one for each adapter it serves when it starts, so such a
    stable predictor runs a runtime from before the ``adapter`` label (an operator upgrade under
    way), and gates on those adapters' requests would see no stable data. Not scraped yet, or
    Prometheus not answering, is no evidence of that: False."""
    every = Series(series.namespace, series.name, series.revision)
    try:
        found = client.query(f"count(count by (adapter) ({REQUESTS}{_selector(series)}))")
        if found is not None and found >= len(series.adapters):
            return False
        return bool(client.query(f"count({REQUESTS}{_selector(every)})"))
    except PrometheusError:
        return False


class PrometheusMeasurer:
    """Measures a rollout's metrics with a Prometheus client (the ``analysis.Measurer`` that
    the operator uses; the process labs and the benchmark use it too)."""

    def __init__(self, client: Prometheus) -> None:
        self.client = client

    def measure(
        self, metrics: list[AnalysisMetric], target: Target, win: str
    ) -> dict[str, Measurement]:
        """Canary and stable values of each metric (the stable one only where a relative check
        needs it). A failed query becomes the measurement's error, never an exception."""
        out: dict[str, Measurement] = {}
        for metric in metrics:
            try:
                canary = self.client.query(metric_query(metric, target.series(target.canary), win))
                stable = None
                if metric.relative_to_stable:
                    query = metric_query(metric, target.series(target.stable), win)
                    stable = self.client.query(query)
            except PrometheusError as err:
                out[metric.name] = Measurement(error=str(err))
                continue
            out[metric.name] = Measurement(canary=canary, stable=stable)
        return out
