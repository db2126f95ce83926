// kubeforge portal: plain JavaScript over the REST API (no build step). The token stays in this
// tab's sessionStorage and goes with every request; the API acts as its owner.
"use strict";

const state = { token: sessionStorage.getItem("kubeforge-token") || "", tab: "workbenches", selected: null, schemas: {}, chart: null, lossChart: null, driftCharts: [] };
const $ = (sel) => document.querySelector(sel);
const ns = () => $("#namespace").value.trim();

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(typeof data.detail === "string" ? data.detail : `HTTP ${res.status}`);
    err.status = res.status;
    err.detail = data.detail;
    throw err;
  }
  return data;
}

function condition(obj, type) {
  return ((obj.status || {}).conditions || []).find((c) => c.type === type) || {};
}

// markup built here from escaped parts; every other cell value is escaped when it is rendered
const html = (markup) => ({ html: markup });
const cell = (value) => (value && value.html !== undefined ? value.html : esc(value));

function readyCell(obj) {
  const c = condition(obj, "Ready");
  return html(`<span class="${esc(c.status)}" title="${esc(c.message)}">${esc(c.status || "?")}</span> ${esc(c.reason || "")}`);
}

const KINDS = ["workbenches", "finetunejobs", "modelservers", "driftmonitors"];
const base = () => `/api/v1/namespaces/${encodeURIComponent(ns())}`;

// what can be done to any object from its row; a Workbench's notebook and start/stop first
function actions(plural, o) {
  const name = esc(o.metadata.name), ref = `${plural}/${name}`;
  const own = {
    workbenches: () => (o.status?.url ? `<a href="${esc(o.status.url)}" target="_blank" rel="noopener noreferrer">open</a> ` : "")
      + `<button data-stop="${name}">${o.spec?.stopped ? "start" : "stop"}</button>`,
    finetunejobs: () => `<button data-training="${name}">training</button>`,
    modelservers: () => `<button data-show="${name}">rollout and drift</button>`,
    driftmonitors: () => `<button data-report="${name}">report</button>`,
  }[plural];
  const edit = state.schemas[plural]?.mutable ? `<button data-edit="${ref}">edit</button>` : "";
  return html(`${own ? own() : ""} ${edit} <button data-yaml="${ref}">YAML</button> <button data-events="${ref}">events</button> <button data-logs="${ref}">logs</button> <button data-delete="${ref}">delete</button>`);
}

// when an idle Workbench will be stopped: its idle timeout after its last activity
function activity(o) {
  const last = o.status?.lastActivity;
  if (!last) return "";
  const culling = o.spec?.culling || {};
  const m = /^(\d+)(s|m|h)$/.exec(culling.idleTimeout || "");
  if (culling.enabled === false || !m || o.spec?.stopped) return `last ${last}`;
  const left = Date.parse(last) + Number(m[1]) * { s: 1e3, m: 6e4, h: 3.6e6 }[m[2]] - Date.now();
  return `last ${last}; ${left > 0 ? `stopped if idle ${Math.ceil(left / 6e4)} min more` : "idle: being stopped"}`;
}

const rows = {
  workbenches: (o) => [o.metadata.name, o.status?.phase, readyCell(o), o.status?.gpus ?? 0, o.spec?.storage?.size || "", activity(o), actions("workbenches", o)],
  finetunejobs: (o) => [o.metadata.name, o.status?.phase, readyCell(o), o.status?.gpus ?? 0, o.status?.model ? `${o.status.model.name} ${o.status.model.version}` : "", actions("finetunejobs", o)],
  modelservers: (o) => [o.metadata.name, o.status?.phase, readyCell(o), o.status?.trafficSplit || "", actions("modelservers", o)],
  driftmonitors: (o) => [o.metadata.name, o.status?.phase, readyCell(o), `${condition(o, "DriftDetected").status || ""} ${condition(o, "DriftDetected").message || ""}`, o.spec?.target?.modelServer, actions("driftmonitors", o)],
};

// the forms, made once per sign-in from the kinds' schemas
async function loadForms() {
  await Promise.all(KINDS.map(async (plural) => {
    if (state.schemas[plural]) return;
    state.schemas[plural] = await api("GET", `/api/v1/schemas/${plural}`);
    $(`#form-${plural}`).innerHTML = Forms.build(state.schemas[plural]);
  }));
}

function editing(form, obj) {
  const name = obj ? obj.metadata.name : "";
  form.dataset.editing = name;
  // the spec's version: a change of the spec since answers 409, the operator's status writes not
  form.dataset.generation = obj ? String(obj.metadata.generation) : "";
  form.querySelector('[data-path="metadata.name"]').readOnly = Boolean(obj);
  form.querySelector(".form-title").textContent = obj ? `Edit ${obj.kind} ${name}` : `New ${state.schemas[form.dataset.plural].kind}`;
  form.querySelector(".form-submit").textContent = obj ? "Save" : "Create";
  form.querySelector(".form-cancel").hidden = !obj;
  if (obj) Forms.fill(form, obj);
  else { form.reset(); Forms.clearErrors(form); }
}

