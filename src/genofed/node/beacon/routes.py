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
from genofed.node.callers import authorize
from genofed.node.json_response import JSONResponse
from genofed.store.dataset_reader import DatasetReader
from genofed.store.selection import Context


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/beacon/v2"


async def parse_request(request: Request) -> tuple[BeaconRequest, object]:
    """The Beacon request, and the DRS-style ``passports`` of a POST body (if any)."""
    if request.method == "POST":
        raw = await request.body()
        if not raw.strip():
            return from_body({}), None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise QueryError(f"the request body is not valid JSON: {exc}") from exc
        passports = body.pop("passports", None) if isinstance(body, dict) else None
        return from_body(body), passports
    return from_query_string(list(request.query_params.multi_items())), None


async def answer(
    service: BeaconService, request: Request, entry: EntryType, **kwargs: Any
) -> dict[str, Any]:
    """Parse, authorise, run (in the thread pool) and note what the audit log records."""
    beacon_request, passports = await parse_request(request)
    caller = await authorize(service.runtime.gate, request, passports)
    outcome: dict[str, Any] = {}
    request.state.outcome = outcome
    return await run_in_threadpool(
        service.query, entry, beacon_request, caller, outcome=outcome, **kwargs
    )


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
    async def all_filtering_terms(request: Request) -> dict[str, Any]:
        readers = await _visible_readers(service, request)
        return _terms_response(service, filtering_terms(service.runtime.live(), readers=readers))

    for entry in ENTRY_TYPES:
        _add_entry_routes(router, service, entry)
    return router


async def _visible_readers(
    service: BeaconService, request: Request, *, records_only: bool = False
) -> list[DatasetReader]:
    """Non-test datasets the caller may see (with ``records_only``, at record granularity)."""
    passports = None
    if request.method == "POST":
        _, passports = await parse_request(request)
    caller = await authorize(service.runtime.gate, request, passports)
    visible = service.visible(service.runtime.live(), caller)
    return [
        reader
        for reader, allowed in visible.values()
        if not reader.test_data and (allowed == "record" or not records_only)
    ]


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
        return await answer(service, request, entry)

    async def scoped_terms(request: Request) -> dict[str, Any]:
        readers = await _visible_readers(service, request)
        live = service.runtime.live()
        return _terms_response(service, filtering_terms(live, scope=entry.entity, readers=readers))

    async def one(entry_id: str, request: Request) -> dict[str, Any]:
        return await answer(service, request, entry, single_id=entry_id)

    async def entry_terms(entry_id: str, request: Request) -> dict[str, Any]:
        live = service.runtime.live()
        # One entry's terms describe that entry: only for callers who may see its record.
        record = entry.entity not in ("dataset", "cohort")
        visible = await _visible_readers(service, request, records_only=record)
        if entry.entity == "dataset":
            readers = [r for r in visible if r.dataset_id == entry_id]
        else:
            readers = [r for r in visible if entry_id in r.entry_ids(entry.entity)]
        if not readers:
            raise NotFoundError(f"{entry.id} {entry_id!r} not found (or not open to you)")
        if not record:
            return _terms_response(service, filtering_terms(live, readers=readers))
        return _terms_response(
            service, filtering_terms(live, readers=readers, entry=(entry.entity, entry_id))
        )

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
        return await answer(service, request, target, context=Context(source.entity, entry_id))

    return linked
