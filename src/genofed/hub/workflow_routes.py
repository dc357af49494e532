"""``/hub/workflows``: run an approved workflow at every node (or some), follow each run,
and fetch the outputs the nodes' custodians released (``hub.workflows`` says how)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from genofed._exceptions import NodeRefusedError, NotFoundError, QueryError
from genofed.api.responses import JSONResponse
from genofed.hub import workflows
from genofed.hub.analysis_routes import _caller
from genofed.hub.client import NodeClient
from genofed.hub.deps import Hub
from genofed.hub.fanout import error_message
from genofed.hub.runtime import HubRuntime

DEADLINE_S = 60.0


def _client(hub: HubRuntime, credentials: Any) -> NodeClient:
    assert hub.transport is not None
    return NodeClient(hub.registry, hub.transport, credentials, DEADLINE_S)


async def _form(request: Request) -> tuple[dict[str, str], dict[str, bytes], list[str], list[str]]:
    """The RunRequest's fields and attachments, and the hub's own fields: ``datasets``
    (node:dataset, comma-separated) and ``nodes`` (comma-separated)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise QueryError("send the RunRequest as multipart/form-data, as to a node's WES")
    fields: dict[str, str] = {}
    attachments: dict[str, bytes] = {}
    datasets: list[str] = []
    nodes: list[str] = []
    async with request.form(max_files=100, max_fields=50) as form:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                attachments[value.filename or ""] = await value.read()
            elif key == "datasets":
                datasets += [d.strip() for d in value.split(",") if d.strip()]
            elif key == "nodes":
                nodes += [n.strip() for n in value.split(",") if n.strip()]
            elif key in workflows.FIELDS:
                fields[key] = value
            else:
                raise QueryError(f"{key!r} is not a field of a RunRequest (or datasets, nodes)")
    for required in ("workflow_type", "workflow_type_version", "workflow_url"):
        if not fields.get(required):
            raise QueryError(f"{required} is required")
    return fields, attachments, datasets, nodes


def build_workflow_router() -> APIRouter:
    router = APIRouter(prefix="/hub/workflows", tags=["workflows"],
                       default_response_class=JSONResponse)  # fmt: skip

    @router.post("", summary="Run one approved workflow at every node (or those named)")
    async def create(request: Request, hub: Hub) -> Any:
        owner, credentials = await _caller(hub, request)
        fields, attachments, datasets, nodes = await _form(request)
        client = _client(hub, credentials)
        chosen = workflows.targets(client, datasets, nodes)
        run = workflows.WorkflowRun(f"workflow-{secrets.token_hex(8)}", owner,
                                    fields["workflow_url"], fields["workflow_type"])  # fmt: skip
        await workflows.start(client, run, fields, attachments, chosen)
        hub.workflows.save(run)
        return await workflows.follow(client, run)

    @router.get("", summary="Your workflow runs, newest first")
    async def list_runs(request: Request, hub: Hub) -> Any:
        owner, _ = await _caller(hub, request)
        return {"workflows": [r.as_json() for r in hub.workflows.all(owner)]}

    @router.get("/{run_id}", summary="Each node's run: state, outputs and their airlock states")
    async def get(run_id: str, request: Request, hub: Hub) -> Any:
        owner, credentials = await _caller(hub, request)
        return await workflows.follow(_client(hub, credentials), hub.workflows.get(run_id, owner))

    @router.get(
        "/{run_id}/nodes/{node}/outputs/{name:path}",
        summary="An output a node's custodian released",
        response_model=None,
    )
    async def output(run_id: str, node: str, name: str, request: Request, hub: Hub) -> Response:
        owner, credentials = await _caller(hub, request)
        run = hub.workflows.get(run_id, owner)
        started = run.runs.get(node) or {}
        if "run_id" not in started:
            raise NotFoundError(f"workflow {run_id} has no run at {node!r}")
        target = _client(hub, credentials).node(node)
        assert hub.transport is not None
        headers = await credentials(target, time.monotonic() + DEADLINE_S)
        path = f"{workflows.WES}/runs/{started['run_id']}/outputs/{name}"
        answer = await hub.transport.request(target, "GET", path, headers=headers,
                                             timeout_s=DEADLINE_S)  # fmt: skip
        if answer.status != 200:
            try:
                message = error_message(orjson.loads(answer.content)) or "refused"
            except orjson.JSONDecodeError:
                message = "refused"
            raise NodeRefusedError(node, answer.status, message)
        kind = answer.headers.get("content-type", "application/octet-stream")
        return Response(answer.content, media_type=kind)

    return router
