"""``/hub/cohorts``: count a cohort at every node, save it, list and recount saved ones."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from genofed.api.responses import JSONResponse
from genofed.beacon.merge import node_count, partial_warning
from genofed.config import HubNode
from genofed.governance.release import Part, ReleasePolicy
from genofed.hub.client import NodeClient
from genofed.hub.cohorts import CohortCriteria, CohortDefinition, criteria_of
from genofed.hub.deps import Hub, Nodes
from genofed.hub.fanout import Reply


async def count_cohort(
    nodes: NodeClient, release: ReleasePolicy, criteria: CohortCriteria
) -> dict[str, Any]:
    """Each node's count of the cohort (made safe by the node) and the total (made safe
    again by the hub's release policy). A total that leaves nodes out says which and why;
    nodes with none of the cohort's datasets are not asked."""
    wanted = criteria.nodes()

    async def call(node: HubNode, end: float) -> Reply:
        if wanted is not None and node.name not in wanted:
            return Reply(node.name, "skipped", detail="none of the cohort's datasets is here")
        body = criteria.beacon_body(node.name)
        return await nodes.send(node, "POST", criteria.beacon_path(), end, body=body)

    replies = await nodes.each(call)
    outcomes, parts, warnings = [], [], []
    exists = False
    for reply in replies:
        outcome = reply.outcome()
        if reply.status == "ok" and reply.document is not None:
            document = reply.document
            summary = document.get("responseSummary") or {}
            part = node_count(reply.node, summary)
            exists = exists or bool(summary.get("exists"))
            outcome["exists"] = bool(summary.get("exists"))
            if part.count is not None:
                outcome["count"] = part.count.value
                outcome["countPrecision"] = part.count.precision
            else:
                outcome["withheld"] = part.reason
            warnings += [
                f"{reply.node}: {w}" for w in (document.get("info") or {}).get("warnings", [])
            ]
            parts.append(part)
        elif reply.status != "skipped" or wanted is None or reply.node in wanted:
            parts.append(Part(reply.node, None, f"{reply.status}: {reply.detail or 'no answer'}"))
        outcomes.append(outcome)
    merged = release.merge(parts)
    if note := partial_warning(merged):
        warnings.append(note)
    answer: dict[str, Any] = {
        "total": None if merged.count is None else merged.count.value,
        "countPrecision": None if merged.count is None else merged.count.precision,
        "partial": merged.partial,
        "exists": exists,
        "nodes": outcomes,
    }
    if warnings:
        answer["warnings"] = warnings
    return answer


def build_cohort_router() -> APIRouter:
    router = APIRouter(prefix="/hub/cohorts", tags=["cohorts"], default_response_class=JSONResponse)

    @router.post("/count", summary="Count a cohort at every node, without saving it")
    async def preview(criteria: CohortCriteria, hub: Hub, nodes: Nodes) -> dict[str, Any]:
        return await count_cohort(nodes, hub.release, criteria)

    @router.post("", status_code=201, summary="Save a cohort definition (and count it)")
    async def create(definition: CohortDefinition, hub: Hub, nodes: Nodes) -> dict[str, Any]:
        counts = await count_cohort(nodes, hub.release, definition.criteria)
        return {**hub.cohorts.save(definition), "counts": counts}

    @router.get("", summary="Saved cohorts")
    def saved(hub: Hub) -> dict[str, Any]:
        return {"cohorts": hub.cohorts.all()}

    @router.get("/{cohort_id}", summary="A saved cohort, counted now")
    async def one(cohort_id: str, hub: Hub, nodes: Nodes) -> dict[str, Any]:
        cohort = hub.cohorts.get(cohort_id)
        return {**cohort, "counts": await count_cohort(nodes, hub.release, criteria_of(cohort))}

    return router
