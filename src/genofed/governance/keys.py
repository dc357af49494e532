"""Keys: the node's own signing key, and the public keys of the issuers it trusts.

Signing: a node's Data Access Committee signs the visas it grants with an ES256 key kept in
a JSON file (``issuer`` + private JWK), created on first use and readable by its owner only.

Trusted issuers' public keys are pinned, or fetched from a JWKS URL and cached.

A token whose ``kid`` is unknown triggers one re-fetch of its issuer's key set (keys rotate),
at most once per ``REFRESH_INTERVAL`` so a stream of made-up ``kid``s cannot turn the node
into a request amplifier. A ``jku`` header is honoured only when the operator allow-listed
that URL for the token's issuer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from genofed._exceptions import ConfigError, UntrustedKeyError
from genofed.config import TrustedIssuer

REFRESH_INTERVAL = 30.0  # seconds between re-fetches of one key set
FETCH_TIMEOUT = 5.0

PublicKey = RSAKey | ECKey


@dataclass(frozen=True)
class SigningKey:
    """An ES256 private key and the ``iss`` of everything it signs."""

    issuer: str
    key: ECKey

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set to give to those who should trust this key."""
        return {"keys": [self.key.as_dict(private=False)]}

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        header = {"alg": "ES256", "kid": self.kid, "typ": typ}
        return jwt.encode(header, claims, self.key)

    def claims(self, sub: str, hours: float) -> dict[str, Any]:
        """What every token this key signs carries: issuer, subject, lifetime, a unique id."""
        now = int(time.time())
        return {
            "iss": self.issuer,
            "sub": sub,
            "iat": now,
            "exp": now + int(hours * 3600),
            "jti": uuid.uuid4().hex,
        }


def create_key(path: Path, issuer: str) -> SigningKey:
    """A new ES256 key for ``issuer``, written to ``path`` readable by its owner only;
    ``FileExistsError`` if there is one already."""
    key = ECKey.generate_key("P-256", auto_kid=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"issuer": issuer, "jwk": key.as_dict(private=True)}, handle)
    return SigningKey(issuer, key)


def load_key(path: Path) -> SigningKey:
    """The signing key saved at ``path``; ``ConfigError`` saying what to do if it is damaged."""
    text = path.read_text(errors="replace")  # FileNotFoundError is the caller's to handle
    try:
        data = json.loads(text)
        return SigningKey(str(data["issuer"]), ECKey.import_key(data["jwk"]))
    except Exception as exc:  # noqa: BLE001 - any damage gets the same advice, no traceback
        raise ConfigError(
            f"{path} is not a signing key saved by genofed ({type(exc).__name__}). Restore it "
            "from a backup; or, to start over, move it away and restart: a new key is made, "
            "and visas signed with the old one stop being accepted"
        ) from None


def load_or_create_key(path: Path, issuer: str) -> SigningKey:
    """The key at ``path``, created on first use (by whichever worker gets there first)."""
    try:
        return load_key(path)
    except FileNotFoundError:
        try:
            return create_key(path, issuer)
        except FileExistsError:  # another worker created it first
            return load_key(path)


