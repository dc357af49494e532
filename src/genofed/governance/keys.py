"""Public keys of trusted issuers: pinned, or fetched from a JWKS URL and cached.

A token whose ``kid`` is unknown triggers one re-fetch of its issuer's key set (keys rotate),
at most once per ``REFRESH_INTERVAL`` so a stream of made-up ``kid``s cannot turn the node
into a request amplifier. A ``jku`` header is honoured only when the operator allow-listed
that URL for the token's issuer.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
from joserfc.jwk import ECKey, KeySet, RSAKey

from genofed.config import TrustedIssuer

REFRESH_INTERVAL = 30.0  # seconds between re-fetches of one key set
FETCH_TIMEOUT = 5.0

PublicKey = RSAKey | ECKey


class NoKeyError(LookupError):
    """No usable key: the message says why (never which keys the node holds)."""


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

    def __init__(self, issuers: list[TrustedIssuer], base_dir: Path, client: httpx.Client):
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
            raise NoKeyError("the issuer is not trusted by this node")
        config = self._issuers.get(issuer)
        source = issuer
        if jku is not None:
            if config is None or jku not in config.jku_allowed:
                raise NoKeyError("the token's jku is not on this node's allow-list for its issuer")
            source = f"jku:{jku}"
        keys = self._keys.get(source)
        if keys is None or (kid not in keys and self._may_refresh(source)):
            keys = self._load(source, config, jku)
        if kid is None:
            if len(keys) == 1:
                return next(iter(keys.values()))
            raise NoKeyError("the token has no kid and its issuer has several keys")
        if kid not in keys:
            raise NoKeyError("the token's kid is not among its issuer's keys")
        return keys[kid]

    def _may_refresh(self, source: str) -> bool:
        return time.monotonic() - self._fetched_at.get(source, 0.0) >= REFRESH_INTERVAL

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
            self._fetched_at[source] = time.monotonic()
            return keys

    def _fetch(self, url: str) -> dict:
        try:
            response = self._client.get(url, timeout=FETCH_TIMEOUT)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise NoKeyError(f"cannot fetch the issuer's keys ({type(exc).__name__})") from exc
