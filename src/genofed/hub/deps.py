"""What the hub's routes are given (FastAPI dependencies): the runtime, the request's
deadline, and a ``NodeClient`` that asks the nodes as the caller within it."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Request

from genofed._exceptions import QueryError
from genofed.hub.client import NodeClient
from genofed.hub.runtime import HubRuntime

DEADLINE_HEADER = "genofed-deadline"
DEADLINE_PARAM = "deadline_s"
MAX_DEADLINE_S = 120.0


# Dependencies are ``async``, though they do not await: FastAPI runs a plain ``def`` in
# the thread pool, and a thread hop costs a tenth of a millisecond per dependency.


def hub_of(request: Request) -> HubRuntime:
    return request.app.state.hub  # type: ignore[no-any-return]


async def hub_runtime(request: Request) -> HubRuntime:
    return hub_of(request)


Hub = Annotated[HubRuntime, Depends(hub_runtime)]


def deadline_of(request: Request, hub: HubRuntime) -> float:
    """The request's own deadline (``Genofed-Deadline`` header or ``deadline_s`` parameter,
    in seconds), or the hub's default."""
    raw = request.headers.get(DEADLINE_HEADER) or request.query_params.get(DEADLINE_PARAM)
    if raw is None:
        return hub.config.deadline_s
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_DEADLINE_S:
        raise QueryError(f"the deadline must be a number of seconds in (0, {MAX_DEADLINE_S:g}]")
    return value


async def request_deadline(request: Request, hub: Hub) -> float:
    return deadline_of(request, hub)


Deadline = Annotated[float, Depends(request_deadline)]


async def node_client(request: Request) -> NodeClient:
    """The nodes, asked for the caller of ``request`` (never with their token: with a
    Passport the broker issues for each node) within its deadline. One dependency, with
    no others under it: the hub's routes are all busy ones."""
    hub = hub_of(request)
    credentials = hub.exchange.for_caller(request.headers.get("authorization"))
    assert hub.transport is not None  # opened at start-up
    client = request.client.host if request.client else None
    return NodeClient(
        hub.registry, hub.transport, credentials, deadline_of(request, hub), client_address=client
    )


Nodes = Annotated[NodeClient, Depends(node_client)]


def forwarded_params(request: Request) -> list[tuple[str, str]]:
    """The request's query parameters less those meant for the hub."""
    return [(k, v) for k, v in request.query_params.multi_items() if k != DEADLINE_PARAM]