async function submitForm(form) {
  const body = Forms.collect(form);
  if (!body) return;
  const plural = form.dataset.plural, name = form.dataset.editing;
  try {
    if (name) {
      const metadata = { name, generation: Number(form.dataset.generation) };
      await api("PUT", `${base()}/${plural}/${encodeURIComponent(name)}`, { metadata, spec: body.spec });
    } else {
      await api("POST", `${base()}/${plural}`, body);
    }
    editing(form, null);
    detail(plural, `<p role="status">${esc(name ? `saved ${name}` : `created ${body.metadata.name}`)}</p>`);
    refresh();
  } catch (err) {
    Forms.showErrors(form, err.detail, err.message);
  }
}

const detail = (plural, markup) => { $(`#detail-${plural}`).innerHTML = markup; };

async function showEvents(ref) {
  const [plural, name] = ref.split("/");
  const data = await api("GET", `${base()}/${ref}/events`);
  const items = data.items.sort((a, b) => String(a.lastTimestamp || a.eventTime).localeCompare(String(b.lastTimestamp || b.eventTime)));
  detail(plural, `<h2>Events of ${esc(name)}</h2><table data-testid="events"><thead><tr><th>last seen</th><th>type</th><th>reason</th><th>count</th><th>message</th></tr></thead><tbody>`
    + (items.map((e) => `<tr><td>${esc(e.lastTimestamp || e.eventTime)}</td><td>${esc(e.type)}</td><td>${esc(e.reason)}</td><td>${esc(e.count ?? 1)}</td><td>${esc(e.message)}</td></tr>`).join("") || "<tr><td colspan=5>No Events (the apiserver keeps them for an hour).</td></tr>")
    + "</tbody></table>");
}

async function showLogs(ref) {
  const [plural, name] = ref.split("/");
  const data = await api("GET", `${base()}/${ref}/logs?lines=200`);
  detail(plural, `<h2>Logs of ${esc(name)}'s pods</h2><div data-testid="logs">`
    + (data.items.map((c) => `<h3>${esc(c.pod)} / ${esc(c.container)} (${esc(c.phase || "?")})</h3>${c.problem ? `<p class="error">${esc(c.problem)}</p>` : ""}<pre tabindex="0">${esc(c.text)}</pre>`).join("") || "<p>No pods.</p>")
    + "</div>");
}

async function showYaml(ref) {
  const [plural, name] = ref.split("/");
  const res = await fetch(`${base()}/${ref}/manifest`, { headers: { Authorization: `Bearer ${state.token}` } });
  if (!res.ok) throw new Error((await res.json().catch(() => ({}))).detail || `HTTP ${res.status}`);
  const text = await res.text();
  const file = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "")?.[1] || `${name}.yaml`;
  const href = URL.createObjectURL(new Blob([text], { type: "application/yaml" }));
  detail(plural, `<h2>${esc(name)} as YAML (for Git and kubectl apply)</h2><p><a href="${href}" download="${esc(file)}" data-testid="yaml-download">download ${esc(file)}</a></p><pre tabindex="0" data-testid="yaml">${esc(text)}</pre>`);
}

// a FineTuneJob's loss curve, and its lineage as a chain: dataset → run → version → servers
async function showTraining(name) {
  const [ftj, cat] = await Promise.all([api("GET", `${base()}/finetunejobs/${encodeURIComponent(name)}`), api("GET", `${base()}/catalog`)]);
  const status = ftj.status || {}, curve = status.training?.lossCurve || [];
  const served = (cat.models.find((m) => m.name === name) || {}).servedBy || [];
  const steps = [
    ["dataset", `${ftj.spec.dataset.uri}${status.datasetDigest ? ` (sha256 ${status.datasetDigest.slice(0, 12)}…)` : ""}`],
    ["base model", ftj.spec.baseModel.uri],
    ["run", `${status.runId || "not started"}${status.training?.steps ? `, ${status.training.steps} steps` : ""}`],
    ["model version", status.model ? `${status.model.name} ${status.model.version} (${status.model.uri})` : "not registered yet"],
    ["served by", served.length ? served.join(", ") : "no ModelServer"],
  ];
  state.lossChart?.destroy();
  state.lossChart = null;
  detail("finetunejobs", `<h2>Training of ${esc(name)}</h2>`
    + (curve.length ? `<figure class="chart"><div id="loss-chart" role="img" data-testid="loss-chart"></div><figcaption data-testid="loss-summary">training loss ${esc(curve[0].loss)} at step ${esc(curve[0].step)} → ${esc(curve.at(-1).loss)} at step ${esc(curve.at(-1).step)}${status.metrics?.loss !== undefined ? `; held-out loss ${esc(status.metrics.baseLoss ?? "?")} before, ${esc(status.metrics.loss)} after` : ""}</figcaption></figure>` : "<p>No loss logged yet.</p>")
    + `<h3>Lineage</h3><ol class="lineage" data-testid="lineage">${steps.map(([k, v]) => `<li><strong>${esc(k)}</strong> ${esc(v)}</li>`).join("")}</ol>`);
  if (curve.length) state.lossChart = Charts.lossCurve($("#loss-chart"), curve, status.metrics || {});
}

