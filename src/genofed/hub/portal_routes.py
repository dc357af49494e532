"""The portal: one page at the hub's ``/`` (static files under ``/portal``), and the term
search its cohort builder completes from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from genofed.api.responses import dig
from genofed.hub.deps import Nodes

WEB = Path(__file__).parent / "web"


def mount_portal(app: FastAPI) -> None:
    app.mount("/portal", StaticFiles(directory=WEB), name="portal")
    router = APIRouter(tags=["portal"])

    @router.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((WEB / "index.html").read_text())

    @router.get("/hub/terms", summary="Filtering terms of every node matching some text")
    async def terms(
        nodes: Nodes,
        q: str = Query("", max_length=100, description="Part of a term's id or label"),
        limit: int = Query(20, ge=1, le=200),
    ) -> dict[str, Any]:
        replies = await nodes.ask("GET", "/beacon/v2/filtering_terms")
        needle = q.strip().lower()
        found: dict[str, dict[str, Any]] = {}
        for reply in replies:
            response = dig(reply.document, "response", default={})
            for term in response.get("filteringTerms") or []:
                if not isinstance(term, dict) or term.get("type") == "alphanumeric":
                    continue
                text = f"{term.get('id', '')} {term.get('label', '')}".lower()
                if needle in text:
                    found.setdefault(str(term["id"]), term)
        ranked = sorted(
            found.values(),
            key=lambda t: (not str(t["id"]).lower().startswith(needle), str(t["id"])),
        )
        return {"terms": ranked[:limit], "nodes": [r.outcome() for r in replies]}

    app.include_router(router)