def sign_visa(
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
    """One signed GA4GH visa JWT."""
    claims = key.claims(sub, hours)
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


def parse_key_set(data: dict) -> dict[str | None, PublicKey]:
    """RSA and EC public keys of a JWK Set, by ``kid``; other key types are skipped."""
    keys: dict[str | None, PublicKey] = {}
    for entry in data.get("keys", []):
        if entry.get("kty") not in ("RSA", "EC"):
            continue
        public = {k: v for k, v in entry.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        key = KeySet.import_key_set({"keys": [public]}).keys[0]
        keys[entry.get("kid")] = key  # type: ignore[assignment]
    return keys


class KeyRing:
    """Keys of the issuers in ``issuers``, by issuer and key id."""

    def __init__(
        self,
        issuers: list[TrustedIssuer],
        base_dir: Path,
        client: httpx.Client,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._clock = clock
        self._issuers = {i.issuer: i for i in issuers}
        self._base_dir = base_dir
        self._client = client
        self._keys: dict[str, dict[str | None, PublicKey]] = {}
        self._fetched_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def add_pinned(self, issuer: str, keys: dict[str | None, PublicKey]) -> None:
        """Trust ``issuer`` with these keys (the node's own DAC key)."""
        self._keys[issuer] = keys
        self._fetched_at[issuer] = float("inf")

    def trusts(self, issuer: str) -> bool:
        return issuer in self._issuers or issuer in self._keys

    def issuers(self) -> list[TrustedIssuer]:
        return list(self._issuers.values())

    def key(self, issuer: str, kid: str | None, jku: str | None) -> PublicKey:
        if not self.trusts(issuer):
            raise UntrustedKeyError("the issuer is not trusted by this node")
        config = self._issuers.get(issuer)
        source = issuer
        if jku is not None:
            if config is None or jku not in config.jku_allowed:
                raise UntrustedKeyError(
                    "the token's jku is not on this node's allow-list for its issuer"
                )
            source = f"jku:{jku}"
        keys = self._keys.get(source)
        if keys is None or (kid not in keys and self._may_refresh(source)):
            keys = self._load(source, config, jku)
        if kid is None:
            if len(keys) == 1:
                return next(iter(keys.values()))
            raise UntrustedKeyError("the token has no kid and its issuer has several keys")
        if kid not in keys:
            raise UntrustedKeyError("the token's kid is not among its issuer's keys")
        return keys[kid]

    def _may_refresh(self, source: str) -> bool:
        return self._clock() - self._fetched_at.get(source, -REFRESH_INTERVAL) >= REFRESH_INTERVAL

    def _load(
        self, source: str, config: TrustedIssuer | None, jku: str | None
    ) -> dict[str | None, PublicKey]:
        with self._lock:
            if config is None:  # pinned by add_pinned
                return self._keys.get(source, {})
            if jku is not None:
                data = self._fetch(jku)
            elif config.jwks is not None:
                data = config.jwks
            elif config.jwks_file is not None:
                data = json.loads((self._base_dir / config.jwks_file).read_text())
            else:
                assert config.jwks_url is not None
                data = self._fetch(config.jwks_url)
            keys = parse_key_set(data)
            self._keys[source] = keys
            self._fetched_at[source] = self._clock()
            return keys

    def _fetch(self, url: str) -> dict:
        try:
            response = self._client.get(url, timeout=FETCH_TIMEOUT)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise UntrustedKeyError(
                f"cannot fetch the issuer's keys ({type(exc).__name__})"
            ) from exc


# -- the node's aggregation key (X25519), for secure sums ---------------------------------


def load_or_create_aggregation_key(path: Path) -> X25519PrivateKey:
    """The node's X25519 key for secure aggregation, created on first use (readable by
    its owner only). Its public half is what the federation's other nodes pin."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = X25519PrivateKey.generate()
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_or_create_aggregation_key(path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        return key
    if len(raw) != 32:
        raise ConfigError(
            f"{path} is not an aggregation key (32 bytes). Restore it from a backup, or move "
            "it away to make a new one; then every peer must pin the new public key"
        )
    return X25519PrivateKey.from_private_bytes(raw)


def public_key_text(key: X25519PrivateKey | X25519PublicKey) -> str:
    """A public key as the 43 base64url characters node.yaml pins."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_key_of(text: str) -> X25519PublicKey:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not an X25519 public key (43 base64url characters)"
        ) from None


def fingerprint(text: str) -> str:
    """What two operators read to each other to check a pinned key: SHA-256, grouped."""
    digest = hashlib.sha256(public_key_of(text).public_bytes_raw()).hexdigest()[:32]
    return " ".join(digest[i : i + 4] for i in range(0, 32, 4))
