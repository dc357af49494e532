"""The hub's ``/data-connect``: every node's tables, as ``<node>.<table>``, and queries
routed to their node or, for ``"*.<table>"`` aggregates, asked of all and merged.

A node's trouble never becomes the hub's 5xx: what a node could not answer is listed in
the response's ``errors`` with the node as ``source``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request

from genofed._exceptions import NotFoundError, QueryError
from genofed.config import HubNode
from genofed.dataconnect.sql import search_body
from genofed.hub.fanout import Reply, send
from genofed.hub.federated_sql import Federated, Routed, merge_rows, plan
from genofed.hub.runtime import HubRuntime
from genofed.node.json_response import JSONResponse

PREFIX = "/data-connect"
_MAX_PARTIAL_ROWS = 100_000  # rows one node table may add to a federated aggregate


def node_errors(replies: list[Reply]) -> list[dict[str, str]]:
    """Data Connect ``errors`` for the nodes that did not answer."""
    return [
        {
            "source": r.node,
            "title": f"Node {r.status}",
            "detail": r.detail or f"the node answered {r.status}",
        }
        for r in replies
        if r.status != "ok"
    ]


def build_hub_data_connect_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, default_response_class=JSONResponse, tags=["data connect"])

    @router.get("/tables", summary="Every node's tables", response_model=None)
    async def tables(request: Request) -> dict[str, Any]:
        hub = HubRuntime.of(request)
        replies = await hub.ask(request, "GET", f"{PREFIX}/tables")
        listed = []
        for reply in replies:
            for table in (reply.document or {}).get("tables") or []:
                if isinstance(table, dict) and isinstance(table.get("name"), str):
                    listed.append({**table, "name": f"{reply.node}.{table['name']}"})
        body: dict[str, Any] = {"tables": listed}
        if errors := node_errors(replies):
            body["errors"] = errors
        return body

    @router.get("/table/{name}/info", summary="A node table's data model", response_model=None)
    async def table_info(name: str, request: Request) -> dict[str, Any]:
        node, local = _split(HubRuntime.of(request), name)
        document = await _one(request, node, "GET", f"{PREFIX}/table/{local}/info")
        return {**document, "name": name}

    @router.get("/table/{name}/data", summary="A node table's rows", response_model=None)
    async def table_data(name: str, request: Request) -> dict[str, Any]:
        node, local = _split(HubRuntime.of(request), name)
        return _paged(node, await _one(request, node, "GET", f"{PREFIX}/table/{local}/data"))

    @router.post(
        "/search", summary="SQL over one node, or an aggregate over all", response_model=None
    )
    async def search(request: Request) -> dict[str, Any]:
        hub = HubRuntime.of(request)
        query, parameters = search_body(await request.body())
        where = plan(query)
        if isinstance(where, Routed):
            node = _node(hub, where.node)
            body = {"query": where.sql, "parameters": parameters}
            return _paged(node, await _one(request, node, "POST", f"{PREFIX}/search", body))
        return await _federated(request, hub, where, parameters)

    @router.get(
        "/nodes/{node_name}/search/{job}/{page}",
        summary="A page of a node's result",
        response_model=None,
    )
    async def page(node_name: str, job: str, page: int, request: Request) -> dict[str, Any]:
        node = _node(HubRuntime.of(request), node_name)
        path = f"{PREFIX}/search/{job}/{page}"
        return _paged(node, await _one(request, node, "GET", path))

    return router


def _node(hub: HubRuntime, name: str) -> HubNode:
    for node in hub.config.nodes:
        if node.name == name:
            return node
    raise NotFoundError(f"no node {name!r} in this federation; GET /hub/nodes lists them")


def _split(hub: HubRuntime, name: str) -> tuple[HubNode, str]:
    node, _, local = name.partition(".")
    if not local:
        raise NotFoundError(f"no table {name!r}: hub tables are named <node>.<table>")
    return _node(hub, node), local


async def _one(
    request: Request, node: HubNode, method: str, path: str, body: Any = None
) -> dict[str, Any]:
    """One node's answer; its refusal (4xx) becomes the hub's, anything else an ``errors``
    entry in an empty answer."""
    hub = HubRuntime.of(request)
    credentials = hub.credentials(request)

    async def call(node: HubNode, end: float) -> Reply:
        return await send(hub.session_for(node), node, method, path, end, None, body, credentials)

    [reply] = await hub.ask_each(request, call, nodes=[node])
    if reply.status == "ok" and reply.document is not None:
        return reply.document
    if reply.http_status is not None and 400 <= reply.http_status < 500:
        raise _NodeRefusedError(reply)
    return {"data": [], "errors": node_errors([reply])}


class _NodeRefusedError(QueryError):
    """A node refused the request: the caller gets the node's status and message."""

    def __init__(self, reply: Reply):
        super().__init__(f"node {reply.node}: {reply.detail or 'refused'}")
        self.status = reply.http_status or 400


