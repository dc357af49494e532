"""What a node's routes are given (FastAPI dependencies): the runtime, the audit record
of the request, and the caller behind its credentials.

This is the one authorisation path of every API of the node (Beacon, Data Connect, DAC):
credentials are resolved here, the caller is charged one query of their budget here, and
the audit record names them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from genofed._exceptions import CredentialError, QueryError
from genofed.beacon.request import BeaconRequest, from_post, from_query_string
from genofed.governance.access import Caller
from genofed.node.runtime import NodeRuntime

AUDIT_STATE = "genofed_audit"  # where the audit middleware finds the request's record


@dataclass
class AuditRecord:
    """What the audit log records of one request, besides its method, path and status."""

    caller: Caller | None = None
    datasets: list[str] = field(default_factory=list)
    results: int | None = None


# Dependencies are ``async``, though they do not await: FastAPI runs a plain ``def`` in
# the thread pool, and a thread hop costs a tenth of a millisecond per dependency.


def runtime_of(request: Request) -> NodeRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def node_runtime(request: Request) -> NodeRuntime:
    return runtime_of(request)


Runtime = Annotated[NodeRuntime, Depends(node_runtime)]


def audit_of(request: Request) -> AuditRecord:
    """The request's audit record (one per request, shared with the audit middleware)."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    record = state.get(AUDIT_STATE)
    if record is None:
        record = state[AUDIT_STATE] = AuditRecord()
    return record  # type: ignore[no-any-return]


async def audit_record(request: Request) -> AuditRecord:
    return audit_of(request)


Audit = Annotated[AuditRecord, Depends(audit_record)]


async def resolve_caller(
    runtime: NodeRuntime,
    request: Request,
    audit: AuditRecord,
    passports: object = None,
    *,
    charge: bool = True,
) -> Caller:
    """The caller behind the request's credentials (and a POST body's ``passports``),
    charged one query of their budget unless ``charge`` is false."""
    gate = runtime.gate
    client = f"address {request.client.host}" if request.client else "address unknown"
    authorization = request.headers.get("authorization")
    if authorization is None and passports is None:
        # nothing to validate or fetch: no thread needed
        caller = gate.credentials.caller(None, None, client)
    else:
        caller = await run_in_threadpool(gate.credentials.caller, authorization, passports, client)
    audit.caller = caller
    if charge and gate.release.budget is not None and gate.release.budget.per_day is not None:
        await run_in_threadpool(gate.release.admit, caller.identity)
    return caller


async def current_caller(runtime: Runtime, request: Request, audit: Audit) -> Caller:
    return await resolve_caller(runtime, request, audit)


async def identified_caller(runtime: Runtime, request: Request, audit: Audit) -> Caller:
    """A caller who must say who they are (the DAC): a Passport is required."""
    caller = await resolve_caller(runtime, request, audit, charge=False)
    if caller.sub is None:
        raise CredentialError("the DAC needs to know who you are: send a Passport")
    return caller


@dataclass(frozen=True)
class NodeCall:
    """The runtime, the caller and the audit record of one request, as one dependency
    (the busy routes': each dependency solved costs some microseconds)."""

    runtime: NodeRuntime
    caller: Caller
    audit: AuditRecord


async def node_call(request: Request) -> NodeCall:
    runtime, audit = runtime_of(request), audit_of(request)
    return NodeCall(runtime, await resolve_caller(runtime, request, audit), audit)


async def paging_call(request: Request) -> NodeCall:
    """A later page of a result: its query was charged already."""
    runtime, audit = runtime_of(request), audit_of(request)
    caller = await resolve_caller(runtime, request, audit, charge=False)
    return NodeCall(runtime, caller, audit)


Call = Annotated[NodeCall, Depends(node_call)]
PagingCall = Annotated[NodeCall, Depends(paging_call)]
CurrentCaller = Annotated[Caller, Depends(current_caller)]
IdentifiedCaller = Annotated[Caller, Depends(identified_caller)]


@dataclass(frozen=True)
class BeaconCall:
    """A Beacon request, its caller (a POST body may carry DRS-style ``passports``), the
    node's runtime and the request's audit record: one dependency, as the Beacon's routes
    are the node's busiest (each dependency solved costs some microseconds)."""

    request: BeaconRequest
    caller: Caller
    runtime: NodeRuntime
    audit: AuditRecord


async def _beacon_request(request: Request) -> tuple[BeaconRequest, object]:
    if request.method == "POST":
        query = list(request.query_params.multi_items())
        raw = await request.body()
        if not raw.strip():
            return from_post({}, query), None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise QueryError(f"the request body is not valid JSON: {exc}") from exc
        passports = body.pop("passports", None) if isinstance(body, dict) else None
        return from_post(body, query), passports
    return from_query_string(list(request.query_params.multi_items())), None


async def beacon_call(request: Request) -> BeaconCall:
    runtime, audit = runtime_of(request), audit_of(request)
    parsed, passports = await _beacon_request(request)
    caller = await resolve_caller(runtime, request, audit, passports)
    return BeaconCall(parsed, caller, runtime, audit)


async def beacon_caller(runtime: Runtime, request: Request, audit: Audit) -> Caller:
    """The caller of a Beacon informational endpoint (a POST body may carry passports)."""
    passports = (await _beacon_request(request))[1] if request.method == "POST" else None
    return await resolve_caller(runtime, request, audit, passports)


Beacon = Annotated[BeaconCall, Depends(beacon_call)]
BeaconCaller = Annotated[Caller, Depends(beacon_caller)]
