"""What the hub sends each node in place of the caller's credentials.

The hub never forwards the caller's token. For each node it asks the broker (RFC 8693
token exchange at ``token_exchange_url``) for a short-lived Passport whose ``aud`` is that
node, so a node only ever sees a Passport addressed to itself; it rejects Passports
addressed to others. An anonymous caller is anonymous at every node.
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import urlsplit

import orjson

from genofed._exceptions import CredentialError, NodeCredentialsError
from genofed.config import HubNode
from genofed.governance.access import (
    ACCESS_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    PASSPORT_TOKEN_TYPE,
    TOKEN_EXCHANGE,
)
from genofed.governance.passports import peek
from genofed.hub.fanout import Credentials
from genofed.hub.transport import Transport

BROKER = "(broker)"  # the transport's name for the broker
_RENEW_BEFORE_S = 30  # a cached Passport this close to expiry is exchanged again


class TokenExchange:
    """Per-node Passports from the broker, cached per caller token and node until shortly
    before they expire."""

    def __init__(self, transport: Transport, url: str | None):
        self.transport = transport
        self.url = url
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}
        self._broker: tuple[HubNode, str] | None = None
        if url is not None:
            parts = urlsplit(url)
            # Not a node: a name no node can have (node names are [a-z0-9-]).
            origin = HubNode.model_construct(name=BROKER, url=f"{parts.scheme}://{parts.netloc}")
            self._broker = (origin, parts.path or "/")

    def for_caller(self, authorization: str | None) -> Credentials | None:
        """Credentials for the caller behind an ``Authorization`` header (None: anonymous).
        Raises ``CredentialError`` if the header is unusable or the hub cannot exchange."""
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise CredentialError("send the Passport or access token as 'Authorization: Bearer'")
        if self.url is None:
            raise CredentialError(
                "this hub does not exchange credentials (no token_exchange_url in hub.yaml); "
                "ask without a token for anonymous answers"
            )
        _, claims = peek(token)  # routing only: the broker verifies it
        kind = JWT_TOKEN_TYPE if "ga4gh_passport_v1" in claims else ACCESS_TOKEN_TYPE
        digest = hashlib.sha256(token.encode()).hexdigest()

        async def credentials(node: HubNode, end: float) -> dict[str, str]:
            passport = await self._passport(token, kind, digest, node.passport_audience, end)
            return {"authorization": f"Bearer {passport}"}

        return credentials

    async def _passport(self, token: str, kind: str, digest: str, audience: str, end: float) -> str:
        key = (digest, audience)
        cached = self._cache.get(key)
        if cached is not None and cached[1] - _RENEW_BEFORE_S > time.time():
            return cached[0]
        assert self._broker is not None
        broker, path = self._broker
        try:
            response = await self.transport.request(
                broker,
                "POST",
                path,
                form={
                    "grant_type": TOKEN_EXCHANGE,
                    "subject_token": token,
                    "subject_token_type": kind,
                    "requested_token_type": PASSPORT_TOKEN_TYPE,
                    "audience": audience,
                },
                timeout_s=end - time.monotonic(),
            )
            status, content = response.status, response.content
        except TimeoutError:
            raise NodeCredentialsError("timeout", "no Passport from the broker in time") from None
        except ConnectionError as exc:
            raise NodeCredentialsError(
                "error", f"the broker could not be reached ({exc})"
            ) from None
        if status in (400, 401, 403):
            raise NodeCredentialsError(
                "unauthorised", "the broker refused to exchange your token for this node"
            )
        try:
            answer = orjson.loads(content)
            issued = str(answer["access_token"])
            expires = time.time() + float(answer.get("expires_in", 60))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise NodeCredentialsError("error", "odd answer to the token exchange") from None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (issued, expires)
        return issued
