"""One node's governance, assembled from its config: credentials, access, release, audit."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import httpx

from genofed.config import NodeConfig
from genofed.governance.access import AccessPolicy, CredentialResolver
from genofed.governance.audit import AuditLog
from genofed.governance.dac import Dac
from genofed.governance.disclosure import Clock
from genofed.governance.keys import KeyRing, SigningKey, load_or_create_key, parse_key_set
from genofed.governance.passports import Clearinghouse
from genofed.governance.release import ReleasePolicy
from genofed.store.node_dir import NodeDir


def node_signing_key(node: NodeDir, config: NodeConfig) -> SigningKey:
    """The key the node's DAC signs visas with, created on first use."""
    return load_or_create_key(node.signing_key_path, config.issuer)


class Gatekeeper:
    """Who the caller is (``credentials``), what each dataset gives them (``access``),
    what may leave (``release``), the DAC, and the audit log."""

    def __init__(
        self,
        node: NodeDir,
        config: NodeConfig,
        descendants: Callable[[str], frozenset[str]],
        *,
        clock: Clock = time.time,
        audit: AuditLog | None = None,
    ):
        self.config = config
        self.policy_version = hashlib.sha256(node.config_path.read_bytes()).hexdigest()[:12]
        self.http = httpx.Client()
        self.signing_key = node_signing_key(node, config)
        brokers = KeyRing(config.trust.brokers, node.root, self.http)
        visa_issuers = KeyRing(config.trust.visa_issuers, node.root, self.http)
        visa_issuers.add_pinned(config.issuer, parse_key_set(self.signing_key.jwks()))
        self.clearinghouse = Clearinghouse(
            brokers,
            visa_issuers,
            audience=config.trust.audience or config.public_url,
            leeway=config.trust.leeway_seconds,
            own_issuer=config.issuer,
        )
        self.credentials = CredentialResolver(self.clearinghouse, self.http)
        self.dac = Dac(node.dac_path, config, self.signing_key, descendants)
        self.access = AccessPolicy(config, revoked=self.dac.is_revoked, holder=self.dac.holder)
        self.release = ReleasePolicy(config.disclosure, node.state_dir, clock=clock)
        # One AuditLog per process: a gate rebuilt after a node.yaml change keeps it, so
        # the chain's head is never held by two writers.
        self.audit = audit or AuditLog(node.audit_path)

    def close(self) -> None:
        self.http.close()