async function toggleStopped(name) {
  const path = `${base()}/workbenches/${encodeURIComponent(name)}`;
  const wb = await api("GET", path);
  const spec = { ...wb.spec, stopped: !wb.spec.stopped };
  // based on the spec as read: the operator's status writes in between (it is Stopping or
  // Starting) are no conflict, another change of the spec is
  await api("PUT", path, { metadata: { name, generation: wb.metadata.generation }, spec });
  refresh();
}

async function startEdit(ref) {
  const [plural] = ref.split("/");
  const obj = await api("GET", `${base()}/${ref}`);
  const form = $(`#form-${plural} form`);
  editing(form, obj);
  form.scrollIntoView();
  form.querySelector("[data-path]:not([readonly])")?.focus();
}

// the monitor's page comes from its drift service through the API (it needs the token, so it
// is fetched, not linked) and is shown in a sandboxed frame: no script of it runs
async function showReport(name) {
  const res = await fetch(`/api/v1/namespaces/${encodeURIComponent(ns())}/driftmonitors/${encodeURIComponent(name)}/report`, {
    headers: { Authorization: `Bearer ${state.token}` },
  });
  if (!res.ok) {
    const data = await res.json().catch(() => ({}));
    throw new Error(typeof data.detail === "string" ? data.detail : `HTTP ${res.status}`);
  }
  const frame = $("#monitor-report");
  frame.srcdoc = await res.text();
  frame.hidden = false;
  showHistory(name).catch((err) => { $("#drift-history").textContent = err.message; });
  showExplainForm(name).catch((err) => { $("#error").textContent = err.message; });
}

// drift and quality over time, from the monitor's drift service, against their thresholds
async function showHistory(name) {
  const data = await api("GET", `${base()}/driftmonitors/${encodeURIComponent(name)}/history`);
  state.driftCharts.forEach((c) => c.destroy());
  state.driftCharts = [];
  const parts = [["drift", data.drift, (s) => `${s.feature} ${s.metric}`], ["quality", data.quality.filter((q) => q.sufficient), (s) => s.metric]]
    .filter(([, evaluations]) => evaluations.length);
  $("#drift-history").innerHTML = `<h2>${esc(name)} over time</h2>` + (parts.map(([kind, evaluations]) => `<figure class="chart"><div id="history-${kind}" role="img" data-testid="history-${kind}"></div>`
    + `<figcaption data-testid="history-${kind}-summary">${esc(kind)}: ${esc(evaluations.length)} evaluation${evaluations.length === 1 ? "" : "s"}, each score as a share of its threshold (1: the threshold)</figcaption></figure>`).join("") || "<p>No evaluation yet.</p>");
  for (const [kind, evaluations, label] of parts) state.driftCharts.push(Charts.overThreshold($(`#history-${kind}`), evaluations, label));
}

