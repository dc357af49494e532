"""ALT dosages read from a dataset's genotype Zarr with dask (``genofed.store.dosages``):
equal to the VCF's genotypes for each split allele, in blocks, on threads and on a
``dask.distributed`` cluster."""

from __future__ import annotations

import numpy as np
import pytest

from genofed.store.dataset_reader import DatasetReader
from genofed.store.dosages import Compute, blocks, genotype_array
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
            remote = _dosages(reader, Compute(scheduler=cluster.scheduler_address), size=4)
        local = _dosages(reader, Compute(threads=2), size=4)
    finally:
        reader.close()
    assert remote.keys() == local.keys()
    for key in local:
        np.testing.assert_array_equal(remote[key], local[key])
