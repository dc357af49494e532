"""``/hub/cohorts``: count a cohort at every node (in all, and by sex and age band), save
it, list, recount and delete saved ones."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response

from genofed.api.responses import JSONResponse
from genofed.beacon.merge import merge_counts
from genofed.config import HubNode
from genofed.criteria import CohortCriteria
from genofed.governance.release import ReleasePolicy
from genofed.hub.client import NodeClient
from genofed.hub.cohorts import CohortDefinition, criteria_of
from genofed.hub.deps import Hub, Nodes
from genofed.hub.fanout import Reply


async def count_cohort(
    nodes: NodeClient, release: ReleasePolicy, criteria: CohortCriteria
) -> dict[str, Any]:
    """Each node's count of the cohort (made safe by the node) and the total (made safe
    again by the hub's release policy); nodes with none of the cohort's datasets are not
    asked, and do not make the total partial."""
    wanted = criteria.nodes()

    async def call(node: HubNode, end: float) -> Reply:
        if wanted is not None and node.name not in wanted:
            return Reply(node.name, "skipped", detail="none of the cohort's datasets is here")
        body = criteria.beacon_body(node.name)
        return await nodes.send(node, "POST", criteria.beacon_path(), end, body=body)

    replies = await nodes.each(call)
    asked = [r for r in replies if wanted is None or r.node in wanted]
    return merge_counts(asked, release, also=[r for r in replies if r not in asked])


async def break_down(
    nodes: NodeClient, release: ReleasePolicy, criteria: CohortCriteria
) -> dict[str, Any]:
    """The cohort's totals by sex and by age band, for a chart: each part is a cohort
    counted at the nodes like any other, so each node applies its own rules to each part
    (a part a node withholds is shown as withheld, never as 0)."""
    parts = criteria.breakdowns()
    keys = [(axis, label) for axis, pairs in parts.items() for label, _ in pairs]
    counted = await asyncio.gather(
        *(count_cohort(nodes, release, part) for pairs in parts.values() for _, part in pairs)
    )
    answer: dict[str, Any] = {axis: [] for axis in parts}
    warnings: list[str] = []
    for (axis, label), counts in zip(keys, counted, strict=True):
        answer[axis].append(
            {"value": label}
            | {k: counts.get(k) for k in ("total", "countPrecision", "exists", "partial")}
        )
        warnings += [w for w in counts.get("warnings") or [] if w not in warnings]
    return answer | {"warnings": warnings}


def build_cohort_router() -> APIRouter:
    router = APIRouter(prefix="/hub/cohorts", tags=["cohorts"], default_response_class=JSONResponse)

    @router.post("/count", summary="Count a cohort at every node, without saving it")
    async def preview(criteria: CohortCriteria, hub: Hub, nodes: Nodes) -> dict[str, Any]:
        return await count_cohort(nodes, hub.release, criteria)

    @router.post(
        "/breakdown", summary="A cohort's totals by sex and by age band (safe counts, a chart's)"
    )
    async def breakdown(criteria: CohortCriteria, hub: Hub, nodes: Nodes) -> dict[str, Any]:
        return await break_down(nodes, hub.release, criteria)

    @router.post("", status_code=201, summary="Save a cohort definition (and count it)")
    async def create(definition: CohortDefinition, hub: Hub, nodes: Nodes) -> dict[str, Any]:
        counts = await count_cohort(nodes, hub.release, definition.criteria)
        return {**hub.cohorts.save(definition, counts), "counts": counts}

    @router.get("", summary="Saved cohorts")
    def saved(hub: Hub) -> dict[str, Any]:
        return {"cohorts": hub.cohorts.all()}

    @router.get("/{cohort_id}", summary="A saved cohort, counted now")
    async def one(cohort_id: str, hub: Hub, nodes: Nodes) -> dict[str, Any]:
        cohort = hub.cohorts.get(cohort_id)
        return {**cohort, "counts": await count_cohort(nodes, hub.release, criteria_of(cohort))}

    @router.delete(
        "/{cohort_id}", status_code=204, response_class=Response, summary="Delete a saved cohort"
    )
    def delete(cohort_id: str, hub: Hub) -> Response:
        hub.cohorts.delete(cohort_id)
        return Response(status_code=204)

    return router
