"""FastAPI routes of ``/data-connect``: GA4GH Data Connect 1.0 (tables, data, search)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from genofed.api.errors import DATA_CONNECT_PREFIX as PREFIX
from genofed.api.responses import JSONResponse
from genofed.beacon import framework
from genofed.dataconnect.query_job import Page
from genofed.dataconnect.sql import Plan, search_body
from genofed.node.deps import AuditRecord, Call, PagingCall, Runtime

POLL_SECONDS = 1


def _page_response(page: Page, plan: Plan | None, audit: AuditRecord) -> Response:
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
    audit.results = page.rows
    if plan is not None:
        audit.datasets = sorted(plan.tables)
    return Response(b"".join(parts), media_type="application/json", headers=headers)


def build_data_connect_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["data connect"], default_response_class=JSONResponse)

    @router.get("/service-info", summary="GA4GH service-info 1.0", response_model=None)
    def service_info(runtime: Runtime, request: Request) -> dict[str, Any]:
        return framework.service_info(
            runtime.config,
            str(request.base_url).rstrip("/") + PREFIX,
            artifact="data-connect",
            version="1.0.0",
            documentation="https://github.com/ga4gh-discovery/data-connect",
        )

    @router.get("/tables", summary="Tables you may query", response_model=None)
    async def tables(call: Call) -> dict[str, Any]:
        return await run_in_threadpool(call.runtime.data_connect.list_tables, call.caller)

    @router.get("/table/{table_name}/info", summary="A table's data model", response_model=None)
    async def table_info(table_name: str, call: Call) -> dict[str, Any]:
        call.audit.datasets = [table_name]
        service = call.runtime.data_connect
        return await run_in_threadpool(service.table_info, call.caller, table_name)

    @router.get("/table/{table_name}/data", summary="A table's rows", response_model=None)
    async def table_data(table_name: str, call: Call) -> Response:
        call.audit.datasets = [table_name]
        # Planning runs in a worker thread (so a costly query never stalls health checks);
        # the query runs in a query thread, and the first page is awaited without a thread.
        service = call.runtime.data_connect
        plan, run = await run_in_threadpool(service.table_data, call.caller, table_name)
        return _page_response(await service.jobs.first_page(run), plan, call.audit)

    @router.post("/search", summary="Run an SQL query", response_model=None)
    async def search(request: Request, call: Call) -> Response:
        query, parameters = search_body(await request.body())
        service = call.runtime.data_connect
        plan, run = await run_in_threadpool(service.search, call.caller, query, parameters)
        return _page_response(await service.jobs.first_page(run), plan, call.audit)

    @router.get("/search/{job_id}/{index}", summary="A page of a query result", response_model=None)
    async def search_page(job_id: str, index: int, call: PagingCall) -> Response:
        page = await call.runtime.data_connect.page(call.caller, job_id, index)
        return _page_response(page, None, call.audit)

    return router
