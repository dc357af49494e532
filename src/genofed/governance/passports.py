"""The Passport clearinghouse: validate Passports and visas as GA4GH Passport 1.2 asks.

* Only RS256 and ES256 signatures; ``none``, HMAC and anything else are refused before any
  key is looked at, so an HS256 token "signed" with a public key never verifies.
* Issuers (brokers for Passports, visa issuers for visas) and their keys come from the
  node's ``trust`` config; the node's own DAC key is trusted for the visas it signs.
* ``exp`` and ``iat`` are required, with a small leeway; a token issued in the future is
  refused. ``aud``, when present on a Passport, must name this node's audience.
* A visa that fails any check is ignored (the spec's rule); a Passport that fails makes the
  whole request fail with 401. Visas of unknown or custom types are ignored. URL claims are
  compared as strings, never fetched, and may not exceed 255 characters.
* Visas count only for the Passport's holder: same ``sub``, or an identity joined to it by
  a trusted LinkedIdentities visa.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from joserfc import jwt
from joserfc.errors import JoseError

from genofed._exceptions import CredentialError, UntrustedKeyError, VisaConditionError
from genofed.governance.conditions import check_conditions, conditions_met
from genofed.governance.keys import KeyRing

ALGORITHMS = ("RS256", "ES256")
PASSPORT_TYP = "vnd.ga4gh.passport+jwt"
MAX_TOKEN_BYTES = 64 * 1024
MAX_URL_CLAIM = 255
STANDARD_VISA_TYPES = frozenset(
    {
        "AffiliationAndRole",
        "AcceptedTermsAndPolicies",
        "ResearcherStatus",
        "ControlledAccessGrants",
        "LinkedIdentities",
    }
)
_URL_VALUED = frozenset({"AcceptedTermsAndPolicies", "ResearcherStatus", "ControlledAccessGrants"})


@dataclass(frozen=True)
class Visa:
    iss: str
    sub: str
    type: str
    value: str
    source: str
    by: str | None
    asserted: int
    exp: int
    jti: str | None
    conditions: list[list[dict[str, str]]] | None = None

    def as_object(self) -> dict[str, Any]:
        """The visa object, as condition clauses see it."""
        obj: dict[str, Any] = {"type": self.type, "value": self.value, "source": self.source}
        if self.by is not None:
            obj["by"] = self.by
        if self.conditions is not None:
            obj["conditions"] = self.conditions
        return obj


@dataclass(frozen=True)
class Passport:
    iss: str
    sub: str
    exp: int
    visas: tuple[Visa, ...] = field(default_factory=tuple)
    # (sub, iss) of the holder and of every identity a LinkedIdentities visa joins to it
    identities: frozenset[tuple[str, str]] = frozenset()


def _b64json(part: str) -> dict[str, Any]:
    padded = part + "=" * (-len(part) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified (to route it, never to trust it)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise CredentialError("the token is too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise CredentialError("the token is not a signed JWT (header.payload.signature)")
    try:
        return _b64json(parts[0]), _b64json(parts[1])
    except (ValueError, UnicodeDecodeError) as exc:
        raise CredentialError("the token's header or payload is not base64url JSON") from exc


class Clearinghouse:
    """Validates tokens against a key ring; caches good Passports until they expire."""

    def __init__(
        self,
        brokers: KeyRing,
        visa_issuers: KeyRing,
        *,
        audience: str | None,
        leeway: int,
        cache_size: int = 4096,
        own_issuer: str | None = None,
    ):
        self.own_issuer = own_issuer  # this node's DAC: its visas' holders are on record
        self.brokers = brokers
        self.visa_issuers = visa_issuers
        self.audience = audience
        self.leeway = leeway
        self._cache: dict[bytes, Passport] = {}
        # Visas outlive Passports (a broker re-mints the Passport, not its visas), so good
        # visas are remembered on their own, until they expire.
        self._visas: dict[bytes, Visa] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- one signed token ---------------------------------------------------------------

    def verify(self, token: str, keys: KeyRing, what: str) -> dict[str, Any]:
        """Claims of ``token`` after checking algorithm, issuer, signature and times."""
        header, unverified = peek(token)
        for name in ("alg", "kid", "typ", "jku"):
            if header.get(name) is not None and not isinstance(header[name], str):
                raise CredentialError(f"the {what} header's {name} must be a string")
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise CredentialError(
                f"{what} algorithm {str(alg)[:20]!r} is not allowed (RS256, ES256)"
            )
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not keys.trusts(issuer):
            raise CredentialError(f"the {what} issuer is not trusted by this node")
        jku = header.get("jku")
        try:
            key = keys.key(issuer, header.get("kid"), jku if isinstance(jku, str) else None)
        except UntrustedKeyError as exc:
            raise CredentialError(f"{what}: {exc}") from exc
        if header.get("jku") is not None and not isinstance(jku, str):
            raise CredentialError(f"{what}: the jku header must be a URL string")
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
        except (JoseError, ValueError) as exc:
            raise CredentialError(f"{what} signature does not verify") from exc
        if claims.get("iss") != issuer:
            raise CredentialError(f"{what} issuer changed after signing")
        now = time.time()
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if not _timestamp(exp) or not _timestamp(iat):
            raise CredentialError(f"{what} must carry exp and iat claims as times in seconds")
        if nbf is not None and not _timestamp(nbf):
            raise CredentialError(f"{what}'s nbf claim must be a time in seconds")
        if exp + self.leeway < now:
            raise CredentialError(f"{what} has expired")
        if iat - self.leeway > now:
            raise CredentialError(f"{what} is issued in the future")
        if nbf is not None and nbf - self.leeway > now:
            raise CredentialError(f"{what} is not valid yet (nbf is in the future)")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise CredentialError(f"{what} has no sub claim")
        return claims

    # -- Passports ------------------------------------------------------------------------

    def passport(self, token: str) -> Passport:
        """A validated Passport with its usable visas, or ``CredentialError``."""
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None and cached.exp + self.leeway >= time.time():
            return cached
        header, _ = peek(token)
        if header.get("typ") not in (None, PASSPORT_TYP, "JWT"):
            raise CredentialError(f"a Passport must have typ {PASSPORT_TYP}")
        claims = self.verify(token, self.brokers, "Passport")
        aud = claims.get("aud")
        if aud is not None:
            audiences = [aud] if isinstance(aud, str) else aud
            if not isinstance(audiences, list) or self.audience not in audiences:
                raise CredentialError("the Passport was issued for another audience")
        raw_visas = claims.get("ga4gh_passport_v1")
        if not isinstance(raw_visas, list) or not all(isinstance(v, str) for v in raw_visas):
            raise CredentialError("ga4gh_passport_v1 must be a list of visa JWTs")
        visas = [v for v in (self._visa(t) for t in raw_visas) if v is not None]
        identities = holder_identities(claims["sub"], claims["iss"], visas)
        passport = Passport(
            iss=claims["iss"],
            sub=claims["sub"],
            exp=int(claims["exp"]),
            visas=tuple(
                usable_visas(claims["sub"], claims["iss"], visas, identities, self.own_issuer)
            ),
            identities=frozenset(identities),
        )
        with self._lock:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[digest] = passport
        return passport

    def from_userinfo(self, broker: str, info: object, ttl: float) -> Passport:
        """A Passport from a trusted broker's userinfo answer (fetched from the URL the
        operator configured, so it is the broker's word; its visas are checked as usual)."""
        if not isinstance(info, dict) or not isinstance(info.get("sub"), str) or not info["sub"]:
            raise CredentialError("the broker's userinfo answer has no sub")
        raw_visas = info.get("ga4gh_passport_v1", [])
        if not isinstance(raw_visas, list) or not all(isinstance(v, str) for v in raw_visas):
            raise CredentialError("ga4gh_passport_v1 must be a list of visa JWTs")
        visas = [v for v in (self._visa(t) for t in raw_visas) if v is not None]
        sub = info["sub"]
        identities = holder_identities(sub, broker, visas)
        return Passport(
            iss=broker,
            sub=sub,
            exp=int(time.time() + ttl),
            visas=tuple(usable_visas(sub, broker, visas, identities, self.own_issuer)),
            identities=frozenset(identities),
        )

    def _visa(self, token: str) -> Visa | None:
        """A visa that passes every check, or ``None`` (ignored, as the spec says)."""
        digest = hashlib.sha256(token.encode()).digest()
        known = self._visas.get(digest)
        if known is not None and known.exp + self.leeway >= time.time():
            return known
        visa = self._check_visa(token)
        if visa is not None:
            with self._lock:
                if len(self._visas) >= 4 * self._cache_size:
                    self._visas.clear()
                self._visas[digest] = visa
        return visa

    def _check_visa(self, token: str) -> Visa | None:
        try:
            claims = self.verify(token, self.visa_issuers, "visa")
        except CredentialError:
            return None
        body = claims.get("ga4gh_visa_v1")
        if not isinstance(body, dict):
            return None
        visa_type, value, source = body.get("type"), body.get("value"), body.get("source")
        asserted, by = body.get("asserted"), body.get("by")
        if not all(isinstance(x, str) for x in (visa_type, value, source)):
            return None
        if not (isinstance(asserted, int) and _timestamp(asserted)) or (
            asserted > time.time() + self.leeway
        ):
            return None
        if by is not None and not isinstance(by, str):
            return None
        if visa_type not in STANDARD_VISA_TYPES:
            return None  # custom visa types are ignored
        if len(source) > MAX_URL_CLAIM or (visa_type in _URL_VALUED and len(value) > MAX_URL_CLAIM):
            return None
        conditions = None
        if "conditions" in body:
            try:
                conditions = check_conditions(body["conditions"])
            except VisaConditionError:
                return None
        return Visa(
            iss=claims["iss"],
            sub=claims["sub"],
            type=visa_type,
            value=value,
            source=source,
            by=by,
            asserted=asserted,
            exp=int(claims["exp"]),
            jti=claims.get("jti") if isinstance(claims.get("jti"), str) else None,
            conditions=conditions,
        )


