// The genofed hub portal: plain DOM and fetch, against the hub's own API.
"use strict";

const $ = (selector) => document.querySelector(selector);
// terms: the builder's chosen terms; fixed: criteria of an opened saved cohort that the
// builder has no field for (a variant's carriers, datasets), kept until removed.
// analysis, gwas: the analysis each panel follows (another started, or the question
// changed, stops the older one's drawing); gwasUrls, learnUrls, workflowUrls: each panel's files'
// object URLs.
const state = { terms: [], labels: {}, fixed: {}, countTimer: null, countRequest: 0, gwasUrls: [], learnUrls: [], workflowUrls: [] };

function headers(json) {
  const h = {};
  const token = $("#token").value.trim();
  if (token) h["Authorization"] = "Bearer " + token;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...headers(Boolean(options.body)), ...(options.headers || {}) },
  });
  if (response.status === 204) return {};
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = body.error || (body.errors || [])[0] || {};
    throw new Error(error.errorMessage || error.detail || "HTTP " + response.status);
  }
  return body;
}

// Each part of the page shows its own errors next to it (#<where>-error).
function showError(error, where) {
  const box = $(`#${where}-error`);
  box.textContent = error ? String(error.message || error) : "";
}

// Who the token says the caller is: sub, issuer, expiry and the access its visas ask for
// (each node still decides for itself). Decoded only to show it; never trusted here.
function decodeJwt(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch (_error) {
    return null;
  }
}

function describeToken(token) {
  if (!token) return { text: "Anonymous: public yes/no answers only", expired: false };
  const claims = decodeJwt(token);
  if (!claims) return { text: "Token set (not a JWT: each node's broker decides)", expired: false };
  // a Passport's visas, or those a development broker's access token carries
  const carried = claims.ga4gh_passport_v1 || claims.genofed_visas;
  const visas = (carried || []).map((v) => (decodeJwt(v) || {}).ga4gh_visa_v1 || {});
  const types = new Set(visas.map((v) => v.type));
  let level = "access token (exchanged for a Passport per node)";
  if (carried) {
    level = types.has("ControlledAccessGrants") ? "controlled (DAC grants)"
      : types.has("ResearcherStatus") ? "registered researcher" : "no researcher visas";
  }
  const expires = claims.exp ? new Date(claims.exp * 1000) : null;
  const expired = expires !== null && expires.getTime() < Date.now();
  const until = expires ? (expired ? ` · expired ${expires.toLocaleString()}` : ` · until ${expires.toLocaleString()}`) : "";
  return { text: `Signed in as ${claims.sub || "?"} (${claims.iss || "?"}) · ${level}${until}`, expired };
}

function showIdentity() {
  const { text, expired } = describeToken($("#token").value.trim());
  $("#identity").textContent = text;
  showError(expired ? "This token has expired: paste a new one" : null, "token");
}

// Results that no longer match what is typed (or who asks) are cleared, never left up.
function clearVariant() {
  $("#variant-result").replaceChildren();
  $("#variant-nodes tbody").replaceChildren();
  $("#variant-nodes").hidden = true;
  $("#variant-chart").replaceChildren();
}

function clearBreakdown() {
  $("#sex-chart").replaceChildren();
  $("#age-chart").replaceChildren();
  showError(null, "breakdown");
}

