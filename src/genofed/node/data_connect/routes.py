"""FastAPI routes of ``/data-connect``: GA4GH Data Connect 1.0 (tables, data, search)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from genofed.dataconnect.jobs import Page
from genofed.dataconnect.sql import Plan, search_body
from genofed.node.beacon import framework
from genofed.node.callers import authorize
from genofed.node.data_connect.service import DataConnectService
from genofed.node.json_response import JSONResponse

PREFIX = "/data-connect"
POLL_SECONDS = 1


def error_body(title: str, detail: str) -> dict[str, Any]:
    """The specification's ErrorResponse."""
    return {"errors": [{"title": title, "detail": detail}]}


def _page_response(page: Page, plan: Plan | None, request: Request) -> Response:
    """A TableData page, put together from the JSON the query thread already made."""
    headers = {}
    if page.data is None:  # not ready: poll the same page again
        headers["Retry-After"] = str(POLL_SECONDS)
        parts = [b'{"data":[]']
        next_index = page.index
    else:
        parts = [b'{"data_model":', page.model or b"{}", b',"data":', page.data]
        next_index = page.index + 1
    if page.errors:
        parts += [b',"errors":', orjson.dumps(page.errors)]
    pagination = (
        {} if page.last else {"next_page_url": f"{PREFIX}/search/{page.job_id}/{next_index}"}
    )
    parts += [b',"pagination":', orjson.dumps(pagination), b"}"]
    outcome = request.state.outcome
    outcome["results"] = page.rows
    if plan is not None:
        outcome["datasets"] = sorted(plan.tables)
    return Response(b"".join(parts), media_type="application/json", headers=headers)


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
    async def table_data(table_name: str, request: Request) -> Response:
        caller = await authorize(gate, request)
        request.state.outcome = {"datasets": [table_name]}
        # Planning is quick (cached after the first time) and runs here; the query runs in
        # a query thread, and the first page is awaited without holding a thread.
        plan, job = service.table_data(caller, table_name)
        return _page_response(await service.jobs.first_page(job), plan, request)

    @router.post("/search", summary="Run an SQL query", response_model=None)
    async def search(request: Request) -> Response:
        caller = await authorize(gate, request)
        request.state.outcome = {}
        query, parameters = search_body(await request.body())
        request.state.outcome["statement"] = query[:2000]
        plan, job = service.search(caller, query, parameters)
        return _page_response(await service.jobs.first_page(job), plan, request)

    @router.get("/search/{job_id}/{index}", summary="A page of a query result", response_model=None)
    async def search_page(job_id: str, index: int, request: Request) -> Response:
        caller = await authorize(gate, request, charge=False)  # the query was charged
        request.state.outcome = {}
        page = await service.page(caller, job_id, index)
        return _page_response(page, None, request)

    return router
