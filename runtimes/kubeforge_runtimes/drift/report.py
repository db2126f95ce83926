"""The drift report: one self-contained HTML page (plots inlined as SVG, no scripts) that a
non-specialist can read: a verdict first, then what crossed which threshold in words, a table of
every score, the reference and current distribution of each feature, and the scores over time.

Plots are drawn with matplotlib's object API (no pyplot, no global backend)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.dates
import numpy as np
from matplotlib.figure import Figure

from kubeforge_crds.contracts.drift import FeatureConfig, MonitorConfig
from kubeforge_runtimes.drift import page, text
from kubeforge_runtimes.drift.groundtruth import GroundTruth
from kubeforge_runtimes.drift.monitor import (
    Evaluation,
    Monitor,
    Score,
    score_columns,
    window_rows,
)
from kubeforge_runtimes.drift.page import svg
from kubeforge_runtimes.drift.reference import (
    Summary,
    check_columns,
    infer_features,
    read_table,
    summarise,
)

MEANING = {
    "psi": "how much the share of values per bin moved (0.1 small, 0.2 notable, 0.25+ large)",
    "ks": "the largest gap between the two cumulative distributions (0 to 1)",
    "jensenShannon": "how different the two distributions are (0 same, 1 disjoint)",
    "wasserstein": "how far values moved, in the feature's own units",
    "meanShift": "how far the average moved, in reference standard deviations",
    "outOfRange": "share of values outside the range seen in the reference",
    "chiSquare": "p-value that the categories have the same mix (small means they differ)",
    "unseenCategory": "share of values in categories the reference never had",
    "spd": "favourable-outcome rate of the unprivileged minus the privileged group",
    "dir": "favourable-outcome rate of the unprivileged over the privileged group (1 is parity)",
    "embeddingDrift": "how well a classifier tells current texts from the reference's by their "
    "meaning (ROC AUC: 0.5 alike, 1 apart)",
}
DIRECTION = {"dir": "below", "chiSquare": "below"}
TEXT_KS_NOTABLE = 0.1  # a descriptor whose KS statistic is above this is shown as moved
COLOURS = ("#4C72B0", "#DD8452")


class ReportError(ValueError):
    """The datasets given cannot be compared."""


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "no data"
    if math.isinf(value):
        return "∞"
    return f"{value:.4g}"


def distribution_plot(feature: FeatureConfig, summary: Summary, current: Sequence[Any]) -> str:
    fig = Figure(figsize=(5.2, 2.6))
    ax = fig.subplots()
    if feature.type == "numeric":
        ref = summary.numeric[feature.name].sorted_values
        cur = np.asarray(current, dtype=np.float64)
        cur = cur[~np.isnan(cur)]
        both = np.concatenate([ref, cur]) if cur.size else ref
        bins = np.histogram_bin_edges(both, bins=30).tolist()
        ax.hist(ref, bins=bins, density=True, alpha=0.55, label="reference", color=COLOURS[0])
        if cur.size:
            ax.hist(cur, bins=bins, density=True, alpha=0.55, label="current", color=COLOURS[1])
        ax.set_ylabel("density")
    else:
        cat = summary.categorical[feature.name]
        values, counts = np.unique(
            np.asarray([str(v) for v in current], dtype=object), return_counts=True
        )
        cur_counts = dict(zip(values.tolist(), counts.tolist(), strict=True))
        names = list(cat.categories) + sorted(set(cur_counts) - set(cat.categories))
        ref_share = [
            cat.counts[cat.categories.index(n)] / cat.counts.sum() if n in cat.categories else 0
            for n in names
        ]
        total = max(sum(cur_counts.values()), 1)
        cur_share = [cur_counts.get(n, 0) / total for n in names]
        x = np.arange(len(names))
        ax.bar(x - 0.2, ref_share, 0.4, label="reference", color=COLOURS[0])
        ax.bar(x + 0.2, cur_share, 0.4, label="current", color=COLOURS[1])
        ax.set_xticks(x, [n[:18] for n in names], rotation=30, ha="right")
        ax.set_ylabel("share")
    ax.set_title(feature.name)
    ax.legend(frameon=False)
    return svg(fig)


def text_section(name: str, summary: Summary, current: Sequence[Any]) -> str:
    """A text feature: which descriptors moved, and examples from either side (the current
    texts least like the reference, and the reference's least like the current)."""
    reference = summary.text[name]
    texts = [str(t) for t in current]
    rows = "".join(
        f"<tr class='{'bad' if d['ks'] > TEXT_KS_NOTABLE else ''}'><td>{d['descriptor']}</td>"
        f"<td>{_fmt(d['reference'])}</td><td>{_fmt(d['window'])}</td><td>{_fmt(d['ks'])}</td>"
        "</tr>"
        for d in text.descriptor_shifts(reference, texts)
    )
    examples = text.embedding_drift(reference, texts)

    def quoted(items: list[str]) -> str:
        return "".join(f"<li><q>{html.escape(t)}</q></li>" for t in items) or "<li>none</li>"

    return (
        f"<div class='text'><h3>{html.escape(name)} (text)</h3>"
        "<table><tr><th>descriptor</th><th>reference mean</th><th>current mean</th>"
        f"<th>KS</th></tr>{rows}</table>"
        f"<p>Current texts least like the reference:</p><ul>{quoted(examples.live_like)}</ul>"
        f"<p>Reference texts least like the current:</p><ul>{quoted(examples.reference_like)}"
        "</ul></div>"
    )


def history_plot(history: Sequence[Evaluation], metric: str) -> str | None:
    points: dict[str, list[tuple[float, float]]] = {}
    threshold = None
    for evaluation in history:
        when = matplotlib.dates.date2num(datetime.fromtimestamp(evaluation.time, UTC))  # type: ignore[no-untyped-call]
        for s in evaluation.scores:
            if s.metric == metric and math.isfinite(s.value):
                points.setdefault(s.feature, []).append((when, s.value))
                threshold = s.threshold
    if not points or threshold is None:
        return None
    fig = Figure(figsize=(6.5, 2.6))
    ax = fig.subplots()
    for feature, series in points.items():
        ax.plot([p[0] for p in series], [p[1] for p in series], marker="o", ms=3, label=feature)
    ax.axhline(threshold, color="#C44E52", linestyle="--", label=f"threshold {threshold:g}")
    ax.xaxis_date()
    ax.set_title(f"{metric} over time")
    ax.legend(frameon=False, fontsize=7, ncol=2)
    fig.autofmt_xdate()
    return svg(fig)


def _findings(scores: Iterable[Score]) -> list[str]:
    lines = []
    for s in scores:
        if s.crossed:
            side = DIRECTION.get(s.metric, "above")
            lines.append(
                f"<li><b>{html.escape(s.feature)}</b>: {s.metric} is {_fmt(s.value)}, {side} "
                f"the threshold {s.threshold:g}: {html.escape(MEANING[s.metric])}.</li>"
            )
    return lines


def render(
    title: str,
    subtitle: str,
    features: list[FeatureConfig],
    summary: Summary,
    current: Mapping[str, Sequence[Any]],
    scores: list[Score],
    history: Sequence[Evaluation] = (),
    preamble: str = "",
) -> str:
    """The HTML page (pure apart from drawing); ``preamble`` (HTML) goes before the drift
    findings. Long on purpose: the page's template is one literal, read as the page reads."""
    crossed = [s for s in scores if s.crossed]
    if crossed:
        verdict = (
            f"<p class='bad'>Drift found: {len(crossed)} of {len(scores)} checks crossed their "
            f"threshold, in {len({s.feature for s in crossed})} of {len(features)} features.</p>"
        )
    else:
        verdict = f"<p class='good'>No drift: all {len(scores)} checks are within thresholds.</p>"
    rows = "".join(
        f"<tr class='{'bad' if s.crossed else ''}'><td>{html.escape(s.feature)}</td>"
        f"<td>{s.metric}</td><td>{_fmt(s.value)}</td><td>{DIRECTION.get(s.metric, 'above')} "
        f"{s.threshold:g}</td><td>{'yes' if s.crossed else 'no'}</td>"
        f"<td>{html.escape(MEANING[s.metric])}</td></tr>"
        for s in sorted(scores, key=lambda s: (not s.crossed, s.feature, s.metric))
    )
    plots = "".join(
        text_section(f.name, summary, current[f.name])
        if f.type == "text"
        else f"<div class='plot'>{distribution_plot(f, summary, current[f.name])}</div>"
        for f in features
        if current[f.name]  # an answer feature while the logger sends no responses
    )
    metrics = sorted({s.metric for e in history for s in e.scores})
    over_time = [p for m in metrics if (p := history_plot(history, m))]
    history_html = (
        "".join(f"<div class='plot'>{p}</div>" for p in over_time)
        if over_time
        else "<p>Only one comparison so far: no history to plot.</p>"
    )
    findings = _findings(scores)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1200px; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.9rem; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; }}