function clearResults() {
  clearVariant();
  clearBreakdown();
  clearAnalysis();
  clearGwas();
  clearLearning();
  $("#cohort-counts tbody").replaceChildren();
  $("#cohort-chart").replaceChildren();
  $("#cohort-total").textContent = "–";
  $("#cohort-precision").textContent = "";
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

// A horizontal bar chart, drawn here (no chart library, nothing from a CDN). items:
// {label, value, text}. An item without a value (withheld by a node's rules, or no
// answer) gets a grey stub and says why: never a bar of 0.
function barChart(where, title, items) {
  const box = $(where);
  box.replaceChildren();
  if (!items.length) return;
  const labelWidth = 80, barWidth = 180, row = 22, top = 22;
  const width = labelWidth + barWidth + 130;
  const largest = Math.max(1, ...items.map((i) => i.value ?? 0));
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${top + items.length * row}`,
    width,
    role: "img",
    "aria-label": `${title}: ` + items.map((i) => `${i.label} ${i.text}`).join(", "),
  });
  chart.appendChild(svg("title", {}, title));
  chart.appendChild(svg("text", { x: 0, y: 14, "font-weight": "bold" }, title));
  items.forEach((item, k) => {
    const y = top + k * row;
    const known = item.value !== null && item.value !== undefined;
    const length = known ? Math.max(item.value > 0 ? 2 : 0, (item.value / largest) * barWidth) : 6;
    chart.appendChild(svg("text", { x: 0, y: y + 14 }, item.label));
    chart.appendChild(svg("rect", {
      x: labelWidth, y: y + 3, width: length, height: 15,
      class: known ? "bar" : "bar withheld", "data-label": item.label, "data-value": known ? item.value : "",
    }));
    chart.appendChild(svg("text", { x: labelWidth + length + 5, y: y + 14, class: known ? "" : "note" }, item.text));
  });
  box.appendChild(chart);
}

// How a count reads: 35, 35 (rounded), or why there is none (some/none, the reason).
function countText(part) {
  if (part.total !== undefined) part = { ...part, count: part.total };
  if (part.count === null || part.count === undefined) {
    return part.exists ? "some (no count given)" : part.status && part.status !== "ok" ? part.status : "none";
  }
  const precision = part.countPrecision && part.countPrecision !== "exact" ? ` (${part.countPrecision})` : "";
  return `${part.count}${precision}`;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function fillTable(selector, rows, build) {
  const body = $(selector + " tbody");
  body.replaceChildren();
  for (const item of rows) {
    const row = document.createElement("tr");
    build(row, item);
    body.appendChild(row);
  }
}

async function loadNodes() {
  try {
    const { nodes } = await api("/hub/nodes");
    fillTable("#nodes", nodes, (row, node) => {
      row.dataset.node = node.name;
      cell(row, node.name);
      cell(row, node.health, "health-" + node.health);
      cell(row, node.breakerOpen ? "open (skipped)" : "closed");
      cell(row, node.healthMs === null ? "" : node.healthMs.toFixed(0));
    });
    showError(null, "nodes");
  } catch (error) {
    showError(error, "nodes");
  }
}

async function loadDatasets() {
  try {
    const body = await api("/beacon/v2/datasets");
    fillTable("#datasets", body.response.collections, (row, dataset) => {
      cell(row, dataset.id);
      cell(row, dataset.name);
      cell(row, dataset.description);
    });
    showError(null, "datasets");
  } catch (error) {
    $("#datasets tbody").replaceChildren();
    showError(error, "datasets");
  }
}

async function lookUpVariant(event) {
  event.preventDefault();
  const variant = {
    referenceName: $("#v-chrom").value.trim(),
    start: Number($("#v-pos").value) - 1,
    referenceBases: $("#v-ref").value.trim().toUpperCase(),
    alternateBases: $("#v-alt").value.trim().toUpperCase(),
  };
  const params = new URLSearchParams({ ...variant, start: String(variant.start), requestedGranularity: "count" });
  clearVariant();
  try {
    // whether the allele is anywhere, and each node's carriers (a safe count of people)
    const [body, carriers] = await Promise.all([
      api("/beacon/v2/g_variants?" + params),
      api("/hub/cohorts/count", { method: "POST", body: JSON.stringify({ variant }) })
        .catch((error) => ({ nodes: [], error })),
    ]);
    const summary = body.responseSummary;
    const found = summary.exists ? "found" : "not found";
    const n = summary.numTotalResults;
    const precision = summary.countPrecision && summary.countPrecision !== "exact" ? `, ${summary.countPrecision}` : "";
    const total = n === undefined ? "" : ` (${n} ${n === 1 ? "variant" : "variants"}${precision})`;
    const line = document.createElement("p");
    line.textContent = `${found}${total} — ${body.info.nodes.map((n) => `${n.node}: ${n.status}`).join(", ")}`;
    $("#variant-result").replaceChildren(line);
    const byNode = Object.fromEntries(carriers.nodes.map((n) => [n.node, n]));
    fillTable("#variant-nodes", body.info.nodes, (row, node) => {
      row.dataset.node = node.node;
      cell(row, node.node);
      cell(row, node.status, "status-" + node.status);
      const counted = byNode[node.node];
      const shown = cell(row, counted ? countText(counted) : "", "count");
      if (counted && counted.withheld) shown.title = counted.withheld;
    });
    $("#variant-nodes").hidden = false;
    barChart("#variant-chart", "Carriers per node", carriers.nodes.map((n) => ({
      label: n.node, value: n.count, text: countText(n),
    })));
    showError(carriers.error ? `carriers: ${carriers.error.message}` : null, "variant");
  } catch (error) {
    clearVariant();
    showError(error, "variant");
  }
}

function criteria() {
  const out = { ...state.fixed, terms: state.terms };
  const sex = $("#sex").value;
  if (sex) out.sex = sex;
  const min = $("#min-age").value;
  const max = $("#max-age").value;
  if (min !== "") out.min_age = Number(min);
  if (max !== "") out.max_age = Number(max);
  return out;
}

function scheduleCount() {
  clearBreakdown();
  clearTimeout(state.countTimer);
  state.countTimer = setTimeout(countCohort, 250);
}

async function countCohort() {
  const ticket = ++state.countRequest;
  $("#cohort-counts").setAttribute("aria-busy", "true");
  try {
    const counts = await api("/hub/cohorts/count", {
      method: "POST",
      body: JSON.stringify(criteria()),
    });
    if (ticket !== state.countRequest) return; // a newer count is on its way
    fillTable("#cohort-counts", counts.nodes, (row, node) => {
      row.dataset.node = node.node;
      cell(row, node.node);
      cell(row, node.status, "status-" + node.status);
      const count = node.count === undefined || node.count === null ? "" : node.count;
      const precision = node.countPrecision && node.countPrecision !== "exact"
        ? ` (${node.countPrecision})` : "";
      // A node that gives no count says why (only yes/no to this caller, withheld...).
      const withheld = node.withheld ? (node.exists ? "some" : "none") : "";
      const text = count === "" ? withheld : count + precision;
      const shown = cell(row, text, "count");
      if (node.withheld) shown.title = node.withheld;
    });
    $("#cohort-total").textContent =
      counts.total === null ? (counts.exists ? "some" : "none") : String(counts.total);
    const notes = [];
    if (counts.countPrecision && counts.countPrecision !== "exact") notes.push(counts.countPrecision);
    if (counts.partial) notes.push("partial: see the nodes");
    $("#cohort-precision").textContent = notes.length ? `(${notes.join("; ")})` : "";
    $("#cohort-precision").title = (counts.warnings || []).join("\n");
    barChart("#cohort-chart", "Count per node", counts.nodes.map((n) => ({
      label: n.node, value: n.count, text: countText(n),
    })));
    $("#cohort-counts").setAttribute("aria-busy", "false");
    showError(null, "cohort");
  } catch (error) {
    if (ticket === state.countRequest) {
      clearResults();
      $("#cohort-counts").setAttribute("aria-busy", "false");
      showError(error, "cohort");
    }
  }
}

async function breakDown() {
  clearBreakdown();
  $("#breakdown-button").disabled = true;
  try {
    const parts = await api("/hub/cohorts/breakdown", { method: "POST", body: JSON.stringify(criteria()) });
    const items = (list) => list.map((p) => ({ label: p.value, value: p.total, text: countText(p) }));
    barChart("#sex-chart", "By sex", items(parts.sex));
    barChart("#age-chart", "By age (years)", items(parts.age));
  } catch (error) {
    showError(error, "breakdown");
  } finally {
    $("#breakdown-button").disabled = false;
  }
}

function fixedChip(text, key) {
  const chip = document.createElement("span");
  chip.className = "chip";
  chip.dataset.fixed = key;
  chip.textContent = text + " ";
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "×";
  remove.title = "remove " + text;
  remove.addEventListener("click", () => {
    delete state.fixed[key];
    renderTerms();
    scheduleCount();
  });
  chip.appendChild(remove);
  return chip;
}

function renderTerms() {
  const box = $("#terms");
  box.replaceChildren();
  const v = state.fixed.variant;
  if (v) box.appendChild(fixedChip(`carriers of ${v.referenceName}-${v.start + 1}-${v.referenceBases}-${v.alternateBases}`, "variant"));
  if (state.fixed.datasets) box.appendChild(fixedChip(`in ${state.fixed.datasets.join(", ")}`, "datasets"));
  for (const term of state.terms) {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.dataset.term = term;
    chip.textContent = (state.labels[term] ? `${state.labels[term]} (${term})` : term) + " ";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.title = "remove " + term;
    remove.addEventListener("click", () => {
      state.terms = state.terms.filter((t) => t !== term);
      renderTerms();
      scheduleCount();
    });
    chip.appendChild(remove);
    box.appendChild(chip);
  }
}

function pickTerm(id, label) {
  if (!state.terms.includes(id)) state.terms.push(id);
  if (label) state.labels[id] = label;
  $("#term-input").value = "";
  $("#term-suggestions").replaceChildren();
  showError(null, "save");
  renderTerms();
  scheduleCount();
}

let suggestTimer = null;
function suggestTerms() {
  clearTimeout(suggestTimer);
  suggestTimer = setTimeout(async () => {
    const text = $("#term-input").value.trim();
    const list = $("#term-suggestions");
    if (text.length < 2) {
      list.replaceChildren();
      return;
    }
    try {
      const { terms } = await api("/hub/terms?q=" + encodeURIComponent(text));
      list.replaceChildren();
      if (!terms.length) {
        const none = document.createElement("li");
        none.className = "no-matches";
        none.textContent = `No term of any node matches “${text}”`;
        list.appendChild(none);
      }
      for (const term of terms) {
        const item = document.createElement("li");
        item.setAttribute("role", "option");
        item.setAttribute("aria-selected", "false");
        item.dataset.term = term.id;
        if (term.label) item.dataset.label = term.label;
        item.textContent = term.label ? `${term.label} (${term.id})` : term.id;
        item.addEventListener("click", () => pickTerm(term.id, term.label));
        list.appendChild(item);
      }
      showError(null, "cohort");
    } catch (error) {
      showError(error, "cohort");
    }
  }, 200);
}

// Arrow keys move through the suggestions, Enter picks, Escape closes.
function termKeys(event) {
  const options = [...document.querySelectorAll("#term-suggestions li[role=option]")];
  const current = options.findIndex((o) => o.getAttribute("aria-selected") === "true");
  let next = current;
  if (event.key === "ArrowDown") next = Math.min(options.length - 1, current + 1);
  else if (event.key === "ArrowUp") next = Math.max(0, current - 1);
  else if (event.key === "Enter") {
    event.preventDefault();
    const chosen = options[current] || (options.length === 1 ? options[0] : null);
    if (chosen) pickTerm(chosen.dataset.term, chosen.dataset.label);
    return;
  } else if (event.key === "Escape") {
    $("#term-suggestions").replaceChildren();
    return;
  } else return;
  event.preventDefault();
  options.forEach((o, i) => o.setAttribute("aria-selected", String(i === next)));
  if (options[next]) options[next].scrollIntoView({ block: "nearest" });
}

async function loadCohorts() {
  try {
    const { cohorts } = await api("/hub/cohorts");
    const list = $("#saved-cohorts");
    list.replaceChildren();
    if (!cohorts.length) {
      const none = document.createElement("li");
      none.textContent = "None saved yet: build one above and save it.";
      list.appendChild(none);
    }
    for (const cohort of cohorts) {
      const item = document.createElement("li");
      item.dataset.cohort = cohort.id;
      const name = document.createElement("strong");
      name.textContent = cohort.name;
      const summary = document.createElement("span");
      summary.className = "summary";
      summary.textContent = cohort.summary;
      const meta = document.createElement("span");
      meta.className = "meta";
      const then = cohort.countAtSave ? countText(cohort.countAtSave) : "not counted";
      meta.textContent = `${then} when saved ${new Date(cohort.created).toLocaleString()} · ${cohort.id}`;
      const open = document.createElement("button");
      open.type = "button";
      open.className = "open";
      open.textContent = "Open";
      open.addEventListener("click", () => openCohort(cohort));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "delete";
      remove.textContent = "Delete";
      remove.addEventListener("click", () => deleteCohort(cohort));
      item.append(name, summary, meta, open, remove);
      list.appendChild(item);
    }
    fillCohortChoice(cohorts);
    showError(null, "save");
  } catch (error) {
    showError(error, "save");
  }
}

// The analyses panel's cohort choice: everyone, or a saved cohort.
function fillCohortChoice(cohorts) {
  for (const select of [$("#glm-cohort"), $("#gwas-cohort"), $("#learn-cohort")]) {
    const chosen = select.value;
    select.replaceChildren(new Option("everyone", ""));
    for (const cohort of cohorts) select.appendChild(new Option(cohort.name, cohort.id));
    select.value = cohorts.some((c) => c.id === chosen) ? chosen : "";
  }
}

// A saved cohort back in the builder, counted now.
function openCohort(cohort) {
  const c = cohort.criteria;
  state.terms = [...(c.terms || [])];
  state.fixed = {};
  if (c.variant) state.fixed.variant = c.variant;
  if (c.datasets && c.datasets.length) state.fixed.datasets = c.datasets;
  $("#sex").value = c.sex || "";
  $("#min-age").value = c.min_age ?? "";
  $("#max-age").value = c.max_age ?? "";
  $("#term-input").value = "";
  $("#cohort-name").value = cohort.name;
  renderTerms();
  clearResults();
  countCohort();
  $("#cohort-section").scrollIntoView({ block: "start" });
}

async function deleteCohort(cohort) {
  if (!window.confirm(`Delete the saved cohort “${cohort.name}”? (Its definition only: no data is touched.)`)) return;
  try {
    await api("/hub/cohorts/" + encodeURIComponent(cohort.id), { method: "DELETE" });
    await loadCohorts();
  } catch (error) {
    showError(error, "save");
  }
}

async function saveCohort(event) {
  event.preventDefault();
  const typed = $("#term-input").value.trim();
  if (typed) {
    // never save a cohort without a term the researcher typed but did not pick
    showError(`“${typed}” is not one of the cohort's terms yet: pick it from the list, or clear the box`, "save");
    return;
  }
  try {
    await api("/hub/cohorts", {
      method: "POST",
      body: JSON.stringify({ name: $("#cohort-name").value.trim(), criteria: criteria() }),
    });
    $("#cohort-name").value = "";
    await loadCohorts();
  } catch (error) {
    showError(error, "save");
  }
}

