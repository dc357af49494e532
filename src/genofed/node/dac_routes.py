"""``/dac``: apply for access to a dataset, follow the application, collect the visa.

Applicants and reviewers identify themselves with a Passport like any other caller;
reviewers are the ``sub``s listed in ``dac_reviewers`` in ``node.yaml``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from genofed._exceptions import AccessDeniedError, CredentialError, NotFoundError
from genofed.governance.access import Caller
from genofed.governance.duo import ResearchPurpose
from genofed.node.json_response import JSONResponse
from genofed.node.runtime import NodeRuntime


class NewApplication(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: str
    title: str = Field(min_length=3, max_length=300)
    purpose: ResearchPurpose


class ApplicationEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, min_length=3, max_length=300)
    purpose: ResearchPurpose | None = None


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject", "return"]
    note: str | None = Field(None, max_length=2000)


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=2000)


def build_dac_router(runtime: NodeRuntime) -> APIRouter:
    router = APIRouter(prefix="/dac", tags=["dac"], default_response_class=JSONResponse)
    dac = runtime.gate.dac

    async def who(request: Request) -> Caller:
        client = f"address {request.client.host}" if request.client else "address unknown"
        caller = await run_in_threadpool(
            runtime.gate.credentials.caller, request.headers.get("authorization"), None, client
        )
        request.state.caller = caller
        if caller.sub is None:
            raise CredentialError("the DAC needs to know who you are: send a Passport")
        return caller

    def reviewer(caller: Caller) -> str:
        if caller.sub not in runtime.config.dac_reviewers:
            raise AccessDeniedError("only the node's DAC reviewers may do this")
        return str(caller.sub)

    @router.post("/applications", status_code=201, response_model=None)
    async def create(body: NewApplication, request: Request) -> dict[str, Any]:
        caller = await who(request)
        if body.dataset_id not in runtime.live().readers:
            raise NotFoundError(f"dataset {body.dataset_id!r} not found")
        return dac.create(str(caller.sub), caller.iss, body.dataset_id, body.title, body.purpose)

    @router.get("/applications", response_model=None)
    async def listing(request: Request) -> dict[str, Any]:
        caller = await who(request)
        mine = None if caller.sub in runtime.config.dac_reviewers else caller.sub
        return {"applications": dac.list(mine)}

    @router.get("/applications/{app_id}", response_model=None)
    async def show(app_id: str, request: Request) -> dict[str, Any]:
        caller = await who(request)
        app = dac.get(app_id)
        if app["applicant_sub"] != caller.sub:
            reviewer(caller)
        return {**app, "events": dac.events(app_id)}

    @router.put("/applications/{app_id}", response_model=None)
    async def edit(app_id: str, body: ApplicationEdit, request: Request) -> dict[str, Any]:
        caller = await who(request)
        return dac.edit(app_id, str(caller.sub), body.title, body.purpose)

    @router.post("/applications/{app_id}/submit", response_model=None)
    async def submit(app_id: str, request: Request) -> dict[str, Any]:
        caller = await who(request)
        return dac.submit(app_id, str(caller.sub))

    @router.post("/applications/{app_id}/decision", response_model=None)
    async def decide(app_id: str, body: Decision, request: Request) -> dict[str, Any]:
        name = reviewer(await who(request))
        return dac.decide(app_id, name, body.decision, body.note)

    @router.post("/applications/{app_id}/revoke", response_model=None)
    async def revoke(app_id: str, body: Revocation, request: Request) -> dict[str, Any]:
        name = reviewer(await who(request))
        return dac.revoke(app_id, name, body.note)

    @router.get("/applications/{app_id}/visa", response_model=None)
    async def visa(app_id: str, request: Request) -> dict[str, Any]:
        caller = await who(request)
        return {"visa": dac.visa(app_id, str(caller.sub))}

    return router
