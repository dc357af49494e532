"""Concurrent ingests lost data: four ``node ingest`` at once, five rounds; one exited 0
but its dataset was missing from ``catalog.json`` (its version orphaned on disk), another
failed on the shared ``catalog.json.tmp``. Killed ingests left ``.staging-*`` behind."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from genofed.config import default_config
from genofed.simulate import simulate_cohort
from genofed.store.node_dir import NodeDir
from tests.live_server import GENOFED


def ingest(root: Path, dataset: str, vcf: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            GENOFED,
            "node",
            "ingest",
            str(root),
            "--dataset",
            dataset,
            "--vcf",
            str(vcf),
            "--assembly",
            "GRCh38",
            "--tier",
            "public",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_four_ingests_at_once_all_land(tmp_path: Path) -> None:
    node = NodeDir.create(tmp_path / "node", default_config("busy"))
    cohort = simulate_cohort(tmp_path / "data", n_samples=20, n_sites=200, seed=3)
    for round_ in range(3):
        names = [f"d{round_}-{i}" for i in range(4)] + ["shared"]  # and one id twice
        running = [ingest(node.root, name, cohort.vcf) for name in names + ["shared"]]
        for process in running:
            _, err = process.communicate(timeout=300)
            assert process.returncode == 0, err
        catalog = json.loads(node.catalog_path.read_text())["datasets"]
        for name in names:
            assert name in catalog, (round_, name, sorted(catalog))
            assert (node.root / catalog[name]["path"] / "dataset.duckdb").is_file()
    for dataset in (node.root / "datasets").iterdir():
        versions = [p for p in dataset.iterdir() if p.name.startswith("v")]
        assert catalog[dataset.name]["version"] in {v.name for v in versions}
        assert not list(dataset.glob(".staging-*"))
    assert not list(node.root.glob(".catalog.json.*")) and not list(node.root.glob("*.tmp"))


def test_a_killed_ingests_staging_folder_is_removed_by_the_next(tmp_path: Path) -> None:
    node = NodeDir.create(tmp_path / "node", default_config("killed"))
    cohort = simulate_cohort(tmp_path / "data", n_samples=200, n_sites=20_000, seed=4)
    victim = ingest(node.root, "big", cohort.vcf)
    folder = node.root / "datasets" / "big"
    deadline = time.monotonic() + 60
    while not list(folder.glob(".staging-*")):
        assert time.monotonic() < deadline and victim.poll() is None, "no staging folder seen"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert list(folder.glob(".staging-*"))  # what a killed ingest leaves behind
    again = ingest(node.root, "big", cohort.vcf)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert not list(folder.glob(".staging-*"))
    assert "big" in json.loads(node.catalog_path.read_text())["datasets"]
