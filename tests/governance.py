"""A governed test node: three tiers of the same small dataset, a trusted development
broker, a rogue key the node does not trust, and the node's own DAC key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genofed import devbroker as broker
from genofed.config import BONA_FIDE, TrustedIssuer, load_config, save_config
from genofed.governance import keys
from genofed.governance.access import grant_value
from genofed.governance.gatekeeper import node_signing_key
from genofed.governance.keys import SigningKey
from genofed.store.node_dir import NodeDir
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf
from tests.conftest import SMALL_CLINICAL, SMALL_VCF, make_node

BROKER = "https://broker.genofed.test"
TIERS = {"open": "public", "reg": "registered", "ctrl": "controlled"}


@dataclass
class GovernedNode:
    node: NodeDir
    broker: SigningKey
    rogue: SigningKey  # same issuer name, a key the node never saw
    dac: SigningKey  # the node's own DAC key

    def grant(self, dataset: str) -> str:
        return grant_value(load_config(self.node.config_path), dataset)

    def issue_grant(self, sub: str, dataset: str, iss: str = BROKER) -> str:
        """A ControlledAccessGrants visa as the node's DAC issues it: an application by
        ``(sub, iss)``, approved by a reviewer; the DAC records whom it granted."""
        return issue_grant(self.node, self.dac, sub, dataset, iss)

    def passport(
        self,
        sub: str = "researcher-1",
        *,
        bona_fide: bool = False,
        grants: tuple[str, ...] = (),
        key: SigningKey | None = None,
        **kwargs,
    ) -> str:
        key = key or self.broker
        visas = broker.bona_fide_visas(key, sub) if bona_fide else []
        visas += [self.issue_grant(sub, d, key.issuer) for d in grants]
        return broker.passport(key, sub, visas, **kwargs)


def issue_grant(node: NodeDir, key: SigningKey, sub: str, dataset: str, iss: str) -> str:
    """The DAC's whole flow for one grant, in process: apply, submit, approve, collect."""
    from genofed.governance.dac import Dac
    from genofed.governance.duo import ResearchPurpose

    dac = Dac(node.dac_path, load_config(node.config_path), key, lambda term: frozenset())
    purpose = ResearchPurpose(category="general")
    app = dac.create(sub, iss, dataset, f"Access to {dataset}", purpose)
    dac.submit(app["id"], (sub, iss))  # no consent codes recorded: a reviewer decides
    dac.decide(app["id"], "test reviewer", "approve", None)
    return dac.visa(app["id"], (sub, iss))


def build_governed_node(
    root: Path,
    *,
    budget: int | None = None,
    exchange_url: str | None = None,
    differencing_k: int = 5,
) -> GovernedNode:
    node = make_node(root / "node", "governed", governed=True)
    broker_key = keys.create_key(root / "broker.json", BROKER)
    rogue = keys.create_key(root / "rogue.json", BROKER)
    config = load_config(node.config_path)
    trusted = TrustedIssuer(issuer=BROKER, jwks=broker_key.jwks(), token_exchange_url=exchange_url)
    config.trust.brokers = [trusted]
    config.trust.visa_issuers = [trusted.model_copy(update={"token_exchange_url": None})]
    config.disclosure.query_budget = budget
    config.disclosure.differencing_k = differencing_k
    save_config(config, node.config_path)
    for dataset, tier in TIERS.items():
        ingest_vcf(
            node,
            dataset,
            SMALL_VCF,
            assembly="GRCh38",
            individuals=SMALL_CLINICAL,
            settings=DatasetSettings(granularity="record", tier=tier),  # type: ignore[arg-type]
        )
    dac = node_signing_key(node, config)
    return GovernedNode(node, broker_key, rogue, dac)


__all__ = ["BONA_FIDE", "GovernedNode", "build_governed_node", "TIERS"]