// -- analyses: a GLM fitted by the nodes, followed round by round ----------------------

function clearAnalysis() {
  state.analysis = null;  // a poll still under way for an older fit stops drawing
  $("#glm-message").textContent = "";
  $("#glm-nodes").hidden = true;
  $("#glm-summary").replaceChildren();
  $("#glm-forest").replaceChildren();
  showError(null, "glm");
}

// Each node's latest step: the step, its status and why (a rule, a refusal).
function showNodes(job, where = "#glm-nodes") {
  const latest = {};
  for (const entry of job.rounds || []) {
    const step = entry.round === null || entry.round === undefined ? entry.step : `${entry.step} ${entry.round}`;
    for (const [node, status] of Object.entries(entry.nodes)) latest[node] = { step, ...status };
  }
  for (const [node, why] of Object.entries(job.excluded || {})) {
    latest[node] = { ...(latest[node] || { step: "" }), status: latest[node]?.status || "left out", detail: why };
  }
  $(where).hidden = !Object.keys(latest).length;
  fillTable(where, Object.entries(latest), (row, [node, s]) => {
    cell(row, node);
    cell(row, s.step);
    cell(row, s.status, `status-${s.status}`);
    cell(row, s.detail || "");
  });
}

function fmt(value) {
  if (value === 0) return "0";
  return Math.abs(value) >= 1e-3 ? value.toPrecision(4) : value.toExponential(2);
}

