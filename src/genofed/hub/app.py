"""The hub's FastAPI app: the federated Beacon, node status and health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from genofed import __version__
from genofed._exceptions import CredentialError, GenofedError
from genofed.config import HubConfig
from genofed.hub.beacon_routes import build_hub_beacon_router
from genofed.hub.cohort_routes import build_cohort_router
from genofed.hub.cohorts import CohortStore
from genofed.hub.data_connect_routes import PREFIX as DATA_CONNECT
from genofed.hub.data_connect_routes import build_hub_data_connect_router
from genofed.hub.portal_routes import mount_portal
from genofed.hub.runtime import HubRuntime
from genofed.node.beacon.model import API_VERSION
from genofed.node.json_response import JSONResponse

log = logging.getLogger(__name__)


def create_hub_app(config: HubConfig, state_dir: Path) -> FastAPI:
    """The hub's app; saved cohorts go under ``state_dir``."""
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
    app.include_router(build_hub_data_connect_router())
    app.include_router(build_cohort_router(CohortStore(state_dir / "cohorts")))
    mount_portal(app)
    app.include_router(build_hub_beacon_router())

    def error(request: Request, status: int, message: str) -> JSONResponse:
        """Each API's own error shape: Data Connect's ErrorResponse, else the Beacon's."""
        body: dict[str, Any]
        if request.url.path.startswith(DATA_CONNECT):
            body = {"errors": [{"title": _TITLES.get(status, "Error"), "detail": message}]}
        else:
            body = {
                "meta": {"beaconId": config.beacon_id, "apiVersion": API_VERSION},
                "error": {"errorCode": status, "errorMessage": message},
            }
        return JSONResponse(body, status_code=status)

    @app.exception_handler(GenofedError)
    async def genofed_error(request: Request, exc: GenofedError) -> JSONResponse:
        response = error(request, exc.status, str(exc))
        if isinstance(exc, CredentialError):
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(request, 400, f"{where}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error(request, 500, "internal error; the hub operator can find it in the logs")

    @app.get("/hub/nodes", tags=["hub"], summary="The nodes and their health", response_model=None)
    def nodes() -> dict[str, Any]:
        return {"nodes": [s.as_json() for s in hub.registry.states.values()]}

    @app.get("/-/health", include_in_schema=False, response_model=None)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found"}
