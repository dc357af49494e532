"""The node's Data Access Committee: applications, their lifecycle, DUO matching, visas.

    draft ─submit→ submitted ─DUO match→ approved │ rejected │ in_review
    in_review ─reviewer→ approved │ rejected │ returned ;  returned ─edit, submit→ submitted
    approved ─reviewer→ revoked ;  approved ─time→ expired

An application the DUO matcher APPROVEs or DENYs is decided on submission (recorded with
the matcher's explanation); one it ABSTAINs on waits for a human reviewer. Approval signs
a ControlledAccessGrants visa (``by: dac``) for the applicant's ``sub``; revoking the
application puts its visa on the node's revocation list, which every request checks.
All state is in SQLite, so the CLI and every server worker see the same applications.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genofed._exceptions import AccessDeniedError, DacError, NotFoundError
from genofed.config import NodeConfig
from genofed.governance.access import grant_value
from genofed.governance.duo import ResearchPurpose, match
from genofed.governance.keys import SigningKey, sign_visa
from genofed.governance.passports import Visa, peek
from genofed.governance.sqlite_state import SqliteState

MATCHER = "duo-matcher"
Identity = tuple[str, str | None]  # (sub, iss): the same sub at two issuers is two people
_SCHEMA = """
CREATE TABLE IF NOT EXISTS applications (
    id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, applicant_sub TEXT NOT NULL,
    applicant_iss TEXT, title TEXT NOT NULL, purpose TEXT NOT NULL, status TEXT NOT NULL,
    match TEXT, visa TEXT, visa_jti TEXT, visa_exp INTEGER, created REAL, updated REAL);
CREATE TABLE IF NOT EXISTS events (
    application_id TEXT, time REAL, actor TEXT, action TEXT, from_status TEXT,
    to_status TEXT, note TEXT);
