// Charts, drawn with uPlot (portal/vendor, served from here). A canvas says nothing to a screen
// reader: each chart has its text alternative (the summary under it, and the table it is drawn
// from beside it).
"use strict";

const Charts = (() => {
  const canaryShare = (split) => Number(String(split || "100/0").split("/")[1] || 0);
  // a decision's action, as the chart's legend names it, and its colour
  const OUTCOMES = {
    start: ["started", "#0969da"],
    advance: ["advanced", "#116329"],
    promote: ["promoted", "#0969da"],
    hold: ["held", "#9a6700"],
    rollback: ["rolled back", "#b00020"],
    cancel: ["cancelled", "#57606a"],
  };
  const outcome = (action) => OUTCOMES[action] || [action, "#57606a"];

  // "10% (started) → 25% (advanced) → 0% (rolled back)"
  function rolloutSummary(decisions) {
    return decisions.map((d) => `${canaryShare(d.trafficSplit)}% (${outcome(d.action)[0]})`).join(" → ");
  }

  // A ModelServer's rollout: the canary's share of traffic over time (a step line, drawn on to
  // now), each decision a point coloured by its outcome; ``onPick`` gets the decision under
  // the cursor (its reason and measurements are shown beside the chart).
  function rollout(el, decisions, onPick) {
    const sorted = [...decisions].sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
    el.setAttribute("aria-label", `canary share of traffic over time: ${rolloutSummary(sorted)}`);
    const names = [...new Set(sorted.map((d) => outcome(d.action)[0]))];
    const xs = sorted.map((d) => Date.parse(d.time) / 1000);
    const shares = sorted.map((d) => canaryShare(d.trafficSplit));
    const points = names.map((name) => [...sorted.map((d, i) => (outcome(d.action)[0] === name ? shares[i] : null)), null]);
    const data = [[...xs, Math.max(Date.now() / 1000, xs.at(-1) + 1)], [...shares, shares.at(-1)], ...points];
    const colour = (name) => Object.values(OUTCOMES).find(([n]) => n === name)?.[1] || "#57606a";
    const options = {
      width: Math.max(320, Math.min(el.clientWidth || 720, 900)),
      height: 220,
      scales: { y: { range: [0, 100] } },
      axes: [{}, { label: "canary %" }],
      series: [
        {},
        { label: "canary share", stroke: "#4c72b0", width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } },
        ...names.map((name) => ({ label: name, stroke: colour(name), fill: colour(name), paths: () => null, points: { show: true, size: 10, fill: colour(name) } })),
      ],
      hooks: {
        setCursor: [(u) => {
          const i = u.cursor.idx;
          if (i !== null && i !== undefined && i < sorted.length) onPick(sorted[i]);
        }],
      },
    };
    return new uPlot(options, data, el);
  }

  // A FineTuneJob's training loss by step (status.training.lossCurve), with its held-out loss
  // before and after training (metrics.baseLoss, metrics.loss) as level lines to compare with.
  function lossCurve(el, curve, metrics) {
    const steps = curve.map((p) => p.step);
    const flat = (value) => (value === undefined || value === null ? null : steps.map(() => value));
    const series = [["training loss", curve.map((p) => p.loss), "#4c72b0"], ["held-out loss before", flat(metrics.baseLoss), "#9a6700"], ["held-out loss after", flat(metrics.loss), "#116329"]]
      .filter(([, values]) => values);
    const first = curve[0], last = curve.at(-1);
    el.setAttribute("aria-label", `training loss from ${first.loss} at step ${first.step} to ${last.loss} at step ${last.step}`
      + (metrics.loss !== undefined ? `; held-out loss ${metrics.baseLoss ?? "?"} before, ${metrics.loss} after` : ""));
    const options = {
      width: Math.max(320, Math.min(el.clientWidth || 720, 900)),
      height: 220,
      scales: { x: { time: false } },
      axes: [{ label: "step" }, { label: "loss" }],
      series: [{ label: "step" }, ...series.map(([label, , colour], i) => ({ label, stroke: colour, width: 2, dash: i ? [6, 4] : undefined }))],
    };
    return new uPlot(options, [steps, ...series.map(([, values]) => values)], el);
  }

  // Scores over time against their thresholds (a DriftMonitor's drift evaluations, or its
  // ground truth's quality scorings): each score as a share of its threshold, so that every
  // metric reads on one axis and 1 is the threshold. ``label`` names a score.
  const PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"];
  function overThreshold(el, evaluations, label) {
    const names = [...new Set(evaluations.flatMap((e) => e.scores.map(label)))];
    const ratio = (e, name) => {
      const s = e.scores.find((x) => label(x) === name);
      return s && s.value !== null && s.threshold ? s.value / s.threshold : null;
    };
    const xs = evaluations.map((e) => e.time);
    const data = [xs, xs.map(() => 1), ...names.map((name) => evaluations.map((e) => ratio(e, name)))];
    const last = evaluations.at(-1);
    const crossed = last.scores.filter((s) => s.crossed).map(label);
    el.setAttribute("aria-label", `${evaluations.length} evaluations; the latest has ${crossed.length ? `over their thresholds: ${crossed.join(", ")}` : "every score under its threshold"}`);
    const options = {
      width: Math.max(320, Math.min(el.clientWidth || 720, 900)),
      height: 220,
      axes: [{}, { label: "score / threshold" }],
      series: [{}, { label: "threshold", stroke: "#b00020", dash: [4, 4], width: 1, points: { show: false } },
        ...names.map((name, i) => ({ label: name, stroke: PALETTE[i % PALETTE.length], width: 2 }))],
    };
    return new uPlot(options, data, el);
  }

  return { rollout, rolloutSummary, canaryShare, lossCurve, overThreshold };
})();
