"""The hub's ``/beacon/v2``: the same API as a node, answered by every node at once."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request

from genofed import __version__
from genofed._exceptions import QueryError
from genofed.hub.fanout import Reply
from genofed.hub.merge import merge_collections, merge_result_sets, union_filtering_terms
from genofed.hub.runtime import HubRuntime, deadline_of, hub_params
from genofed.node.beacon.model import (
    API_VERSION,
    ENTRY_TYPES,
    SCHEMA_BASE,
    EntryType,
    returned_schema,
)
from genofed.node.beacon.request import from_body, from_query_string
from genofed.node.json_response import JSONResponse

PREFIX = "/beacon/v2"


def _informational_meta(hub: HubRuntime, schema: str) -> dict[str, Any]:
    return {
        "beaconId": hub.config.beacon_id,
        "apiVersion": API_VERSION,
        "returnedSchemas": [{"entityType": schema.split("-")[1], "schema": schema}],
    }


def build_hub_beacon_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, default_response_class=JSONResponse, tags=["beacon"])

    @router.get("/", summary="The federated Beacon", response_model=None)
    @router.get("/info", summary="The federated Beacon", response_model=None)
    async def info(request: Request) -> dict[str, Any]:
        hub = HubRuntime.of(request)
        replies = await hub.ask(request, "GET", f"{PREFIX}/info")
        members = []
        for reply in replies:
            response = (reply.document or {}).get("response") or {}
            members.append(
                {
                    **reply.outcome(),
                    "beaconId": response.get("id"),
                    "name": response.get("name"),
                    "organization": response.get("organization"),
                }
            )
        name = hub.config.name
        return {
            "meta": _informational_meta(hub, "beacon-info-v2.0.0"),
            "response": {
                "id": hub.config.beacon_id,
                "name": name,
                "apiVersion": API_VERSION,
                "environment": "prod",
                "organization": {"id": hub.config.beacon_id, "name": name},
                "description": f"{name}: a genofed hub over {len(hub.config.nodes)} node(s)",
                "version": __version__,
                "welcomeUrl": str(request.base_url),
                "info": {"software": f"genofed {__version__}", "nodes": members},
            },
        }

    @router.get("/map", summary="Endpoints any node serves", response_model=None)
    async def beacon_map(request: Request) -> dict[str, Any]:
        hub = HubRuntime.of(request)
        replies = await hub.ask(request, "GET", f"{PREFIX}/map")
        served = set()
        for reply in replies:
            sets = ((reply.document or {}).get("response") or {}).get("endpointSets") or {}
            served |= {v.get("entryType") for v in sets.values() if isinstance(v, dict)}
        base = str(request.base_url).rstrip("/") + PREFIX
        sets = {
            f"{e.id}Endpoints": {"entryType": e.id, "rootUrl": f"{base}/{e.path}"}
            for e in ENTRY_TYPES
            if e.id in served
        }
        return {
            "meta": _informational_meta(hub, "beacon-map-v2.0.0"),
            "response": {
                "$schema": f"{SCHEMA_BASE}/../../../framework/json/configuration/"
                "beaconMapSchema.json",
                "endpointSets": sets,
            },
        }

    @router.get("/filtering_terms", summary="Terms any node offers", response_model=None)
    async def filtering_terms(request: Request) -> dict[str, Any]:
        hub = HubRuntime.of(request)
        replies = await hub.ask(request, "GET", f"{PREFIX}/filtering_terms")
        return union_filtering_terms(
            replies, _informational_meta(hub, "beacon-filteringterms-v2.0.0")
        )

    for entry in ENTRY_TYPES:
        _add_entry_routes(router, entry)
    return router


def _add_entry_routes(router: APIRouter, entry: EntryType) -> None:
    async def query(request: Request) -> dict[str, Any]:
        hub = HubRuntime.of(request)
        params, body = await _forwarded(request)
        # The nodes would refuse a malformed request one by one: refuse it once, here.
        parsed = from_body(body) if request.method == "POST" else from_query_string(params)
        replies: list[Reply] = await hub.ask(
            request,
            request.method,
            f"{PREFIX}/{entry.path}",
            params=params or None,
            body=body if request.method == "POST" else None,
        )
        common = {
            "beacon_id": hub.config.beacon_id,
            "api_version": API_VERSION,
            "request_summary": parsed.summary(),
            "returned_schemas": [returned_schema(entry)],
        }
        if entry.collection:
            return merge_collections(replies, **common)
        return merge_result_sets(replies, hub.config.disclosure, **common)

    summary = f"{entry.name}: every node's, merged"
    router.add_api_route(
        f"/{entry.path}", query, methods=["GET", "POST"], summary=summary, response_model=None
    )


async def _forwarded(request: Request) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The query parameters and JSON body to send the nodes: the caller's, less what is
    for the hub (its deadline) and never any credentials."""
    params = hub_params(request)
    body: dict[str, Any] = {}
    if request.method == "POST":
        raw = await request.body()
        if raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise QueryError(f"the request body is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise QueryError("the request body must be a JSON object")
        if "passports" in body:
            raise QueryError(
                "send your Passport to the hub as 'Authorization: Bearer'; the hub obtains "
                "one for each node and never forwards yours"
            )
    deadline_of(request)  # a malformed deadline is refused before anything is sent
    return params, body
