"""``/ga4gh/wes/v1``: GA4GH WES 1.1, approved workflows run next to the data; and
``/airlock/v1``: their outputs, held until a custodian releases them.

A caller sees only their own runs (another's is a 404, as one that does not exist), and
downloads only the outputs a custodian released. Custodians (``workflows.custodians`` in
node.yaml) list, release and reject outputs here; the operator can with ``genofed airlock``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from genofed._exceptions import AccessDeniedError, NotFoundError, QueryError
from genofed.api.responses import JSONResponse
from genofed.node.deps import NodeCall, audit_of, resolve_caller, runtime_of
from genofed.node.wes_service import PREFIX, RunRequest, WesService, page
from genofed.wes.runs import owner_of

MAX_ATTACHMENTS = 100


async def wes_call(request: Request) -> NodeCall:
    runtime, audit = runtime_of(request), audit_of(request)
    caller = await resolve_caller(runtime, request, audit, charge=False)
    return NodeCall(runtime, caller, audit)


WesCall = Annotated[NodeCall, Depends(wes_call)]
PageSize = Annotated[int | None, Query(ge=1, le=1000, description="Runs per page")]
PageToken = Annotated[str | None, Query(max_length=40, description="From the previous page")]


def _service(call: NodeCall) -> WesService:
    return call.runtime.wes


async def _run_request(request: Request) -> tuple[RunRequest, dict[str, bytes]]:
    """The multipart RunRequest and its attachments (name -> content)."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        raise QueryError("a RunRequest is sent as multipart/form-data (WES 1.1)")
    fields: dict[str, Any] = {}
    attachments: dict[str, bytes] = {}
    # the form closed when read: its files are spooled to temporary files until then
    async with request.form(max_files=MAX_ATTACHMENTS, max_fields=50) as form:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "workflow_attachment":
                    raise QueryError(
                        f"a file was sent as {key!r}; attachments are workflow_attachment"
                    )
                name = value.filename or ""
                if name in attachments:
                    raise QueryError(f"two attachments are named {name!r}")
                attachments[name] = await value.read()
            elif key == "workflow_attachment":
                raise QueryError("each workflow_attachment is a file, with its name")
            elif key in fields:
                raise QueryError(f"the field {key!r} was sent twice")
            else:
                fields[key] = value
    try:
        return RunRequest.model_validate(fields), attachments
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise QueryError(f"{where}: {first['msg']}") from None


class Decision(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="Why, for the audit log")


def _owner(call: NodeCall) -> str:
    return owner_of(call.caller.sub, call.caller.iss, call.caller.client)


def _custodian(call: NodeCall) -> str:
    custodians = call.runtime.config.workflows.custodians
    caller = call.caller
    if caller.sub is None or not any(c.is_(caller.sub, caller.iss) for c in custodians):
        raise AccessDeniedError(
            "only the node's custodians (workflows.custodians in node.yaml) review outputs"
        )
    return f"{caller.sub} ({caller.iss})"


