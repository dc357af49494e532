"""A damaged catalogue or dataset made every endpoint answer 500, health included. A
damaged dataset is now left out and reported; the rest of the node keeps serving."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from genofed.store.node_dir import NodeDir
from tests.governance import build_governed_node
from tests.live_server import GENOFED, start_node_server


def truncate_catalog(node: NodeDir) -> str:
    text = node.catalog_path.read_text()
    node.catalog_path.write_text(text[: len(text) // 2])
    return "catalog.json is damaged (not JSON"


def catalog_without_version(node: NodeDir) -> str:
    catalog = json.loads(node.catalog_path.read_text())
    catalog["datasets"]["open"]["path"] = "datasets/open/v20000101T000000-gone"
    node.catalog_path.write_text(json.dumps(catalog))
    return "dataset open: "


def empty_database(node: NodeDir) -> str:
    node.dataset("open").database.write_bytes(b"")
    return "dataset open: "


@pytest.mark.parametrize(
    "damage", [truncate_catalog, catalog_without_version, empty_database], ids=lambda f: f.__name__
)
def test_a_damaged_dataset_is_left_out_and_the_node_keeps_serving(
    tmp_path: Path, damage: Callable[[NodeDir], str]
) -> None:
    gov = build_governed_node(tmp_path)
    node = gov.node
    expected = damage(node)
    server, base = start_node_server(node.root)
    try:
        health = httpx.get(f"{base}/-/health", timeout=10)
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert "genofed node check" in health.json()["detail"]
        info = httpx.get(f"{base}/beacon/v2/info", timeout=10)
        assert info.status_code == 200, info.text
        listed = httpx.get(f"{base}/beacon/v2/datasets", timeout=10)
        assert listed.status_code == 200, listed.text
        tables = httpx.get(f"{base}/data-connect/tables", timeout=10)
        assert tables.status_code == 200, tables.text
        served = {d["id"] for d in listed.json()["response"]["collections"]}
        assert "open" not in served
    finally:
        server.kill()
        server.wait()
    check = subprocess.run(
        [GENOFED, "node", "check", str(node.root)], capture_output=True, text=True, timeout=60
    )
    said = " ".join((check.stdout + check.stderr).split())
    assert check.returncode == 1
    assert "not served:" in said and expected in said
    assert "re-ingest" in said or "Restore it from a backup" in said


def test_the_other_datasets_are_still_answered(tmp_path: Path) -> None:
    gov = build_governed_node(tmp_path)
    empty_database(gov.node)
    server, base = start_node_server(gov.node.root)
    headers = {"Authorization": f"Bearer {gov.passport('reader', bona_fide=True)}"}
    try:
        listed = httpx.get(f"{base}/beacon/v2/datasets", headers=headers, timeout=10).json()
        served = {d["id"] for d in listed["response"]["collections"]}
        assert "reg" in served and "open" not in served, served
        counted = httpx.get(
            f"{base}/beacon/v2/individuals",
            params={"datasets": "reg", "requestedGranularity": "count"},
            headers=headers,
            timeout=10,
        )
        assert counted.status_code == 200 and counted.json()["responseSummary"]["exists"]
    finally:
        server.kill()
        server.wait()
