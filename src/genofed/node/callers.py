"""Who is asking: the caller behind a request's credentials, shared by every API."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from genofed.governance.access import Caller
from genofed.governance.gatekeeper import Gatekeeper


async def authorize(
    gate: Gatekeeper, request: Request, passports: object = None, *, charge: bool = True
) -> Caller:
    """The caller behind the request's credentials, charged one query of their budget
    (unless ``charge`` is false: the next page of a result already paid for).

    The audit log names the caller from ``request.state.caller``.
    """
    client = f"address {request.client.host}" if request.client else "address unknown"
    authorization = request.headers.get("authorization")
    if authorization is None and passports is None:
        # nothing to validate or fetch: no thread needed
        caller = gate.credentials.caller(None, None, client)
    else:
        caller = await run_in_threadpool(gate.credentials.caller, authorization, passports, client)
    request.state.caller = caller
    if charge and gate.budget.per_day is not None:
        await run_in_threadpool(gate.budget.charge, caller.identity)
    return caller
