"""Who the caller is (from their credentials) and what each dataset gives them.

Three ways to present credentials all end in one ``Caller``:

* ``Authorization: Bearer <Passport JWT>``;
* ``Authorization: Bearer <access token>``, resolved at a trusted broker by RFC 8693 token
  exchange (or its userinfo endpoint);
* a DRS-style ``{"passports": [...]}`` member of a POST body.

A dataset's tier (``public`` / ``registered`` / ``controlled``) and the node's tier table
decide the most a caller gets; a dataset with no tier is served to no one.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from genofed._exceptions import CredentialError
from genofed.config import BONA_FIDE, Granularity, NodeConfig, TrustedIssuer
from genofed.governance.passports import Clearinghouse, Passport, Visa, peek

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
PASSPORT_TOKEN_TYPE = "urn:ga4gh:params:oauth:token-type:passport"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # a Passport sent as a subject token
_RESOLVED_TTL = 60.0  # seconds an access token's resolution is reused


@dataclass(frozen=True)
class Caller:
    """The authorisation context of one request."""

    client: str  # budget key of an anonymous caller (its address)
    sub: str | None = None
    iss: str | None = None
    registered: bool = False
    grants: tuple[Visa, ...] = field(default_factory=tuple)  # ControlledAccessGrants, by dac
    identities: frozenset[tuple[str, str]] = frozenset()  # (sub, iss), linked ones included

    @property
    def identity(self) -> str:
        """Who is charged for budgets and named in the audit log."""
        return self.client if self.sub is None else f"{self.sub} ({self.iss})"


def caller_from_passports(passports: list[Passport], client: str) -> Caller:
    """One caller from one or more validated Passports (the first names the holder)."""
    if not passports:
        return Caller(client=client)
    visas = [v for p in passports for v in p.visas]
    kinds = {(v.type, v.value) for v in visas}
    registered = ("ResearcherStatus", BONA_FIDE) in kinds and (
        "AcceptedTermsAndPolicies",
        BONA_FIDE,
    ) in kinds
    grants = tuple(v for v in visas if v.type == "ControlledAccessGrants" and v.by == "dac")
    return Caller(
        client=client,
        sub=passports[0].sub,
        iss=passports[0].iss,
        registered=registered,
        grants=grants,
        identities=frozenset().union(*(p.identities or {(p.sub, p.iss)} for p in passports)),
    )


class Standing(StrEnum):
    """How a caller stands towards one dataset: what decides which rules apply."""

    ANONYMOUS = "anonymous"  # neither a registered researcher nor a grant holder
    REGISTERED = "registered"  # bona fide researcher (ResearcherStatus + terms)
    GRANTED = "granted"  # holds a live ControlledAccessGrants visa for the dataset


@dataclass(frozen=True)
class Entitlement:
    """The most one caller may get from one dataset or table, and why."""

    granularity: Granularity
    standing: Standing


def grant_value(config: NodeConfig, dataset_id: str) -> str:
    """The ControlledAccessGrants ``value`` this node's DAC puts in visas for a dataset."""
    return f"{config.issuer.rstrip('/')}/datasets/{dataset_id}"


class AccessPolicy:
    """Tier table plus per-dataset policy; ``revoked`` says if a DAC has withdrawn a visa."""

    def __init__(
        self,
        config: NodeConfig,
        revoked: Callable[[Visa], bool],
        holder: Callable[[Visa], tuple[str, str | None] | None] = lambda visa: None,
    ):
        self.config = config
        self.revoked = revoked
        self.holder = holder  # whom one of this node's own visas was issued to

    def tier(self, dataset_id: str, ingest_tier: str | None) -> str | None:
        policy = self.config.datasets.get(dataset_id)
        if policy is not None and policy.tier is not None:
            return policy.tier
        return ingest_tier

    def holds_grant(self, caller: Caller, dataset_id: str) -> bool:
        """A live ControlledAccessGrants visa for the dataset: from this node's own DAC, or
        with a value the operator listed in ``grant_values`` (an external DAC)."""
        own = grant_value(self.config, dataset_id)
        policy = self.config.datasets.get(dataset_id)
        external = set(policy.grant_values) if policy is not None else set()
        for visa in caller.grants:
            if visa.value == own and visa.iss == self.config.issuer:
                # The DAC granted it to one identity, (sub, iss): the same sub at another
                # issuer is another person.
                mine = caller.identities or {(caller.sub, caller.iss)}
                if self.holder(visa) in mine and not self.revoked(visa):
                    return True
            elif visa.value in external and not self.revoked(visa):
                return True
        return False

    def entitlement(
        self,
        caller: Caller,
        dataset_id: str,
        ingest_tier: str | None,
        ceiling: Granularity,
    ) -> Entitlement | None:
        """The most ``caller`` may get from the dataset, and as whom (``None``: it does not
        exist for them)."""
        tier = self.tier(dataset_id, ingest_tier)
        if tier is None:
            return None  # closed by default
        grants = self.config.tiers.get(tier)  # type: ignore[call-overload]
        if grants is None:
            return None
        allowed, standing = grants.anonymous, Standing.ANONYMOUS
        if caller.registered and _above(grants.registered, allowed):
            allowed, standing = grants.registered, Standing.REGISTERED
        elif caller.registered:
            standing = Standing.REGISTERED
        if self.holds_grant(caller, dataset_id):
            standing = Standing.GRANTED
            if _above(grants.controlled, allowed):
                allowed = grants.controlled
        if allowed is None:
            return None
        return Entitlement(min(Granularity(allowed), Granularity(ceiling)), standing)


