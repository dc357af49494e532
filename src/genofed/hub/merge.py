"""Merging the nodes' Beacon answers into one, as a Beacon Network does.

Result sets keep where they came from (``id`` becomes ``<node>:<dataset>``); counts are
summed and, unless every node counted exactly (record-level answers), the hub's own
disclosure rules are applied again to the sum; each node's outcome is reported in the
response's ``info.nodes``.
"""

from __future__ import annotations

from typing import Any

from genofed.config import GRANULARITY_ORDER, Disclosure
from genofed.governance.disclosure import safe_count
from genofed.hub.fanout import Reply


def merge_result_sets(
    replies: list[Reply], rules: Disclosure, meta: dict[str, Any]
) -> dict[str, Any]:
    """One Beacon result-set response from the nodes' (those ``ok``); ``meta`` is the
    hub's, less the granularity returned."""
    docs = [(r.node, r.document) for r in replies if r.status == "ok" and r.document]
    granularity = "boolean"
    for _, doc in docs:
        node_granularity = (doc.get("meta") or {}).get("returnedGranularity", "boolean")
        if GRANULARITY_ORDER.index(node_granularity) > GRANULARITY_ORDER.index(granularity):
            granularity = node_granularity
    summaries = [doc.get("responseSummary") or {} for _, doc in docs]
    summary: dict[str, Any] = {"exists": any(bool(s.get("exists")) for s in summaries)}
    document: dict[str, Any] = {
        "meta": {**meta, "returnedGranularity": granularity},
        "responseSummary": summary,
        "info": {"nodes": [r.outcome() for r in replies]},
    }
    warnings = [
        f"{node}: {w}" for node, doc in docs for w in (doc.get("info") or {}).get("warnings", [])
    ]
    if warnings:
        document["info"]["warnings"] = warnings
    if granularity == "boolean":
        return document
    total, precision = merged_count(summaries, rules)
    summary["numTotalResults"] = total
    if precision != "exact":
        summary["countPrecision"] = precision
    result_sets = []
    for node, doc in docs:
        for result_set in (doc.get("response") or {}).get("resultSets") or []:
            if isinstance(result_set, dict):
                result_sets.append(_from_node(node, result_set))
    document["response"] = {"resultSets": result_sets}
    return document


def merge_collections(replies: list[Reply], meta: dict[str, Any]) -> dict[str, Any]:
    """One Beacon collections response (datasets, cohorts: catalogue metadata) from the
    nodes'; each collection's ``id`` becomes ``<node>:<id>``."""
    collections = []
    for reply in replies:
        if reply.status != "ok" or not reply.document:
            continue
        for item in (reply.document.get("response") or {}).get("collections") or []:
            if isinstance(item, dict):
                collections.append(_from_node(reply.node, item))
    return {
        "meta": {**meta, "returnedGranularity": "record"},
        "responseSummary": {"exists": bool(collections), "numTotalResults": len(collections)},
        "response": {"collections": collections},
        "info": {"nodes": [r.outcome() for r in replies]},
    }


def merged_count(summaries: list[dict[str, Any]], rules: Disclosure) -> tuple[int, str]:
    """The sum of the nodes' ``numTotalResults``, and how precise it is. Counts a node made
    safe (rounded, or a floor for small ones) make the sum safe again under ``rules``."""
    counted = [s for s in summaries if isinstance(s.get("numTotalResults"), int)]
    total = sum(s["numTotalResults"] for s in counted)
    precisions = {s.get("countPrecision", "exact") for s in counted}
    if precisions <= {"exact"}:
        return total, "exact"
    safe = safe_count(total, rules)
    worst = "imprecise" if "imprecise" in precisions | {safe.precision} else "rounded"
    return safe.value, worst


def _from_node(node: str, result_set: dict[str, Any]) -> dict[str, Any]:
    out = dict(result_set)
    out["id"] = f"{node}:{result_set.get('id', '')}"
    info = dict(out.get("info") or {})
    info["node"] = node
    out["info"] = info
    return out


def union_filtering_terms(replies: list[Reply], meta: dict[str, Any]) -> dict[str, Any]:
    """Every term any node offers (the first label seen wins; scopes are joined)."""
    terms: dict[tuple[str, str], dict[str, Any]] = {}
    resources: dict[str, dict[str, Any]] = {}
    for reply in replies:
        response = (reply.document or {}).get("response") or {}
        for term in response.get("filteringTerms") or []:
            if not isinstance(term, dict) or "id" not in term:
                continue
            key = (str(term.get("type")), str(term["id"]))
            known = terms.setdefault(key, dict(term))
            scopes = set(known.get("scopes") or []) | set(term.get("scopes") or [])
            if scopes:
                known["scopes"] = sorted(scopes)
        for resource in response.get("resources") or []:
            if isinstance(resource, dict) and "id" in resource:
                resources.setdefault(str(resource["id"]), resource)
    return {
        "meta": meta,
        "response": {
            "filteringTerms": sorted(terms.values(), key=lambda t: str(t["id"])),
            "resources": sorted(resources.values(), key=lambda r: str(r["id"])),
        },
        "info": {"nodes": [r.outcome() for r in replies]},
    }
