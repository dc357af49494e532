"""Running a node's app under uvicorn."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from threadpoolctl import threadpool_limits
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A client gets this long to send a request's line and headers, from its first byte (or
# from connecting): slow-header clients ("slowloris") cannot hold connections open.
HEADER_TIMEOUT_S = 10.0


class ServerProtocol(HttpToolsProtocol):
    """httptools (the C HTTP parser: a request costs a third of h11's) with TCP_NODELAY on
    every connection and a deadline for each request's headers.

    asyncio sets TCP_NODELAY on sockets it accepts itself, but not on those inherited by
    uvicorn's worker processes; there Nagle's algorithm meets delayed ACKs and each
    keep-alive response waits ~40 ms. uvicorn times out idle keep-alive connections but not
    a request whose headers never end: 500 such connections stayed open indefinitely,
    each counting against ``limit_concurrency``. Past ``HEADER_TIMEOUT_S`` the client gets
    408 and the connection is closed.
    """

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(
                self.header_timeout_s, self._headers_too_slow
            )

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        message = b"request headers not received in time"
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: "
            + str(len(message)).encode()
            + b"\r\nconnection: close\r\n\r\n"
            + message
        )
        self.transport.close()


_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread() -> None:
    """One BLAS thread per thread in this server and the workers it starts, unless the
    operator set one of the usual variables.

    Genotype work runs in parallel on dask's threads (and the hub beside the nodes); each
    BLAS call spawning its own threads on the same cores made them spin against each
    other: two processes summing genotype chunks took five times as long with OpenBLAS's
    default threads as with one (``dask.distributed`` sets the same for its workers).
    """
    if any(name in os.environ for name in _BLAS_THREADS):
        return
    for name in _BLAS_THREADS:
        os.environ[name] = "1"  # worker processes read these when they load numpy
    threadpool_limits(1, user_api="blas")  # numpy is loaded here already


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
        **server_options(proxies or []),
    }
    one_blas_thread()
    if tls is not None:
        options["ssl_certfile"], options["ssl_keyfile"] = str(tls[0]), str(tls[1])
    if workers > 1:
        os.environ["GENOFED_NODE_DIR"] = str(directory.resolve())
        uvicorn.run(
            "genofed.node.app:app_from_environment", factory=True, workers=workers, **options
        )
    else:
        uvicorn.run(app, **options)


def server_options(proxies: list[str]) -> dict[str, object]:
    """uvicorn settings every genofed server (node and hub) runs with.

    ``ServerProtocol`` (above) closes connections whose headers are too slow.
    uvicorn believes X-Forwarded-For from 127.0.0.1 by default, so any local process could
    put another address in the audit log: forwarded headers are read only from configured
    proxies. Idle keep-alive connections close after 5 s, and past ``limit_concurrency``
    connections and requests at once new ones get 503 instead of queueing without bound.
    """
    return {
        "http": ServerProtocol,
        "loop": "uvloop",
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": ",".join(proxies) if proxies else None,
        "timeout_keep_alive": 5,
        "limit_concurrency": 2048,
    }
