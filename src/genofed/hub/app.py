"""The hub's FastAPI app: the federated Beacon and Data Connect, cohorts, node status,
the portal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Response

from genofed import __version__
from genofed._exceptions import NotFoundError
from genofed.api.errors import install_error_handlers
from genofed.api.responses import JSONResponse, install_openapi, operation_id
from genofed.beacon.model import API_VERSION
from genofed.config import HubConfig
from genofed.hub.analysis_routes import build_analysis_router
from genofed.hub.beacon_routes import build_hub_beacon_router
from genofed.hub.cohort_routes import build_cohort_router
from genofed.hub.data_connect_routes import build_hub_data_connect_router
from genofed.hub.deps import Hub
from genofed.hub.portal_routes import mount_portal
from genofed.hub.runtime import HubRuntime
from genofed.hub.transport import Transport
from genofed.hub.workflow_routes import build_workflow_router


def create_hub_app(
    config: HubConfig, directory: Path, *, transport: Transport | None = None
) -> FastAPI:
    """The hub's app; ``directory`` is hub.yaml's (its relative paths start there). A
    ``transport`` other than HTTP reaches in-memory nodes (``genofed.testing``)."""
    hub = HubRuntime(config, directory, transport)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.start()
        assert hub.transport is not None
        await hub.registry.check_all(hub.transport)  # who is up, before the first request
        watchers = [
            asyncio.create_task(hub.registry.watch(hub.transport)),
            asyncio.create_task(hub.anchors.watch(hub.transport)),
        ]
        yield
        for watcher in watchers:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await hub.close()

    app = FastAPI(
        title=f"genofed hub {config.name}",
        version=__version__,
        description="One Beacon v2 and Data Connect over every node of the federation.",
        default_response_class=JSONResponse,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # Swagger UI and ReDoc load their scripts from a CDN, which an offline hospital
        # network cannot reach: the API is described at /openapi.json instead.
        docs_url=None,
        redoc_url=None,
        max_body_size=config.max_request_bytes,
    )
    app.state.hub = hub  # read by hub.deps only
    app.include_router(build_hub_data_connect_router())
    app.include_router(build_cohort_router())
    app.include_router(build_analysis_router())
    app.include_router(build_workflow_router())
    mount_portal(app)
    app.include_router(build_hub_beacon_router())

    def beacon_meta(_path: str) -> dict[str, Any]:
        return {"beaconId": config.beacon_id, "apiVersion": API_VERSION}

    install_error_handlers(app, beacon_meta, "hub")
    install_openapi(app)

    @app.get("/hub/nodes", tags=["hub"], summary="The nodes and their health", response_model=None)
    def nodes(hub: Hub) -> dict[str, Any]:
        return {"nodes": [s.as_json() for s in hub.registry.states.values()]}

    @app.get(
        "/hub/audit-anchors/{node}",
        tags=["hub"],
        summary="The signed audit heads kept for a node",
        response_model=None,
    )
    def audit_anchors(node: str, hub: Hub) -> Response:
        """One JSON line per head the hub has seen of ``node``'s audit log, each signed by
        the node (``jws``): the file ``genofed audit verify --anchors`` reads."""
        if node not in hub.registry.states:
            raise NotFoundError(f"no node {node!r} in this hub; GET /hub/nodes lists them")
        path = hub.anchors.path(node)
        content = path.read_bytes() if path.exists() else b""
        return Response(content, media_type="application/x-ndjson")

    @app.get("/-/health", include_in_schema=False, response_model=None)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