CREATE INDEX IF NOT EXISTS applications_jti ON applications (visa_jti);
"""
EDITABLE = ("draft", "returned")


class Dac:
    def __init__(
        self,
        path: Path,
        config: NodeConfig,
        key: SigningKey,
        descendants: Callable[[str], frozenset[str]],
    ):
        self.config = config
        self.key = key
        self.descendants = descendants
        self._con = SqliteState(path, _SCHEMA, rows_as_dicts=True)

    # -- reading ---------------------------------------------------------------------------

    def get(self, app_id: str) -> dict[str, Any]:
        row = self._con().execute("SELECT * FROM applications WHERE id = ?", [app_id]).fetchone()
        if row is None:
            raise NotFoundError(f"application {app_id!r} not found")
        return self._public(dict(row))

    def list(self, applicant: Identity | None = None) -> list[dict[str, Any]]:
        """Every application, or those of one applicant (``(sub, iss)``)."""
        sql, params = "SELECT * FROM applications", []
        if applicant is not None:
            sql += " WHERE applicant_sub = ? AND applicant_iss IS ?"
            params = [applicant[0], applicant[1]]
        rows = self._con().execute(sql + " ORDER BY created", params).fetchall()
        return [self._public(dict(r)) for r in rows]

    def events(self, app_id: str) -> list[dict[str, Any]]:
        rows = self._con().execute(
            "SELECT * FROM events WHERE application_id = ? ORDER BY time", [app_id]
        )
        return [dict(r) for r in rows.fetchall()]

    def _public(self, row: dict[str, Any]) -> dict[str, Any]:
        row["purpose"] = json.loads(row["purpose"])
        row["match"] = json.loads(row["match"]) if row["match"] else None
        if row["status"] == "approved" and row["visa_exp"] and row["visa_exp"] < time.time():
            row["status"] = "expired"
        row.pop("visa", None)
        return row

    def holder(self, visa: Visa) -> Identity | None:
        """Whom one of this node's own grant visas was issued to, ``(sub, iss)`` of the
        applicant's Passport (None: not one of this node's visas)."""
        if visa.iss != self.config.issuer or visa.jti is None:
            return None
        row = (
            self._con()
            .execute(
                "SELECT applicant_sub, applicant_iss FROM applications WHERE visa_jti = ?",
                [visa.jti],
            )
            .fetchone()
        )
        return None if row is None else (row["applicant_sub"], row["applicant_iss"])

    def is_revoked(self, visa: Visa) -> bool:
        """Whether one of this node's own visas has been withdrawn (or cannot be tracked)."""
        if visa.iss != self.config.issuer:
            return False
        if visa.jti is None:
            return True
        row = (
            self._con()
            .execute(
                "SELECT 1 FROM applications WHERE visa_jti = ? AND status = 'revoked'", [visa.jti]
            )
            .fetchone()
        )
        return row is not None

    # -- the lifecycle ---------------------------------------------------------------------

    def create(
        self,
        applicant_sub: str,
        applicant_iss: str | None,
        dataset_id: str,
        title: str,
        purpose: ResearchPurpose,
    ) -> dict[str, Any]:
        app_id = uuid.uuid4().hex[:12]
        now = time.time()
        self._con().execute(
            "INSERT INTO applications (id, dataset_id, applicant_sub, applicant_iss, title, "
            "purpose, status, created, updated) VALUES (?, ?, ?, ?, ?, ?, 'draft', ?, ?)",
            [
                app_id,
                dataset_id,
                applicant_sub,
                applicant_iss,
                title,
                purpose.model_dump_json(),
                now,
                now,
            ],
        )
        self._event(app_id, applicant_sub, "create", None, "draft", None)
        return self.get(app_id)

    def edit(
        self, app_id: str, actor: Identity, title: str | None, purpose: ResearchPurpose | None
    ) -> dict[str, Any]:
        app = self._owned(app_id, actor)
        if app["status"] not in EDITABLE:
            raise DacError(
                f"application {app_id} is {app['status']}; "
                "only drafts and returned ones can be edited"
            )
        self._con().execute(
            "UPDATE applications SET title = ?, purpose = ?, updated = ? WHERE id = ?",
            [
                title or app["title"],
                (purpose.model_dump_json() if purpose else json.dumps(app["purpose"])),
                time.time(),
                app_id,
            ],
        )
        self._event(app_id, _name(actor), "edit", app["status"], app["status"], None)
        return self.get(app_id)

    def submit(self, app_id: str, actor: Identity) -> dict[str, Any]:
        app = self._owned(app_id, actor)
        if app["status"] not in EDITABLE:
            raise DacError(f"application {app_id} is {app['status']}; it cannot be submitted again")
        self._move(app, _name(actor), "submit", "submitted", None)
        policy = self.config.datasets.get(app["dataset_id"])
        result = match(
            ResearchPurpose.model_validate(app["purpose"]),
            policy.duo if policy else [],
            policy.duo_diseases if policy else [],
            self.descendants,
        )
        self._con().execute(
            "UPDATE applications SET match = ? WHERE id = ?", [json.dumps(result.as_dict()), app_id]
        )
        app = self.get(app_id)
        explanation = "; ".join(f"{c.code}: {c.outcome} ({c.explanation})" for c in result.codes)
        if result.outcome == "APPROVE":
            return self._approve(app, MATCHER, explanation)
        if result.outcome == "DENY":
            self._move(app, MATCHER, "reject", "rejected", explanation)
        else:
            self._move(app, MATCHER, "abstain", "in_review", explanation)
        return self.get(app_id)

    def decide(self, app_id: str, reviewer: str, decision: str, note: str | None) -> dict[str, Any]:
        app = self.get(app_id)
        if app["status"] != "in_review":
            raise DacError(f"application {app_id} is {app['status']}, not in review")
        if decision == "approve":
            return self._approve(app, reviewer, note)
        target = {"reject": "rejected", "return": "returned"}.get(decision)
        if target is None:
            raise DacError("decision must be approve, reject or return")
        self._move(app, reviewer, decision, target, note)
        return self.get(app_id)

    def revoke(self, app_id: str, reviewer: str, note: str | None) -> dict[str, Any]:
        app = self.get(app_id)
        if app["status"] not in ("approved", "expired"):
            raise DacError(
                f"application {app_id} is {app['status']}; only approved ones can be revoked"
            )
        self._move(app, reviewer, "revoke", "revoked", note)
        return self.get(app_id)

    def visa(self, app_id: str, actor: Identity) -> str:
        app = self._owned(app_id, actor)
        if app["status"] != "approved":
            raise DacError(f"application {app_id} is {app['status']}; there is no valid visa")
        row = self._con().execute("SELECT visa FROM applications WHERE id = ?", [app_id]).fetchone()
        return str(row["visa"])

    def _approve(self, app: dict[str, Any], actor: str, note: str | None) -> dict[str, Any]:
        hours = self.config.dac_grant_days * 24
        token = sign_visa(
            self.key,
            app["applicant_sub"],
            "ControlledAccessGrants",
            grant_value(self.config, app["dataset_id"]),
            source=self.config.issuer,
            by="dac",
            hours=hours,
        )
        _, claims = peek(token)
        self._con().execute(
            "UPDATE applications SET visa = ?, visa_jti = ?, visa_exp = ? WHERE id = ?",
            [token, claims["jti"], claims["exp"], app["id"]],
        )
        self._move(app, actor, "approve", "approved", note)
        return self.get(app["id"])

    def _owned(self, app_id: str, actor: Identity) -> dict[str, Any]:
        """The application, if ``actor`` (``(sub, iss)``) made it."""
        app = self.get(app_id)
        if (app["applicant_sub"], app["applicant_iss"]) != actor:
            raise AccessDeniedError(f"application {app_id} is not yours")
        return app

    def _move(
        self, app: dict[str, Any], actor: str, action: str, to: str, note: str | None
    ) -> None:
        self._con().execute(
            "UPDATE applications SET status = ?, updated = ? WHERE id = ?",
            [to, time.time(), app["id"]],
        )
        self._event(app["id"], actor, action, app["status"], to, note)
        app["status"] = to

    def _event(
        self, app_id: str, actor: str, action: str, before: str | None, after: str, note: str | None
    ) -> None:
        self._con().execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            [app_id, time.time(), actor, action, before, after, note],
        )


def _name(identity: Identity) -> str:
    sub, iss = identity
    return sub if iss is None else f"{sub} ({iss})"
