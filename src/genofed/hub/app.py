"""The hub's FastAPI app: the federated Beacon, node status and health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from genofed import __version__
from genofed._exceptions import CredentialError, GenofedError
from genofed.config import HubConfig
from genofed.hub.beacon_routes import build_hub_beacon_router
from genofed.hub.runtime import HubRuntime
from genofed.node.beacon.model import API_VERSION
from genofed.node.json_response import JSONResponse

log = logging.getLogger(__name__)


def create_hub_app(config: HubConfig) -> FastAPI:
    hub = HubRuntime(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.start()
        await hub.registry.check_all(hub.client)  # know who is up before the first request
        watcher = asyncio.create_task(hub.registry.watch(hub.client))
        yield
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await hub.client.aclose()

    app = FastAPI(
        title=f"genofed hub {config.name}",
        version=__version__,
        description="One Beacon v2 over every node of the federation.",
        default_response_class=JSONResponse,
        lifespan=lifespan,
    )
    app.state.hub = hub
    app.include_router(build_hub_beacon_router())

    def error(status: int, message: str) -> JSONResponse:
        body = {
            "meta": {"beaconId": config.beacon_id, "apiVersion": API_VERSION},
            "error": {"errorCode": status, "errorMessage": message},
        }
        return JSONResponse(body, status_code=status)

    @app.exception_handler(GenofedError)
    async def genofed_error(_request: Request, exc: GenofedError) -> JSONResponse:
        response = error(exc.status, str(exc))
        if isinstance(exc, CredentialError):
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(400, f"{where}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error(500, "internal error; the hub operator can find it in the logs")

    @app.get("/hub/nodes", tags=["hub"], summary="The nodes and their health", response_model=None)
    def nodes() -> dict[str, Any]:
        return {"nodes": [s.as_json() for s in hub.registry.states.values()]}

    @app.get("/-/health", include_in_schema=False, response_model=None)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
