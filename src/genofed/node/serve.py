"""Running a node's app under uvicorn."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """httptools (the C HTTP parser: a request costs a third of h11's) with TCP_NODELAY
    on every connection.

    asyncio sets it on sockets it accepts itself, but not on those inherited by uvicorn's
    worker processes; there Nagle's algorithm meets delayed ACKs and each keep-alive
    response waits ~40 ms.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def serve_node(
    directory: Path,
    app: FastAPI,
    *,
    host: str,
    port: int,
    workers: int,
    tls: tuple[Path, Path] | None = None,
    proxies: list[str] | None = None,
) -> None:
    """Serve until interrupted; with several workers each process builds its own app.
    ``tls`` is (certificate, private key), both PEM: HTTPS instead of HTTP. ``proxies``
    are the addresses whose X-Forwarded-For the node believes (``trust.proxies``)."""
    options: dict[str, object] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "http": NoDelayHttpToolsProtocol,
        "loop": "uvloop",
        **server_limits(proxies or []),
    }
    if tls is not None:
        options["ssl_certfile"], options["ssl_keyfile"] = str(tls[0]), str(tls[1])
    if workers > 1:
        os.environ["GENOFED_NODE_DIR"] = str(directory.resolve())
        uvicorn.run(
            "genofed.node.app:app_from_environment", factory=True, workers=workers, **options
        )
    else:
        uvicorn.run(app, **options)


def server_limits(proxies: list[str]) -> dict[str, object]:
    """uvicorn settings every genofed server runs with.

    uvicorn believes X-Forwarded-For from 127.0.0.1 by default, so any local process could
    put another address in the audit log: forwarded headers are read only from configured
    proxies. Idle keep-alive connections close after 5 s, and past ``limit_concurrency``
    connections and requests at once new ones get 503 instead of queueing without bound.
    """
    return {
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": ",".join(proxies) if proxies else None,
        "timeout_keep_alive": 5,
        "limit_concurrency": 2048,
    }