// explanations of logged requests: any inference id, or one of the monitor's anomalous requests
async function showExplainForm(name) {
  const monitor = await api("GET", `/api/v1/namespaces/${encodeURIComponent(ns())}/driftmonitors/${encodeURIComponent(name)}`);
  const form = $("#explain-form");
  form.dataset.monitor = name;
  $("#explain-monitor").textContent = `(${name} → ${monitor.spec?.target?.modelServer || "?"})`;
  $("#explain-anomalous").innerHTML = ((monitor.status?.anomalies?.top) || [])
    .filter((t) => t.id)
    .map((t) => `<li>${esc((t.reasons || []).join("; "))} <button type="button" data-explain="${esc(t.id)}" data-instance="${esc(t.instance ?? "")}">explain ${esc(t.id)}${t.instance ? ` #${esc(t.instance)}` : ""}</button></li>`)
    .join("");
  $("#explanation").innerHTML = "";
  form.hidden = false;
}

// the portal's CSP allows no inline style: the size of each contribution is a <meter>
function contributionRows(attributions) {
  const largest = Math.max(...attributions.map((a) => Math.abs(a.contribution)), 1e-12);
  return attributions.map((a) => {
    const way = a.contribution > 0 ? "raised it" : a.contribution < 0 ? "lowered it" : "no effect";
    return `<tr><td>${esc(a.feature ?? a.token)}</td><td>${esc(a.input ?? "")}</td><td>${esc(way)}</td><td>${esc(a.contribution.toPrecision(3))}</td><td><meter min="0" max="1" value="${Math.abs(a.contribution) / largest}"></meter></td></tr>`;
  }).join("");
}

async function explain(id, instance) {
  const name = $("#explain-form").dataset.monitor;
  const out = $("#explanation");
  out.textContent = `explaining ${id}…`;
  const only = instance === undefined || instance === "" ? "" : `?instance=${encodeURIComponent(instance)}`;
  try {
    const data = await api("GET", `/api/v1/namespaces/${encodeURIComponent(ns())}/driftmonitors/${encodeURIComponent(name)}/requests/${encodeURIComponent(id)}/explanation${only}`);
    out.innerHTML = (data.explanations || []).map((e, i) => `<h4>instance ${only ? esc(instance) : i}</h4><p class="summary">${esc(e.summary)}</p>`
      + `<table><thead><tr><th>input</th><th>value</th><th>effect</th><th>contribution</th><th>share of the largest</th></tr></thead><tbody>${contributionRows(e.attributions || [])}</tbody></table>`).join("");
  } catch (err) {
    out.innerHTML = `<p class="error" role="alert">${esc(err.message)}</p>`;
  }
}

function drawList(plural, items) {
  $(`[data-testid="list-${plural}"] tbody`).innerHTML = items
    .map((o) => `<tr data-name="${esc(o.metadata.name)}">${rows[plural](o).map((v) => `<td>${cell(v)}</td>`).join("")}</tr>`)
    .join("");
}

// Live tables: the open tab's kind is watched through the API (GET ...?watch=true, server-sent
// events read from a fetch, which can carry the token where EventSource cannot): the list once,
// then each change as the apiserver reports it. No table is polled. The API ends a watch after
// two minutes; the next one starts at once (after a failure, after 3 s).
const live = { controller: null, key: "", items: new Map() };
const sleep = (ms) => new Promise((done) => { setTimeout(done, ms); });

function stopWatch() {
  live.controller?.abort();
  Object.assign(live, { controller: null, key: "" });
}

async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const fields = Object.fromEntries(buffer.slice(0, end).split("\n").map((line) => {
        const at = line.indexOf(": ");
        return [line.slice(0, at), line.slice(at + 2)];
      }));
      buffer = buffer.slice(end + 2);
      onEvent(fields.event, JSON.parse(fields.data));
    }
  }
}

function applyEvent(plural, event, data) {
  if (event === "error" || event === "ERROR") {
    if (data.status === 401) expired();
    throw new Error(`the watch ended: ${data.message || data.status}`);
  }
  if (event === "snapshot") live.items = new Map(data.items.map((o) => [o.metadata.name, o]));
  else if (event === "ADDED" || event === "MODIFIED") live.items.set(data.metadata.name, data);
  else if (event === "DELETED") live.items.delete(data.metadata.name);
  else return;  // a bookmark
  drawList(plural, [...live.items.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)));
  const name = data.metadata?.name;
  if (plural === "modelservers" && state.selected && (event === "snapshot" || name === state.selected)) {
    showModelServer(state.selected).catch((err) => { $("#error").textContent = err.message; });
  }
}

async function watchKind(plural) {
  stopWatch();
  const controller = new AbortController();
  Object.assign(live, { controller, key: `${ns()}/${plural}`, items: new Map() });
  while (!controller.signal.aborted) {
    try {
      const res = await fetch(`${base()}/${plural}?watch=true`, { headers: { Authorization: `Bearer ${state.token}` }, signal: controller.signal });
      if (res.status === 401) { expired(); return; }
      if (!res.ok) throw new Error((await res.json().catch(() => ({}))).detail || `HTTP ${res.status}`);
      await readEvents(res.body, (event, data) => applyEvent(plural, event, data));
      $("#error").textContent = "";
    } catch (err) {
      if (controller.signal.aborted) return;
      $("#error").textContent = err.message;
      await sleep(3000);
    }
  }
}

