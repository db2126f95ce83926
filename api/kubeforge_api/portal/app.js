// kubeforge portal: plain JavaScript over the REST API (no build step). The token stays in this
// tab's sessionStorage and goes with every request; the API acts as its owner.
"use strict";

const state = { token: sessionStorage.getItem("kubeforge-token") || "", tab: "workbenches", selected: null };
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

const rows = {
  workbenches: (o) => [o.metadata.name, o.status?.phase, readyCell(o), o.status?.gpus ?? 0, html(`<button data-delete="workbenches/${esc(o.metadata.name)}">delete</button>`)],
  finetunejobs: (o) => [o.metadata.name, o.status?.phase, readyCell(o), o.status?.gpus ?? 0, o.status?.model ? `${o.status.model.name} ${o.status.model.version}` : ""],
  modelservers: (o) => [o.metadata.name, o.status?.phase, readyCell(o), o.status?.trafficSplit || "", html(`<button data-show="${esc(o.metadata.name)}">rollout and drift</button>`)],
  driftmonitors: (o) => [o.metadata.name, o.status?.phase, readyCell(o), `${condition(o, "DriftDetected").status || ""} ${condition(o, "DriftDetected").message || ""}`, o.spec?.target?.modelServer, html(`<button data-report="${esc(o.metadata.name)}">report</button>`)],
};

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
  showExplainForm(name).catch((err) => { $("#error").textContent = err.message; });
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

