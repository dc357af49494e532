"""FastAPI routes of ``/beacon/v2``: framework endpoints and every entry type of the model."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from genofed._exceptions import NotFoundError, QueryError
from genofed.node.beacon import framework
from genofed.node.beacon.filtering_terms import filtering_terms
from genofed.node.beacon.model import BY_PATH, ENTRY_TYPES, EntryType
from genofed.node.beacon.request import BeaconRequest, from_body, from_query_string
from genofed.node.beacon.service import BeaconService
from genofed.node.json_response import JSONResponse
from genofed.store.selection import Context


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/beacon/v2"


async def parse_request(request: Request) -> BeaconRequest:
    if request.method == "POST":
        raw = await request.body()
        if not raw.strip():
            return from_body({})
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise QueryError(f"the request body is not valid JSON: {exc}") from exc
        return from_body(body)
    return from_query_string(list(request.query_params.multi_items()))


def build_router(service: BeaconService) -> APIRouter:
    router = APIRouter(prefix="/beacon/v2", default_response_class=JSONResponse)
    config = service.runtime.config

    @router.get("/", tags=["framework"], summary="Beacon information", response_model=None)
    @router.get("/info", tags=["framework"], summary="Beacon information", response_model=None)
    def info(request: Request) -> dict[str, Any]:
        return framework.info(config, _base_url(request))

    @router.get(
        "/service-info", tags=["framework"], summary="GA4GH service-info 1.0", response_model=None
    )
    def service_info(request: Request) -> dict[str, Any]:
        return framework.service_info(config, _base_url(request))

    @router.get("/configuration", tags=["framework"], response_model=None)
    def configuration() -> dict[str, Any]:
        return framework.configuration(config)

    @router.get("/map", tags=["framework"], response_model=None)
    def beacon_map(request: Request) -> dict[str, Any]:
        return framework.beacon_map(config, _base_url(request))

    @router.get("/entry_types", tags=["framework"], response_model=None)
    def entry_types() -> dict[str, Any]:
        return framework.entry_types(config)

    @router.get("/filtering_terms", tags=["framework"], response_model=None)
    def all_filtering_terms() -> dict[str, Any]:
        return _terms_response(service, filtering_terms(service.runtime.live()))

    for entry in ENTRY_TYPES:
        _add_entry_routes(router, service, entry)
    return router


def _terms_response(service: BeaconService, response: dict[str, Any]) -> dict[str, Any]:
    return {
        "meta": framework.informational_meta(
            service.runtime.config,
            {"entityType": "filteringTerm", "schema": "beacon-filtering-terms-v2.0.0"},
        ),
        "response": response,
    }


def _add_entry_routes(router: APIRouter, service: BeaconService, entry: EntryType) -> None:
    path = f"/{entry.path}"
    tags = [entry.path]

    async def root(request: Request) -> dict[str, Any]:
        beacon_request = await parse_request(request)
        return await _run(service.query, entry, beacon_request)

    async def scoped_terms() -> dict[str, Any]:
        return _terms_response(service, filtering_terms(service.runtime.live(), scope=entry.entity))

    async def one(entry_id: str, request: Request) -> dict[str, Any]:
        beacon_request = await parse_request(request)
        return await _run(service.query, entry, beacon_request, single_id=entry_id)

    async def entry_terms(entry_id: str) -> dict[str, Any]:
        live = service.runtime.live()
        if entry.entity == "dataset":
            if entry_id not in live.readers:
                raise NotFoundError(f"dataset {entry_id!r} not found")
            return _terms_response(service, filtering_terms(live, readers=[live.readers[entry_id]]))
        if entry.entity == "cohort":
            readers = [r for r in live.readers.values() if entry_id in r.entry_ids("cohort")]
            if not readers:
                raise NotFoundError(f"cohort {entry_id!r} not found")
            return _terms_response(service, filtering_terms(live, readers=readers))
        if not any(
            entry_id in r.entry_ids(entry.entity) for r in live.readers.values() if not r.test_data
        ):
            raise NotFoundError(f"{entry.id} {entry_id!r} not found")
        return _terms_response(service, filtering_terms(live, entry=(entry.entity, entry_id)))

    methods = ["GET", "POST"]
    router.add_api_route(
        path,
        root,
        methods=methods,
        tags=tags,
        response_model=None,
        summary=f"Query {entry.path}",
        name=f"{entry.path}_root",
    )
    router.add_api_route(
        f"{path}/filtering_terms",
        scoped_terms,
        methods=["GET", "POST"],
        tags=tags,
        response_model=None,
        name=f"{entry.path}_filtering_terms",
    )
    router.add_api_route(
        f"{path}/{{entry_id}}",
        one,
        methods=methods,
        tags=tags,
        response_model=None,
        summary=f"One {entry.id} by id",
        name=f"{entry.path}_one",
    )
    if entry.has_id_filtering_terms:
        router.add_api_route(
            f"{path}/{{entry_id}}/filtering_terms",
            entry_terms,
            methods=["GET", "POST"],
            tags=tags,
            response_model=None,
            name=f"{entry.path}_entry_filtering_terms",
        )
    for link in entry.links:
        router.add_api_route(
            f"{path}/{{entry_id}}/{link}",
            _linked_endpoint(service, entry, BY_PATH[link]),
            methods=methods,
            tags=tags,
            response_model=None,
            summary=f"{link} of one {entry.id}",
            name=f"{entry.path}_{link}",
        )


def _linked_endpoint(service: BeaconService, source: EntryType, target: EntryType):
    """The handler of ``/{source}/{id}/{target}`` (a factory, so each route keeps its pair)."""

    async def linked(entry_id: str, request: Request) -> dict[str, Any]:
        beacon_request = await parse_request(request)
        return await _run(
            service.query, target, beacon_request, context=Context(source.entity, entry_id)
        )

    return linked


async def _run(func, *args, **kwargs) -> dict[str, Any]:
    """Run a blocking query in the thread pool so the event loop keeps serving."""
    return await run_in_threadpool(func, *args, **kwargs)