def _timestamp(value: object) -> bool:
    """A JWT time: a finite number of seconds, not a boolean, in a plausible range."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value < 1e11
    )


def linked_identities(value: str) -> set[tuple[str, str]]:
    """``sub,iss`` pairs of a LinkedIdentities value (URI-encoded, ';'-separated)."""
    pairs = set()
    for entry in value.split(";"):
        sub, comma, iss = entry.partition(",")
        if comma:
            pairs.add((unquote(sub), unquote(iss)))
    return pairs


def holder_identities(sub: str, broker: str, visas: list[Visa]) -> set[tuple[str, str]]:
    """The Passport holder's identity, ``(sub, iss)``, and those LinkedIdentities visas
    held by the holder join to it (transitively): the only way identities are joined."""
    identities = {(sub, broker)}
    changed = True
    while changed:
        changed = False
        for visa in visas:
            held = visa.sub == sub or (visa.sub, visa.iss) in identities
            if visa.type == "LinkedIdentities" and visa.conditions is None and held:
                new = linked_identities(visa.value) - identities
                identities |= new
                changed = changed or bool(new)
    return identities


def usable_visas(
    sub: str,
    broker: str,
    visas: list[Visa],
    identities: set[tuple[str, str]] | None = None,
    own_issuer: str | None = None,
) -> list[Visa]:
    """Visas of the Passport's holder whose conditions are met.

    The holder is the Passport's ``sub`` and the identities linked to it. A visa of this
    node's own DAC (``own_issuer``) is kept for any of the holder's subs: the DAC records
    whom it granted, ``(sub, iss)``, and that record decides (``AccessPolicy``).
    Conditions are evaluated against the holder's visas, never against visas that carry
    conditions themselves.
    """
    identities = identities or holder_identities(sub, broker, visas)
    subs = {s for s, _ in identities}

    def holds(visa: Visa) -> bool:
        if own_issuer is not None and visa.iss == own_issuer:
            return visa.sub in subs
        return visa.sub == sub or (visa.sub, visa.iss) in identities

    held = [v for v in visas if holds(v)]
    objects = [v.as_object() for v in held]
    return [v for v in held if v.conditions is None or conditions_met(v.conditions, objects)]
