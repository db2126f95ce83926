"""The monitor's page for people (``GET /report``, and the portal through the REST API): the
verdict in words first (inputs, fairness, answers, strange requests), then the model's quality
over time from ground truth, the anomalous requests with their reasons, and the drift report's
scores and plots. Everything from a request or a label is escaped."""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import matplotlib
import matplotlib.dates
from matplotlib.figure import Figure

from kubeforge_crds.contracts.drift import BIAS_METRICS
from kubeforge_runtimes.drift.anomaly import AnomalyResult
from kubeforge_runtimes.drift.groundtruth import GroundTruth, Quality
from kubeforge_runtimes.drift.monitor import Score

WORSE = {"mae": "above", "rmse": "above"}  # the other quality metrics are bad below


def verdict(
    scores: Sequence[Score],
    bias_configured: bool,
    quality: Quality | None,
    anomalies: AnomalyResult | None,
    truth_configured: bool,
) -> str:
    """One sentence per question a reader has, most serious first."""
    items = []
    if truth_configured:
        items.append(_quality_sentence(quality))
    drifted = [s for s in scores if s.crossed and s.metric not in BIAS_METRICS]
    if drifted:
        moved = sorted({s.feature for s in drifted})
        items.append(
            f"<li class='bad'>The inputs moved: {len(moved)} feature(s) no longer look like "
            f"the training data ({html.escape(', '.join(moved))}).</li>"
        )
    else:
        items.append("<li class='good'>The inputs look like the training data.</li>")
    if bias_configured:
        biased = [s for s in scores if s.crossed and s.metric in BIAS_METRICS]
        items.append(
            "<li class='bad'>The favourable outcome is unevenly shared between the groups "
            f"({', '.join(f'{s.metric} {s.value:.3g}' for s in biased)}).</li>"
            if biased
            else "<li class='good'>The favourable outcome is shared evenly enough between the "
            "groups.</li>"
        )
    if anomalies is not None:
        share = f"{anomalies.rate:.1%} of the latest {anomalies.rows} requests"
        items.append(
            f"<li class='bad'>{share} look like nothing in the training data (more than "
            f"{anomalies.threshold:.1%}).</li>"
            if anomalies.detected
            else f"<li class='good'>{share} look unusual, within {anomalies.threshold:.1%}.</li>"
        )
    return "<h2>In short</h2><ul class='verdict'>" + "".join(items) + "</ul>"


def _quality_sentence(quality: Quality | None) -> str:
    if quality is None:
        return "<li>The answers' quality has not been scored yet.</li>"
    if not quality.sufficient:
        return (
            f"<li>Not enough true outcomes yet to judge the answers: {quality.labels} labelled "
            f"predictions, {quality.min_labels} needed.</li>"
        )
    bad = [s for s in quality.scores if s.crossed]
    if not bad:
        return (
            "<li class='good'>The answers are as good as required over the latest "
            f"{quality.labels} labelled predictions.</li>"
        )
    worst = "; ".join(
        f"{s.metric} {s.value:.3g} is {WORSE.get(s.metric, 'below')} {s.threshold:g}" for s in bad
    )
    return (
        f"<li class='bad'>The answers got worse: {worst} over the latest {quality.labels} "
        "labelled predictions.</li>"
    )


def quality_section(truth: GroundTruth) -> str:
    latest = truth.latest
    if latest is None:
        return "<h2>Model quality</h2><p>Not scored yet.</p>"
    rows = "".join(
        f"<tr class='{'bad' if s.crossed else ''}'><td>{s.metric}</td><td>{s.value:.4g}</td>"
        f"<td>{WORSE.get(s.metric, 'below')} {s.threshold:g}</td></tr>"
        for s in latest.scores
    )
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in truth.counts.items())
    plot = quality_plot(list(truth.history))
    return (
        "<h2>Model quality (from the true outcomes)</h2>"
        f"<p>{latest.labels} labelled predictions in the window ({latest.min_labels} needed); "
        f"labels received: {counts}.</p>"
        "<table><tr><th>metric</th><th>value</th><th>alert when</th></tr>"
        f"{rows}</table>{plot or ''}"
    )


def svg(fig: Figure) -> str:
    """A matplotlib figure as inline SVG."""
    buf = io.StringIO()
    # text stays text: smaller pages, searchable
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def quality_plot(history: Sequence[Quality]) -> str | None:
    series: dict[str, list[tuple[float, float]]] = {}
    thresholds: dict[str, float] = {}
    for q in history:
        when = matplotlib.dates.date2num(datetime.fromtimestamp(q.time, UTC))  # type: ignore[no-untyped-call]
        for s in q.scores:
            if math.isfinite(s.value):
                series.setdefault(s.metric, []).append((when, s.value))
                thresholds[s.metric] = s.threshold
    if not series:
        return None
    fig = Figure(figsize=(6.5, 2.6))
    ax = fig.subplots()
    for metric, points in series.items():
        line = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3)
        ax.axhline(thresholds[metric], color=line[0].get_color(), linestyle="--", lw=0.8)
        line[0].set_label(f"{metric} (threshold {thresholds[metric]:g})")
    ax.xaxis_date()
    ax.set_title("quality over time")
    ax.legend(frameon=False, fontsize=7)
    fig.autofmt_xdate()
    return f"<div class='plot'>{svg(fig)}</div>"


def anomaly_section(found: AnomalyResult) -> str:
    rows = "".join(
        f"<tr><td>{t['score']:.3f}</td><td>{html.escape('; '.join(t['reasons']))}</td>"
        f"<td><code>{html.escape(t['request'])}</code></td>"
        f"<td><code>{html.escape(str(t.get('id', '')))}</code></td></tr>"
        for t in found.top
    )
    return (
        "<h2>Anomalous requests</h2>"
        f"<p>{found.anomalous} of the latest {found.rows} requests ({found.rate:.1%}) are "
        f"stranger than the cut-off learnt from the reference (alert above "
        f"{found.threshold:.1%}).</p>"
        + (
            "<table><tr><th>score</th><th>why</th><th>request</th><th>inference id</th></tr>"
            + rows
            + "</table>"
            if rows
            else ""
        )
    )
