"""Parallel ingest: each contig of an indexed VCF.gz is a partition on a dask worker,
finalised into one dataset version that equals the one-process ingest's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pytest
import zarr

from genofed import IngestError
from genofed.store.dosages import Compute
from genofed.store.node_dir import NodeDir
from genofed.store.vcf_ingest import ingest_vcf
from tests.conftest import make_node
from tests.test_vcf_ingest import tree_digest

pytestmark = pytest.mark.skipif(
    not (shutil.which("bgzip") and shutil.which("tabix") and shutil.which("bcftools")),
    reason="needs bgzip, tabix and bcftools (apt-get install tabix bcftools)",
)

CONTIGS = {"1": 248956422, "2": 242193529, "7": 159345973, "X": 156040895}


def write_contigs_vcf(
    path: Path, n_samples: int = 23, per_contig: int = 900, bad: str = ""
) -> Path:
    """Four contigs in GATK's joint-call layout, multi-allelic sites and missing calls
    among them; ``bad`` puts an invalid genotype on the last contig. Compressed with bgzip
    and indexed with tabix (``.tbi``); the caller may add bcftools' ``.csi``."""
    rng = np.random.default_rng(11)
    lines = ["##fileformat=VCFv4.2"]
    lines += [f"##contig=<ID={c},length={n}>" for c, n in CONTIGS.items()]
    lines.append(
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t"
        + "\t".join(f"P{i}" for i in range(n_samples))
    )
    for contig in CONTIGS:
        positions = np.sort(rng.choice(5_000_000, per_contig, replace=False)) + 1
        for k, pos in enumerate(positions.tolist()):
            n_alts = 2 if k % 7 == 0 else 1
            cells = []
            for _ in range(n_samples):
                a, b = rng.integers(0, n_alts + 1, 2)
                gt = "./." if rng.random() < 0.05 else f"{a}/{b}"
                depth = int(rng.integers(5, 60))
                cells.append(f"{gt}:{depth},{depth // 2}:{depth}:{min(depth, 99)}:0,{depth},99")
            alt = "C,G" if n_alts == 2 else "C"
            lines.append(
                f"{contig}\t{pos}\t.\tA\t{alt}\t.\tPASS\t.\tGT:AD:DP:GQ:PL\t" + "\t".join(cells)
            )
    if bad:
        lines[-1] = lines[-1].replace("\t0/1:", f"\t{bad}:", 1)
    path.write_text("\n".join(lines) + "\n")
    subprocess.run(["bgzip", "-f", str(path)], check=True)
    gz = path.with_name(path.name + ".gz")
    subprocess.run(["tabix", "-f", "-p", "vcf", str(gz)], check=True)
    return gz


def dataset_contents(node: NodeDir, dataset: str) -> dict:
    """Every table, the genotype matrix and the position index of a dataset version, with
    the creation time left out."""
    version = node.dataset(dataset)
    con = duckdb.connect(str(version.database), read_only=True)
    tables = {
        t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
        for t in ("variants", "samples", "entry_terms", "entry_values")
    }
    tables["entry_values"] = [r for r in tables["entry_values"] if "DateTime" not in r[2]]
    tables["variant order"] = con.execute("SELECT variant_idx, site_idx FROM variants").fetchall()
    meta = json.loads(con.execute("SELECT doc FROM meta").fetchone()[0])
    meta.pop("created")
    entries = [
        {k: v for k, v in json.loads(doc).items() if not k.endswith("DateTime")}
        for (doc,) in con.execute("SELECT doc FROM entries ORDER BY entity, id").fetchall()
    ]
    con.close()
    root = version.database.parent
    genotypes = zarr.open_array(str(root / "genotypes.zarr"), path="call_genotype")
    return {
        "tables": tables,
        "meta": meta,
        "entries": entries,
        "genotypes": np.asarray(genotypes[:]).tobytes(),
        "genotype shape": genotypes.shape,
        "positions": (root / "positions.arrow").read_bytes(),
        "files": sorted(p.name for p in root.iterdir()),
    }


def fresh_node(root: Path) -> NodeDir:
    return make_node(root, governed=True)