function scoreChart(scores) {
  if (!scores.length) return "<p>No scores yet.</p>";
  const max = Math.max(...scores.map((s) => Math.max(s.value, s.threshold)), 1e-9);
  const h = 18, w = 260, left = 170;
  const bars = scores.map((s, i) => {
    const y = i * h;
    const bw = Math.max(1, (w * s.value) / max), tx = left + (w * s.threshold) / max;
    return `<text x="0" y="${y + 12}">${esc(s.feature)} ${esc(s.metric)}</text>` +
      `<rect class="bar ${s.crossed ? "crossed" : ""}" x="${left}" y="${y + 2}" width="${bw}" height="${h - 6}"><title>${esc(s.value)}</title></rect>` +
      `<line x1="${tx}" x2="${tx}" y1="${y}" y2="${y + h}" stroke="#333" stroke-dasharray="2,2"></line>` +
      `<text x="${left + w + 8}" y="${y + 12}">${esc(Number(s.value).toPrecision(3))} / ${esc(s.threshold)}</text>`;
  });
  return `<svg width="${left + w + 110}" height="${scores.length * h + 4}" role="img" aria-label="drift scores">${bars.join("")}</svg>`;
}

function pickedDecision(d) {
  const values = Object.entries(d.measurements || {}).map(([k, v]) => `${k} ${Number(v).toPrecision(3)}`).join(", ");
  $("#rollout-point").textContent = `${d.time}: ${d.action} ${d.revision || ""} at ${d.trafficSplit} — ${d.reason}${values ? ` (${values})` : ""}`;
}

async function showModelServer(name) {
  const [lin, cat] = await Promise.all([api("GET", `${base()}/modelservers/${encodeURIComponent(name)}/lineage`), api("GET", `${base()}/catalog`)]);
  const server = cat.modelServers.find((m) => m.name === name) || { drift: [] };
  const history = lin.modelServer.decisions;
  const decisions = history
    .map((d) => `<tr><td>${esc(d.time)}</td><td>${esc(d.action)}</td><td>${esc(d.revision)}</td><td>${esc(d.trafficSplit)}</td><td>${esc(d.reason)}</td></tr>`)
    .join("");
  const drift = server.drift
    .map((dm) => `<h4>${esc(dm.name)}: ${esc(dm.drift?.status || "")} ${esc(dm.drift?.message || "")}</h4>${scoreChart(dm.scores)}`)
    .join("") || "<p>No DriftMonitor watches this ModelServer.</p>";
  state.chart?.destroy();
  state.chart = null;
  $("#modelserver-detail").innerHTML =
    `<h2>${esc(name)}</h2><p>source: ${esc(sourceText(lin.source))}; base model ${esc(lin.baseModel || "-")}; dataset ${esc(lin.dataset?.digest || "-")}; run ${esc(lin.run || "-")}</p>`
    + `<h3>Rollout</h3>${history.length ? `<figure class="chart"><div id="rollout-chart" role="img" data-testid="rollout-chart"></div><figcaption data-testid="rollout-summary">canary share: ${esc(Charts.rolloutSummary(history))}. Point at a decision for its reason and measurements.</figcaption><p id="rollout-point" data-testid="rollout-point" aria-live="polite"></p></figure>` : "<p>No rollout yet.</p>"}`
    + `<table data-testid="rollout-history"><thead><tr><th>time</th><th>action</th><th>revision</th><th>split</th><th>reason</th></tr></thead><tbody>${decisions || "<tr><td colspan=5>no decisions yet</td></tr>"}</tbody></table>`
    + `<h3>Drift</h3>${drift}`;
  if (history.length) state.chart = Charts.rollout($("#rollout-chart"), history, pickedDecision);
}

// where a ModelServer's model comes from, in words (the API gives {uri} or {fineTuneJob} or {modelName})
function sourceText(source) {
  if (!source) return "-";
  if (source.fineTuneJob) return `FineTuneJob ${source.fineTuneJob}`;
  if (source.modelName) return `catalog model ${source.modelName}`;
  return source.uri || JSON.stringify(source);
}

async function loadCatalog() {
  const data = await api("GET", `/api/v1/namespaces/${encodeURIComponent(ns())}/catalog`);
  $("#catalog-models tbody").innerHTML = data.models
    .map((m) => `<tr><td>${esc(m.name)}</td><td>${esc(m.model?.name)} ${esc(m.model?.version)}</td><td>${esc(m.metrics?.evalLoss ?? "")}</td><td>${esc(m.lineage?.baseModel ?? "")}</td><td>${esc((m.datasetDigest || "").slice(0, 19))}</td><td>${esc(m.servedBy.join(", "))}</td></tr>`)
    .join("") || "<tr><td colspan=6>No registered models in this namespace.</td></tr>";
  $("#catalog-servers tbody").innerHTML = data.modelServers
    .map((s) => `<tr><td>${esc(s.name)}</td><td>${esc(s.phase)}</td><td>${esc(s.trafficSplit || "")}</td><td>${esc(sourceText(s.source))}</td><td>${esc(s.drift.map((d) => `${d.name}: ${d.drift?.status || "?"}`).join(", "))}</td></tr>`)
    .join("") || "<tr><td colspan=5>No ModelServers in this namespace.</td></tr>";
}

