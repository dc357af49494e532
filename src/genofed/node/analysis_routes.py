"""``/analysis/v1``: the node's part in federated analysis.

* ``GET catalogue``: the vetted analyses this node runs (name, version, the JSON Schema of
  their parameters, the rules they apply) and this node's rules;
* ``POST tasks`` runs one step of one of them over one dataset, as a job (202); ``GET
  tasks/{id}`` gives its state, progress and result (its owner only);
* ``POST tasks/{id}/mask`` and ``tasks/{id}/reveal``: the node's later steps of the secure
  sum its payload goes into, bound to the task's id and round;
* ``GET aggregation-key``: the node's public key for secure sums, which the federation's
  other operators pin after checking its fingerprint with this node's operator, and the
  peers this node has pinned (a hub can see whom a node will sum with before it asks).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from genofed._exceptions import NotFoundError, SecureSumError
from genofed.analysis.catalogue import CATALOGUE
from genofed.api.responses import JSONResponse
from genofed.governance.keys import fingerprint, load_or_create_aggregation_key, public_key_text
from genofed.jobs.runtime import JobRecord, JobState
from genofed.node.analysis_tasks import KIND, Shares, Survivors, TaskRequest, task_view
from genofed.node.deps import NodeCall, Runtime, audit_of, resolve_caller, runtime_of


async def analysis_call(request: Request) -> NodeCall:
    """The caller of an analysis route: analyses have their own budget, per dataset."""
    runtime, audit = runtime_of(request), audit_of(request)
    caller = await resolve_caller(runtime, request, audit, charge=False)
    return NodeCall(runtime, caller, audit)


AnalysisCall = Annotated[NodeCall, Depends(analysis_call)]


def _owned(call: NodeCall, task_id: str) -> JobRecord:
    record = call.runtime.jobs.record(task_id, call.caller.identity)
    if record.kind != KIND:
        raise NotFoundError(f"no analysis task {task_id!r} of yours")
    return record


MAX_WAIT_S = 30.0
Wait = Annotated[
    float,
    Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait for the task to finish (long poll)"),
]


async def _waited(call: NodeCall, task_id: str, wait: float) -> JobRecord:
    """The task's record once it finished, or when ``wait`` seconds have passed: a
    coordinator learns of the end at once instead of polling."""
    end = time.monotonic() + wait
    record = _owned(call, task_id)
    delay = 0.002
    while not record.state.finished and time.monotonic() < end:
        await asyncio.sleep(min(delay, max(0.0, end - time.monotonic())))
        delay = min(delay * 2, 0.05)
        record = _owned(call, task_id)
    return record


def _finished(record: JobRecord) -> JobRecord:
    if record.state != JobState.SUCCEEDED:
        raise SecureSumError(f"the task is {record.state.value}: its secure sum is not ready")
    return record


def build_analysis_router() -> APIRouter:
    router = APIRouter(
        prefix="/analysis/v1", tags=["analysis"], default_response_class=JSONResponse
    )

    @router.get("/catalogue", summary="The vetted analyses this node runs, and its rules")
    def catalogue(runtime: Runtime) -> dict[str, Any]:
        analysis = runtime.config.analysis
        return {
            "node": runtime.config.name,
            "analyses": [a.describe() for a in CATALOGUE.values()],
            "rules": analysis.rules.model_dump(),
            "minParticipants": analysis.min_participants,
            "budgetPerDay": analysis.budget_per_day,
        }

    @router.post(
        "/tasks",
        status_code=202,
        summary="Run one step of a vetted analysis over one dataset (a job)",
    )
    async def create_task(
        body: TaskRequest, call: AnalysisCall, response: Response, wait: Wait = 0.0
    ) -> Any:
        runtime = call.runtime
        prepared = await run_in_threadpool(runtime.analysis.prepare, call.caller, body)
        call.audit.datasets = [prepared.reader.dataset_id]
        job = runtime.jobs.submit(
            KIND,
            call.caller.identity,
            lambda job: runtime.analysis.run(prepared, job),
            ttl_s=3600,
        )
        response.headers["location"] = f"/analysis/v1/tasks/{job.id}"
        return task_view(await _waited(call, job.id, wait) if wait else job.snapshot())

    @router.get("/tasks/{task_id}", summary="A task's state, progress and result")
    async def get_task(task_id: str, call: AnalysisCall, wait: Wait = 0.0) -> Any:
        return task_view(await _waited(call, task_id, wait))

    @router.post("/tasks/{task_id}/mask", summary="Secure sum: this node's masked payload")
    async def mask(task_id: str, body: Shares, call: AnalysisCall) -> Any:
        record = _finished(_owned(call, task_id))
        return await run_in_threadpool(call.runtime.analysis.mask, record, body)

    @router.post("/tasks/{task_id}/reveal", summary="Secure sum: this node's shares to unmask")
    async def reveal(task_id: str, body: Survivors, call: AnalysisCall) -> Any:
        record = _finished(_owned(call, task_id))
        return await run_in_threadpool(call.runtime.analysis.reveal, record, body)

    @router.get("/aggregation-key", summary="This node's public key for secure sums")
    def aggregation_key(runtime: Runtime) -> dict[str, Any]:
        key = public_key_text(load_or_create_aggregation_key(runtime.node.aggregation_key_path))
        analysis = runtime.config.analysis
        return {
            "node": runtime.config.name,
            "algorithm": "X25519",
            "publicKey": key,
            "fingerprint": fingerprint(key),
            "pinnedPeers": sorted(analysis.peers),
            "minParticipants": analysis.min_participants,
        }

    return router
