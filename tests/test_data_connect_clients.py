"""Real clients against a live node (``genofed node serve`` on 127.0.0.1): DNAstack's
DataConnectClient, schemathesis over the official OpenAPI document, and every response
checked against the official schemas."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import jsonschema
import pytest
import yaml

from genofed.store.registered_tables import register_table
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf
from tests.conftest import SMALL_CLINICAL, SMALL_VCF, make_node
from tests.live_server import start_node_server
from tests.shared_data import SHARED, needs_shared
from tests.test_data_connect_api import node_with_table, write_clinical

pytestmark = pytest.mark.servers  # real processes on 127.0.0.1

SCHEMATHESIS = str(Path(sys.executable).with_name("st"))
SPEC = SHARED / "specs" / "data-connect" / "api.yaml"
SERVICE_INFO = SHARED / "specs" / "service-info" / "service-info.yaml"
REMOTE_SERVICE = (
    "https://raw.githubusercontent.com/ga4gh-discovery/ga4gh-service-info/v1.0.0/"
    "service-info.yaml#/components/schemas/Service"
)
DRAFT_07 = "http://json-schema.org/draft-07/schema#"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("dc-live")
    node = make_node(root / "node")
    ingest_vcf(
        node,
        "small",
        SMALL_VCF,
        assembly="GRCh38",
        individuals=SMALL_CLINICAL,
        settings=DatasetSettings(granularity="record", tier="public"),
    )
    write_clinical(root / "clinical.csv")
    register_table(node, "cohort:2024.clinical", root / "clinical.csv", tier="public")
    server, base = start_node_server(
        node.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield base, root
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_dnastack_client_lists_reads_and_queries(live: tuple[str, Path]) -> None:
    from dnastack.client.data_connect import DataConnectClient
    from dnastack.client.models import ServiceEndpoint

    base, root = live
    client = DataConnectClient.make(ServiceEndpoint(url=f"{base}/data-connect/"))
    names = {t.name for t in client.list_tables()}
    assert {"small.variants", "small.individuals", "cohort:2024.clinical"} <= names

    info = client.table("small.variants").info
    assert "ac" in info.data_model["properties"]
    rows = list(client.table("small.variants").data)
    with httpx.Client() as http:
        count = http.post(
            f"{base}/data-connect/search",
            json={"query": "SELECT count(*) AS n FROM small.variants"},
        ).json()["data"][0]["n"]
    assert len(rows) == int(count) > 0
    assert {"chrom", "pos", "ref", "alt"} <= set(rows[0])

    query = (
        'SELECT sex, count(*) AS n, sum(age) AS years FROM "cohort:2024.clinical" '
        "GROUP BY sex ORDER BY sex"
    )
    got = list(client.query(query))
    expected = duckdb.sql(query.replace('"cohort:2024.clinical"', f"'{root / 'clinical.csv'}'"))
    assert [(r["sex"], r["n"], r["years"]) for r in got] == expected.fetchall()


def _local_spec() -> dict[str, Any]:
    """The official api.yaml with its remote references pointed at local copies."""
    spec = yaml.safe_load(SPEC.read_text())
    service = yaml.safe_load(SERVICE_INFO.read_text())["components"]["schemas"]
    spec["components"]["schemas"].update(service)
    # The open test node needs no credentials; with `security` declared, schemathesis
    # sends made-up bearer tokens, which the node rightly refuses with 401.
    spec.pop("security", None)

    def local(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("$ref") == REMOTE_SERVICE:
                return {"$ref": "#/components/schemas/Service"}
            if node.get("$ref") == DRAFT_07:
                return {"type": "object"}  # a JSON Schema document is a JSON object
            return {k: local(v) for k, v in node.items()}
        if isinstance(node, list):
            return [local(v) for v in node]
        return node

    return local(spec)


@needs_shared
def test_responses_match_the_official_schemas(live: tuple[str, Path]) -> None:
    base, _ = live
    spec = _local_spec()
    schemas = spec["components"]["schemas"]

    def check(name: str, body: Any) -> None:
        schema = {**schemas[name], "components": {"schemas": schemas}}
        text = yaml.safe_dump(schema).replace("#/components/schemas/", "#/components/schemas/")
        jsonschema.validate(body, yaml.safe_load(text))

    with httpx.Client(base_url=f"{base}/data-connect") as http:
        check("ListTablesResponse", http.get("/tables").json())
        check("Table", http.get("/table/cohort:2024.clinical/info").json())
        check("TableData", http.get("/table/small.individuals/data").json())
        page = http.post(
            "/search",
            json={
                "query": 'SELECT id, age FROM "cohort:2024.clinical" WHERE age > ?',
                "parameters": [50],
            },
        ).json()
        check("TableData", page)
        check("ErrorResponse", http.post("/search", json={"query": "DROP TABLE x"}).json())
        check("Service", http.get("/service-info").json())


@needs_shared
def test_schemathesis_finds_no_server_errors_or_schema_violations(
    live: tuple[str, Path], tmp_path: Path
) -> None:
    base, _ = live
    spec_file = tmp_path / "data-connect.yaml"
    spec_file.write_text(yaml.safe_dump(_local_spec()))
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            str(spec_file),
            "--url",
            f"{base}/data-connect",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # schemathesis keeps a cache in its working directory
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_pages_are_served_by_any_worker(tmp_path: Path) -> None:
    """With two server workers, the pages of one result are fetched over fresh
    connections, which the kernel hands to either worker: a worker must serve pages that
    the other's query thread wrote to the spool."""
    node = node_with_table(tmp_path, "t", 300, page_rows=7)
    server, base = start_node_server(
        node.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, workers=2
    )
    try:
        for _ in range(3):
            ids: list[str] = []
            page = httpx.post(
                f"{base}/data-connect/search", json={"query": "SELECT id FROM t ORDER BY id"}
            ).json()
            while True:
                ids += [row["id"] for row in page["data"]]
                url = page["pagination"].get("next_page_url")
                if not url:
                    break
                page = httpx.get(base + url).json()  # a new connection each time
            assert ids == [f"P{i:04d}" for i in range(300)]
    finally:
        server.terminate()
        server.wait(timeout=15)
