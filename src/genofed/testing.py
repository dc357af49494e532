"""In-memory federation nodes, for testing a hub (and code built on one) without servers.

``FakeNode`` answers what a hub asks of a node from documents you give it, and can be
slow, down, refusing or broken; ``FakeTransport`` carries the hub's requests to fake nodes
instead of over HTTP; ``fake_hub_app`` builds the real hub app over them::

    from fastapi.testclient import TestClient
    from genofed.testing import FakeNode, fake_hub_app

    nodes = [FakeNode.counting("a", 12, "rounded"), FakeNode.counting("b", 3, "exact")]
    with TestClient(fake_hub_app(nodes, tmp_path)) as hub:
        hub.get("/beacon/v2/individuals", params={"requestedGranularity": "count"}).json()

Everything the hub does is real (fan-out, deadlines, circuit breakers, merging, release
policy); only the nodes are pretend. Each fake node records the requests it receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from genofed.config import Disclosure, HubConfig, HubNode
from genofed.hub.credentials import BROKER
from genofed.hub.transport import Response

__all__ = ["FakeNode", "FakeRequest", "FakeTransport", "fake_hub_app"]


@dataclass(frozen=True)
class FakeRequest:
    """One request a fake node received."""

    method: str
    path: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    body: Any  # the JSON body (or form) as sent, decoded


Answer = dict[str, Any] | Callable[[FakeRequest], dict[str, Any]]


@dataclass
class FakeNode:
    """A node that answers from fixed documents.

    ``beacon`` answers every Beacon entry query (``/beacon/v2/...``); ``data_connect``
    answers ``POST /data-connect/search`` (one page, whatever the query) and ``tables``
    is what ``GET /data-connect/tables`` lists. Either may be a function of the request.
    ``delay_s`` makes it slow, ``down`` unreachable, ``status`` refuse (with a Beacon or
    Data Connect error body), ``malformed`` answer broken JSON.
    """

    name: str
    beacon: Answer = field(default_factory=dict)
    data_connect: Answer = field(default_factory=dict)
    tables: list[dict[str, Any]] = field(default_factory=list)
    delay_s: float = 0.0
    down: bool = False
    status: int = 200
    malformed: bool = False
    requests: list[FakeRequest] = field(default_factory=list)

    @classmethod
    def counting(
        cls,
        name: str,
        count: int | None,
        precision: str = "exact",
        *,
        exists: bool | None = None,
        warnings: list[str] | None = None,
        **options: Any,
    ) -> FakeNode:
        """A node whose Beacon answers ``count`` results (``None``: yes or no only)."""
        summary: dict[str, Any] = {"exists": bool(count) if exists is None else exists}
        granularity = "boolean"
        if count is not None:
            granularity = "count"
            summary["numTotalResults"] = count
            if precision != "exact":
                summary["countPrecision"] = precision
        document: dict[str, Any] = {
            "meta": {
                "beaconId": f"org.fake.{name}",
                "apiVersion": "v2.0.0",
                "returnedGranularity": granularity,
            },
            "responseSummary": summary,
        }
        if count is not None:
            document["response"] = {
                "resultSets": [
                    {
                        "id": f"{name}-data",
                        "setType": "dataset",
                        "exists": summary["exists"],
                        "resultsCount": count,
                        "results": [],
                    }
                ]
            }
        if warnings:
            document["info"] = {"warnings": warnings}
        return cls(name, beacon=document, **options)

    @property
    def url(self) -> str:
        return f"http://{self.name}.fake.test"

    def respond(self, request: FakeRequest) -> tuple[int, bytes]:
        """The status and body this node answers ``request`` with."""
        if request.path == "/-/health":
            return 200, b'{"status": "ok"}'
        if self.status != 200:
            message = f"{self.name} refuses ({self.status})"
            if request.path.startswith("/data-connect"):
                body = {"errors": [{"title": "Refused", "detail": message}]}
            else:
                body = {"error": {"errorCode": self.status, "errorMessage": message}}
            return self.status, orjson.dumps(body)
        if self.malformed:
            return 200, b'{"meta": {"beaconId": "x"}, "responseSummary": {"exis'
        if request.path == "/data-connect/tables":
            return 200, orjson.dumps({"tables": self.tables})
        if request.path.startswith("/data-connect"):
            return 200, orjson.dumps(_answer(self.data_connect, request))
        return 200, orjson.dumps(_answer(self.beacon, request))


def _answer(answer: Answer, request: FakeRequest) -> dict[str, Any]:
    return answer(request) if callable(answer) else answer


class FakeTransport:
    """Carries a hub's requests to fake nodes, by node name (the broker is not faked:
    use anonymous requests, or give ``broker`` a function answering token exchanges)."""

    def __init__(
        self,
        nodes: Iterable[FakeNode],
        broker: Callable[[dict[str, str]], dict[str, Any]] | None = None,
    ):
        self.nodes = {node.name: node for node in nodes}
        self.broker = broker

    async def request(
        self,
        node: HubNode,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float,
    ) -> Response:
        if node.name == BROKER:
            if self.broker is None:
                raise ConnectionError("no broker in this fake federation")
            return Response(200, orjson.dumps(self.broker(dict(form or {}))))
        fake = self.nodes.get(node.name)
        if fake is None or fake.down:
            raise ConnectionError("ClientConnectorError")
        decoded = orjson.loads(body) if body else form
        request = FakeRequest(method, path, list(params or []), dict(headers or {}), decoded)
        if path != "/-/health":
            fake.requests.append(request)
            if fake.delay_s:
                if fake.delay_s >= timeout_s:
                    await asyncio.sleep(max(0.0, timeout_s))
                    raise TimeoutError
                await asyncio.sleep(fake.delay_s)
        status, content = fake.respond(request)
        return Response(status, content, {"content-type": "application/json"})

    async def close(self) -> None:
        return None


def fake_hub_app(
    nodes: Iterable[FakeNode],
    directory: Path,
    *,
    disclosure: Disclosure | None = None,
    **settings: Any,
) -> Any:
    """The real hub app (``create_hub_app``) over fake nodes; ``settings`` are hub.yaml's
    (``deadline_s``, ``breaker_failures``, ...)."""
    from genofed.hub.app import create_hub_app

    nodes = list(nodes)
    # Fake nodes hold no audit log to anchor; anchoring is tested against real node processes
    # (tests/attacks/test_audit_anchors.py). Left on, its fetches would show among the requests
    # a test records.
    settings.setdefault("audit_anchor_interval_s", 0)
    config = HubConfig(
        nodes=[HubNode(name=n.name, url=n.url) for n in nodes],
        disclosure=disclosure or Disclosure(),
        **settings,
    )
    return create_hub_app(config, directory, transport=FakeTransport(nodes))
