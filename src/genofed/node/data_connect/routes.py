"""FastAPI routes of ``/data-connect``: GA4GH Data Connect 1.0 (tables, data, search)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from genofed._exceptions import QueryError
from genofed.dataconnect.jobs import Page
from genofed.dataconnect.results import rows_as_json
from genofed.dataconnect.sql import Plan
from genofed.node.beacon import framework
from genofed.node.callers import authorize
from genofed.node.data_connect.service import DataConnectService
from genofed.node.json_response import JSONResponse

PREFIX = "/data-connect"
POLL_SECONDS = 1


def error_body(title: str, detail: str) -> dict[str, Any]:
    """The specification's ErrorResponse."""
    return {"errors": [{"title": title, "detail": detail}]}


def _page_response(page: Page, plan: Plan | None, request: Request) -> JSONResponse:
    body: dict[str, Any] = {"data": []}
    headers = {}
    if page.table is None:  # not ready: poll the same page again
        headers["Retry-After"] = str(POLL_SECONDS)
        next_index = page.index
    else:
        body["data_model"] = page.model
        body["data"] = rows_as_json(page.table, page.sql_types)
        next_index = page.index + 1
    if page.errors:
        body["errors"] = page.errors
    job = request.state.job_id
    body["pagination"] = (
        {} if page.last else {"next_page_url": f"{PREFIX}/search/{job}/{next_index}"}
    )
    outcome = request.state.outcome
    outcome["results"] = len(body["data"])
    if plan is not None:
        outcome["datasets"] = sorted(plan.tables)
    return JSONResponse(body, headers=headers)


def build_data_connect_router(service: DataConnectService) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["data connect"], default_response_class=JSONResponse)
    gate = service.runtime.gate
    config = service.runtime.config

    @router.get("/service-info", summary="GA4GH service-info 1.0", response_model=None)
    def service_info(request: Request) -> dict[str, Any]:
        return framework.service_info(
            config,
            str(request.base_url).rstrip("/") + PREFIX,
            artifact="data-connect",
            version="1.0.0",
            documentation="https://github.com/ga4gh-discovery/data-connect",
        )

    @router.get("/tables", summary="Tables you may query", response_model=None)
    async def tables(request: Request) -> dict[str, Any]:
        caller = await authorize(gate, request)
        return await run_in_threadpool(service.list_tables, caller)

    @router.get("/table/{table_name}/info", summary="A table's data model", response_model=None)
    async def table_info(table_name: str, request: Request) -> dict[str, Any]:
        caller = await authorize(gate, request)
        request.state.outcome = {"datasets": [table_name]}
        return await run_in_threadpool(service.table_info, caller, table_name)

    @router.get("/table/{table_name}/data", summary="A table's rows", response_model=None)
    async def table_data(table_name: str, request: Request) -> JSONResponse:
        caller = await authorize(gate, request)
        request.state.outcome = {"datasets": [table_name]}
        plan, page = await run_in_threadpool(service.table_data, caller, table_name)
        request.state.job_id = page.job_id
        return _page_response(page, plan, request)

    @router.post("/search", summary="Run an SQL query", response_model=None)
    async def search(request: Request) -> JSONResponse:
        caller = await authorize(gate, request)
        request.state.outcome = {}
        query, parameters = _search_body(await request.body())
        request.state.outcome["statement"] = query[:2000]
        plan, page = await run_in_threadpool(service.search, caller, query, parameters)
        request.state.job_id = page.job_id
        return _page_response(page, plan, request)

    @router.get("/search/{job_id}/{index}", summary="A page of a query result", response_model=None)
    async def search_page(job_id: str, index: int, request: Request) -> JSONResponse:
        caller = await authorize(gate, request)
        request.state.outcome = {}
        page = await run_in_threadpool(service.page, caller, job_id, index)
        request.state.job_id = job_id
        return _page_response(page, None, request)

    return router


def _search_body(raw: bytes) -> tuple[str, list[Any] | None]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise QueryError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise QueryError('send a JSON object {"query": "SELECT ...", "parameters": [...]}')
    parameters = body.get("parameters")
    if parameters is not None and not isinstance(parameters, list):
        raise QueryError("parameters must be a JSON array")
    return body["query"], parameters
