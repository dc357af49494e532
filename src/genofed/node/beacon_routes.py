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
from genofed.node.deps import Audit, Beacon, BeaconCaller, Runtime
from genofed.store.selection import Context

PREFIX = "/beacon/v2"


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def build_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, default_response_class=JSONResponse)
    tags = ["framework"]

    @router.get("/", tags=tags, summary="Beacon information", response_model=None)
    @router.get("/info", tags=tags, summary="Beacon information", response_model=None)
    def info(runtime: Runtime, request: Request) -> dict[str, Any]:
        return framework.info(runtime.config, _base_url(request))

    @router.get("/service-info", tags=tags, summary="GA4GH service-info 1.0", response_model=None)
    def service_info(runtime: Runtime, request: Request) -> dict[str, Any]:
        return framework.service_info(runtime.config, _base_url(request))

    @router.get("/configuration", tags=tags, response_model=None)
    def configuration(runtime: Runtime) -> dict[str, Any]:
        return framework.configuration(runtime.config)

    @router.get("/map", tags=tags, response_model=None)
    def beacon_map(runtime: Runtime, request: Request) -> dict[str, Any]:
        return framework.beacon_map(runtime.config, _base_url(request))

    @router.get("/entry_types", tags=tags, response_model=None)
    def entry_types(runtime: Runtime) -> dict[str, Any]:
        return framework.entry_types(runtime.config)

    @router.get("/filtering_terms", tags=tags, response_model=None)
    async def all_filtering_terms(runtime: Runtime, caller: BeaconCaller) -> dict[str, Any]:
        return await run_in_threadpool(runtime.beacon.filtering_terms, caller)

    for entry in ENTRY_TYPES:
        _add_entry_routes(router, entry)
    return router


def _add_entry_routes(router: APIRouter, entry: EntryType) -> None:
    tags = [entry.path]
    methods = ["GET", "POST"]
    options: dict[str, Any] = {"tags": tags, "response_model": None}

    async def root(runtime: Runtime, call: Beacon, audit: Audit) -> dict[str, Any]:
        return await _answer(runtime, call, audit, entry)

    async def scoped_terms(runtime: Runtime, caller: BeaconCaller) -> dict[str, Any]:
        return await run_in_threadpool(
            lambda: runtime.beacon.filtering_terms(caller, scope=entry.entity)
        )

    async def one(entry_id: str, runtime: Runtime, call: Beacon, audit: Audit) -> dict[str, Any]:
        return await _answer(runtime, call, audit, entry, single_id=entry_id)

    async def entry_terms(entry_id: str, runtime: Runtime, caller: BeaconCaller) -> dict[str, Any]:
        return await run_in_threadpool(
            lambda: runtime.beacon.filtering_terms(caller, entry=(entry, entry_id))
        )

    path = f"/{entry.path}"
    name = entry.path
    router.add_api_route(
        path, root, methods=methods, summary=f"Query {name}", name=f"{name}_root", **options
    )
    router.add_api_route(
        f"{path}/filtering_terms",
        scoped_terms,
        methods=methods,
        name=f"{name}_filtering_terms",
        **options,
    )
    router.add_api_route(
        f"{path}/{{entry_id}}",
        one,
        methods=methods,
        summary=f"One {entry.id} by id",
        name=f"{name}_one",
        **options,
    )
    if entry.has_id_filtering_terms:
        router.add_api_route(
            f"{path}/{{entry_id}}/filtering_terms",
            entry_terms,
            methods=methods,
            name=f"{name}_entry_filtering_terms",
            **options,
        )
    for link in entry.links:
        router.add_api_route(
            f"{path}/{{entry_id}}/{link}",
            _linked_endpoint(entry, BY_PATH[link]),
            methods=methods,
            summary=f"{link} of one {entry.id}",
            name=f"{name}_{link}",
            **options,
        )


async def _answer(
    runtime: Runtime, call: Beacon, audit: Audit, entry: EntryType, **kwargs: Any
) -> dict[str, Any]:
    """Run the query in the thread pool; the audit record notes what it touched."""
    return await run_in_threadpool(
        lambda: runtime.beacon.query(entry, call.request, call.caller, notes=audit, **kwargs)
    )


def _linked_endpoint(source: EntryType, target: EntryType):
    """The handler of ``/{source}/{id}/{target}`` (a factory, so each route keeps its pair)."""

    async def linked(entry_id: str, runtime: Runtime, call: Beacon, audit: Audit) -> dict[str, Any]:
        return await _answer(runtime, call, audit, target, context=Context(source.entity, entry_id))

    return linked