function showSummary(result) {
  const summary = result.summary;
  const stat = summary.statistic;
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const name of ["", "Estimate", "Std. Error", `${stat} value`, `Pr(>|${stat}|)`, "2.5 %", "97.5 %"]) {
    const th = document.createElement("th");
    th.textContent = name;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const c of summary.coefficients) {
    const row = body.insertRow();
    row.dataset.name = c.name;
    row.dataset.estimate = c.estimate;
    for (const text of [c.name, fmt(c.estimate), fmt(c.std_error), c.statistic.toFixed(3),
      c.p_value < 2e-16 ? "< 2e-16" : c.p_value.toPrecision(3), fmt(c.ci_low), fmt(c.ci_high)]) {
      cell(row, text);
    }
  }
  const notes = document.createElement("p");
  const perNode = Object.entries(result.nPerNode || {})
    .map(([node, n]) => `${node} ${n.value}${n.precision === "exact" ? "" : ` (${n.precision})`}`).join(", ");
  notes.textContent = `${result.formula}, ${result.family}: residual deviance ${fmt(summary.residual_deviance)} ` +
    `on ${summary.residual_df} df (null ${fmt(summary.null_deviance)} on ${summary.null_df}), AIC ${fmt(summary.aic)}, ` +
    `${summary.iterations} iterations; n ${summary.n} (${perNode}); nodes: ${result.contributors.join(", ")}`;
  $("#glm-summary").replaceChildren(table, notes);
}

