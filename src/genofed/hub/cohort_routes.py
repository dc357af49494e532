"""``/hub/cohorts``: count a cohort at every node, save it, list and recount saved ones."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from genofed.config import HubNode
from genofed.hub.cohorts import CohortCriteria, CohortDefinition, CohortStore, criteria_of
from genofed.hub.fanout import Reply, send
from genofed.hub.merge import merged_count
from genofed.hub.runtime import HubRuntime
from genofed.node.json_response import JSONResponse


async def count_cohort(request: Request, criteria: CohortCriteria) -> dict[str, Any]:
    """Each node's count of the cohort (made safe by the node) and the total (made safe
    again by the hub); nodes with none of the cohort's datasets are not asked."""
    hub = HubRuntime.of(request)
    credentials = hub.credentials(request)
    wanted = criteria.nodes()

    async def call(node: HubNode, end: float) -> Reply:
        if wanted is not None and node.name not in wanted:
            return Reply(node.name, "skipped", detail="none of the cohort's datasets is here")
        body = criteria.beacon_body(node.name)
        path = criteria.beacon_path()
        return await send(hub.session_for(node), node, "POST", path, end, None, body, credentials)

    replies = await hub.ask_each(request, call)
    nodes = []
    summaries = []
    for reply in replies:
        outcome = reply.outcome()
        summary = (reply.document or {}).get("responseSummary") or {}
        if reply.status == "ok":
            summaries.append(summary)
            outcome["count"] = summary.get("numTotalResults")
            outcome["countPrecision"] = summary.get("countPrecision", "exact")
            if outcome["count"] is None:  # the caller may only learn whether anyone matches
                outcome["exists"] = bool(summary.get("exists"))
        nodes.append(outcome)
    total, precision = merged_count(summaries, hub.config.disclosure)
    return {"total": total, "countPrecision": precision, "nodes": nodes}


def build_cohort_router(store: CohortStore) -> APIRouter:
    router = APIRouter(prefix="/hub/cohorts", tags=["cohorts"], default_response_class=JSONResponse)

    @router.post("/count", summary="Count a cohort at every node, without saving it")
    async def preview(criteria: CohortCriteria, request: Request) -> dict[str, Any]:
        return await count_cohort(request, criteria)

    @router.post("", status_code=201, summary="Save a cohort definition (and count it)")
    async def create(definition: CohortDefinition, request: Request) -> dict[str, Any]:
        counts = await count_cohort(request, definition.criteria)
        cohort = store.save(definition)
        return {**cohort, "counts": counts}

    @router.get("", summary="Saved cohorts")
    def saved() -> dict[str, Any]:
        return {"cohorts": store.all()}

    @router.get("/{cohort_id}", summary="A saved cohort, counted now")
    async def one(cohort_id: str, request: Request) -> dict[str, Any]:
        cohort = store.get(cohort_id)
        return {**cohort, "counts": await count_cohort(request, criteria_of(cohort))}

    return router
