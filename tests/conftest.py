"""Shared fixtures: real nodes built from the project's own small test files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from genofed.config import Disclosure, NodeConfig, TierGrants, default_config
from genofed.node.app import create_app
from genofed.store.bff_import import import_bff
from genofed.store.genes import read_gene_file, save_genes
from genofed.store.node_dir import NodeDir
from genofed.store.ontology import OntologyIndex
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf
from tests.browser import CHROMIUM

DATA = Path(__file__).parent / "data"
SMALL_VCF = DATA / "small.vcf"
SMALL_CLINICAL = DATA / "small_clinical.csv"
BFF_FIXTURES = DATA / "bff-fixtures"


@pytest.fixture(scope="session")
def ontology() -> OntologyIndex:
    """One ontology index for the whole run: loading HPO takes a second or two."""
    return OntologyIndex()


def open_config(name: str) -> NodeConfig:
    """A node config for testing Beacon features rather than governance: anyone gets
    what a dataset's granularity allows, counts are exact, there is no budget. Datasets
    still need a tier (``public``) to be served."""
    config = default_config(name)
    config.tiers["public"] = TierGrants(anonymous="record", registered="record")
    config.disclosure = Disclosure.off()
    return config


def make_node(root: Path, name: str = "test node", *, governed: bool = False) -> NodeDir:
    """A node directory; ``governed`` keeps the secure defaults, else ``open_config``."""
    return NodeDir.create(root, default_config(name) if governed else open_config(name))


@pytest.fixture
def empty_node(tmp_path: Path) -> NodeDir:
    return make_node(tmp_path / "node")


@pytest.fixture(scope="session")
def small_node(tmp_path_factory: pytest.TempPathFactory) -> NodeDir:
    """A node with the small VCF (record granularity) and the BFF fixtures (count)."""
    node = make_node(tmp_path_factory.mktemp("small") / "node")
    ingest_vcf(
        node,
        "small",
        SMALL_VCF,
        assembly="GRCh38",
        individuals=SMALL_CLINICAL,
        settings=DatasetSettings(granularity="record", name="Small test VCF", tier="public"),
    )
    import_bff(
        node, "fixtures", BFF_FIXTURES, settings=DatasetSettings(granularity="count", tier="public")
    )
    ingest_vcf(
        node,
        "small-test",
        SMALL_VCF,
        assembly="GRCh38",
        settings=DatasetSettings(granularity="record", test_data=True, tier="public"),
    )
    save_genes(read_gene_file(DATA / "genes.bed"), node.genes_dir / "GRCh38.parquet")
    return node


@pytest.fixture(scope="session")
def client(small_node: NodeDir, ontology: OntologyIndex) -> Iterator[TestClient]:
    with TestClient(create_app(small_node.root, ontology=ontology)) as test_client:
        yield test_client


@pytest.fixture
def node_client(ontology: OntologyIndex) -> Callable[[Path], TestClient]:
    def build(root: Path) -> TestClient:
        return TestClient(create_app(root, ontology=ontology))

    return build


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()
