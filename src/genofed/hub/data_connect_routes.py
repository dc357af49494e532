"""The hub's ``/data-connect``: every node's tables, as ``<node>.<table>``, and queries
routed to their node or, for ``"*.<table>"`` aggregates, asked of all and merged
(``dataconnect.federated``).

A node's trouble never becomes the hub's 5xx: what a node could not answer is listed in
the response's ``errors`` with the node as ``source``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from genofed._exceptions import NotFoundError
from genofed.api.errors import DATA_CONNECT_PREFIX as PREFIX
from genofed.api.responses import JSONResponse, dig
from genofed.config import HubNode
from genofed.dataconnect.federated import Federated, Routed, merge_answers, plan
from genofed.dataconnect.sql import search_body
from genofed.hub.client import NodeClient
from genofed.hub.deps import Hub, Nodes
from genofed.hub.fanout import Reply

_MAX_PARTIAL_ROWS = 100_000  # rows one node may add to a federated aggregate


def node_errors(replies: list[Reply]) -> list[dict[str, str]]:
    """Data Connect ``errors`` for the nodes that did not answer."""
    return [
        {
            "source": r.node,
            "title": f"Node {r.status}",
            "detail": r.detail or f"the node answered {r.status}",
            "code": f"node_{r.status}",
        }
        for r in replies
        if r.status != "ok"
    ]


def build_hub_data_connect_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, default_response_class=JSONResponse, tags=["data connect"])

    @router.get("/tables", summary="Every node's tables", response_model=None)
    async def tables(nodes: Nodes) -> dict[str, Any]:
        replies = await nodes.ask("GET", f"{PREFIX}/tables")
        listed = []
        for reply in replies:
            for table in dig(reply.document, "tables", default=[]):
                if isinstance(table, dict) and isinstance(table.get("name"), str):
                    listed.append({**table, "name": f"{reply.node}.{table['name']}"})
        body: dict[str, Any] = {"tables": listed}
        if errors := node_errors(replies):
            body["errors"] = errors
        return body

    @router.get("/table/{name}/info", summary="A node table's data model", response_model=None)
    async def table_info(name: str, nodes: Nodes) -> dict[str, Any]:
        node, local = _split(nodes, name)
        reply = await nodes.one(node, "GET", f"{PREFIX}/table/{local}/info")
        return {**_document(reply), "name": name}

    @router.get("/table/{name}/data", summary="A node table's rows", response_model=None)
    async def table_data(name: str, nodes: Nodes) -> dict[str, Any]:
        node, local = _split(nodes, name)
        return _paged(node, _document(await nodes.one(node, "GET", f"{PREFIX}/table/{local}/data")))

    @router.post(
        "/search", summary="SQL over one node, or an aggregate over all", response_model=None
    )
    async def search(request: Request, hub: Hub, nodes: Nodes) -> dict[str, Any]:
        query, parameters = search_body(await request.body())
        where = await run_in_threadpool(plan, query)  # parsing is off the event loop
        if isinstance(where, Routed):
            node = nodes.node(where.node)
            return _paged(node, _document(await nodes.search(node, where.sql, parameters)))
        replies = await nodes.each(
            lambda node, end: _every_page(nodes, node, end, where, parameters)
        )
        answered = [(r.node, r.document) for r in replies if r.status == "ok" and r.document]
        return merge_answers(where, answered, node_errors(replies), hub.release)

    @router.get(
        "/nodes/{node_name}/search/{job}/{page}",
        summary="A page of a node's result",
        response_model=None,
    )
    async def page(node_name: str, job: str, page: int, nodes: Nodes) -> dict[str, Any]:
        node = nodes.node(node_name)
        return _paged(node, _document(await nodes.page(node, f"{PREFIX}/search/{job}/{page}")))

    return router


def _seconds(retry_after: str | None) -> float:
    """A node's Retry-After, in seconds (1 when absent or odd; never more than 10)."""
    try:
        value = float(retry_after or 1)
    except ValueError:
        return 1.0
    return min(max(value, 0.0), 10.0) if value == value else 1.0


def _split(nodes: NodeClient, name: str) -> tuple[HubNode, str]:
    node, _, local = name.partition(".")
    if not local:
        raise NotFoundError(f"no table {name!r}: hub tables are named <node>.<table>")
    return nodes.node(node), local


def _document(reply: Reply) -> dict[str, Any]:
    """A node's answer, or an empty one whose ``errors`` say why there is none."""
    if reply.status == "ok" and reply.document is not None:
        return reply.document
    return {"data": [], "errors": node_errors([reply])}


def _paged(node: HubNode, document: dict[str, Any]) -> dict[str, Any]:
    """A node's page with its next page reached through the hub."""
    pagination = dig(document, "pagination", default={})
    next_url = pagination.get("next_page_url")
    if isinstance(next_url, str):
        path = urlsplit(next_url).path
        tail = path.split(f"{PREFIX}/search/", 1)[-1]
        document["pagination"] = {
            **pagination,
            "next_page_url": f"{PREFIX}/nodes/{node.name}/search/{tail}",
        }
    return document


async def _every_page(
    nodes: NodeClient, node: HubNode, end: float, query: Federated, parameters: Any
) -> Reply:
    """Every matching table of one node, each query followed to its last page: one reply
    whose document holds the rows, their data models and the node's notes."""
    start = time.perf_counter()
    listed = await nodes.send(node, "GET", f"{PREFIX}/tables", end)
    if listed.status != "ok" or listed.document is None:
        return listed
    names = [
        t["name"]
        for t in dig(listed.document, "tables", default=[])
        if isinstance(t, dict) and query.matches(str(t.get("name")))
    ]
    rows: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    notes: list[Any] = []
    for name in names:
        body = {"query": query.for_table(name), "parameters": parameters}
        reply = await nodes.send(node, "POST", f"{PREFIX}/search", end, body=body)
        while True:
            if reply.status != "ok" or reply.document is None:
                reply.detail = f"{name}: {reply.detail}"
                return reply
            page = reply.document
            rows += [r for r in dig(page, "data", default=[]) if isinstance(r, dict)]
            if dig(page, "data_model", default={}):
                models.append(page["data_model"])
            notes += dig(page, "errors", default=[])
            if len(rows) > _MAX_PARTIAL_ROWS:
                return Reply(node.name, "error", detail="too many groups to merge")
            next_url = dig(page, "pagination", "next_page_url", default="")
            if not next_url:
                break
            path = urlsplit(next_url).path
            if not path.startswith(f"{PREFIX}/search/"):  # a page of this result, nothing else
                return Reply(node.name, "error", detail=f"{name}: an odd next_page_url")
            if not page.get("data"):
                wait = _seconds(reply.headers.get("retry-after"))
                await asyncio.sleep(min(wait, nodes.remaining(end)))
            reply = await nodes.send(node, "GET", path, end)
    document = {"rows": rows, "models": models, "notes": notes, "tables": names}
    ms = (time.perf_counter() - start) * 1000
    return Reply(node.name, "ok", ms=ms, http_status=200, document=document)
