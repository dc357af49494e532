"""Every HTTP request to a node is written to its audit log before the answer leaves.

The entry is appended when the response starts, so a request whose entry cannot be
written is answered 503 instead: auditing fails closed and cannot be skipped silently.
The entry records the request in full: its path, query string and, for the query APIs
(Beacon, Data Connect), its body; a long text is recorded by digest (``AuditLog.text``).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genofed.api.errors import AUDIT_UNAVAILABLE, ApiError, BeaconMeta, error_body
from genofed.node.deps import AUDIT_STATE, AuditRecord
from genofed.node.runtime import NodeRuntime

_UNAVAILABLE = ApiError(
    503, "the node cannot write its audit log; the operator must fix it", AUDIT_UNAVAILABLE
)


# Bodies of these are the question asked, so they are audited; other bodies (DAC
# applications, Passports in a body) are not copied into the log.
_AUDITED_BODIES = ("/beacon/", "/data-connect/")
_MAX_AUDITED_BODY = 4_000_000  # more than any request body the node accepts


def _decision(status: int) -> str:
    if status < 400:
        return "allowed"
    if status in (401, 403, 429):
        return "denied"
    return "refused" if status < 500 else "error"


class AuditMiddleware:
    def __init__(self, app: ASGIApp, runtime: NodeRuntime, beacon_meta: BeaconMeta):
        self.app = app
        self.runtime = runtime
        self.beacon_meta = beacon_meta

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.runtime.refresh()  # a changed node.yaml is in force from this request on
        state: dict[str, Any] = scope.setdefault("state", {})
        if scope["method"] == "POST" and scope["path"].startswith(_AUDITED_BODIES):
            body = bytearray()
            state["audit_body"] = body
            inner_receive = receive

            async def receive() -> Message:
                message = await inner_receive()
                if message["type"] == "http.request" and len(body) < _MAX_AUDITED_BODY:
                    body.extend(message.get("body", b"")[: _MAX_AUDITED_BODY - len(body)])
                return message

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["audit_started"] = True
                try:
                    self._record(scope, state, message["status"])
                except Exception:  # noqa: BLE001 - any failure to audit refuses the answer
                    body = orjson.dumps(error_body(scope["path"], _UNAVAILABLE, self.beacon_meta))
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 503,
                            "headers": [(b"content-type", b"application/json")],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    state["audit_failed"] = True
                    return
            if state.get("audit_failed"):
                return
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except Exception:
            # An unexpected error answered by the outermost handler (500) is audited too.
            if not state.get("audit_started"):
                self._record(scope, state, 500)
            raise

    def _record(self, scope: Scope, state: dict[str, Any], status: int) -> None:
        record: AuditRecord = state.get(AUDIT_STATE) or AuditRecord()
        caller = record.caller
        client = scope.get("client")
        audit = self.runtime.gate.audit
        query = scope.get("query_string", b"").decode("latin-1")
        entry = {
            "caller": (
                {"sub": caller.sub, "iss": caller.iss}
                if caller is not None and caller.sub is not None
                else {"client": client[0] if client else None}
            ),
            "endpoint": audit.text(f"{scope['method']} {scope['path']}"),
            "query": audit.text(query) if query else None,
            "datasets": record.datasets,
            "decision": _decision(status),
            "status": status,
            "policy": self.runtime.gate.policy_version,
            "results": record.results,
        }
        body = state.get("audit_body")
        if body:
            entry["body"] = audit.text(bytes(body).decode("utf-8", "replace"))
        audit.append(entry)
