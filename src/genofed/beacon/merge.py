"""Merging the nodes' Beacon answers into one, as a Beacon Network does.

Result sets keep where they came from (``id`` becomes ``<node>:<dataset>``); counts are
summed by the hub's ``ReleasePolicy.merge``: exact only when every node counted exactly,
otherwise made safe again under the hub's rules. A total that leaves a node out (it only
said yes or no, withheld its count, or did not answer) says so: ``countPrecision`` is not
``exact`` and a warning names the node and why. Each node's outcome is reported in the
response's ``info.nodes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from genofed.api.responses import dig
from genofed.beacon.model import API_VERSION, ENTRY_TYPES, SCHEMA_BASE
from genofed.config import Granularity
from genofed.governance.disclosure import Precision, SafeCount
from genofed.governance.release import Merged, Part, ReleasePolicy


class NodeAnswer(Protocol):
    """How one node answered (the hub's ``Reply``)."""

    node: str
    status: str
    detail: str | None
    document: dict[str, Any] | None

    def outcome(self) -> dict[str, Any]: ...


MAX_COUNT = 10**10  # a node claiming more results than this is broken, or lying


def problem(document: dict[str, Any], *, collection: bool = False) -> str | None:
    """What makes a node's Beacon answer unusable, if anything: the hub merges only the
    shapes it understands, so a node's malformed ``meta``, ``responseSummary``, result
    sets or warnings are that node's error, never the hub's."""
    meta = document.get("meta", {})
    if not isinstance(meta, dict):
        return "meta is not an object"
    returned = meta.get("returnedGranularity", "boolean")
    if returned not in ("boolean", "count", "record"):
        return "meta.returnedGranularity is not boolean, count or record"
    summary = document.get("responseSummary", {})
    if not isinstance(summary, dict):
        return "responseSummary is not an object"
    if "exists" in summary and not isinstance(summary["exists"], bool):
        return "responseSummary.exists is not true or false"
    total = summary.get("numTotalResults")
    if total is not None and (
        not isinstance(total, int) or isinstance(total, bool) or not 0 <= total <= MAX_COUNT
    ):
        return "responseSummary.numTotalResults is not a count"
    if summary.get("countPrecision", "exact") not in ("exact", "rounded", "imprecise"):
        return "responseSummary.countPrecision is not exact, rounded or imprecise"
    info = document.get("info", {})
    if not isinstance(info, dict):
        return "info is not an object"
    warnings = info.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        return "info.warnings is not a list of text"
    response = document.get("response", {})
    if not isinstance(response, dict):
        return "response is not an object"
    key = "collections" if collection else "resultSets"
    items = response.get(key, [])
    if not isinstance(items, list):
        return f"response.{key} is not a list"
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id", ""), str):
            return f"response.{key} holds something that is not a set with an id"
        count = item.get("resultsCount")
        if count is not None and (
            not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_COUNT
        ):
            return f"response.{key}[].resultsCount is not a count"
        if not isinstance(item.get("info", {}), dict):
            return f"response.{key}[].info is not an object"
    return None


def node_count(node: str, summary: dict[str, Any]) -> Part:
    """A node's count from its ``responseSummary``, or why it gave none."""
    total = summary.get("numTotalResults")
    if isinstance(total, int) and not isinstance(total, bool):
        precision = summary.get("countPrecision", Precision.EXACT)
        try:
            return Part(node, SafeCount(total, Precision(precision)))
        except ValueError:
            return Part(node, SafeCount(total, Precision.IMPRECISE))
    said = "yes" if summary.get("exists") else "no"
    return Part(node, None, f"gave no count to this caller, only whether anyone matches ({said})")


def node_parts(replies: Sequence[NodeAnswer]) -> list[Part]:
    """Every node's part of a merged count: its count, or why there is none."""
    parts = []
    for reply in replies:
        if reply.status == "ok" and reply.document is not None:
            parts.append(node_count(reply.node, dig(reply.document, "responseSummary", default={})))
        else:
            parts.append(Part(reply.node, None, f"{reply.status}: {reply.detail or 'no answer'}"))
    return parts


def partial_warning(merged: Merged) -> str | None:
    """What a total that leaves nodes out says about them."""
    if not merged.partial:
        return None
    left_out = "; ".join(f"{p.source} ({p.reason})" for p in merged.missing)
    return f"the total leaves out {len(merged.missing)} node(s): {left_out}"


def merge_counts(
    replies: Sequence[NodeAnswer],
    release: ReleasePolicy,
    *,
    also: Sequence[NodeAnswer] = (),
) -> dict[str, Any]:
    """The nodes' counts of one question (a cohort), each as the node released it, and the
    total as the hub releases it: ``total`` (``None`` when no node gave a count, never a
    false 0), ``countPrecision``, ``partial`` when a node is left out (with why, in its
    ``withheld`` and in ``warnings``), ``exists``, and the nodes' own warnings. Replies in
    ``also`` (nodes not asked) are listed but leave nothing out."""
    outcomes, parts, warnings = [], [], []
    exists = False
    for reply in replies:
        outcome = reply.outcome()
        document = reply.document if reply.status == "ok" else None
        if document is not None:
            summary = dig(document, "responseSummary", default={})
            part = node_count(reply.node, summary)
            exists = exists or bool(summary.get("exists"))
            outcome["exists"] = bool(summary.get("exists"))
            if part.count is not None:
                outcome["count"] = part.count.value
                outcome["countPrecision"] = part.count.precision
            else:
                outcome["withheld"] = part.reason
            notes = dig(document, "info", "warnings", default=[])
            warnings += [f"{reply.node}: {w}" for w in notes]
        else:
            part = Part(reply.node, None, f"{reply.status}: {reply.detail or 'no answer'}")
        parts.append(part)
        outcomes.append(outcome)
    merged = release.merge(parts)
    if note := partial_warning(merged):
        warnings.append(note)
    precision = None if merged.count is None else merged.count.precision
    if precision is not None and merged.partial:
        precision = Precision.IMPRECISE  # a lower bound: some nodes are not in it
    answer: dict[str, Any] = {
        "total": None if merged.count is None else merged.count.value,
        "countPrecision": precision,
        "partial": merged.partial,
        "exists": exists,
        "nodes": outcomes + [r.outcome() for r in also],
    }
    if warnings:
        answer["warnings"] = warnings
    return answer


def merge_result_sets(
    replies: Sequence[NodeAnswer],
    release: ReleasePolicy,
    meta: dict[str, Any],
    *,
    not_asked: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """One Beacon result-set response from the nodes' (those ``ok``); ``meta`` is the
    hub's, less the granularity returned. Nodes in ``not_asked`` (the question was not for
    them) are listed but leave nothing out."""
    docs = [(r.node, r.document) for r in replies if r.status == "ok" and r.document]
    granularity = Granularity.BOOLEAN
    for _, doc in docs:
        returned = dig(doc, "meta", "returnedGranularity", default="boolean")
        try:
            granularity = max(granularity, Granularity(returned))
        except ValueError:
            continue  # a node that answers nonsense is merged as yes or no
    summaries = [doc.get("responseSummary") or {} for _, doc in docs]
    summary: dict[str, Any] = {"exists": any(bool(s.get("exists")) for s in summaries)}
    document: dict[str, Any] = {
        "meta": {**meta, "returnedGranularity": granularity},
        "responseSummary": summary,
        "info": {"nodes": [r.outcome() for r in replies]},
    }
    warnings = [
        f"{node}: {w}" for node, doc in docs for w in dig(doc, "info", "warnings", default=[])
    ]
    asked = [r for r in replies if r.node not in not_asked]
    silent = [r for r in asked if r.status != "ok" or r.document is None]
    if silent and not summary["exists"]:
        names = ", ".join(f"{r.node} ({r.status})" for r in silent)
        warnings.append(f"'exists: false' covers only the nodes that answered; not {names}")
    merged = release.merge(node_parts(asked))
    if granularity != Granularity.BOOLEAN and merged.count is None:
        granularity = Granularity.BOOLEAN
        document["meta"]["returnedGranularity"] = granularity
    if granularity != Granularity.BOOLEAN and merged.count is not None:
        summary["numTotalResults"] = merged.count.value
        precision = merged.count.precision
        if merged.partial:
            precision = Precision.IMPRECISE  # a lower bound: some nodes are not in it
            warnings.append(partial_warning(merged))  # type: ignore[arg-type]
        if precision != Precision.EXACT:
            summary["countPrecision"] = precision
        result_sets = []
        for node, doc in docs:
            for result_set in dig(doc, "response", "resultSets", default=[]):
                if isinstance(result_set, dict):
                    result_sets.append(_from_node(node, result_set))
        document["response"] = {"resultSets": result_sets}
    if warnings:
        document["info"]["warnings"] = warnings
    return document


def merge_collections(
    replies: Sequence[NodeAnswer], meta: dict[str, Any], granularity: str = "record"
) -> dict[str, Any]:
    """One Beacon collections response (datasets, cohorts: catalogue metadata) from the
    nodes'; each collection's ``id`` becomes ``<node>:<id>``. Asked for a boolean or a
    count, the nodes answer with one and the hub sums them (collections are not people:
    their number is catalogue metadata)."""
    collections = []
    total, exists = 0, False
    for reply in replies:
        if reply.status != "ok" or not reply.document:
            continue
        summary = dig(reply.document, "responseSummary", default={})
        exists = exists or summary.get("exists") is True
        total += summary.get("numTotalResults") or 0
        for item in dig(reply.document, "response", "collections", default=[]):
            if isinstance(item, dict):
                collections.append(_from_node(reply.node, item))
    merged: dict[str, Any] = {
        "meta": {**meta, "returnedGranularity": granularity},
        "responseSummary": {"exists": exists},
    }
    if granularity != "boolean":
        merged["responseSummary"]["numTotalResults"] = total
    if granularity == "record":
        merged["response"] = {"collections": collections}
    merged["info"] = {"nodes": [r.outcome() for r in replies]}
    return merged


def _from_node(node: str, result_set: dict[str, Any]) -> dict[str, Any]:
    out = dict(result_set)
    out["id"] = f"{node}:{result_set.get('id', '')}"
    info = dict(dig(out, "info", default={}))
    info["node"] = node
    out["info"] = info
    return out


def union_filtering_terms(replies: Sequence[NodeAnswer], meta: dict[str, Any]) -> dict[str, Any]:
    """Every term any node offers (the first label seen wins; scopes are joined)."""
    terms: dict[tuple[str, str], dict[str, Any]] = {}
    resources: dict[str, dict[str, Any]] = {}
    for reply in replies:
        response = dig(reply.document, "response", default={})
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


def merge_info(
    replies: Sequence[NodeAnswer],
    *,
    beacon_id: str,
    name: str,
    version: str,
    welcome_url: str,
) -> dict[str, Any]:
    """The federated Beacon's ``/info``: the hub's own, listing each node's."""
    members = []
    for reply in replies:
        response = dig(reply.document, "response", default={})
        members.append(
            {
                **reply.outcome(),
                "beaconId": response.get("id"),
                "name": response.get("name"),
                "organization": response.get("organization"),
            }
        )
    return {
        "meta": informational_meta(beacon_id, "beacon-info-v2.0.0"),
        "response": {
            "id": beacon_id,
            "name": name,
            "apiVersion": API_VERSION,
            "environment": "prod",
            "organization": {"id": beacon_id, "name": name},
            "description": f"{name}: a genofed hub over {len(replies)} node(s)",
            "version": version,
            "welcomeUrl": welcome_url,
            "info": {"software": f"genofed {version}", "nodes": members},
        },
    }


def merge_map(replies: Sequence[NodeAnswer], *, beacon_id: str, base_url: str) -> dict[str, Any]:
    """The federated Beacon's ``/map``: the entry types any node serves, at the hub."""
    served = set()
    for reply in replies:
        sets = dig(reply.document, "response", "endpointSets", default={})
        served |= {v.get("entryType") for v in sets.values() if isinstance(v, dict)}
    sets = {
        f"{e.id}Endpoints": {"entryType": e.id, "rootUrl": f"{base_url}/{e.path}"}
        for e in ENTRY_TYPES
        if e.id in served
    }
    return {
        "meta": informational_meta(beacon_id, "beacon-map-v2.0.0"),
        "response": {
            "$schema": f"{SCHEMA_BASE}/../../../framework/json/configuration/beaconMapSchema.json",
            "endpointSets": sets,
        },
    }


def informational_meta(beacon_id: str, schema: str) -> dict[str, Any]:
    return {
        "beaconId": beacon_id,
        "apiVersion": API_VERSION,
        "returnedSchemas": [{"entityType": schema.split("-")[1], "schema": schema}],
    }