def build_wes_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["wes"], default_response_class=JSONResponse)

    @router.get("/service-info", summary="GA4GH service-info, with the engines offered")
    def service_info(call: WesCall, request: Request) -> dict[str, Any]:
        return _service(call).service_info(str(request.base_url).rstrip("/") + PREFIX)

    @router.get("/runs", summary="Your runs, oldest first")
    async def list_runs(
        call: WesCall, page_size: PageSize = None, page_token: PageToken = None
    ) -> dict[str, Any]:
        service = _service(call)
        records = await run_in_threadpool(service.store.all, _owner(call))
        chunk, token = page(records, page_size, page_token)
        return {"runs": [service.summary(r) for r in chunk], "next_page_token": token}

    @router.post("/runs", summary="Run an approved workflow (multipart RunRequest)")
    async def run_workflow(call: WesCall, request: Request) -> dict[str, Any]:
        run_request, attachments = await _run_request(request)
        service = _service(call)
        record = await run_in_threadpool(service.submit, call.caller, run_request, attachments)
        call.audit.datasets = record.datasets
        return {"run_id": record.run_id}

    @router.get("/runs/{run_id}", summary="A run's log, state and outputs")
    async def get_run_log(run_id: str, call: WesCall) -> dict[str, Any]:
        service = _service(call)
        record = await run_in_threadpool(service.store.get, run_id, _owner(call))
        return await run_in_threadpool(service.run_log, record)

    @router.get("/runs/{run_id}/status", summary="A run's state")
    async def get_run_status(run_id: str, call: WesCall) -> dict[str, Any]:
        record = await run_in_threadpool(_service(call).store.get, run_id, _owner(call))
        return {"run_id": record.run_id, "state": record.state.value}

    @router.get("/runs/{run_id}/tasks", summary="A run's tasks")
    async def list_tasks(
        run_id: str, call: WesCall, page_size: PageSize = None, page_token: PageToken = None
    ) -> dict[str, Any]:
        service = _service(call)
        record = await run_in_threadpool(service.store.get, run_id, _owner(call))
        chunk, token = page(service.tasks(record), page_size, page_token)
        return {"task_logs": chunk, "next_page_token": token}

    @router.get("/runs/{run_id}/tasks/{task_id}", summary="One task of a run")
    async def get_task(run_id: str, task_id: str, call: WesCall) -> dict[str, Any]:
        service = _service(call)
        record = await run_in_threadpool(service.store.get, run_id, _owner(call))
        for task in service.tasks(record):
            if task["id"] == task_id:
                return task
        raise NotFoundError(f"run {run_id} has no task {task_id[:80]!r}")

    @router.post("/runs/{run_id}/cancel", summary="Cancel a run")
    async def cancel_run(run_id: str, call: WesCall) -> dict[str, Any]:
        record = await run_in_threadpool(_service(call).store.cancel, run_id, _owner(call))
        return {"run_id": record.run_id}

    @router.get(
        "/runs/{run_id}/outputs/{name:path}",
        summary="A released output of your run (held ones are refused)",
        response_class=FileResponse,
    )
    async def get_output(run_id: str, name: str, call: WesCall) -> FileResponse:
        service = _service(call)
        record = await run_in_threadpool(service.store.get, run_id, _owner(call))
        path = await run_in_threadpool(service.airlock.released, record.run_id, name)
        return FileResponse(path, filename=path.name)

    return router


def build_airlock_router() -> APIRouter:
    router = APIRouter(prefix="/airlock/v1", tags=["airlock"], default_response_class=JSONResponse)

    @router.get("/runs", summary="Runs with outputs to review (custodians)")
    async def runs(
        call: WesCall, state: Literal["held", "released", "rejected"] | None = None
    ) -> dict[str, Any]:
        _custodian(call)
        service = _service(call)

        def listed() -> list[dict[str, Any]]:
            shown = []
            for record in service.store.all():
                outputs = service.review(record)
                if state is not None:
                    outputs = {n: o for n, o in outputs.items() if o["airlock"] == state}
                if outputs:
                    shown.append({"run_id": record.run_id, "owner": record.caller,
                                  "state": record.state.value, "datasets": record.datasets,
                                  "workflow": record.digest, "outputs": outputs})  # fmt: skip
            return shown

        return {"runs": await run_in_threadpool(listed)}

    @router.get("/runs/{run_id}/outputs/{name:path}", summary="An output, to review it")
    async def review(run_id: str, name: str, call: WesCall) -> FileResponse:
        _custodian(call)
        service = _service(call)
        outputs = {o.name: o for o in service.airlock.outputs(run_id)}
        if name not in outputs:
            raise NotFoundError(f"run {run_id} has no output {name[:80]!r}")
        path = service.store.folder(run_id) / "airlock" / "files" / name
        return FileResponse(path, filename=path.name)

    for verb, decision in (("release", "released"), ("reject", "rejected")):
        router.add_api_route(
            f"/runs/{{run_id}}/outputs/{{name:path}}/{verb}", _decider(decision),
            methods=["POST"], name=f"airlock_{verb}",
            summary=f"{verb.capitalize()} a held output, saying why (custodians)",
        )  # fmt: skip

    return router


def _decider(decision: Literal["released", "rejected"]) -> Any:
    def decide(run_id: str, name: str, body: Decision, call: WesCall) -> dict[str, Any]:
        by = _custodian(call)
        return _service(call).airlock.decide(run_id, name, decision, by, body.reason).as_json()

    return decide