// A forest plot of the estimates and their 95 % CIs (the intercept left out: another
// scale), on the model's link scale, drawn here as SVG.
function forestPlot(result) {
  const box = $("#glm-forest");
  box.replaceChildren();
  const rows = result.summary.coefficients.filter((c) => c.name !== "Intercept");
  if (!rows.length) return;
  const labelWidth = 110, plotWidth = 260, row = 22, top = 24, width = labelWidth + plotWidth + 20;
  const low = Math.min(0, ...rows.map((c) => c.ci_low)), high = Math.max(0, ...rows.map((c) => c.ci_high));
  const span = high - low || 1;
  const x = (value) => labelWidth + ((value - low) / span) * plotWidth;
  const height = top + rows.length * row + 16;
  const title = `Estimates and 95 % CIs (${result.family === "gaussian" ? "identity" : result.family === "binomial" ? "log odds" : "log rate"} scale)`;
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, width, role: "img",
    "aria-label": `${title}: ` + rows.map((c) => `${c.name} ${fmt(c.estimate)} (${fmt(c.ci_low)} to ${fmt(c.ci_high)})`).join(", "),
  });
  chart.appendChild(svg("title", {}, title));
  chart.appendChild(svg("text", { x: 0, y: 14, "font-weight": "bold" }, title));
  chart.appendChild(svg("line", { x1: x(0), x2: x(0), y1: top, y2: height - 16, class: "zero" }));
  chart.appendChild(svg("text", { x: x(0) - 3, y: height - 3, class: "note" }, "0"));
  rows.forEach((c, k) => {
    const y = top + k * row + 11;
    chart.appendChild(svg("text", { x: 0, y: y + 4 }, c.name));
    chart.appendChild(svg("line", { x1: x(c.ci_low), x2: x(c.ci_high), y1: y, y2: y, class: "ci" }));
    chart.appendChild(svg("circle", {
      cx: x(c.estimate), cy: y, r: 4, class: "point", "data-name": c.name, "data-estimate": c.estimate,
      "data-low": c.ci_low, "data-high": c.ci_high,
    }));
  });
  box.appendChild(chart);
}

// Start an analysis and follow it until it ends (null if the panel's question changed
// meanwhile: state[key] is no longer this one).
async function follow(body, { key, button, message, nodes, onProgress }) {
  const mine = (state[key] = {});
  $(button).disabled = true;
  try {
    let job = await api("/hub/analyses", { method: "POST", body: JSON.stringify(body) });
    while (job.state === "queued" || job.state === "running") {
      if (state[key] !== mine) return null;
      const progress = job.progress && job.progress.total ? ` (${job.progress.done} of ${job.progress.total})` : "";
      $(message).textContent = (job.message || job.state) + progress;
      showNodes(job, nodes);
      if (onProgress) onProgress(job);
      await new Promise((resolve) => setTimeout(resolve, 300));
      job = await api(`/hub/analyses/${job.id}`);
    }
    if (state[key] !== mine) return null;
    showNodes(job, nodes);
    $(message).textContent = `${job.state} · ${job.id}`;
    loadAnalyses();
    if (job.state !== "succeeded") throw new Error(job.error || job.message || job.state);
    return job;
  } finally {
    $(button).disabled = false;
  }
}

async function fitModel(event) {
  event.preventDefault();
  clearAnalysis();
  const outcome = $("#glm-outcome").value.trim();
  const covariates = $("#glm-covariates").value.trim() || "1";
  const body = { kind: "glm", formula: `${outcome} ~ ${covariates}`, family: $("#glm-family").value };
  if ($("#glm-cohort").value) body.cohort = $("#glm-cohort").value;
  if ($("#glm-table").value.trim()) body.table = $("#glm-table").value.trim();
  try {
    const job = await follow(body, { key: "analysis", button: "#glm-run", message: "#glm-message", nodes: "#glm-nodes" });
    if (job) showGlm(job);
  } catch (error) {
    showError(error, "glm");
  }
}

function showGlm(job) {
  showSummary(job.result);
  forestPlot(job.result);
}

// -- a GWAS: its plots (the hub's PNGs, fetched with the token) and its top hits ---------

function clearGwas() {
  state.gwas = null;
  $("#gwas-message").textContent = "";
  $("#gwas-nodes").hidden = true;
  for (const url of state.gwasUrls || []) URL.revokeObjectURL(url);
  state.gwasUrls = [];
  $("#gwas-result").replaceChildren();
  showError(null, "gwas");
}

async function runGwas(event) {
  event.preventDefault();
  clearGwas();
  const body = {
    kind: "gwas",
    model: $("#gwas-model").value,
    phenotypes: [$("#gwas-phenotype").value.trim()],
    covariates: $("#gwas-covariates").value.split(",").map((c) => c.trim()).filter(Boolean),
    region: $("#gwas-region").value.trim(),
  };
  if ($("#gwas-cohort").value) body.cohort = $("#gwas-cohort").value;
  if ($("#gwas-table").value.trim()) body.table = $("#gwas-table").value.trim();
  try {
    const job = await follow(body, { key: "gwas", button: "#gwas-run", message: "#gwas-message", nodes: "#gwas-nodes" });
    if (job) await showGwas(job);
  } catch (error) {
    showError(error, "gwas");
  }
}

// A result file as an object URL (an <img> cannot send the token).
async function fileUrl(job, name, urls = state.gwasUrls) {
  return blobUrl(`/hub/analyses/${job.id}/files/${encodeURIComponent(name)}`, name, urls);
}

// Any file of the hub's, fetched with the token, as an object URL (kept in ``urls`` to
// be revoked when its panel is cleared).
async function blobUrl(path, name, urls) {
  const response = await fetch(path, { headers: headers(false) });
  if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  urls.push(url);
  return url;
}

