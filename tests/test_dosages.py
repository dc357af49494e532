"""ALT dosages read from a dataset's genotype Zarr with dask (``genofed.store.dosages``):
equal to the VCF's genotypes for each split allele, in blocks, on threads and on a
``dask.distributed`` cluster."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from genofed.store.dataset_reader import DatasetReader
from genofed.store.dosages import Compute, Genotypes, blocks, genotype_array
from genofed.store.node_dir import NodeDir
from tests.conftest import SMALL_VCF


def _expected() -> dict[tuple[int, str], list[float]]:
    """(POS, ALT) -> dosage per sample, read from the VCF text."""
    out = {}
    for line in SMALL_VCF.read_text().splitlines():
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        pos, alts = int(fields[1]), fields[4].split(",")
        for a, alt in enumerate(alts, start=1):
            row = []
            for call in fields[9:]:
                alleles = call.split(":")[0].replace("|", "/").split("/")
                row.append(np.nan if "." in alleles else float(alleles.count(str(a))))
            out[(pos, alt)] = row
    return out


def _dosages(reader: DatasetReader, compute: Compute, size: int) -> dict[tuple[int, str], list]:
    rows = (
        reader.cursor()
        .execute("SELECT pos, alt, site_idx, allele_idx FROM variants ORDER BY variant_idx")
        .fetchall()
    )
    sites = np.array([r[2] for r in rows])
    alleles = np.array([r[3] for r in rows])
    columns = np.arange(len(reader.samples))
    calls = genotype_array(reader.version.genotypes)
    out = {}
    for part, block in blocks(calls, sites, alleles, columns, compute, size=size):
        for j, (pos, alt, _, _) in enumerate(rows[part]):
            out[(pos, alt)] = block[:, j].tolist()
    return out


def test_dosages_are_the_vcf_genotypes_of_each_split_allele(small_node: NodeDir) -> None:
    reader = DatasetReader(small_node.dataset("small"))
    try:
        got = _dosages(reader, Compute(), size=3)  # blocks smaller than the dataset
    finally:
        reader.close()
    expected = _expected()
    assert set(got) == set(expected)
    for key, row in expected.items():
        np.testing.assert_array_equal(got[key], row, err_msg=str(key))
    assert np.isnan(got[(16050115, "T")][4]) and got[(16050115, "T")][2] == 2.0


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")
def test_a_dask_distributed_cluster_gives_the_same_dosages(small_node: NodeDir) -> None:
    from distributed import LocalCluster

    reader = DatasetReader(small_node.dataset("small"))
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster:  # fmt: skip
            remote_compute = Compute(scheduler=cluster.scheduler_address)
            remote = _dosages(reader, remote_compute, size=4)
            remote_sums = _sums(reader, remote_compute)
        local = _dosages(reader, Compute(threads=2), size=4)
        local_sums = _sums(reader, Compute(threads=2))
    finally:
        reader.close()
    assert remote.keys() == local.keys()
    for key in local:
        np.testing.assert_array_equal(remote[key], local[key])
    for got, expected in zip(remote_sums, local_sums, strict=True):
        np.testing.assert_array_equal(got, expected)


def _sums(reader: DatasetReader, compute: Compute) -> tuple[np.ndarray, ...]:
    from genofed.store.dosages import sums

    sql = "SELECT site_idx, allele_idx FROM variants ORDER BY variant_idx"
    sites, alleles = zip(*reader.cursor().execute(sql).fetchall(), strict=True)
    people = len(reader.samples)
    d = np.column_stack([np.ones(people), np.arange(people, dtype=float)])
    return sums(Genotypes.open(reader.version.genotypes), np.array(sites), np.array(alleles),
                d, np.ones(people), compute)  # fmt: skip


def _reference_dosages(codes: np.ndarray, sites: np.ndarray, alleles: np.ndarray) -> np.ndarray:
    """people x variants, NaN where a call has a missing allele, by plain loops."""
    out = np.zeros((codes.shape[1], len(sites)))
    for j, (site, allele) in enumerate(zip(sites, alleles, strict=True)):
        for person in range(codes.shape[1]):
            call = codes[site, person]
            out[person, j] = np.nan if (call == -1).any() else float((call == allele).sum())
    return out


@pytest.mark.parametrize("missing", [0.08, 0.004])  # MᵀD as a product, and call by call
@pytest.mark.parametrize("sites", [[0, 0, 1, 2, 3, 4, 5, 6], [1, 6, 6], [2]])
def test_block_sums_equal_the_sums_of_the_dosages(
    sites: list[int], missing: float, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``sums`` (chunk by chunk of a Zarr, a few variants at a time, haploid padding and
    missing alleles, people left out by zero rows) equals ``gwas.dosage_sums`` of the
    dosage matrix of the people in the analysis."""
    from genofed.analysis import gwas
    from genofed.store import dosages

    monkeypatch.setattr(dosages, "_PIECE", 2)  # several pieces within a chunk of sites
    rng = np.random.default_rng(5)
    people = 300
    codes = rng.integers(0, 3, size=(7, people, 2)).astype(np.int8)
    codes[rng.random(codes.shape) < missing] = -1
    codes[3, 4, 1] = -2  # a haploid call
    codes[2, 7] = [-1, 1]  # half missing: missing
    site_idx = np.array(sites)
    alleles = np.array([1, 2, 1, 1, 2, 1, 1, 2][: len(sites)])
    zarr.create_array(tmp_path / "genotypes.zarr" / "call_genotype", data=codes,
                      chunks=(3, 64, 2))  # fmt: skip
    calls = Genotypes.open(tmp_path / "genotypes.zarr")
    keep = np.setdiff1d(np.arange(people), [3, 6, 9, 100, 250])  # not in the analysis
    d = rng.normal(size=(len(keep), 4))
    e = rng.random(len(keep))
    d_all, e_all = np.zeros((people, 4)), np.zeros(people)
    d_all[keep], e_all[keep] = d, e
    gd, gg, md = dosages.sums(calls, site_idx, alleles, d_all, e_all, Compute(threads=2))
    expected = gwas.dosage_sums(_reference_dosages(codes, site_idx, alleles)[keep], d, e)
    np.testing.assert_allclose(gd, expected.gd, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gg, expected.gg, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(md, expected.md, rtol=1e-12, atol=1e-12)
    assert md.any()  # some missing calls were in the analysis


def test_a_chunk_is_decoded_once_for_threads_that_ask_at_once_and_evicted_past_the_limit() -> None:
    """The chunk cache: concurrent readers of one chunk share one read; a failed read is
    not kept (the next one reads again); least recently used chunks go past the limit."""
    from genofed.store.dosages import ChunkCache

    cache = ChunkCache(limit=3 * 800)
    reads: list[str] = []

    def read(key: str) -> np.ndarray:
        reads.append(key)
        time.sleep(0.05)  # the other threads ask while this one reads
        return np.zeros(100)  # 800 bytes

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(("a",), lambda: read("a"))))
               for _ in range(4)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reads == ["a"] and len(got) == 4 and all(g is got[0] for g in got)
    assert not got[0].flags.writeable  # shared: read-only

    def fail() -> np.ndarray:
        raise OSError("unreadable")

    with pytest.raises(OSError, match="unreadable"):
        cache.get(("b",), fail)
    cache.get(("b",), lambda: read("b"))
    assert reads == ["a", "b"]
    for key in ("c", "d"):  # a, b, c fit; d pushes out a, the least recently used
        cache.get((key,), lambda key=key: read(key))
    cache.get(("b",), lambda: read("b"))
    cache.get(("a",), lambda: read("a"))
    assert reads == ["a", "b", "c", "d", "a"]
