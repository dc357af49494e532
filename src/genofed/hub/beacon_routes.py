"""The hub's ``/beacon/v2``: the same API as a node, answered by every node at once and
merged (``beacon.merge``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Request

from genofed import __version__
from genofed._exceptions import AccessDeniedError, QueryError
from genofed.api.responses import MAX_JSON_DEPTH, JSONResponse, json_depth
from genofed.beacon.merge import (
    informational_meta,
    merge_collections,
    merge_info,
    merge_map,
    merge_result_sets,
    problem,
    union_filtering_terms,
)
from genofed.beacon.model import API_VERSION, BY_PATH, ENTRY_TYPES, EntryType, returned_schema
from genofed.beacon.request import from_post, from_query_string
from genofed.config import HubNode
from genofed.hub.deps import Hub, Nodes, forwarded_params
from genofed.hub.fanout import Reply

PREFIX = "/beacon/v2"
_TERMS = "beacon-filteringterms-v2.0.0"


def build_hub_beacon_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, default_response_class=JSONResponse, tags=["beacon"])

    @router.get("/", summary="The federated Beacon", response_model=None, name="root")
    @router.get("/info", summary="The federated Beacon", response_model=None)
    async def info(request: Request, hub: Hub, nodes: Nodes) -> dict[str, Any]:
        return merge_info(
            await nodes.ask("GET", f"{PREFIX}/info"),
            beacon_id=hub.config.beacon_id,
            name=hub.config.name,
            version=__version__,
            welcome_url=str(request.base_url),
        )

    @router.get("/map", summary="Endpoints any node serves", response_model=None)
    async def beacon_map(request: Request, hub: Hub, nodes: Nodes) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/") + PREFIX
        replies = await nodes.ask("GET", f"{PREFIX}/map")
        return merge_map(replies, beacon_id=hub.config.beacon_id, base_url=base)

    @router.get("/filtering_terms", summary="Terms any node offers", response_model=None)
    async def filtering_terms(hub: Hub, nodes: Nodes) -> dict[str, Any]:
        replies = await nodes.ask("GET", f"{PREFIX}/filtering_terms")
        return union_filtering_terms(replies, informational_meta(hub.config.beacon_id, _TERMS))

    for entry in ENTRY_TYPES:
        _add_entry_routes(router, entry)
    return router


def _add_entry_routes(router: APIRouter, entry: EntryType) -> None:
    async def query(request: Request, hub: Hub, nodes: Nodes) -> dict[str, Any]:
        return await _federated_query(request, hub, nodes, entry, f"/{entry.path}", None)

    async def one(entry_id: str, request: Request, hub: Hub, nodes: Nodes) -> dict[str, Any]:
        return await _federated_query(request, hub, nodes, entry, f"/{entry.path}/{{id}}", entry_id)

    async def scoped_terms(hub: Hub, nodes: Nodes) -> dict[str, Any]:
        replies = await nodes.ask("GET", f"{PREFIX}/{entry.path}/filtering_terms")
        return union_filtering_terms(replies, informational_meta(hub.config.beacon_id, _TERMS))

    name = entry.path
    routes: list[tuple[str, Any, list[str], str, str]] = [
        (f"/{name}", query, ["GET", "POST"], f"{entry.name}: every node's, merged", "root"),
        # before /{entry_id}, which would take it for an id
        (
            f"/{name}/filtering_terms",
            scoped_terms,
            ["GET"],
            f"Terms of {name} at any node",
            "terms",
        ),
        (
            f"/{name}/{{entry_id}}",
            one,
            ["GET", "POST"],
            f"One {entry.id} by id (<node>:<id> asks that node only)",
            "one",
        ),
    ]
    for link in entry.links:
        target = BY_PATH[link]

        async def linked(
            entry_id: str,
            request: Request,
            hub: Hub,
            nodes: Nodes,
            target: EntryType = target,
            link: str = link,
        ) -> dict[str, Any]:
            path = f"/{entry.path}/{{id}}/{link}"
            return await _federated_query(request, hub, nodes, target, path, entry_id)

        summary = f"{link} of one {entry.id}, at every node"
        routes.append((f"/{name}/{{entry_id}}/{link}", linked, ["GET", "POST"], summary, link))
    for path, handler, methods, summary, kind in routes:
        # One route for both methods: routes are matched one after another
        # (api.responses.install_openapi gives each method its own operation id).
        router.add_api_route(
            path,
            handler,
            methods=methods,
            summary=summary,
            name=f"hub_{name}_{kind}",
            response_model=None,
        )


async def _federated_query(
    request: Request,
    hub: Hub,
    nodes: Nodes,
    entry: EntryType,
    template: str,
    entry_id: str | None,
) -> dict[str, Any]:
    """Ask every node ``template`` (its ``{id}`` filled in), merge as ``entry`` answers.
    An id written ``<node>:<id>`` (as the hub names datasets) is asked of that node only."""
    params, body = await _forwarded(request)
    # The nodes would refuse a malformed request one by one: refuse it once, here.
    post = request.method == "POST"
    parsed = from_post(body, params) if post else from_query_string(params)
    only, local_id = None, entry_id
    if entry_id is not None:
        node_name, _, rest = entry_id.partition(":")
        if rest and node_name in hub.registry.states:
            only, local_id = node_name, rest
    path = PREFIX + template.replace("{id}", quote(local_id or "", safe=""))
    datasets = _datasets_per_node(parsed.datasets, list(hub.registry.states))

    async def call(node: HubNode, end: float) -> Reply:
        if only is not None and node.name != only:
            return Reply(node.name, "skipped", detail=f"the id names node {only}")
        if datasets is not None and node.name not in datasets:
            return Reply(node.name, "skipped", detail="the datasets asked for are elsewhere")
        ids = None if datasets is None else datasets[node.name]
        if post:
            return await nodes.send(node, "POST", path, end, body=_with_datasets(body, ids))
        sent = params if ids is None else _params_with_datasets(params, ids)
        return await nodes.send(node, "GET", path, end, params=sent or None)

    replies = [_checked(r, entry.collection) for r in await nodes.each(call)]
    if parsed.datasets and not entry.collection:
        asked = [r for r in replies if datasets is None or r.node in datasets]
        if asked and all(r.status == "unauthorised" and r.http_status == 403 for r in asked):
            # The nodes' own answer, once: none serves these datasets to this caller.
            raise AccessDeniedError(
                f"no node serves dataset(s) {sorted(parsed.datasets)} to you (they do not "
                "exist, or are not open to you); see /beacon/v2/datasets for the datasets you "
                "can query, named <node>:<dataset>"
            )
    meta = {
        "beaconId": hub.config.beacon_id,
        "apiVersion": API_VERSION,
        "receivedRequestSummary": parsed.summary(),
        "returnedSchemas": [returned_schema(entry)],
    }
    if entry.collection:
        given = parsed.granularity if parsed.granularity_given else "record"
        return merge_collections(replies, meta, given)
    others = frozenset(
        n.name
        for n in hub.config.nodes
        if (only is not None and n.name != only)
        or (datasets is not None and n.name not in datasets)
    )
    return merge_result_sets(replies, hub.release, meta, not_asked=others)


def _datasets_per_node(names: list[str] | None, nodes: list[str]) -> dict[str, list[str]] | None:
    """The datasets to ask each node for: ``<node>:<dataset>`` (the hub's own names) of
    that node only; a plain id of every node. ``None``: no datasets named, ask all."""
    if not names:
        return None
    plain = [n for n in names if ":" not in n]
    per_node: dict[str, list[str]] = {node: list(plain) for node in nodes} if plain else {}
    for name in names:
        node, sep, local = name.partition(":")
        if not sep:
            continue
        if node not in nodes or not local:
            raise QueryError(
                f"dataset {name!r} names no node of this hub; name datasets <node>:<dataset> "
                f"with a node of {', '.join(sorted(nodes))} (see /beacon/v2/datasets)"
            )
        per_node.setdefault(node, list(plain)).append(local)
    return per_node


def _params_with_datasets(params: list[tuple[str, str]], ids: list[str]) -> list[tuple[str, str]]:
    kept = [(k, v) for k, v in params if k not in ("datasets", "datasetIds")]
    return [*kept, ("datasets", ",".join(ids))]


def _with_datasets(body: dict[str, Any], ids: list[str] | None) -> dict[str, Any]:
    """``body`` asking for the datasets ``ids`` (the node's own names) instead."""
    if ids is None:
        return body
    query = dict(body.get("query") or {})
    parameters = dict(query.get("requestParameters") or {})
    for key in ("datasets", "datasetIds"):
        parameters.pop(key, None)
    nested = parameters.get("g_variant")
    if isinstance(nested, dict):
        parameters["g_variant"] = {
            k: v for k, v in nested.items() if k not in ("datasets", "datasetIds")
        }
    parameters["datasets"] = ids
    query["requestParameters"] = parameters
    return {**body, "query": query}


def _checked(reply: Reply, collection: bool) -> Reply:
    """A node's answer as the hub may merge it: a malformed one is that node's error."""
    if reply.status != "ok" or reply.document is None:
        return reply
    wrong = problem(reply.document, collection=collection)
    if wrong is None:
        return reply
    return Reply(reply.node, "error", ms=reply.ms, http_status=200, detail=f"malformed: {wrong}")


async def _forwarded(request: Request) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The query parameters and JSON body to send the nodes: the caller's, less what is
    for the hub (its deadline) and never any credentials."""
    params = forwarded_params(request)
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
            if json_depth(body) > MAX_JSON_DEPTH:
                raise QueryError(
                    f"the request body nests deeper than {MAX_JSON_DEPTH} levels; "
                    "a Beacon request needs a handful"
                )
        if "passports" in body:
            raise QueryError(
                "send your Passport to the hub as 'Authorization: Bearer'; the hub obtains "
                "one for each node and never forwards yours"
            )
    return params, body
