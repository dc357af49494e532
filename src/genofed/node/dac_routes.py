"""``/dac``: apply for access to a dataset, follow the application, collect the visa.

Applicants and reviewers identify themselves with a Passport like any other caller;
reviewers are the ``sub``s listed in ``dac_reviewers`` in ``node.yaml``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from genofed._exceptions import AccessDeniedError
from genofed.api.responses import JSONResponse
from genofed.governance.access import Caller
from genofed.governance.duo import ResearchPurpose
from genofed.node.deps import IdentifiedCaller, Runtime
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


def _is_reviewer(runtime: NodeRuntime, caller: Caller) -> bool:
    return any(r.is_(caller.sub, caller.iss) for r in runtime.config.dac_reviewers)


def _reviewer(runtime: NodeRuntime, caller: Caller) -> str:
    if not _is_reviewer(runtime, caller):
        raise AccessDeniedError("only the node's DAC reviewers may do this")
    return caller.identity


def _me(caller: Caller) -> tuple[str, str | None]:
    return str(caller.sub), caller.iss


def build_dac_router() -> APIRouter:
    router = APIRouter(prefix="/dac", tags=["dac"], default_response_class=JSONResponse)

    @router.post(
        "/applications",
        status_code=201,
        summary="Apply for access to a dataset (a draft)",
        response_model=None,
    )
    def create(body: NewApplication, runtime: Runtime, caller: IdentifiedCaller) -> dict[str, Any]:
        # A dataset that does not exist is applied for like a controlled one (201): a 404
        # would tell anyone with an identity which hidden datasets exist, which the Beacon's
        # one 403 for both does not. The reviewers see the id and reject it.
        return runtime.gate.dac.create(
            str(caller.sub), caller.iss, body.dataset_id, body.title, body.purpose
        )

    @router.get(
        "/applications",
        summary="Your applications (every one, for reviewers)",
        response_model=None,
    )
    def listing(runtime: Runtime, caller: IdentifiedCaller) -> dict[str, Any]:
        mine = None if _is_reviewer(runtime, caller) else _me(caller)
        return {"applications": runtime.gate.dac.list(mine)}

    @router.get(
        "/applications/{app_id}", summary="One application and its history", response_model=None
    )
    def show(app_id: str, runtime: Runtime, caller: IdentifiedCaller) -> dict[str, Any]:
        app = runtime.gate.dac.get(app_id)
        if (app["applicant_sub"], app["applicant_iss"]) != _me(caller):
            _reviewer(runtime, caller)
        return {**app, "events": runtime.gate.dac.events(app_id)}

    @router.put(
        "/applications/{app_id}",
        summary="Edit a draft or returned application",
        response_model=None,
    )
    def edit(
        app_id: str, body: ApplicationEdit, runtime: Runtime, caller: IdentifiedCaller
    ) -> dict[str, Any]:
        return runtime.gate.dac.edit(app_id, _me(caller), body.title, body.purpose)

    @router.post(
        "/applications/{app_id}/submit",
        summary="Submit an application: the DUO matcher decides it or passes it to reviewers",
        response_model=None,
    )
    def submit(app_id: str, runtime: Runtime, caller: IdentifiedCaller) -> dict[str, Any]:
        return runtime.gate.dac.submit(app_id, _me(caller))

    @router.post(
        "/applications/{app_id}/decision",
        summary="A reviewer's decision: approve, reject or return",
        response_model=None,
    )
    def decide(
        app_id: str, body: Decision, runtime: Runtime, caller: IdentifiedCaller
    ) -> dict[str, Any]:
        name = _reviewer(runtime, caller)
        return runtime.gate.dac.decide(app_id, name, body.decision, body.note)

    @router.post(
        "/applications/{app_id}/revoke",
        summary="Withdraw an approval (its visa stops working at once)",
        response_model=None,
    )
    def revoke(
        app_id: str, body: Revocation, runtime: Runtime, caller: IdentifiedCaller
    ) -> dict[str, Any]:
        return runtime.gate.dac.revoke(app_id, _reviewer(runtime, caller), body.note)

    @router.get(
        "/applications/{app_id}/visa",
        summary="The visa an approved application grants",
        response_model=None,
    )
    def visa(app_id: str, runtime: Runtime, caller: IdentifiedCaller) -> dict[str, Any]:
        return {"visa": runtime.gate.dac.visa(app_id, _me(caller))}

    return router
