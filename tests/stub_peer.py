"""A misbehaving federation peer for hub tests, run as its own process:

    python -m tests.stub_peer MODE PORT LOG [UPSTREAM]

MODE ``slow`` answers every request after 3 s, ``garbage`` answers 200 with malformed
JSON, ``recorder`` answers like an empty Beacon and appends each request's method, path,
headers and body to LOG (one JSON line each). Its health check always passes, so the hub
keeps asking it. ``lagging`` stands in front of the real node at UPSTREAM and passes every
request on, but holds a task of a secure round numbered 2 for 6 s first (a node late for
that round, on time for the others), logging the rounds it held.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import uvicorn

LAGGED_ROUND, LAG_S = 2, 6.0


async def _pass_on(scope, body: bytes, upstream: str, log: Path) -> tuple[int, bytes, bytes]:
    """The upstream node's answer to this request, late if it starts round 2's task."""
    if scope["method"] == "POST" and scope["path"].endswith("/tasks"):
        secure = json.loads(body or b"{}").get("secure") or {}
        if secure.get("round") == LAGGED_ROUND:
            with log.open("a") as handle:
                handle.write(json.dumps({"held": LAGGED_ROUND}) + "\n")
            await asyncio.sleep(LAG_S)
    headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k != b"host"]
    query = scope["query_string"].decode()
    url = upstream + scope["path"] + (f"?{query}" if query else "")
    async with httpx.AsyncClient(timeout=120) as client:
        response = await client.request(scope["method"], url, headers=headers, content=body)
    kind = response.headers.get("content-type", "application/json").encode()
    return response.status_code, kind, response.content


def make_app(mode: str, log: Path, upstream: str | None = None):
    async def app(scope, receive, send):  # a bare ASGI app: nothing of ours is involved
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        status, payload = 200, b'{"status": "ok"}'
        kind = b"application/json"
        if mode == "lagging" and upstream is not None:
            status, kind, payload = await _pass_on(scope, body, upstream, log)
        elif path != "/-/health":
            if mode == "slow":
                await asyncio.sleep(3)
                payload = b'{"meta": {}, "responseSummary": {"exists": true}}'
            elif mode == "garbage":
                payload = b'{"meta": {"beaconId": "x"}, "responseSummary": {"exis'
            else:
                headers = {k.decode(): v.decode() for k, v in scope["headers"]}
                entry = {
                    "method": scope["method"],
                    "path": path,
                    "query": scope["query_string"].decode(),
                    "headers": headers,
                    "body": body.decode(errors="replace"),
                }
                with log.open("a") as handle:
                    handle.write(json.dumps(entry) + "\n")
                payload = json.dumps(
                    {
                        "meta": {
                            "beaconId": "org.stub",
                            "apiVersion": "v2.0.0",
                            "returnedGranularity": "count",
                        },
                        "responseSummary": {"exists": False, "numTotalResults": 0},
                        "response": {"resultSets": []},
                    }
                ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", kind)],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


if __name__ == "__main__":
    mode, port, log = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    upstream = sys.argv[4] if len(sys.argv) > 4 else None
    uvicorn.run(make_app(mode, log, upstream), host="127.0.0.1", port=port, log_level="warning")