// A hit's variant in the portal's Beacon look-up (and, opened in a new tab, the hub's
// Beacon answer itself).
function variantLink(row) {
  const link = document.createElement("a");
  const params = new URLSearchParams({
    referenceName: row["#CHROM"], start: String(row.POS - 1), referenceBases: row.REF, alternateBases: row.ALT,
  });
  link.href = "/beacon/v2/g_variants?" + params;
  link.textContent = row.ID;
  link.className = "variant-link";
  link.addEventListener("click", (event) => {
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    $("#v-chrom").value = row["#CHROM"];
    $("#v-pos").value = row.POS;
    $("#v-ref").value = row.REF;
    $("#v-alt").value = row.ALT;
    $("#variant-form").requestSubmit();
    $("#variant-form").scrollIntoView({ behavior: "smooth" });
  });
  return link;
}

async function showGwas(job) {
  const result = job.result;
  const box = $("#gwas-result");
  const logistic = result.model === "logistic";
  const parts = [];
  const summary = document.createElement("p");
  summary.textContent = `${result.variants.tested.toLocaleString()} variants tested in ${result.region} at ` +
    `${result.contributors.join(", ")}; ${result.variants.leftOut.toLocaleString()} left out (rare at a node or ` +
    `not in every node's data). ${result.imputation}.`;
  parts.push(summary);
  for (const [phenotype, ph] of Object.entries(result.phenotypeSummary)) {
    const title = document.createElement("h4");
    const lambda = ph.lambdaGC === null ? "–" : ph.lambdaGC.toFixed(3);
    title.textContent = `${phenotype} ~ ${result.covariates.join(" + ") || "1"} (${result.model}): λGC ${lambda}`;
    title.dataset.lambda = ph.lambdaGC;
    parts.push(title);
    const plots = document.createElement("div");
    plots.className = "gwas-plots";
    for (const [kind, alt] of [["manhattan", "Manhattan plot"], ["qq", "QQ plot"]]) {
      const name = `${kind}-${phenotype}.png`;
      if (!result.files.includes(name)) continue;
      const img = document.createElement("img");
      img.id = `gwas-${kind}`;
      img.alt = `${alt} of ${phenotype}` + (kind === "qq" ? ` (λGC ${lambda})` : "");
      img.src = await fileUrl(job, name);
      plots.appendChild(img);
    }
    parts.push(plots);
    const table = document.createElement("table");
    table.className = "gwas-top";
    const stats = logistic ? ["Z_STAT", "P", "FIRTH_BETA", "FIRTH_P"] : ["BETA", "SE", "T_STAT", "P"];
    const head = table.createTHead().insertRow();
    for (const name of ["variant", "A1_FREQ", "OBS_CT", ...stats]) {
      const th = document.createElement("th");
      th.textContent = name;
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const row of ph.top) {
      const tr = body.insertRow();
      tr.dataset.id = row.ID;
      tr.dataset.p = row.P;
      const first = document.createElement("td");
      first.appendChild(variantLink(row));
      tr.appendChild(first);
      cell(tr, row.A1_FREQ === null ? "NA" : row.A1_FREQ.toFixed(3));
      cell(tr, row.OBS_CT);
      for (const name of stats) {
        const value = row[name];
        cell(tr, value === null || value === undefined ? "NA" : name.endsWith("P") && value < 2e-16 ? "< 2e-16" : fmt(value));
      }
    }
    parts.push(table);
  }
  parts.push(fileLinks(job, result.files));
  box.replaceChildren(...parts);
}

// -- federated learning: the training curve (the hub's PNG), the model's evaluation -------

function clearLearning() {
  state.learn = null;
  $("#learn-message").textContent = "";
  $("#learn-nodes").hidden = true;
  for (const url of state.learnUrls) URL.revokeObjectURL(url);
  state.learnUrls = [];
  $("#learn-result").replaceChildren();
  showError(null, "learn");
}

async function trainModel(event) {
  event.preventDefault();
  clearLearning();
  const names = $("#learn-features").value.split(",").map((c) => c.trim()).filter(Boolean);
  const variant = /^([0-9XYMT]{1,2}-[0-9]+-[ACGTN]+-[ACGTN*]+|rs[0-9]+)$/;
  const body = {
    kind: "learn",
    target: $("#learn-target").value.trim(),
    features: names.filter((n) => !variant.test(n)),
    variants: names.filter((n) => variant.test(n)),
    learner: $("#learn-model").value,
    strategy: $("#learn-strategy").value,
    rounds: Number($("#learn-rounds").value),
    lr: Number($("#learn-lr").value),
  };
  if ($("#learn-cohort").value) body.cohort = $("#learn-cohort").value;
  if ($("#learn-table").value.trim()) body.table = $("#learn-table").value.trim();
  try {
    const live = (job) => {
      if (job.curve && job.curve.length) $("#learn-result").replaceChildren(curveChart(job.curve, body.rounds));
    };
    const job = await follow(body, { key: "learn", button: "#learn-run", message: "#learn-message", nodes: "#learn-nodes", onProgress: live });
    if (job) showLearning(job);
  } catch (error) {
    showError(error, "learn");
  }
}

