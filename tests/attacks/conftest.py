"""The attack corpus: every attack found from outside, reproduced against real node and
hub processes (``tests/federation.py``), each a test that failed before its fix.

Two nodes with the node's default rules (anonymous callers get yes/no, registered
researchers counts, grant holders records) serve simulated cohorts whose ids are
``ALPHA00000``... and ``BETA00000``...; a hub federates them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from genofed import devbroker as broker
from genofed.config import DacReviewer, NodeConfig, TrustedIssuer
from genofed.governance import keys
from genofed.store.node_dir import NodeDir
from tests.federation import ISSUER, Federation, federation
from tests.governance import issue_grant


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/attacks/" in str(item.fspath):
            item.add_marker(pytest.mark.servers)  # real processes on 127.0.0.1


@dataclass
class Attacked:
    fed: Federation
    hub: str
    other_idp: keys.SigningKey  # a second trusted identity provider (its own users)

    def passport_of(
        self, sub: str, visas: list[str] | None = None, *, idp: keys.SigningKey | None = None
    ) -> dict[str, str]:
        """A Passport for ``sub`` at the broker (or ``idp``), addressed to alpha."""
        key = idp or self.fed.key
        given = broker.bona_fide_visas(key, sub) if visas is None else visas
        token = broker.passport(key, sub, given, audience=self.fed.audience("alpha"))
        return {"Authorization": f"Bearer {token}"}

    def node(self, name: str = "alpha") -> str:
        return self.fed.nodes[name]

    def people(self, name: str = "alpha") -> list[dict[str, str]]:
        with self.fed.cohorts[name].clinical.open() as handle:
            return list(csv.DictReader(handle))

    def registered(self, sub: str = "reg-attacker") -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.fed.passport(sub, audience=self.fed.audience('alpha'))}"
        }

    def hub_registered(self, sub: str = "reg-attacker") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.fed.access_token(sub)}"}

    def grant_holder(self, sub: str, node: str = "alpha") -> dict[str, str]:
        """A Passport with a grant of ``node``'s dataset, issued through its DAC."""
        directory = NodeDir(self.fed.root / node)
        dac = keys.load_key(directory.signing_key_path)
        grant = issue_grant(directory, dac, sub, f"{node}-cohort", ISSUER)
        token = broker.passport(self.fed.key, sub, [grant], audience=self.fed.audience(node))
        return {"Authorization": f"Bearer {token}"}

    def beacon(
        self,
        path: str,
        base: str | None = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> httpx.Response:
        return httpx.get(
            f"{base or self.node()}/beacon/v2{path}", params=params, headers=headers, timeout=30
        )


OTHER_ISSUER = "https://other-idp.genofed.test"  # a second identity provider alpha trusts


@pytest.fixture(scope="package")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    root = tmp_path_factory.mktemp("attacks")
    other = keys.create_key(root / "other-idp.json", OTHER_ISSUER)

    def alpha(config: NodeConfig) -> None:
        trusted = TrustedIssuer(issuer=OTHER_ISSUER, jwks=other.jwks())
        config.trust.brokers.append(trusted)
        config.trust.visa_issuers.append(trusted)
        config.dac_reviewers = [DacReviewer(sub="reviewer-1", iss=ISSUER)]
        config.trust.proxies = ["127.0.0.1"]  # the hub; beta trusts no proxy

    with federation(root) as fed:
        fed.add_node("alpha", seed=31, samples=200, sites=300, configure=alpha)
        fed.add_node("beta", seed=32, samples=150, sites=300)
        hub = fed.start_hub()
        # the nodes must have the DAC key (created when the node first starts)
        for name in ("alpha", "beta"):
            assert (fed.root / name / "keys" / "dac-signing.json").exists()
        yield Attacked(fed, hub, other)
