// The genofed hub portal: plain DOM and fetch, against the hub's own API.
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { terms: [], countTimer: null, countRequest: 0 };

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
  const visas = (claims.ga4gh_passport_v1 || []).map((v) => (decodeJwt(v) || {}).ga4gh_visa_v1 || {});
  const types = new Set(visas.map((v) => v.type));
  let level = "access token (exchanged for a Passport per node)";
  if (claims.ga4gh_passport_v1) {
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
function clearResults() {
  $("#variant-result").replaceChildren();
  $("#cohort-counts tbody").replaceChildren();
  $("#cohort-total").textContent = "–";
  $("#cohort-precision").textContent = "";
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
  const params = new URLSearchParams({
    referenceName: $("#v-chrom").value.trim(),
    start: String(Number($("#v-pos").value) - 1),
    referenceBases: $("#v-ref").value.trim().toUpperCase(),
    alternateBases: $("#v-alt").value.trim().toUpperCase(),
    requestedGranularity: "count",
  });
  try {
    const body = await api("/beacon/v2/g_variants?" + params);
    const summary = body.responseSummary;
    const found = summary.exists ? "found" : "not found";
    const total = summary.numTotalResults === undefined ? "" : ` (${summary.numTotalResults} variants)`;
    const nodes = body.info.nodes.map((n) => `${n.node}: ${n.status}`).join(", ");
    const line = document.createElement("p");
    line.textContent = `${found}${total} — ${nodes}`;
    $("#variant-result").replaceChildren(line);
    showError(null, "variant");
  } catch (error) {
    $("#variant-result").replaceChildren();
    showError(error, "variant");
  }
}

function criteria() {
  const out = { terms: state.terms };
  const sex = $("#sex").value;
  if (sex) out.sex = sex;
  const min = $("#min-age").value;
  const max = $("#max-age").value;
  if (min !== "") out.min_age = Number(min);
  if (max !== "") out.max_age = Number(max);
  return out;
}

function scheduleCount() {
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

function renderTerms() {
  const box = $("#terms");
  box.replaceChildren();
  for (const term of state.terms) {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.dataset.term = term;
    chip.textContent = term + " ";
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

function pickTerm(id) {
  if (!state.terms.includes(id)) state.terms.push(id);
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
        item.textContent = term.label ? `${term.label} (${term.id})` : term.id;
        item.addEventListener("click", () => pickTerm(term.id));
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
    if (chosen) pickTerm(chosen.dataset.term);
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
    for (const cohort of cohorts) {
      const item = document.createElement("li");
      item.dataset.cohort = cohort.id;
      item.textContent = `${cohort.name} (${cohort.id}): ${JSON.stringify(cohort.criteria)}`;
      list.appendChild(item);
    }
    showError(null, "save");
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

document.addEventListener("DOMContentLoaded", () => {
  $("#variant-form").addEventListener("submit", lookUpVariant);
  $("#term-input").addEventListener("input", suggestTerms);
  $("#term-input").addEventListener("keydown", termKeys);
  for (const id of ["#v-chrom", "#v-pos", "#v-ref", "#v-alt"]) {
    $(id).addEventListener("input", () => $("#variant-result").replaceChildren());
  }
  for (const id of ["#sex", "#min-age", "#max-age"]) {
    $(id).addEventListener("input", scheduleCount);
    $(id).addEventListener("change", scheduleCount);
  }
  $("#save-form").addEventListener("submit", saveCohort);
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
    scheduleCount();
  });
  loadNodes();
  loadDatasets();
  loadCohorts();
  countCohort();
  setInterval(loadNodes, 5000);
});
