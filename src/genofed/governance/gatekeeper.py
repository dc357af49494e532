"""One node's governance, assembled from its config: credentials, access, disclosure, audit."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx

from genofed.config import NodeConfig
from genofed.governance.access import AccessPolicy, CredentialResolver
from genofed.governance.audit import AuditLog
from genofed.governance.broker import SigningKey, create_key, load_key
from genofed.governance.dac import Dac
from genofed.governance.disclosure import DifferencingGuard, IndividualGuard, QueryBudget
from genofed.governance.keys import KeyRing, parse_key_set
from genofed.governance.passports import Clearinghouse


def node_signing_key(root: Path, config: NodeConfig) -> SigningKey:
    """The key the node's DAC signs visas with, created on first use."""
    path = root / "keys" / "dac-signing.json"
    try:
        return load_key(path)
    except FileNotFoundError:
        try:
            return create_key(path, config.issuer)
        except FileExistsError:  # another worker created it first
            return load_key(path)


class Gatekeeper:
    def __init__(
        self,
        root: Path,
        config: NodeConfig,
        config_bytes: bytes,
        descendants: Callable[[str], frozenset[str]],
    ):
        self.config = config
        self.policy_version = hashlib.sha256(config_bytes).hexdigest()[:12]
        self.http = httpx.Client()
        self.signing_key = node_signing_key(root, config)
        brokers = KeyRing(config.trust.brokers, root, self.http)
        visa_issuers = KeyRing(config.trust.visa_issuers, root, self.http)
        visa_issuers.add_pinned(config.issuer, parse_key_set(self.signing_key.jwks()))
        self.clearinghouse = Clearinghouse(
            brokers,
            visa_issuers,
            audience=config.trust.audience or config.public_url,
            leeway=config.trust.leeway_seconds,
        )
        self.credentials = CredentialResolver(self.clearinghouse, self.http)
        self.dac = Dac(root / "dac" / "dac.sqlite", config, self.signing_key, descendants)
        self.access = AccessPolicy(config, revoked=self.dac.is_revoked)
        self.budget = QueryBudget(root / "state" / "budgets.sqlite", config.disclosure.query_budget)
        self.differencing = DifferencingGuard(
            root / "state" / "differencing.sqlite", config.disclosure.differencing_k
        )
        self.individuals = IndividualGuard(root / "state" / "public-exclusions.sqlite")
        self.audit = AuditLog(root / "audit" / "audit.log")
