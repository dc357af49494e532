"""FastAPI routes of ``/beacon/v2``: framework endpoints and every entry type of the model.

Each route parses (``node.deps``), calls ``BeaconService`` in the thread pool, and lets the
audit record note what it touched.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from genofed.api.responses import JSONResponse
from genofed.beacon import framework
from genofed.beacon.model import BY_PATH, ENTRY_TYPES, EntryType
from genofed.node.deps import Beacon, BeaconCaller, Runtime
from genofed.store.selection import Context

PREFIX = "/beacon/v2"


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def build_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, default_response_class=JSONResponse)
    tags = ["framework"]

    @router.get("/", tags=tags, summary="Beacon information", response_model=None, name="root")
    @router.get("/info", tags=tags, summary="Beacon information", response_model=None)
    def info(runtime: Runtime, request: Request) -> dict[str, Any]:
        return framework.info(runtime.config, _base_url(request))

    @router.get("/service-info", tags=tags, summary="GA4GH service-info 1.0", response_model=None)
    def service_info(runtime: Runtime, request: Request) -> dict[str, Any]:
        return framework.service_info(runtime.config, _base_url(request))

    @router.get(
        "/configuration", tags=tags, summary="The Beacon's configuration", response_model=None
    )
    def configuration(runtime: Runtime) -> dict[str, Any]:
        return framework.configuration(runtime.config)

    @router.get("/map", tags=tags, summary="Endpoints this Beacon serves", response_model=None)
    def beacon_map(runtime: Runtime, request: Request) -> dict[str, Any]:
        return framework.beacon_map(runtime.config, _base_url(request))

    @router.get("/entry_types", tags=tags, summary="Entry types served", response_model=None)
    def entry_types(runtime: Runtime) -> dict[str, Any]:
        return framework.entry_types(runtime.config)

    @router.get(
        "/filtering_terms",
        tags=tags,
        summary="Terms and fields you may filter on, in the datasets you may see",
        response_model=None,
    )
    async def all_filtering_terms(runtime: Runtime, caller: BeaconCaller) -> dict[str, Any]:
        return await run_in_threadpool(runtime.beacon.filtering_terms, caller)

    for entry in ENTRY_TYPES:
        _add_entry_routes(router, entry)
    return router


def _add_entry_routes(router: APIRouter, entry: EntryType) -> None:
    tags = [entry.path]
    methods = ["GET", "POST"]
    options: dict[str, Any] = {"tags": tags, "response_model": None}

    async def root(call: Beacon) -> JSONResponse:
        return await _answer(call, entry)

    async def scoped_terms(runtime: Runtime, caller: BeaconCaller) -> dict[str, Any]:
        return await run_in_threadpool(
            lambda: runtime.beacon.filtering_terms(caller, scope=entry.entity)
        )

    async def one(entry_id: str, call: Beacon) -> JSONResponse:
        return await _answer(call, entry, single_id=entry_id)

    async def entry_terms(entry_id: str, runtime: Runtime, caller: BeaconCaller) -> dict[str, Any]:
        return await run_in_threadpool(
            lambda: runtime.beacon.filtering_terms(caller, entry=(entry, entry_id))
        )

    path = f"/{entry.path}"
    name = entry.path
    routes = [
        (path, root, f"Query {name}", "root"),
        (f"{path}/filtering_terms", scoped_terms, f"Terms to filter {name} on", "terms"),
        (f"{path}/{{entry_id}}", one, f"One {entry.id} by id", "one"),
    ]
    if entry.has_id_filtering_terms:
        routes.append(
            (
                f"{path}/{{entry_id}}/filtering_terms",
                entry_terms,
                f"Terms of one {entry.id}",
                "entry_terms",
            )
        )
    for link in entry.links:
        handler = _linked_endpoint(entry, BY_PATH[link])
        routes.append((f"{path}/{{entry_id}}/{link}", handler, f"{link} of one {entry.id}", link))
    for route_path, handler, summary, kind in routes:
        # One route for both methods: routes are matched one after another, and the
        # Beacon has many (api.responses.install_openapi gives each method its own id).
        router.add_api_route(
            route_path, handler, methods=methods, summary=summary, name=f"{name}_{kind}", **options
        )


async def _answer(call: Beacon, entry: EntryType, **kwargs: Any) -> JSONResponse:
    """Run the query in the thread pool; the audit record notes what it touched. The
    answer goes straight to orjson (``api.responses.JSONResponse``): FastAPI's encoder
    would walk every value of every record first."""
    beacon = call.runtime.beacon
    return JSONResponse(
        await run_in_threadpool(
            lambda: beacon.query(entry, call.request, call.caller, notes=call.audit, **kwargs)
        )
    )


def _linked_endpoint(source: EntryType, target: EntryType):
    """The handler of ``/{source}/{id}/{target}`` (a factory, so each route keeps its pair)."""

    async def linked(entry_id: str, call: Beacon) -> JSONResponse:
        return await _answer(call, target, context=Context(source.entity, entry_id))

    return linked
