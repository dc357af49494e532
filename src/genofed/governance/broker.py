"""A development Passport broker and visa issuer, for demos and tests.

It signs with a local ES256 key kept in a JSON file (``issuer`` + private JWK). A node
trusts it only if the operator adds it to ``trust`` in ``node.yaml``. It can also serve an
RFC 8693 token-exchange endpoint that turns its own access tokens into Passports, so all
three credential styles can be exercised without an external identity provider.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Header, HTTPException
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from genofed.config import BONA_FIDE
from genofed.governance.access import ACCESS_TOKEN_TYPE, PASSPORT_TOKEN_TYPE, TOKEN_EXCHANGE
from genofed.governance.passports import PASSPORT_TYP

ACCESS_TYP = "at+jwt"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
AUDIENCE_MINUTES = 10  # lifetime of a Passport addressed to one service (a hub's per node)


@dataclass(frozen=True)
class SigningKey:
    issuer: str
    key: ECKey

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set to give to nodes that should trust this key."""
        return {"keys": [self.key.as_dict(private=False)]}

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        header = {"alg": "ES256", "kid": self.kid, "typ": typ}
        return jwt.encode(header, claims, self.key)


def create_key(path: Path, issuer: str) -> SigningKey:
    """A new ES256 key for ``issuer``, written to ``path`` readable by its owner only."""
    key = ECKey.generate_key("P-256", auto_kid=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"issuer": issuer, "jwk": key.as_dict(private=True)}, handle)
    return SigningKey(issuer, key)


def load_key(path: Path) -> SigningKey:
    data = json.loads(path.read_text())
    return SigningKey(data["issuer"], ECKey.import_key(data["jwk"]))


def _claims(key: SigningKey, sub: str, hours: float) -> dict[str, Any]:
    """What every token this key signs carries: issuer, subject, lifetime, a unique id."""
    now = int(time.time())
    return {
        "iss": key.issuer,
        "sub": sub,
        "iat": now,
        "exp": now + int(hours * 3600),
        "jti": uuid.uuid4().hex,
    }


def visa(
    key: SigningKey,
    sub: str,
    visa_type: str,
    value: str,
    *,
    source: str | None = None,
    by: str | None = None,
    hours: float = 1.0,
    conditions: list[list[dict[str, str]]] | None = None,
) -> str:
    """One signed visa JWT."""
    claims = _claims(key, sub, hours)
    body: dict[str, Any] = {
        "type": visa_type,
        "asserted": claims["iat"],
        "value": value,
        "source": source or key.issuer,
    }
    if by is not None:
        body["by"] = by
    if conditions is not None:
        body["conditions"] = conditions
    return key.sign({**claims, "ga4gh_visa_v1": body})


def bona_fide_visas(key: SigningKey, sub: str, hours: float = 1.0) -> list[str]:
    """ResearcherStatus + AcceptedTermsAndPolicies: what registered access asks for."""
    return [
        visa(key, sub, "ResearcherStatus", BONA_FIDE, by="so", hours=hours),
        visa(key, sub, "AcceptedTermsAndPolicies", BONA_FIDE, by="self", hours=hours),
    ]


def passport(
    key: SigningKey,
    sub: str,
    visas: list[str],
    *,
    hours: float = 1.0,
    audience: str | None = None,
) -> str:
    """A signed Passport carrying ``visas``."""
    claims = {**_claims(key, sub, hours), "ga4gh_passport_v1": visas}
    if audience is not None:
        claims["aud"] = audience
    return key.sign(claims, typ=PASSPORT_TYP)


def access_token(key: SigningKey, sub: str, visas: list[str], *, hours: float = 1.0) -> str:
    """An access token this broker will exchange for a Passport carrying ``visas``."""
    claims = {
        **_claims(key, sub, hours),
        "scope": "openid ga4gh_passport_v1",
        "genofed_visas": visas,
    }
    return key.sign(claims, typ=ACCESS_TYP)


def broker_app(key: SigningKey) -> FastAPI:
    """``/.well-known/jwks.json``, an RFC 8693 ``/token`` endpoint and OIDC ``/userinfo``
    for access tokens signed with this key."""
    app = FastAPI(title=f"genofed development broker {key.issuer}")

    @app.get("/.well-known/jwks.json")
    def jwks() -> dict[str, Any]:
        return key.jwks()

    def holder(token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(token, key.key, algorithms=["ES256"]).claims
        except (JoseError, ValueError) as exc:
            raise HTTPException(401, {"error": "invalid_token"}) from exc
        if claims.get("iss") != key.issuer or claims.get("exp", 0) < time.time():
            raise HTTPException(401, {"error": "invalid_token"})
        return claims

    @app.get("/userinfo")
    def userinfo(authorization: str = Header("")) -> dict[str, Any]:
        """OIDC userinfo with the ``ga4gh_passport_v1`` claim (the visas as JWTs)."""
        claims = holder(authorization.removeprefix("Bearer ").strip())
        return {"sub": claims["sub"], "ga4gh_passport_v1": list(claims.get("genofed_visas", []))}

    @app.post("/token")
    def token(
        grant_type: str = Form(...),
        subject_token: str = Form(...),
        subject_token_type: str = Form(...),
        requested_token_type: str = Form(PASSPORT_TOKEN_TYPE),
        audience: str | None = Form(None),
    ) -> dict[str, Any]:
        """An access token, or one of this broker's Passports (a hub exchanging its
        caller's), for a Passport; with ``audience``, one addressed to that service only
        and valid for ``AUDIENCE_MINUTES``."""
        if grant_type != TOKEN_EXCHANGE or subject_token_type not in (
            ACCESS_TOKEN_TYPE,
            JWT_TOKEN_TYPE,
        ):
            raise HTTPException(400, {"error": "unsupported_grant_type"})
        if requested_token_type != PASSPORT_TOKEN_TYPE:
            raise HTTPException(400, {"error": "invalid_request"})
        try:
            claims = holder(subject_token)
        except HTTPException as exc:
            raise HTTPException(400, {"error": "invalid_grant"}) from exc
        if subject_token_type == JWT_TOKEN_TYPE:
            visas = claims.get("ga4gh_passport_v1")
        else:
            visas = claims.get("genofed_visas", [])
        if not isinstance(visas, list):
            raise HTTPException(400, {"error": "invalid_grant"})
        hours = 1.0 if audience is None else AUDIENCE_MINUTES / 60
        # never outliving the token it replaces
        hours = min(hours, max(0.0, (claims["exp"] - time.time()) / 3600))
        issued = passport(key, claims["sub"], list(visas), hours=hours, audience=audience)
        return {
            "access_token": issued,
            "issued_token_type": PASSPORT_TOKEN_TYPE,
            "token_type": "N_A",
            "expires_in": int(hours * 3600),
        }

    return app
