"""The FastAPI application of one node."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from genofed import __version__
from genofed.api.errors import install_error_handlers
from genofed.api.responses import JSONResponse, install_openapi, operation_id
from genofed.beacon.request import BeaconRequest
from genofed.config import Granularity
from genofed.governance.audit_anchors import signed_head
from genofed.node.analysis_routes import build_analysis_router
from genofed.node.audit_middleware import AuditMiddleware
from genofed.node.beacon_routes import build_router
from genofed.node.dac_routes import build_dac_router
from genofed.node.data_connect_routes import build_data_connect_router
from genofed.node.deps import Runtime
from genofed.node.runtime import NodeRuntime
from genofed.node.wes_routes import build_airlock_router, build_wes_router
from genofed.store.ontology import OntologyIndex

log = logging.getLogger("genofed.node")


def create_app(node_dir: Path, *, ontology: OntologyIndex | None = None) -> FastAPI:
    runtime = NodeRuntime(Path(node_dir), ontology=ontology)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Reading HPO takes a second or two: do it now, off the request path. The thread is
        # joined, not a daemon: one still inside the native OBO parser when the interpreter
        # exits aborts the whole process.
        warm_up = threading.Thread(target=_warm_up, args=(runtime,), name="ontology-warm-up")
        warm_up.start()
        yield
        warm_up.join()
        runtime.close()

    app = FastAPI(
        title=f"genofed node {runtime.config.name}",
        version=__version__,
        description="GA4GH Beacon v2, Data Connect and WES over this node's datasets.",
        default_response_class=JSONResponse,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # Swagger UI and ReDoc load their scripts from a CDN, which an offline hospital
        # network cannot reach: the API is described at /openapi.json instead.
        docs_url=None,
        redoc_url=None,
        max_body_size=runtime.config.max_request_bytes,
    )
    app.state.runtime = runtime  # read by node.deps only
    # Data Connect first: routes are tried in order, and the Beacon has many.
    app.include_router(build_data_connect_router())
    app.include_router(build_router())
    app.include_router(build_dac_router())
    app.include_router(build_analysis_router())
    app.include_router(build_wes_router())
    app.include_router(build_airlock_router())

    def beacon_meta(_path: str) -> dict[str, Any]:
        return runtime.beacon.meta(BeaconRequest(), None, Granularity.BOOLEAN)

    install_error_handlers(app, beacon_meta, "node")
    install_openapi(app)
    app.add_middleware(AuditMiddleware, runtime=runtime, beacon_meta=beacon_meta)

    @app.get("/.well-known/jwks.json", tags=["governance"], response_model=None)
    def jwks(runtime: Runtime) -> dict[str, object]:
        """Public keys of the visas this node's Data Access Committee signs."""
        return runtime.gate.signing_key.jwks()

    @app.get("/-/audit/head", tags=["governance"], response_model=None)
    def audit_head(runtime: Runtime) -> dict[str, object]:
        """The audit log's head (``seq``, ``hash``), signed with the node's key (``jws``,
        verifiable with ``/.well-known/jwks.json``): for the hub to keep, so that a log
        rewritten later no longer matches it (``genofed audit verify --anchors``)."""
        return signed_head(runtime.gate.audit, runtime.gate.signing_key, runtime.config.name)

    @app.get("/-/health", include_in_schema=False, response_model=None)
    def health(runtime: Runtime) -> dict[str, object]:
        # Which datasets exist is for callers allowed to see them: a damaged one is
        # counted here, and named (with what to do) in the log and `genofed node check`.
        problems = runtime.live().problems
        if not problems and runtime.config_error is None:
            return {"status": "ok"}
        details = []
        if problems:
            details.append(
                "some datasets are not served; the operator runs `genofed node check "
                "NODE_DIR` to see which files and what to do"
            )
        if runtime.config_error is not None:
            details.append(
                "the latest edit of node.yaml is not in force (the node's log says why); "
                "the previous configuration still is"
            )
        return {"status": "degraded", "problems": len(problems), "detail": "; ".join(details)}

    return app


def _warm_up(runtime: NodeRuntime) -> None:
    """Best effort: a failure here only means the first ontology query loads it instead."""
    try:
        runtime.ontology.warm_up()
    except Exception:  # noqa: BLE001 - never let a background nicety kill a thread loudly
        log.debug("ontology warm-up failed; it will load on first use", exc_info=True)


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` with several workers: the node dir comes from
    ``GENOFED_NODE_DIR`` because each worker process builds its own app."""
    return create_app(Path(os.environ["GENOFED_NODE_DIR"]))