// A training curve, drawn here as the rounds come in: the held-out and training log-loss
// (left scale) and the held-out AUC (right scale) after each round, out of ``rounds``.
function curveChart(curve, rounds) {
  const width = 560, height = 240, left = 52, right = 52, top = 28, bottom = 34;
  const plotW = width - left - right, plotH = height - top - bottom;
  const losses = curve.flatMap((p) => [p.lossTest, p.lossTrain]);
  const aucs = curve.map((p) => p.auc);
  const range = (values, pad) => {
    const low = Math.min(...values), high = Math.max(...values);
    const span = high - low || pad;
    return [low - span * 0.05, high + span * 0.05];
  };
  const [lossLow, lossHigh] = range(losses, 0.01), [aucLow, aucHigh] = range(aucs, 0.01);
  const x = (round) => left + (rounds ? round / rounds : 0) * plotW;
  const yLoss = (v) => top + (1 - (v - lossLow) / (lossHigh - lossLow)) * plotH;
  const yAuc = (v) => top + (1 - (v - aucLow) / (aucHigh - aucLow)) * plotH;
  const last = curve.at(-1);
  const title = `Training curve: round ${last.round} of ${rounds}`;
  const chart = svg("svg", {
    id: "learn-curve", class: "chart learn-curve", viewBox: `0 0 ${width} ${height}`, width, role: "img",
    "data-points": curve.length, "data-rounds": rounds,
    "aria-label": `${title}; held-out log-loss ${fmt(last.lossTest)}, AUC ${fmt(last.auc)}`,
  });
  chart.appendChild(svg("title", {}, title));
  chart.appendChild(svg("text", { x: 0, y: 14, "font-weight": "bold" }, title));
  chart.appendChild(svg("rect", { x: left, y: top, width: plotW, height: plotH, class: "frame" }));
  const axis = [[lossLow, lossHigh, yLoss, left - 4, "end"], [aucLow, aucHigh, yAuc, left + plotW + 4, "start"]];
  for (const [low, high, y, at, anchor] of axis) {
    for (const v of [low, (low + high) / 2, high]) {
      chart.appendChild(svg("text", { x: at, y: y(v) + 4, "text-anchor": anchor, class: "note" }, v.toFixed(3)));
    }
  }
  chart.appendChild(svg("text", { x: left, y: height - 6, class: "note" }, "0"));
  chart.appendChild(svg("text", { x: left + plotW, y: height - 6, "text-anchor": "end", class: "note" }, `round ${rounds}`));
  const line = (y, key, cls) => svg("polyline", {
    class: cls, fill: "none", points: curve.map((p) => `${x(p.round).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" "),
  });
  chart.appendChild(line(yLoss, "lossTrain", "loss-train"));
  chart.appendChild(line(yLoss, "lossTest", "loss-test"));
  chart.appendChild(line(yAuc, "auc", "auc"));
  const legend = [["loss-test", "held-out log-loss (left)"], ["loss-train", "training log-loss"], ["auc", "held-out AUC (right)"]];
  legend.forEach(([cls, label], k) => {
    const at = left + k * 170;
    chart.appendChild(svg("line", { x1: at, x2: at + 18, y1: height - 20, y2: height - 20, class: cls }));
    chart.appendChild(svg("text", { x: at + 22, y: height - 16, class: "note" }, label));
  });
  return chart;
}

function showLearning(job) {
  const result = job.result;
  const evaluation = result.evaluation;
  const parts = [];
  const summary = document.createElement("p");
  summary.id = "learn-summary";
  summary.dataset.auc = evaluation.auc;
  summary.textContent = `${result.model} by ${result.strategy}, ${result.curve.length - 1} rounds at ` +
    `${result.contributors.join(", ")}: held-out AUC ${evaluation.auc.toFixed(4)}, log-loss ` +
    `${evaluation.loss_test.toFixed(4)} on ${evaluation.n_test.toLocaleString()} held-out rows ` +
    `(trained on ${evaluation.n_train.toLocaleString()}); membership-inference AUC ` +
    `${evaluation.membership_auc.toFixed(3)} (0.5: its training rows are not told apart).`;
  if (result.differentialPrivacy) {
    summary.textContent += ` Differentially private: ε ${result.differentialPrivacy.epsilon.toFixed(2)}, ` +
      `δ ${result.differentialPrivacy.delta}.`;
  }
  parts.push(summary);
  parts.push(curveChart(result.curve, result.curve.at(-1).round));
  if (result.coefficients) {
    const table = document.createElement("table");
    table.id = "learn-coefficients";
    const head = table.createTHead().insertRow();
    for (const name of ["term", "estimate (per unit)"]) {
      const th = document.createElement("th");
      th.textContent = name;
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const [term, value] of Object.entries(result.coefficients)) {
      const tr = body.insertRow();
      cell(tr, term);
      cell(tr, fmt(value));
    }
    parts.push(table);
  }
  parts.push(fileLinks(job, result.files, state.learnUrls));
  $("#learn-result").replaceChildren(...parts);
}

function fileLinks(job, names, urls = state.gwasUrls) {
  const files = document.createElement("p");
  files.className = "note";
  files.textContent = "Files: ";
  for (const name of names) {
    const link = document.createElement("a");
    link.textContent = name;
    link.href = "#";
    link.addEventListener("click", async (event) => {
      event.preventDefault();
      const a = document.createElement("a");
      a.href = await fileUrl(job, name, urls);
      a.download = name;
      a.click();
    });
    files.append(link, " ");
  }
  return files;
}

// -- the caller's analyses: listed by the hub, reopened here -----------------------------

async function loadAnalyses() {
  const list = $("#analyses-list");
  if (!$("#token").value.trim()) {
    list.replaceChildren();
    return;
  }
  try {
    const body = await api("/hub/analyses");
    list.replaceChildren(...body.analyses.map((a) => {
      const item = document.createElement("li");
      const open = document.createElement("button");
      open.type = "button";
      open.textContent = `${a.kind}: ${a.what || ""}`;
      open.dataset.id = a.id;
      open.disabled = a.state !== "succeeded" || !["glm", "gwas", "learn"].includes(a.kind);
      open.addEventListener("click", () => openAnalysis(a));
      item.append(open, ` ${a.state} · ${a.created}`);
      return item;
    }));
    showError(null, "analyses");
  } catch (error) {
    list.replaceChildren();
    showError(error, "analyses");
  }
}

// -- the caller's workflow runs: each node's state and its airlock's word on each output --

async function loadWorkflows() {
  const box = $("#workflows-list");
  if (!$("#token").value.trim()) {
    box.replaceChildren();
    return;
  }
  try {
    for (const url of state.workflowUrls) URL.revokeObjectURL(url);
    state.workflowUrls = [];
    const { workflows } = await api("/hub/workflows");
    const shown = await Promise.all(workflows.map((w) => api(`/hub/workflows/${w.id}`)));
    box.replaceChildren(...shown.map(workflowTable));
    if (!shown.length) box.textContent = "No workflow runs yet.";
    showError(null, "workflows");
  } catch (error) {
    box.replaceChildren();
    showError(error, "workflows");
  }
}

function workflowTable(run) {
  const table = document.createElement("table");
  table.className = "workflow";
  table.dataset.id = run.id;
  table.createCaption().textContent = `${run.workflow} (${run.workflow_type}) · ${run.id}`;
  const head = table.createTHead().insertRow();
  for (const name of ["node", "state", "outputs (airlock)"]) {
    const th = document.createElement("th");
    th.textContent = name;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const [node, at] of Object.entries(run.nodes)) {
    const row = body.insertRow();
    row.dataset.node = node;
    cell(row, node);
    cell(row, at.state || at.status || "not started");
    const outputs = row.insertCell();
    if (!at.outputs) outputs.textContent = at.detail || "";
    for (const name of Object.keys(at.outputs || {})) {
      const item = document.createElement("div");
      item.dataset.output = name;
      const link = document.createElement("a");
      link.href = "#";
      link.textContent = name;
      link.addEventListener("click", async (event) => {
        event.preventDefault();
        try {
          const a = document.createElement("a");
          a.href = await blobUrl(`/hub/workflows/${run.id}/nodes/${node}/outputs/${name}`, name, state.workflowUrls);
          a.download = name.split("/").pop();
          a.click();
        } catch (error) {
          showError(error, "workflows");
        }
      });
      item.append(link, " released");
      outputs.appendChild(item);
    }
    // of the others, only how many: their names could carry data until a custodian looks
    const airlock = at.airlock || {};
    if (airlock.held || airlock.rejected) {
      const waiting = document.createElement("div");
      waiting.className = "note";
      waiting.dataset.held = airlock.held || 0;
      waiting.textContent = `${airlock.held || 0} held, ${airlock.rejected || 0} rejected in the node's airlock`;
      outputs.appendChild(waiting);
    }
  }
  return table;
}

async function openAnalysis(summary) {
  try {
    const job = await api(`/hub/analyses/${summary.id}`);
    if (summary.kind === "gwas") {
      clearGwas();
      showNodes(job, "#gwas-nodes");
      $("#gwas-message").textContent = `${job.state} · ${job.id}`;
      await showGwas(job);
      $("#gwas-result").scrollIntoView({ behavior: "smooth" });
    } else if (summary.kind === "learn") {
      clearLearning();
      showNodes(job, "#learn-nodes");
      $("#learn-message").textContent = `${job.state} · ${job.id}`;
      showLearning(job);
      $("#learn-result").scrollIntoView({ behavior: "smooth" });
    } else {
      clearAnalysis();
      showNodes(job, "#glm-nodes");
      $("#glm-message").textContent = `${job.state} · ${job.id}`;
      showGlm(job);
    }
  } catch (error) {
    showError(error, "analyses");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#variant-form").addEventListener("submit", lookUpVariant);
  $("#term-input").addEventListener("input", suggestTerms);
  $("#term-input").addEventListener("keydown", termKeys);
  for (const id of ["#v-chrom", "#v-pos", "#v-ref", "#v-alt"]) {
    $(id).addEventListener("input", clearVariant);
  }
  for (const id of ["#sex", "#min-age", "#max-age"]) {
    $(id).addEventListener("input", scheduleCount);
    $(id).addEventListener("change", scheduleCount);
  }
  $("#save-form").addEventListener("submit", saveCohort);
  $("#breakdown-button").addEventListener("click", breakDown);
  $("#glm-form").addEventListener("submit", fitModel);
  for (const id of ["#glm-outcome", "#glm-covariates", "#glm-family", "#glm-cohort", "#glm-table"]) {
    $(id).addEventListener("input", clearAnalysis);
  }
  $("#gwas-form").addEventListener("submit", runGwas);
  for (const id of ["#gwas-phenotype", "#gwas-covariates", "#gwas-model", "#gwas-region", "#gwas-cohort", "#gwas-table"]) {
    $(id).addEventListener("input", clearGwas);
  }
  $("#learn-form").addEventListener("submit", trainModel);
  for (const id of ["#learn-target", "#learn-features", "#learn-model", "#learn-strategy", "#learn-rounds", "#learn-lr", "#learn-cohort", "#learn-table"]) {
    $(id).addEventListener("input", clearLearning);
  }
  // The token lives in this tab's session storage: it survives a reload, not the tab.
  $("#token").value = sessionStorage.getItem("genofed-token") || "";
  showIdentity();
  $("#token").addEventListener("change", () => {
    const token = $("#token").value.trim();
    if (token) sessionStorage.setItem("genofed-token", token);
    else sessionStorage.removeItem("genofed-token");
    showIdentity();
    clearResults();
    loadDatasets();
    loadAnalyses();
    loadWorkflows();
    scheduleCount();
  });
  $("#workflows-refresh").addEventListener("click", loadWorkflows);
  loadNodes();
  loadDatasets();
  loadCohorts();
  loadAnalyses();
  loadWorkflows();
  countCohort();
  setInterval(loadNodes, 5000);
});