// the model map: every namespace the caller may read, loaded when its tab opens (not every few
// seconds: it lists every namespace)
const money = (v, currency, digits = 2) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(digits)} ${currency}`);
const small = (v, currency) => (v === null || v === undefined ? "–" : `${Number(v).toPrecision(3)} ${currency}`);

function mapRow(m, currency) {
  const card = m.card || {};
  const serving = (m.serving || []).map((s) => `${s.modelServer} ${s.role}${s.trafficPercent != null ? ` ${s.trafficPercent}%` : ""} (${s.phase || "?"})`);
  const monitors = (m.serving || []).flatMap((s) => s.monitors || []);
  const quality = monitors.map((d) => `${d.name}: drift ${d.drift?.status || "?"}${d.quality ? `; quality ${d.quality.status}: ${d.quality.message || ""}` : ""}`);
  const ftj = m.fineTuneJob ? `${m.fineTuneJob.name}${m.fineTuneJob.deleted ? " (deleted)" : ` (${m.fineTuneJob.phase || "?"})`}` : `uri ${m.uri || ""}`;
  const charged = (m.serving || []).filter((s) => s.gpuHours !== null && s.gpuHours !== undefined);  // a server's cost is on one row
  const servingCost = charged.reduce((sum, s) => (sum === null || s.cost === null ? null : sum + s.cost), charged.length ? 0 : null);
  const per1k = (m.serving || []).map((s) => s.costPer1kTokens).find((v) => v != null);
  const purpose = [card.purpose, card.intendedUse && `Use: ${card.intendedUse}`, card.limitations && `Limits: ${card.limitations}`].filter(Boolean).join(" ");
  return [m.namespace, m.model, m.version || "", purpose, card.owner || "", card.license || "",
    m.evaluation ? JSON.stringify(m.evaluation) : "", serving.join("; "), quality.join("; "),
    `${ftj}${m.baseModel ? ` from ${m.baseModel}` : ""}`,
    m.training?.gpuHours != null ? `${money(m.training.cost, currency)} (${m.training.gpuHours.toFixed(2)} GPU-h)` : "–",
    money(servingCost, currency), small(per1k, currency)];
}

async function loadMap() {
  const data = await api("GET", "/api/v1/modelmap");
  $("#map-summary").textContent = `${data.models.length} model version(s) in ${data.namespaces.join(", ") || "no namespace"}; costs over the last ${data.hours} hours.`
    + (data.partial ? ` Partial: ${data.hiddenNamespaces} namespace(s) you may not read are not shown.` : "");
  $("#map-warnings").innerHTML = data.warnings.map((w) => `<li>${esc(w)}</li>`).join("");
  $("#map-models tbody").innerHTML = data.models
    .map((m) => `<tr>${mapRow(m, data.currency).map((v) => `<td>${esc(v)}</td>`).join("")}</tr>`)
    .join("") || "<tr><td colspan=13>No models you may read.</td></tr>";
}

async function downloadMap() {
  const res = await fetch("/api/v1/modelmap?format=csv", { headers: { Authorization: `Bearer ${state.token}` } });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await res.blob());
  link.download = "modelmap.csv";
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

// quota: Kueue's figures through the API (GET /queues), one table per LocalQueue
function quotaRow(r) {
  const limit = r.nominal + (r.borrowingLimit ?? 0);
  const borrow = r.borrowingLimit === null ? "may borrow whatever the cohort has unused" : `may borrow ${r.borrowingLimit}`;
  return `<tr><td>${esc(r.flavor)}</td><td>${esc(r.resource)}</td><td>${esc(`${r.used} of ${r.nominal}`)}</td>`
    + `<td><meter min="0" max="${esc(Math.max(limit, r.used, 1e-9))}" high="${esc(r.nominal)}" value="${esc(r.used)}" title="${esc(`${r.used} used`)}"></meter></td>`
    + `<td>${esc(r.borrowed ? `${r.borrowed} borrowed; ` : "")}${esc(borrow)}</td><td>${esc(r.usedByThisQueue)}</td></tr>`;
}

// "would it fit now?" per LocalQueue: drawn again only when the queues or their resources change
// (the tab is read every 15 s, and what the user typed must stay)
function fitForms(queues) {
  const slot = $("#quota-fit");
  const shape = queues.map((q) => [q.name, ...new Set(q.quota.map((r) => r.resource))]);
  const key = JSON.stringify(shape);
  if (slot.dataset.key === key) return;
  slot.dataset.key = key;
  slot.innerHTML = shape.map(([queue, ...resources]) => `<form class="fit" data-queue="${esc(queue)}" data-testid="fit-${esc(queue)}" aria-label="would a request fit in ${esc(queue)}">`
    + `<h3>Would a request fit in ${esc(queue)} now?</h3>`
    + resources.map((r) => `<label>${esc(r)} <input name="${esc(r)}" size="6" autocomplete="off" placeholder="e.g. 1"></label>`).join(" ")
    + ' <button type="submit">check</button><p role="status" data-testid="fit-answer"></p></form>').join("");
}

async function checkFit(form) {
  const requests = Object.fromEntries([...new FormData(form)].filter(([, v]) => String(v).trim()).map(([k, v]) => [k, String(v).trim()]));
  const out = form.querySelector("[data-testid=fit-answer]");
  try {
    const a = await api("POST", `${base()}/queues/${encodeURIComponent(form.dataset.queue)}/fit`, { requests });
    out.textContent = a.fits ? `Fits now in flavor ${a.flavor} of ClusterQueue ${a.clusterQueue}.`
      : `Does not fit now${a.problem ? `: ${a.problem}` : ` (closest: flavor ${a.flavor})`}; ${a.short.map((s) => `${s.resource}: asks ${s.requested}, ${s.free} free`).join("; ")}. Kueue may still admit it by borrowing from the cohort, or it waits.`;
  } catch (err) {
    out.textContent = Array.isArray(err.detail) ? err.detail.map((d) => `${d.field}: ${d.message}`).join("; ") : err.message;
  }
}

async function loadQuota() {
  const data = await api("GET", `/api/v1/namespaces/${encodeURIComponent(ns())}/queues`);
  fitForms(data.queues);
  $("#quota-queues").innerHTML = data.queues.map((q) => {
    const pending = q.pending === null ? "<p>Positions: Kueue's visibility API did not answer.</p>"
      : q.pending.length ? `<ol>${q.pending.map((w) => `<li>${esc(w.owner || w.workload)} (priority ${esc(w.priority)}, ${esc(w.position)} in the queue)</li>`).join("")}</ol>` : "<p>Nothing waits.</p>";
    return `<h3>${esc(q.name)} → ClusterQueue ${esc(q.clusterQueue)}${q.cohort ? ` (cohort ${esc(q.cohort)})` : ""}</h3>`
      + `<p>${esc(q.admittedWorkloads)} admitted, ${esc(q.pendingWorkloads)} pending${q.problem ? `; ${esc(q.problem)}` : ""}</p>`
      + `<table><thead><tr><th>flavor</th><th>resource</th><th>used of nominal</th><th></th><th>borrowing</th><th>used by this queue</th></tr></thead><tbody>${q.quota.map(quotaRow).join("")}</tbody></table>${pending}`;
  }).join("") || "<p>No LocalQueue in this namespace: its workloads are not queued.</p>";
}

// every Team (GET /teams, platform admins): one row per team, its quota per flavor and resource
function teamQuota(t) {
  if (!t.quota) return esc(t.quotaReady ? `no quota shown: ${t.quotaReady.message}` : "no quota");
  const used = t.quota.flavors.flatMap((f) => f.resources.map((r) => `${f.name} ${r.name}: ${r.used} of ${r.nominal}${r.borrowed !== "0" ? ` (${r.borrowed} borrowed)` : ""}`));
  return `${esc(used.join("; "))}<br>${esc(t.quota.admittedWorkloads)} admitted, ${esc(t.quota.pendingWorkloads)} pending`;
}

async function loadTeams() {
  const slot = $("#teams-list");
  let data;
  try {
    data = await api("GET", "/api/v1/teams");
  } catch (err) {
    if (err.status !== 403) throw err;
    slot.innerHTML = `<p role="status">${esc(err.message)}</p>`;
    return;
  }
  slot.innerHTML = data.teams.length ? `<table><thead><tr><th>team</th><th>phase</th><th>namespace</th><th>members</th><th>queue</th><th>quota used</th></tr></thead><tbody>${data.teams.map((t) => `<tr data-name="${esc(t.name)}"><td>${esc(t.name)}</td><td>${esc(t.phase || "")}</td><td>${esc(t.namespace || "")}</td><td>${esc(t.members ?? "")}</td><td>${esc(t.queueName ? `${t.queueName} → ${t.clusterQueue}` : "")}</td><td>${teamQuota(t)}</td></tr>`).join("")}</tbody></table>`
    : "<p>No Team yet: a platform admin declares one with kubectl apply (docs/teams.md).</p>";
}

// the kinds' tabs are live (watchKind); the catalog, the quota and the teams, views over many objects,
// are read again every 15 s while open; the model map when opened and by its reload button
async function refresh() {
  if (!state.token || !ns()) return;
  if (KINDS.includes(state.tab)) {
    if (live.key !== `${ns()}/${state.tab}`) watchKind(state.tab);
    return;
  }
  stopWatch();
  if (state.tab === "modelmap") return;
  try {
    if (state.tab === "catalog") await loadCatalog();
    else if (state.tab === "quota") await loadQuota();
    else if (state.tab === "teams") await loadTeams();
    $("#error").textContent = "";
  } catch (err) {
    $("#error").textContent = err.message;
    if (err.status === 401) expired();
  }
}

async function signIn(token) {
  state.token = token;
  try {
    const me = await api("GET", "/api/v1/whoami");
    sessionStorage.setItem("kubeforge-token", token);
    // Choose the namespace before the app is shown: filled in after, it could overwrite (or
    // be appended to) what the user has started typing.
    const mine = await api("GET", "/api/v1/namespaces").catch(() => ({ items: [] }));
    $("#namespaces").innerHTML = mine.items.map((n) => `<option value="${esc(n)}">`).join("");
    if (!ns()) $("#namespace").value = localStorage.getItem("kubeforge-namespace") || mine.items[0] || "default";
    $("#who").textContent = `signed in as ${me.username}`;
    $("#signin").hidden = true;
    $("#app").hidden = false;
    $("#signout").hidden = false;
    $("#signin-error").textContent = "";
    await loadForms().catch((err) => { $("#error").textContent = err.message; });
    refresh();
  } catch (err) {
    state.token = "";
    $("#signin-error").textContent = err.message;
  }
}

// the cluster stopped accepting the token (it expired, or was revoked): say so where the
// next one is pasted
function expired() {
  signOut();
  $("#signin-error").textContent = "Your session ended: the cluster no longer accepts your token (it expired or was revoked). Sign in with a new one.";
}

function signOut() {
  stopWatch();
  state.token = "";
  sessionStorage.removeItem("kubeforge-token");
  $("#signin").hidden = false;
  $("#app").hidden = true;
  $("#signout").hidden = true;
  $("#who").textContent = "";
}

$("#signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("#token").value.trim()); });
$("#signout").addEventListener("click", signOut);
$("#namespace").addEventListener("change", () => { localStorage.setItem("kubeforge-namespace", ns()); state.selected = null; refresh(); });
document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => {
  document.querySelectorAll("nav button").forEach((x) => x.classList.toggle("active", x === b));
  document.querySelectorAll(".tab").forEach((t) => { t.hidden = t.id !== `tab-${b.dataset.tab}`; });
  state.tab = b.dataset.tab;
  if (state.tab === "modelmap") loadMap().catch((err) => { $("#error").textContent = err.message; });
  refresh();
}));
$("#map-reload").addEventListener("click", () => loadMap().catch((err) => { $("#error").textContent = err.message; }));
$("#map-csv").addEventListener("click", () => downloadMap().catch((err) => { $("#error").textContent = err.message; }));
document.addEventListener("click", async (e) => {
  const del = e.target.closest("[data-delete]");
  if (del && confirm(`Delete ${del.dataset.delete}?`)) {
    try { await api("DELETE", `/api/v1/namespaces/${encodeURIComponent(ns())}/${del.dataset.delete}`); refresh(); } catch (err) { $("#error").textContent = err.message; }
  }
  const report = e.target.closest("[data-report]");
  if (report) showReport(report.dataset.report).catch((err) => { $("#error").textContent = err.message; });
  const show = e.target.closest("[data-show]");
  if (show) { state.selected = show.dataset.show; showModelServer(state.selected).catch((err) => { $("#error").textContent = err.message; }); }
  const views = { events: showEvents, logs: showLogs, yaml: showYaml, edit: startEdit, stop: toggleStopped, training: showTraining };
  for (const [key, view] of Object.entries(views)) {
    const button = e.target.closest(`button[data-${key}]`);
    if (button) view(button.dataset[key]).catch((err) => { $("#error").textContent = err.message; });
  }
  const cancel = e.target.closest(".form-cancel");
  if (cancel) editing(cancel.closest("form"), null);
});
document.addEventListener("submit", (e) => {
  const fitting = e.target.closest("form.fit");
  if (fitting) { e.preventDefault(); checkFit(fitting); return; }
  const form = e.target.closest(".kind-form");
  if (!form) return;
  e.preventDefault();
  submitForm(form);
});
$("#explain-form").addEventListener("submit", (e) => {
  e.preventDefault();
  explain(new FormData(e.target).get("id").trim());
});
document.addEventListener("click", (e) => {
  const one = e.target.closest("[data-explain]");
  if (one) explain(one.dataset.explain, one.dataset.instance);
});
setInterval(() => { if (["catalog", "quota", "teams"].includes(state.tab)) refresh(); }, 15000);
if (state.token) signIn(state.token);