def _paged(node: HubNode, document: dict[str, Any]) -> dict[str, Any]:
    """A node's page with its next page reached through the hub."""
    pagination = document.get("pagination") or {}
    next_url = pagination.get("next_page_url")
    if isinstance(next_url, str):
        path = urlsplit(next_url).path
        tail = path.split(f"{PREFIX}/search/", 1)[-1]
        document["pagination"] = {
            **pagination,
            "next_page_url": f"{PREFIX}/nodes/{node.name}/search/{tail}",
        }
    return document


async def _federated(
    request: Request, hub: HubRuntime, query: Federated, parameters: list[Any] | None
) -> dict[str, Any]:
    credentials = hub.credentials(request)

    async def call(node: HubNode, end: float) -> Reply:
        """Every matching table of one node, each query followed to its last page."""
        start = time.perf_counter()
        listed = await send(
            hub.session_for(node), node, "GET", f"{PREFIX}/tables", end, credentials=credentials
        )
        if listed.status != "ok" or listed.document is None:
            return listed
        names = [
            t["name"]
            for t in listed.document.get("tables") or []
            if isinstance(t, dict) and query.matches(str(t.get("name")))
        ]
        rows: list[dict[str, Any]] = []
        model: dict[str, Any] = {}
        notes: list[Any] = []
        for name in names:
            body = {"query": query.for_table(name), "parameters": parameters}
            reply = await send(
                hub.session_for(node),
                node,
                "POST",
                f"{PREFIX}/search",
                end,
                body=body,
                credentials=credentials,
            )
            while True:
                if reply.status != "ok" or reply.document is None:
                    reply.detail = f"{name}: {reply.detail}"
                    return reply
                page = reply.document
                rows += [r for r in page.get("data") or [] if isinstance(r, dict)]
                model = page.get("data_model") or model
                notes += page.get("errors") or []
                if len(rows) > _MAX_PARTIAL_ROWS:
                    return Reply(node.name, "error", detail="too many groups to merge")
                next_url = (page.get("pagination") or {}).get("next_page_url")
                if not next_url:
                    break
                if not page.get("data"):
                    wait = float(reply.headers.get("retry-after", "1") or 1)
                    await asyncio.sleep(min(wait, max(0.0, end - time.monotonic())))
                reply = await send(
                    hub.session_for(node),
                    node,
                    "GET",
                    urlsplit(next_url).path,
                    end,
                    credentials=credentials,
                )
        document = {"rows": rows, "model": model, "notes": notes, "tables": names}
        ms = (time.perf_counter() - start) * 1000
        return Reply(node.name, "ok", ms=ms, http_status=200, document=document)

    replies = await hub.ask_each(request, call)
    answered = [r for r in replies if r.status == "ok" and r.document is not None]
    partials = [row for r in answered for row in r.document["rows"]]  # type: ignore[index]
    errors = node_errors(replies)
    for reply in answered:
        for note in reply.document["notes"]:  # type: ignore[index]
            if isinstance(note, dict):
                errors.append({**note, "source": reply.node})
        if not reply.document["tables"]:  # type: ignore[index]
            errors.append(
                {
                    "source": reply.node,
                    "title": "No such table",
                    "detail": f"the node has no table {query.table!r} you may query",
                }
            )
    body: dict[str, Any] = {
        "data_model": _model(query, [r.document["model"] for r in answered]),  # type: ignore[index]
        "data": merge_rows(query, partials),
        "pagination": {},
    }
    if errors:
        body["errors"] = errors
    return body


def _model(query: Federated, models: list[dict[str, Any]]) -> dict[str, Any]:
    """The merged answer's data model, from the nodes' models of their columns."""
    node_properties: dict[str, Any] = {}
    for model in models:
        for name, schema in (model.get("properties") or {}).items():
            node_properties.setdefault(name, schema)
    properties: dict[str, Any] = {}
    for output in query.outputs:
        if output.kind == "count":
            properties[output.name] = {"type": "string", "format": "bigint"}
        elif output.kind == "avg":
            properties[output.name] = {"type": "number", "format": "double"}
        else:
            properties[output.name] = node_properties.get(output.columns[0], {})
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "description": f"Aggregates over every node's {query.table!r} tables, merged by the hub",
        "type": "object",
        "properties": properties,
    }
