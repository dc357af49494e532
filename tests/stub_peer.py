"""A misbehaving federation peer for hub tests, run as its own process:

    python -m tests.stub_peer MODE PORT LOG

MODE ``slow`` answers every request after 3 s, ``garbage`` answers 200 with malformed
JSON, ``recorder`` answers like an empty Beacon and appends each request's method, path,
headers and body to LOG (one JSON line each). Its health check always passes, so the hub
keeps asking it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import uvicorn


def make_app(mode: str, log: Path):
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
        if path != "/-/health":
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
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


if __name__ == "__main__":
    mode, port, log = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    uvicorn.run(make_app(mode, log), host="127.0.0.1", port=port, log_level="warning")