@pytest.mark.parametrize("index", ["tbi", "csi"])
def test_two_workers_give_the_same_dataset_as_one(tmp_path: Path, index: str) -> None:
    vcf = write_contigs_vcf(tmp_path / "four.vcf", n_samples=7, per_contig=9_000)
    if index == "csi":
        vcf.with_name(vcf.name + ".tbi").unlink()
        subprocess.run(["bcftools", "index", "-f", str(vcf)], check=True)
    one, two = fresh_node(tmp_path / "one"), fresh_node(tmp_path / "two")
    serial = ingest_vcf(one, "d", vcf, assembly="GRCh38")
    parallel = ingest_vcf(two, "d", vcf, assembly="GRCh38", workers=2)
    assert (parallel.n_sites, parallel.n_variants) == (serial.n_sites, serial.n_variants)
    assert serial.n_variants > serial.n_sites == 4 * 9_000  # multi-allelic sites were split
    a, b = dataset_contents(one, "d"), dataset_contents(two, "d")
    assert a["files"] == b["files"] == ["dataset.duckdb", "genotypes.zarr", "positions.arrow"]
    for key in a:
        assert a[key] == b[key], key
    assert a["meta"]["contigs"] == ["1", "2", "7", "X"]


def test_a_dask_distributed_scheduler_runs_the_partitions(tmp_path: Path) -> None:
    from distributed import LocalCluster

    vcf = write_contigs_vcf(tmp_path / "four.vcf", per_contig=300)
    one, two = fresh_node(tmp_path / "one"), fresh_node(tmp_path / "two")
    ingest_vcf(one, "d", vcf, assembly="GRCh38")
    with LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster:
        ingest_vcf(two, "d", vcf, assembly="GRCh38", compute=Compute(cluster.scheduler_address))
    assert dataset_contents(one, "d") == dataset_contents(two, "d")


def test_an_error_in_one_partition_leaves_the_node_unchanged(tmp_path: Path) -> None:
    vcf = write_contigs_vcf(tmp_path / "bad.vcf", per_contig=200, bad="0/x")
    node = fresh_node(tmp_path / "node")
    before = tree_digest(node.root)
    with pytest.raises(IngestError) as excinfo:
        ingest_vcf(node, "d", vcf, assembly="GRCh38", workers=2)
    text = str(excinfo.value)
    assert "genotype '0/x'" in text and "contig X record 200" in text and "bad.vcf.gz" in text
    assert tree_digest(node.root) == before


def test_a_parallel_ingest_says_what_it_needs(tmp_path: Path) -> None:
    vcf = write_contigs_vcf(tmp_path / "plain.vcf", per_contig=20)
    node = fresh_node(tmp_path / "node")
    vcf.with_name(vcf.name + ".tbi").unlink()
    with pytest.raises(IngestError, match="needs the VCF's index.*tabix -p vcf"):
        ingest_vcf(node, "d", vcf, assembly="GRCh38", workers=2)
    plain = tmp_path / "plain.txt.vcf"
    with plain.open("wb") as out:
        subprocess.run(["bgzip", "-d", "-c", str(vcf)], stdout=out, check=True)
    with pytest.raises(IngestError, match=r"BGZF-compressed VCF \(.vcf.gz\)"):
        ingest_vcf(node, "d", plain, assembly="GRCh38", workers=2)


def test_an_index_without_record_counts_is_finalised_by_copying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without htslib's per-contig record counts the partitions cannot know their offsets:
    each writes its own genotypes and the finaliser copies them into the dataset's."""
    from dataclasses import replace

    from genofed.store import vcf_ingest

    counted = vcf_ingest.contig_starts
    monkeypatch.setattr(
        vcf_ingest,
        "contig_starts",
        lambda *a: [replace(s, records=None) for s in counted(*a)],
    )
    vcf = write_contigs_vcf(tmp_path / "four.vcf", n_samples=5, per_contig=5_000)
    one, two = fresh_node(tmp_path / "one"), fresh_node(tmp_path / "two")
    ingest_vcf(one, "d", vcf, assembly="GRCh38")
    ingest_vcf(two, "d", vcf, assembly="GRCh38", workers=2)
    assert dataset_contents(one, "d") == dataset_contents(two, "d")