def _above(a: Granularity | None, b: Granularity | None) -> bool:
    return a is not None and (b is None or Granularity(a) > Granularity(b))


class CredentialResolver:
    """Turns request credentials into a ``Caller`` (401 ``CredentialError`` if refused)."""

    def __init__(self, clearinghouse: Clearinghouse, client: httpx.Client):
        self.clearinghouse = clearinghouse
        self.client = client
        self._resolved: dict[bytes, tuple[float, Passport]] = {}
        self._lock = threading.Lock()

    def caller(
        self, authorization: str | None, body_passports: object, client_address: str
    ) -> Caller:
        passports: list[Passport] = []
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise CredentialError("the Authorization header must be 'Bearer <token>'")
            passports.append(self._bearer(token.strip()))
        if body_passports is not None:
            if not isinstance(body_passports, list) or not all(
                isinstance(p, str) for p in body_passports
            ):
                raise CredentialError("'passports' must be a list of Passport JWTs")
            passports.extend(self.clearinghouse.passport(t) for t in body_passports)
        return caller_from_passports(passports, client_address)

    def _bearer(self, token: str) -> Passport:
        """The Passport itself, or the one a trusted broker resolves an access token to."""
        header, claims = _peek_or_opaque(token)
        if header.get("typ") == "vnd.ga4gh.passport+jwt" or "ga4gh_passport_v1" in claims:
            return self.clearinghouse.passport(token)
        digest = hashlib.sha256(token.encode()).digest()
        hit = self._resolved.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        issuer = claims.get("iss")
        brokers = [
            b
            for b in self.clearinghouse.brokers.issuers()
            if (b.token_exchange_url or b.userinfo_url) and (issuer is None or b.issuer == issuer)
        ]
        if not brokers:
            raise CredentialError(
                "the bearer token is not a Passport and no trusted broker can resolve it"
            )
        broker = brokers[0]
        if broker.token_exchange_url:
            passport = self.clearinghouse.passport(self._exchange(token, broker))
        else:
            passport = self._userinfo(token, broker)
        with self._lock:
            if len(self._resolved) > 4096:
                self._resolved.clear()
            self._resolved[digest] = (time.monotonic() + _RESOLVED_TTL, passport)
        return passport

    def _userinfo(self, token: str, broker: TrustedIssuer) -> Passport:
        """The broker's userinfo answer for the token: its ``sub`` and visa JWTs."""
        info = self._ask_broker(
            "GET",
            broker.userinfo_url,  # type: ignore[arg-type]
            "resolve",
            headers={"Authorization": f"Bearer {token}"},
        )
        return self.clearinghouse.from_userinfo(broker.issuer, info, _RESOLVED_TTL)

    def _exchange(self, token: str, broker: TrustedIssuer) -> str:
        """The Passport an RFC 8693 token exchange at the broker returns."""
        answer = self._ask_broker(
            "POST",
            broker.token_exchange_url,  # type: ignore[arg-type]
            "exchange",
            data={
                "grant_type": TOKEN_EXCHANGE,
                "subject_token": token,
                "subject_token_type": ACCESS_TOKEN_TYPE,
                "requested_token_type": PASSPORT_TOKEN_TYPE,
            },
        )
        passport = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(passport, str):
            raise CredentialError("the broker's token exchange answer is not valid")
        return passport

    def _ask_broker(self, method: str, url: str, what: str, **kwargs: Any) -> object:
        """The JSON a trusted broker answers, or ``CredentialError`` saying what failed."""
        try:
            response = self.client.request(method, url, timeout=5.0, **kwargs)
        except httpx.HTTPError as exc:
            raise CredentialError(f"the broker could not be reached to {what} the token") from exc
        if response.status_code != 200:
            raise CredentialError(f"the broker refused to {what} the access token")
        try:
            return response.json()
        except ValueError as exc:
            raise CredentialError(f"the broker's answer to {what} the token is not JSON") from exc


def _peek_or_opaque(token: str) -> tuple[dict, dict]:
    try:
        return peek(token)
    except CredentialError:
        return {}, {}  # an opaque access token: only a broker can say what it is