async function loadList(plural) {
  const data = await api("GET", `/api/v1/namespaces/${encodeURIComponent(ns())}/${plural}`);
  const body = $(`[data-testid="list-${plural}"] tbody`);
  body.innerHTML = data.items
    .map((o) => `<tr data-name="${esc(o.metadata.name)}">${rows[plural](o).map((v) => `<td>${cell(v)}</td>`).join("")}</tr>`)
    .join("");
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

async function showModelServer(name) {
  const base = `/api/v1/namespaces/${encodeURIComponent(ns())}`;
  const [lin, cat] = await Promise.all([api("GET", `${base}/modelservers/${encodeURIComponent(name)}/lineage`), api("GET", `${base}/catalog`)]);
  const server = cat.modelServers.find((m) => m.name === name) || { drift: [] };
  const decisions = lin.modelServer.decisions
    .map((d) => `<tr><td>${esc(d.time)}</td><td>${esc(d.action)}</td><td>${esc(d.revision)}</td><td>${esc(d.trafficSplit)}</td><td>${esc(d.reason)}</td></tr>`)
    .join("");
  const drift = server.drift
    .map((dm) => `<h4>${esc(dm.name)}: ${esc(dm.drift?.status || "")} ${esc(dm.drift?.message || "")}</h4>${scoreChart(dm.scores)}`)
    .join("") || "<p>No DriftMonitor watches this ModelServer.</p>";
  $("#modelserver-detail").innerHTML =
    `<h3>${esc(name)}</h3><p>source: ${esc(JSON.stringify(lin.source))}; base model ${esc(lin.baseModel || "-")}; dataset ${esc(lin.dataset?.digest || "-")}; run ${esc(lin.run || "-")}</p>` +
    `<h4>Rollout history</h4><table data-testid="rollout-history"><thead><tr><th>time</th><th>action</th><th>revision</th><th>split</th><th>reason</th></tr></thead><tbody>${decisions || "<tr><td colspan=5>no decisions yet</td></tr>"}</tbody></table>` +
    `<h4>Drift</h4>${drift}`;
}

async function loadCatalog() {
  const data = await api("GET", `/api/v1/namespaces/${encodeURIComponent(ns())}/catalog`);
  $("#catalog-models tbody").innerHTML = data.models
    .map((m) => `<tr><td>${esc(m.name)}</td><td>${esc(m.model?.name)} ${esc(m.model?.version)}</td><td>${esc(m.metrics?.evalLoss ?? "")}</td><td>${esc(m.lineage?.baseModel ?? "")}</td><td>${esc((m.datasetDigest || "").slice(0, 19))}</td><td>${esc(m.servedBy.join(", "))}</td></tr>`)
    .join("") || "<tr><td colspan=6>No registered models in this namespace.</td></tr>";
  $("#catalog-servers tbody").innerHTML = data.modelServers
    .map((s) => `<tr><td>${esc(s.name)}</td><td>${esc(s.phase)}</td><td>${esc(s.trafficSplit || "")}</td><td>${esc(JSON.stringify(s.source))}</td><td>${esc(s.drift.map((d) => `${d.name}: ${d.drift?.status || "?"}`).join(", "))}</td></tr>`)
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

async function loadQuota() {
  const data = await api("GET", `/api/v1/namespaces/${encodeURIComponent(ns())}/queues`);
  $("#quota-queues").innerHTML = data.queues.map((q) => {
    const pending = q.pending === null ? "<p>Positions: Kueue's visibility API did not answer.</p>"
      : q.pending.length ? `<ol>${q.pending.map((w) => `<li>${esc(w.owner || w.workload)} (priority ${esc(w.priority)}, ${esc(w.position)} in the queue)</li>`).join("")}</ol>` : "<p>Nothing waits.</p>";
    return `<h3>${esc(q.name)} → ClusterQueue ${esc(q.clusterQueue)}${q.cohort ? ` (cohort ${esc(q.cohort)})` : ""}</h3>`
      + `<p>${esc(q.admittedWorkloads)} admitted, ${esc(q.pendingWorkloads)} pending${q.problem ? `; ${esc(q.problem)}` : ""}</p>`
      + `<table><thead><tr><th>flavor</th><th>resource</th><th>used of nominal</th><th></th><th>borrowing</th><th>used by this queue</th></tr></thead><tbody>${q.quota.map(quotaRow).join("")}</tbody></table>${pending}`;
  }).join("") || "<p>No LocalQueue in this namespace: its workloads are not queued.</p>";
}

async function refresh() {
  if (!state.token) return;
  if (state.tab === "modelmap") return;  // loaded when opened, and by its reload button
  if (!ns()) return;
  try {
    if (state.tab === "catalog") await loadCatalog();
    else if (state.tab === "quota") await loadQuota();
    else await loadList(state.tab);
    if (state.tab === "modelservers" && state.selected) await showModelServer(state.selected);
    $("#error").textContent = "";
  } catch (err) {
    $("#error").textContent = err.message;
    if (err.status === 401) signOut();
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
    refresh();
  } catch (err) {
    state.token = "";
    $("#signin-error").textContent = err.message;
  }
}

function signOut() {
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
});
$("#explain-form").addEventListener("submit", (e) => {
  e.preventDefault();
  explain(new FormData(e.target).get("id").trim());
});
document.addEventListener("click", (e) => {
  const one = e.target.closest("[data-explain]");
  if (one) explain(one.dataset.explain, one.dataset.instance);
});
$("#create-workbench").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const gpus = Number(f.get("gpus") || 0);
  const body = {
    metadata: { name: f.get("name") },
    spec: {
      image: f.get("image"),
      resources: { cpu: f.get("cpu"), memory: f.get("memory"), ...(gpus > 0 ? { accelerator: { count: gpus } } : {}) },
      storage: { size: f.get("storage") },
      culling: { idleTimeout: f.get("idleTimeout") },
    },
  };
  const list = $("#create-errors");
  list.innerHTML = "";
  try {
    await api("POST", `/api/v1/namespaces/${encodeURIComponent(ns())}/workbenches`, body);
    e.target.reset();
    refresh();
  } catch (err) {
    const items = Array.isArray(err.detail) ? err.detail.map((d) => `${d.field}: ${d.message}`) : [err.message];
    list.innerHTML = items.map((i) => `<li>${esc(i)}</li>`).join("");
  }
});

setInterval(refresh, 3000);
if (state.token) signIn(state.token);
