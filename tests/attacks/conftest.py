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
from genofed.config import load_config
from genofed.governance import keys
from genofed.governance.access import grant_value
from tests.federation import Federation, federation

pytestmark = pytest.mark.servers


@dataclass
class Attacked:
    fed: Federation
    hub: str

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
        """A Passport with a DAC grant of ``node``'s dataset (signed by its DAC key)."""
        root = self.fed.root / node
        config = load_config(root / "node.yaml")
        dac = keys.load_key(root / "keys" / "dac-signing.json")
        grant = keys.sign_visa(
            dac, sub, "ControlledAccessGrants", grant_value(config, f"{node}-cohort"), by="dac"
        )
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


@pytest.fixture(scope="package")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    with federation(tmp_path_factory.mktemp("attacks")) as fed:
        fed.add_node("alpha", seed=31, samples=200, sites=300)
        fed.add_node("beta", seed=32, samples=150, sites=300)
        hub = fed.start_hub()
        # the nodes must have the DAC key (created when the node first starts)
        for name in ("alpha", "beta"):
            assert (fed.root / name / "keys" / "dac-signing.json").exists()
        yield Attacked(fed, hub)
