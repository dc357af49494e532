"""``/hub/analyses``: run a federated GLM, descriptive statistics or a table across the
nodes (a job: 202, then ``GET /hub/analyses/{id}``), list yours, cancel one.

An analysis needs a token (the nodes run analyses for callers they know); the hub asks the
broker for a Passport addressed to each node, as for every other question, and never sends
the caller's own token on. Only the caller who started an analysis sees it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from genofed._exceptions import (
    CredentialError,
    GenofedError,
    NodeCredentialsError,
    NotFoundError,
    QueryError,
)
from genofed.api.responses import JSONResponse
from genofed.criteria import CohortCriteria
from genofed.governance.passports import peek
from genofed.hub.analyses import (
    AnalysisCancelledError,
    AnalysisJob,
    AnalysisRequest,
    Coordinator,
    Member,
    owner_of,
)
from genofed.hub.client import NodeClient
from genofed.hub.cohorts import criteria_of
from genofed.hub.deps import Hub
from genofed.hub.fanout import Credentials, Reply
from genofed.hub.runtime import HubRuntime

log = logging.getLogger(__name__)
MEDIA = {".png": "image/png", ".svg": "image/svg+xml", ".parquet": "application/vnd.apache.parquet"}


async def _caller(hub: HubRuntime, request: Request) -> tuple[str, Credentials]:
    """Whose request this is, once the broker has accepted the token for a node."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        raise CredentialError(
            "analyses run for callers the nodes know: send your token (Authorization: Bearer ...)"
        )
    credentials = hub.exchange.for_caller(authorization)
    assert credentials is not None
    if not hub.registry.nodes:
        raise CredentialError("this hub has no nodes")
    try:
        await credentials(hub.registry.nodes[0], time.monotonic() + 10)
    except NodeCredentialsError as exc:
        raise CredentialError(f"the broker did not accept your token ({exc})") from None
    _, claims = peek(authorization.split(" ", 1)[1].strip())
    return owner_of(claims), credentials


def _summary(job: AnalysisJob) -> dict[str, Any]:
    request = job.request
    what = request.get("formula") or ", ".join(request.get("variables", [])) or request.get("row")
    if request.get("kind") == "gwas":
        covariates = " + ".join(request.get("covariates") or []) or "1"
        what = (f"{', '.join(request.get('phenotypes') or [])} ~ {covariates} "
                f"({request.get('model')}, {request.get('region')})")  # fmt: skip
    elif request.get("kind") == "pca":
        what = f"{request.get('components')} components of {request.get('region')}"
    elif request.get("kind") == "learn":
        features = [*(request.get("features") or []), *(request.get("variants") or [])]
        what = (f"{request.get('target')} ~ {' + '.join(features) or 'PGS'} "
                f"({request.get('learner')}, {request.get('strategy')}, "
                f"{request.get('rounds')} rounds)")  # fmt: skip
    return {
        "id": job.id,
        "kind": request.get("kind"),
        "what": what,
        "state": job.state,
        "message": job.message,
        "created": job.as_json()["created"],
    }


async def _members(
    client: NodeClient, hub: HubRuntime, request: AnalysisRequest, criteria: CohortCriteria | None
) -> tuple[list[Member], dict[str, str]]:
    """The nodes to ask, each with its own name (as its peers pinned it) and dataset."""
    named = list(request.datasets) + (list(criteria.datasets) if criteria else [])
    datasets: dict[str, str] = {}
    for entry in named:
        node, dataset = entry.split(":", 1)
        datasets.setdefault(node, dataset)
    targets = [n for n in hub.registry.nodes if not datasets or n.name in datasets]
    unknown = sorted(set(datasets) - {n.name for n in hub.registry.nodes})
    if unknown:
        raise QueryError(f"no node {', '.join(unknown)} in this federation; GET /hub/nodes")

    async def key(node: Any, end: float) -> Reply:
        return await client.send(node, "GET", "/analysis/v1/aggregation-key", end)

    replies = await client.each(key, nodes=targets)
    members, excluded = [], {}
    for node, reply in zip(targets, replies, strict=True):
        if reply.status == "ok" and reply.document and reply.document.get("node"):
            members.append(Member(node, str(reply.document["node"]), datasets.get(node.name)))
        else:
            excluded[node.name] = f"no aggregation key ({reply.detail or reply.status})"
    return members, excluded


async def _run(hub: HubRuntime, job: AnalysisJob, request: AnalysisRequest,
               credentials: Credentials, criteria: CohortCriteria | None) -> None:  # fmt: skip
    assert hub.transport is not None
    client = NodeClient(hub.registry, hub.transport, credentials, 30.0)
    job.state = "running"
    try:
        members, excluded = await _members(client, hub, request, criteria)
        job.excluded.update(excluded)
        hub.analyses.save(job)
        coordinator = Coordinator(hub.analyses, job, client, members, request, criteria)
        job.result = await coordinator.run()
        job.state, job.message = "succeeded", "done"
    except AnalysisCancelledError:
        job.state, job.message = "cancelled", "cancelled by its owner"
    except GenofedError as exc:
        job.state, job.error = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - recorded for the owner, logged in full
        log.exception("analysis %s failed", job.id)
        job.state, job.error = "failed", f"the hub failed ({type(exc).__name__})"
    finally:
        hub.analyses.save(job)
        hub.running.pop(job.id, None)


def build_analysis_router() -> APIRouter:
    router = APIRouter(
        prefix="/hub/analyses", tags=["analyses"], default_response_class=JSONResponse
    )

    @router.post("", status_code=202, summary="Start a federated analysis (a job)")
    async def create(body: AnalysisRequest, request: Request, response: Response, hub: Hub) -> Any:
        owner, credentials = await _caller(hub, request)
        criteria = body.criteria
        if body.cohort is not None:
            criteria = criteria_of(hub.cohorts.get(body.cohort))
        job = hub.analyses.new(owner, body)
        hub.running[job.id] = asyncio.create_task(_run(hub, job, body, credentials, criteria))
        response.headers["location"] = f"/hub/analyses/{job.id}"
        return job.as_json()

    @router.get("", summary="Your analyses, newest first")
    async def list_analyses(request: Request, hub: Hub) -> Any:
        owner, _ = await _caller(hub, request)
        return {"analyses": [_summary(j) for j in hub.analyses.all(owner)]}

    @router.get("/{analysis_id}", summary="An analysis: its state, every round, its result")
    async def get(analysis_id: str, request: Request, hub: Hub) -> Any:
        owner, _ = await _caller(hub, request)
        return hub.analyses.get(analysis_id, owner).as_json()

    @router.get(
        "/{analysis_id}/files/{name}",
        summary="A result file of an analysis (a GWAS's tables and plots)",
        response_model=None,
    )
    async def result_file(analysis_id: str, name: str, request: Request, hub: Hub) -> Any:
        owner, _ = await _caller(hub, request)
        job = hub.analyses.get(analysis_id, owner)
        if name not in ((job.result or {}).get("files") or []):
            raise NotFoundError(f"analysis {analysis_id} has no file {name!r}")
        media = MEDIA.get(Path(name).suffix, "text/tab-separated-values")
        return FileResponse(hub.analyses.files(analysis_id) / name, media_type=media)

    @router.post("/{analysis_id}/cancel", summary="Cancel an analysis (at its next step)")
    async def cancel(analysis_id: str, request: Request, hub: Hub) -> Any:
        owner, _ = await _caller(hub, request)
        return hub.analyses.cancel(analysis_id, owner).as_json()

    return router
