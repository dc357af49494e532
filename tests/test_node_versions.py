"""Old dataset versions on disk: ``genofed node datasets`` lists them with what a
running server still reads, and ``genofed node prune`` removes only what no reader
holds. A real server process holds a version; the live version is never removed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import SMALL_CLINICAL, SMALL_VCF
from tests.live_server import start_node_server
from tests.test_cli_input import run


@pytest.fixture
def node(tmp_path: Path) -> Path:
    root = tmp_path / "node"
    assert run("node", "init", str(root), "--name", "Test").returncode == 0
    return root


def _ingest(node: Path) -> None:
    result = run(
        "node",
        "ingest",
        str(node),
        "--dataset",
        "demo",
        "--vcf",
        str(SMALL_VCF),
        "--individuals",
        str(SMALL_CLINICAL),
        "--tier",
        "public",
    )
    assert result.returncode == 0, result.stderr


def _versions(node: Path) -> list[str]:
    return sorted(p.name for p in (node / "datasets" / "demo").iterdir() if p.name.startswith("v"))


def test_prune_removes_old_versions_no_server_reads(node: Path) -> None:
    _ingest(node)
    first = _versions(node)
    assert len(first) == 1
    server, base = start_node_server(node, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the server opens the live version (v1) and keeps reading it until it sees a new one
        assert httpx.get(f"{base}/beacon/v2/datasets", timeout=30).status_code == 200
        _ingest(node)
        _ingest(node)
        _ingest(node)
        versions = _versions(node)
        # publication keeps one old version besides the live one; v1 is kept because the
        # server holds it, even though it is older than that
        assert first[0] in versions and len(versions) == 3, versions
        live = versions[-1]

        listed = run("node", "datasets", str(node))
        assert listed.returncode == 0, listed.stderr
        lines = {v: line for line in listed.stderr.splitlines() for v in versions if v in line}
        assert "live" in lines[live]
        assert "old, in use" in lines[first[0]]
        assert "old, unused" in lines[versions[1]]
        assert "genofed node prune" in listed.stderr

        dry = run("node", "prune", str(node), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"Would remove demo {versions[1]}" in dry.stderr
        assert _versions(node) == versions  # a dry run removes nothing

        pruned = run("node", "prune", str(node))
        assert pruned.returncode == 0, pruned.stderr
        assert f"Removed demo {versions[1]}" in pruned.stderr
        assert f"Kept demo {first[0]}: a running server still reads it" in pruned.stderr
        assert _versions(node) == [first[0], live]
        # the server still answers from what it reads
        assert httpx.get(f"{base}/beacon/v2/datasets", timeout=30).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)

    pruned = run("node", "prune", str(node))
    assert pruned.returncode == 0, pruned.stderr
    assert f"Removed demo {first[0]}" in pruned.stderr
    assert _versions(node) == [live]  # the live version is never removed
    again = run("node", "prune", str(node))
    assert "Removed 0 old versions" in again.stderr
    assert _versions(node) == [live]


def test_datasets_and_prune_on_a_path_that_is_not_a_node(tmp_path: Path) -> None:
    for command in ("datasets", "prune"):
        result = run("node", command, str(tmp_path / "nonode"))
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert "genofed node init" in result.stderr, result.stderr
