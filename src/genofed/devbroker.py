"""A development Passport broker and visa issuer, for demos and tests only.

No production code imports this module (a test checks): nodes and hubs only ever verify
tokens. It signs with a local ES256 key (``governance.keys.SigningKey``). A node trusts it
only if the operator adds it to ``trust`` in ``node.yaml``. It can also serve an RFC 8693
token-exchange endpoint that turns its own access tokens into Passports, so all three
credential styles can be exercised without an external identity provider.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Form, Header, HTTPException
from joserfc import jwt
from joserfc.errors import JoseError

from genofed.config import BONA_FIDE
from genofed.governance.access import (
    ACCESS_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    PASSPORT_TOKEN_TYPE,
    TOKEN_EXCHANGE,
)
from genofed.governance.keys import SigningKey, sign_visa
from genofed.governance.passports import PASSPORT_TYP

ACCESS_TYP = "at+jwt"
AUDIENCE_MINUTES = 10  # lifetime of a Passport addressed to one service (a hub's per node)


def bona_fide_visas(key: SigningKey, sub: str, hours: float = 1.0) -> list[str]:
    """ResearcherStatus + AcceptedTermsAndPolicies: what registered access asks for."""
    return [
        sign_visa(key, sub, "ResearcherStatus", BONA_FIDE, by="so", hours=hours),
        sign_visa(key, sub, "AcceptedTermsAndPolicies", BONA_FIDE, by="self", hours=hours),
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
    claims = {**key.claims(sub, hours), "ga4gh_passport_v1": visas}
    if audience is not None:
        claims["aud"] = audience
    return key.sign(claims, typ=PASSPORT_TYP)


def access_token(key: SigningKey, sub: str, visas: list[str], *, hours: float = 1.0) -> str:
    """An access token this broker will exchange for a Passport carrying ``visas``."""
    claims = {
        **key.claims(sub, hours),
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
            # Only a Passport meant for the broker itself may be exchanged: one a node
            # received (its aud that node) must not buy a Passport for another node.
            if claims.get("aud") not in (None, key.issuer, [key.issuer]):
                raise HTTPException(400, {"error": "invalid_grant"})
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
