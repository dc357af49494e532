"""One request asked of every node at once, under one overall deadline.

Every node gets an outcome, whatever it does: ``ok`` (a JSON object came back),
``unauthorised`` (it refused the credentials), ``error`` (it answered something else, or
could not be reached), ``timeout`` (no answer before the deadline) or ``skipped`` (its
circuit breaker is open). Nothing a node does makes the fan-out raise or run late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from genofed._exceptions import NodeCredentialsError
from genofed.config import HubNode
from genofed.hub.nodes import Registry
from genofed.hub.transport import Transport

Status = Literal["ok", "timeout", "error", "unauthorised", "skipped"]
# Credentials for one node: the headers to send it; raises ``NodeCredentialsError`` (whose
# ``outcome`` becomes the node's) when none could be obtained: the request is not sent.
Credentials = Callable[[HubNode, float], Awaitable[dict[str, str]]]


@dataclass
class Reply:
    """How one node answered."""

    node: str
    status: Status
    ms: float | None = None
    http_status: int | None = None
    detail: str | None = None
    document: dict[str, Any] | None = None  # the JSON object, when ``ok``
    headers: dict[str, str] = field(default_factory=dict)  # the node's response headers
    hub_fault: bool = False  # it failed in the hub, not at the node

    @property
    def node_failed(self) -> bool:
        """The node itself failed (no answer, a 5xx, malformed JSON), as opposed to
        refusing the request (4xx) or the hub failing: only this counts towards the
        node's circuit breaker, so a caller's bad request never darkens a node."""
        if self.status in ("ok", "unauthorised", "skipped") or self.hub_fault:
            return False
        return self.http_status is None or not 400 <= self.http_status < 500

    def outcome(self) -> dict[str, Any]:
        """What the response says about this node."""
        out: dict[str, Any] = {"node": self.node, "status": self.status}
        if self.ms is not None:
            out["ms"] = round(self.ms, 1)
        if self.http_status is not None:
            out["httpStatus"] = self.http_status
        if self.detail:
            out["detail"] = self.detail
        return out


# One node's part of a fan-out: given the node and the deadline (time.monotonic()), its
# reply. It must not raise.
Call = Callable[[HubNode, float], Awaitable[Reply]]


async def fan_out(
    registry: Registry,
    call: Call,
    *,
    deadline_s: float,
    nodes: list[HubNode] | None = None,
) -> list[Reply]:
    """``call`` for every node (or those of ``nodes``) whose breaker is closed, all at
    once; a node still busy at the deadline is a ``timeout``. The replies come in the order
    of the hub's configuration, and tell the circuit breakers how each node did."""
    end = time.monotonic() + deadline_s
    asked = registry.nodes if nodes is None else nodes
    replies: dict[str, Reply] = {}
    tasks: dict[asyncio.Task[Reply], HubNode] = {}
    for node in asked:
        state = registry.states[node.name]
        if state.breaker_open:
            replies[node.name] = Reply(
                node.name,
                "skipped",
                detail=f"not answering ({state.last_error or 'health check failed'}); "
                "checked again in the background",
            )
            continue
        tasks[asyncio.create_task(call(node, end))] = node
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, end - time.monotonic()))
        for task in pending:
            task.cancel()
            node = tasks[task]
            replies[node.name] = Reply(
                node.name, "timeout", ms=deadline_s * 1000, detail="no answer before the deadline"
            )
        for task in done:
            node = tasks[task]
            try:
                replies[node.name] = task.result()
            except Exception as exc:  # noqa: BLE001 - a node must never break the fan-out
                replies[node.name] = Reply(
                    node.name, "error", detail=f"failed ({type(exc).__name__})", hub_fault=True
                )
    for reply in replies.values():
        if reply.status != "skipped":
            registry.record(reply.node, not reply.node_failed, reply.detail)
    return [replies[n.name] for n in asked]


async def send(
    transport: Transport,
    node: HubNode,
    method: str,
    path: str,
    end: float,
    params: list[tuple[str, str]] | None = None,
    body: Any = None,
    credentials: Credentials | None = None,
    *,
    forwarded_for: str | None = None,
    content: tuple[bytes, str] | None = None,
) -> Reply:
    """One request to one node, classified; never raises. ``forwarded_for`` is the end
    client's address (X-Forwarded-For); ``content`` a body already encoded, and its
    content type (a multipart form), instead of ``body`` as JSON."""
    start = time.perf_counter()

    def reply(status: Status, detail: str | None = None, **kw: Any) -> Reply:
        ms = (time.perf_counter() - start) * 1000
        return Reply(node.name, status, ms=ms, detail=detail, **kw)

    try:
        headers = await credentials(node, end) if credentials else {}
        if body is not None:
            headers = {**headers, "content-type": "application/json"}
        encoded = None if body is None else orjson.dumps(body)
        if content is not None:
            encoded, headers = content[0], {**headers, "content-type": content[1]}
        if forwarded_for:
            headers = {**headers, "x-forwarded-for": forwarded_for}
        response = await transport.request(
            node,
            method,
            path,
            params=params,
            body=encoded,
            headers=headers,
            timeout_s=end - time.monotonic(),
        )
        status, received = response.status, response.content
    except NodeCredentialsError as exc:
        return reply(exc.outcome, str(exc))  # type: ignore[arg-type]
    except TimeoutError:
        return reply("timeout", "no answer before the deadline")
    except ConnectionError as exc:
        return reply("error", f"could not be reached ({exc})")
    except Exception as exc:  # noqa: BLE001 - a node must never break the fan-out
        return reply("error", f"failed ({type(exc).__name__})", hub_fault=True)
    try:
        document = orjson.loads(received)
    except orjson.JSONDecodeError:
        document = None
    if status in (401, 403):
        return reply("unauthorised", error_message(document), http_status=status)
    if not 200 <= status < 300:  # 202: a job the node accepted
        return reply("error", error_message(document) or "no error message", http_status=status)
    if not isinstance(document, dict):
        return reply("error", "answered with malformed JSON", http_status=status)
    return reply("ok", http_status=status, document=document, headers=response.headers)


def error_message(document: Any) -> str | None:
    """The node's own error text: a Beacon ``error``, Data Connect ``errors`` or WES's
    ``msg``."""
    if not isinstance(document, dict):
        return None
    if isinstance(document.get("msg"), str):
        return document["msg"][:300]
    error = document.get("error")
    if isinstance(error, dict) and isinstance(error.get("errorMessage"), str):
        return error["errorMessage"][:300]
    errors = document.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("detail") or errors[0].get("title"))[:300]
    detail = document.get("detail")
    return str(detail)[:300] if detail else None
