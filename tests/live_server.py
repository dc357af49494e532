"""Real node servers for tests: ``genofed node serve`` on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

GENOFED = str(Path(sys.executable).with_name("genofed"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_node_server(
    node: Path, *, workers: int = 1, port: int | None = None, **popen: object
) -> tuple[subprocess.Popen, str]:
    """Start serving ``node`` and wait until ``/-/health`` answers; returns the process
    (the caller stops it) and the base URL."""
    port = port or free_port()
    server = subprocess.Popen(
        [GENOFED, "node", "serve", str(node), "--port", str(port), "--workers", str(workers)],
        **popen,  # type: ignore[call-overload]
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_up(f"{base}/-/health", server)
    return server, base


def wait_until_up(url: str, server: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers 200 (30 s at most, or until ``server`` exits)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or (server is not None and server.poll() is not None):
            if server is not None:
                server.kill()
            raise AssertionError(f"{url} did not answer")
        time.sleep(0.1)


class ThreadServer:
    """An app served by uvicorn in a thread of the test process, on a free loopback port
    (for clients that need a URL: the command line, a GA4GH client)."""

    def __init__(self, app: object):
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="test-server")

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
