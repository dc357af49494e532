"""``NodeClient``: the hub's typed client for its nodes' APIs, for one request.

It holds what every call to a node needs (the transport, the caller's per-node
credentials, the request's deadline and the circuit breakers), so a route says only what
to ask: ``beacon`` and ``ask`` of every node, ``search`` and ``page`` of one.
"""

from __future__ import annotations

import time
from typing import Any

from genofed._exceptions import NodeRefusedError, NotFoundError
from genofed.config import HubNode
from genofed.hub.fanout import Call, Credentials, Reply, fan_out, send
from genofed.hub.nodes import Registry
from genofed.hub.transport import Transport

DATA_CONNECT = "/data-connect"


class NodeClient:
    def __init__(
        self,
        registry: Registry,
        transport: Transport,
        credentials: Credentials | None,
        deadline_s: float,
        client_address: str | None = None,
    ):
        self.registry = registry
        self.transport = transport
        self.credentials = credentials
        self.deadline_s = deadline_s
        # Sent as X-Forwarded-For, so a node that lists the hub in trust.proxies keeps each
        # anonymous user's own budget and audits their address, not the hub's.
        self.client_address = client_address

    @property
    def nodes(self) -> list[HubNode]:
        return self.registry.nodes

    def node(self, name: str) -> HubNode:
        for node in self.registry.nodes:
            if node.name == name:
                return node
        raise NotFoundError(f"no node {name!r} in this federation; GET /hub/nodes lists them")

    async def send(
        self,
        node: HubNode,
        method: str,
        path: str,
        end: float,
        *,
        params: list[tuple[str, str]] | None = None,
        body: Any = None,
        content: tuple[bytes, str] | None = None,
    ) -> Reply:
        """One request to one node before ``end`` (``time.monotonic()``), as the caller."""
        return await send(
            self.transport,
            node,
            method,
            path,
            end,
            params,
            body,
            self.credentials,
            forwarded_for=self.client_address,
            content=content,
        )

    async def each(self, call: Call, nodes: list[HubNode] | None = None) -> list[Reply]:
        """``call`` for every node (or ``nodes``) at once, under the request's deadline."""
        return await fan_out(self.registry, call, deadline_s=self.deadline_s, nodes=nodes)

    async def ask(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: Any = None,
    ) -> list[Reply]:
        """``method path`` asked of every node."""

        async def call(node: HubNode, end: float) -> Reply:
            return await self.send(node, method, path, end, params=params, body=body)

        return await self.each(call)

    async def one(self, node: HubNode, method: str, path: str, body: Any = None) -> Reply:
        """One node's reply (its circuit breaker is told how it went); a refusal (4xx)
        is raised as ``NodeRefusedError``, for the caller to see the node's message."""

        async def call(target: HubNode, end: float) -> Reply:
            return await self.send(target, method, path, end, body=body)

        [reply] = await self.each(call, nodes=[node])
        if (
            reply.status != "ok"
            and reply.http_status is not None
            and 400 <= reply.http_status < 500
        ):
            raise NodeRefusedError(reply.node, reply.http_status, reply.detail or "refused")
        return reply

    async def search(self, node: HubNode, query: str, parameters: Any) -> Reply:
        """A Data Connect query run at one node: its first page."""
        body = {"query": query, "parameters": parameters}
        return await self.one(node, "POST", f"{DATA_CONNECT}/search", body)

    async def page(self, node: HubNode, path: str) -> Reply:
        """A later page of a node's Data Connect result (``path`` as the node gave it)."""
        return await self.one(node, "GET", path)

    @staticmethod
    def remaining(end: float) -> float:
        """Seconds left before ``end`` (``time.monotonic()``), never negative."""
        return max(0.0, end - time.monotonic())
