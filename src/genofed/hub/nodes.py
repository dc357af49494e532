"""The nodes a hub federates: their health, checked in the background, and a circuit
breaker that stops asking a node that keeps failing until its health check passes again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Literal

from genofed.config import HubConfig, HubNode
from genofed.hub.transport import Transport

Health = Literal["unknown", "up", "down"]
_HEALTH_TIMEOUT_S = 2.0


@dataclass
class NodeState:
    """What the hub knows of one node."""

    node: HubNode
    health: Health = "unknown"
    failures: int = 0  # consecutive failed requests or health checks
    breaker_open: bool = False  # skipped by fan-outs until a health check passes
    checked_at: float | None = None  # time.time() of the last health check
    health_ms: float | None = None
    last_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.node.name,
            "url": self.node.base,
            "health": self.health,
            "breakerOpen": self.breaker_open,
            "consecutiveFailures": self.failures,
            "checkedAt": self.checked_at,
            "healthMs": None if self.health_ms is None else round(self.health_ms, 1),
            "lastError": self.last_error,
        }


class Registry:
    """The hub's nodes and their state. ``record`` is told how each request went; a node
    failing ``breaker_failures`` times in a row is skipped until its health check (every
    ``health_interval_s``) passes again."""

    def __init__(self, config: HubConfig):
        self.config = config
        self.states = {n.name: NodeState(n) for n in config.nodes}

    @property
    def nodes(self) -> list[HubNode]:
        return self.config.nodes

    def record(self, name: str, ok: bool, error: str | None = None) -> None:
        state = self.states[name]
        if ok:
            state.failures = 0
            state.breaker_open = False
            return
        state.failures += 1
        state.last_error = error
        if state.failures >= self.config.breaker_failures:
            state.breaker_open = True

    async def check(self, transport: Transport, state: NodeState) -> None:
        """One health check: ``GET /-/health`` answering 200 within 2 s."""
        start = time.perf_counter()
        try:
            response = await asyncio.wait_for(
                transport.request(state.node, "GET", "/-/health", timeout_s=_HEALTH_TIMEOUT_S),
                _HEALTH_TIMEOUT_S,
            )
            healthy = response.status == 200
            error = None if healthy else f"health check answered HTTP {response.status}"
        except (ConnectionError, TimeoutError) as exc:
            healthy, error = False, f"health check failed: {type(exc).__name__}"
        state.checked_at = time.time()
        state.health_ms = (time.perf_counter() - start) * 1000
        state.health = "up" if healthy else "down"
        if healthy:
            self.record(state.node.name, True)
        else:
            # a failed health check opens the breaker at once: fan-outs skip the node
            self.record(state.node.name, False, error)
            state.breaker_open = True

    async def check_all(self, transport: Transport) -> None:
        await asyncio.gather(*(self.check(transport, s) for s in self.states.values()))

    async def watch(self, transport: Transport) -> None:
        """Check every node now and then every ``health_interval_s``, until cancelled."""
        while True:
            with contextlib.suppress(Exception):  # a check never stops the watching
                await self.check_all(transport)
            await asyncio.sleep(self.config.health_interval_s)
