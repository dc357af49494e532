"""The hub's FastAPI app: the federated Beacon, node status and health."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

from genofed import __version__
from genofed.api_errors import TITLES, install_error_handlers
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


def create_hub_app(config: HubConfig, directory: Path) -> FastAPI:
    """The hub's app; ``directory`` is hub.yaml's (its relative paths start there)."""
    hub = HubRuntime(config, directory)
    state_dir = directory / config.state_dir

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.start()
        await hub.registry.check_all(hub.session_for)  # who is up, before the first request
        watcher = asyncio.create_task(hub.registry.watch(hub.session_for))
        yield
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await hub.close()

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

    def render(request: Request, status: int, message: str, title: str | None) -> JSONResponse:
        """Each API's own error shape: Data Connect's ErrorResponse, else the Beacon's."""
        body: dict[str, Any]
        if request.url.path.startswith(DATA_CONNECT):
            title = title or TITLES.get(status, "Error")
            body = {"errors": [{"title": title, "detail": message}]}
        else:
            body = {
                "meta": {"beaconId": config.beacon_id, "apiVersion": API_VERSION},
                "error": {"errorCode": status, "errorMessage": message},
            }
        return JSONResponse(body, status_code=status)

    install_error_handlers(app, render, "hub")

    @app.get("/hub/nodes", tags=["hub"], summary="The nodes and their health", response_model=None)
    def nodes() -> dict[str, Any]:
        return {"nodes": [s.as_json() for s in hub.registry.states.values()]}

    @app.get("/-/health", include_in_schema=False, response_model=None)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