tr.bad td {{ background: #fde8e8; }}
p.bad {{ color: #a00; font-size: 1.2rem; font-weight: 600; }}
p.good {{ color: #070; font-size: 1.2rem; font-weight: 600; }}
ul.verdict {{ font-size: 1.1rem; }}
li.bad {{ color: #a00; font-weight: 600; }}
li.good {{ color: #070; }}
.plot {{ display: inline-block; margin: 0.5rem; vertical-align: top; }}
.plot svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>
{preamble}
<h2>Drift of the inputs</h2>
{verdict}
<h2>What crossed which threshold</h2>
{"<ul>" + "".join(findings) + "</ul>" if findings else "<p>Nothing.</p>"}
<h2>All scores</h2>
<table><tr><th>feature</th><th>metric</th><th>value</th><th>alert when</th><th>crossed</th>
<th>what it measures</th></tr>{rows}</table>
<h2>Reference and current distributions</h2>{plots}
<h2>Scores over time</h2>{history_html}
</body></html>
"""


def monitor_report(monitor: Monitor, reference_uri: str, truth: GroundTruth | None = None) -> str:
    """The page of a running monitor: the verdict in words, the model's quality from ground
    truth (with ``truth``), the anomalous requests, then its window (and history) against its
    reference."""
    columns, pairs = monitor.snapshot()
    scores = score_columns(monitor.config, monitor.features, monitor.summary, columns, pairs)
    rows = window_rows(monitor.features, columns)
    cfg = monitor.config
    anomalies = None
    if monitor.anomaly_model is not None:
        anomalies = monitor.anomaly_model.evaluate(*monitor.rows_with_ids())
    preamble = page.verdict(
        scores, cfg.bias is not None, truth.latest if truth else None, anomalies, truth is not None
    )
    if truth is not None:
        preamble += page.quality_section(truth)
    if anomalies is not None:
        preamble += page.anomaly_section(anomalies)
    return render(
        f"Monitor report: {cfg.namespace}/{cfg.name}",
        f"Reference {reference_uri} ({monitor.summary.rows} rows) against the latest {rows} "
        f"inferences, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        monitor.features,
        monitor.summary,
        columns,
        scores,
        list(monitor.history),
        preamble,
    )


@dataclass(frozen=True)
class Comparison:
    """A current dataset scored against a reference dataset (both files)."""

    subtitle: str
    features: list[FeatureConfig]
    summary: Summary
    columns: dict[str, list[Any]]
    scores: list[Score]

    def html(self) -> str:
        return render(
            "Drift report", self.subtitle, self.features, self.summary, self.columns, self.scores
        )

    def crossed(self) -> list[str]:
        """What crossed which threshold, one line each."""
        return [
            f"{s.feature}: {s.metric} {_fmt(s.value)} {DIRECTION.get(s.metric, 'above')} "
            f"{s.threshold:g}"
            for s in self.scores
            if s.crossed
        ]


def compare_files(
    reference: Path,
    current: Path,
    metrics: Mapping[str, float] | None = None,
    features: list[FeatureConfig] | None = None,
) -> Comparison:
    """Score a current dataset against a reference dataset, both files."""
    ref_frame = read_table(str(reference))
    cur_frame = read_table(str(current))
    if not features:
        features, _ = infer_features(ref_frame)
    check_columns(ref_frame, features, str(reference))
    missing = [f.name for f in features if f.name not in cur_frame.columns]
    if missing:
        raise ReportError(
            f"the current dataset {current.name} has no column "
            f"{', '.join(repr(m) for m in missing)} (its columns: "
            f"{', '.join(map(str, cur_frame.columns))})"
        )
    config = MonitorConfig(
        name="report",
        reference_uri=str(reference),
        features=features,
        metrics=dict(metrics)
        if metrics
        else MonitorConfig.model_fields["metrics"].get_default(call_default_factory=True),
    )
    summary = summarise(ref_frame, features)
    columns = {
        f.name: (
            cur_frame[f.name].to_numpy(dtype=np.float64, na_value=np.nan).tolist()
            if f.type == "numeric"
            else [str(v) for v in cur_frame[f.name].dropna()]
        )
        for f in features
    }
    return Comparison(
        subtitle=f"Reference {reference.name} ({len(ref_frame)} rows) against current "
        f"{current.name} ({len(cur_frame)} rows), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        features=features,
        summary=summary,
        columns=columns,
        scores=score_columns(config, features, summary, columns),
    )


def files_report_html(
    reference: Path,
    current: Path,
    metrics: Mapping[str, float] | None = None,
    features: list[FeatureConfig] | None = None,
) -> str:
    """The report of a current dataset against a reference dataset, both files."""
    return compare_files(reference, current, metrics, features).html()
