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

function showError(error) {
  $("#error").textContent = error ? String(error.message || error) : "";
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
  } catch (error) {
    showError(error);
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
  } catch (error) {
    showError(error);
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
    const total = summary.numTotalResults === undefined ? "" : ` (${summary.numTotalResults})`;
    const nodes = body.info.nodes.map((n) => `${n.node}: ${n.status}`).join(", ");
    $("#variant-result").textContent = `${found}${total} — ${nodes}`;
    showError(null);
  } catch (error) {
    showError(error);
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
    showError(null);
  } catch (error) {
    if (ticket === state.countRequest) showError(error);
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
      for (const term of terms) {
        const item = document.createElement("li");
        item.setAttribute("role", "option");
        item.dataset.term = term.id;
        item.textContent = term.label ? `${term.id} — ${term.label}` : term.id;
        item.addEventListener("click", () => {
          if (!state.terms.includes(term.id)) state.terms.push(term.id);
          $("#term-input").value = "";
          list.replaceChildren();
          renderTerms();
          scheduleCount();
        });
        list.appendChild(item);
      }
    } catch (error) {
      showError(error);
    }
  }, 200);
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
  } catch (error) {
    showError(error);
  }
}

async function saveCohort(event) {
  event.preventDefault();
  try {
    await api("/hub/cohorts", {
      method: "POST",
      body: JSON.stringify({ name: $("#cohort-name").value.trim(), criteria: criteria() }),
    });
    $("#cohort-name").value = "";
    await loadCohorts();
    showError(null);
  } catch (error) {
    showError(error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#variant-form").addEventListener("submit", lookUpVariant);
  $("#term-input").addEventListener("input", suggestTerms);
  for (const id of ["#sex", "#min-age", "#max-age"]) {
    $(id).addEventListener("input", scheduleCount);
    $(id).addEventListener("change", scheduleCount);
  }
  $("#save-form").addEventListener("submit", saveCohort);
  $("#token").addEventListener("change", () => {
    loadDatasets();
    scheduleCount();
  });
  loadNodes();
  loadDatasets();
  loadCohorts();
  countCohort();
  setInterval(loadNodes, 5000);
});
