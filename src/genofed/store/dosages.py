"""ALT dosages of a dataset's split alleles, read from ``genotypes.zarr`` in blocks with
dask.

The dosage of a split allele (a row of the variants table: ``site_idx``, ``allele_idx``)
is how many of an individual's calls at the site are that ALT allele: 0, 1 or 2 for a
diploid call. A call with a missing allele (``-1``) makes the dosage missing (NaN); the
padding of a haploid call (``-2``) is no allele. Only one block of variants is in memory
at a time, whatever the cohort's size, and the Zarr is read chunk by chunk, on this
process's threads or on a ``dask.distributed`` cluster (``Compute``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd

from genofed._exceptions import QueryError
from genofed.store.dataset_reader import DatasetReader

MISSING = -1
# Dosages of one block (variants x people, float64) are kept near this many bytes.
BLOCK_BYTES = 64 * 2**20
# Variants summed at a time by ``sums`` (a Zarr chunk holds 4096 sites).
SUMS_VARIANTS = 4096


@dataclass(frozen=True)
class Compute:
    """Where dask runs: this process's threads (``scheduler`` None), or the address of a
    ``dask.distributed`` scheduler (``tcp://host:8786``): node.yaml's ``compute``."""

    scheduler: str | None = None
    threads: int | None = None

    @classmethod
    def of(cls, settings: Any) -> Compute:
        """From node.yaml's ``compute`` section (``config.Compute``)."""
        return cls(settings.dask_scheduler, settings.threads)

    def compute(self, *arrays: Any) -> tuple[Any, ...]:
        if self.scheduler is None:
            return dask.compute(*arrays, scheduler="threads", num_workers=self.threads)
        from distributed import Client  # only a node that points at a cluster needs it

        with Client(self.scheduler, set_as_default=False) as client:
            return tuple(client.compute(list(arrays), sync=True))


_REGION = re.compile(r"^(?:chr)?([0-9XYMT]{1,2}|[A-Za-z0-9_.]{1,20}):(\d+)-(\d+)$")
_COLUMNS = "variant_id, chrom, pos, ref, alt, site_idx, allele_idx"


def parse_region(region: str) -> tuple[str, int, int]:
    """``chr22:16000000-17000000`` (1-based, inclusive) as (chrom, start, end)."""
    match = _REGION.match(region.strip())
    if match is None or int(match.group(2)) > int(match.group(3)):
        raise QueryError(f"a region is chrom:start-end (22:16000000-17000000), not {region!r}")
    return match.group(1), int(match.group(2)), int(match.group(3))


def variant_rows(
    reader: DatasetReader, region: str | None = None, ids: list[str] | None = None
) -> pd.DataFrame:
    """The dataset's split alleles with genotypes (symbolic ALTs such as ``<DEL>`` left
    out), in ``region`` or of the variant ``ids``, in genome order."""
    where, params = ["an > 0", "alt NOT LIKE '<%'"], []
    if region is not None:
        chrom, start, end = parse_region(region)
        where.append("chrom = ? AND pos BETWEEN ? AND ?")
        params += [chrom, start, end]
    if ids is not None:
        where.append("variant_id IN (SELECT unnest(?))")
        params.append(list(ids))
    sql = f"SELECT {_COLUMNS} FROM variants WHERE {' AND '.join(where)} ORDER BY variant_idx"
    return reader.cursor().execute(sql, params).df()


def genotype_array(genotypes: Path) -> da.Array:
    """The genotype matrix (sites x samples x ploidy, int8) as a dask array of the Zarr's
    chunks."""
    return da.from_zarr(str(genotypes / "call_genotype"))


def dosages(
    calls: da.Array, site_idx: np.ndarray, allele_idx: np.ndarray, columns: np.ndarray
) -> da.Array:
    """The dosages (people x variants, float64, NaN where missing) of the split alleles
    ``(site_idx, allele_idx)`` for the genotype-matrix ``columns`` (the people, in order),
    lazily."""
    sites = calls[np.asarray(site_idx, dtype=np.int64)][:, np.asarray(columns, dtype=np.int64)]
    alleles = da.from_array(np.asarray(allele_idx, dtype=np.int8)[:, None, None])
    count = (sites == alleles).sum(axis=-1).astype(np.float64)
    missing = (sites == MISSING).any(axis=-1)
    return da.where(missing, np.nan, count).T


@functools.cache
def _diploid_table(allele: int) -> np.ndarray:
    """The dosage of ``allele`` (or -1: a missing allele) of every diploid call, indexed by
    the call's two int8 codes read as one uint16 (in memory order, so any endianness)."""
    pairs = np.arange(65536, dtype=np.uint16).view(np.int8).reshape(-1, 2)
    table = (pairs == allele).sum(axis=1).astype(np.int8)
    table[(pairs == MISSING).any(axis=1)] = -1
    return table


def _alt_counts(calls: np.ndarray, alleles: np.ndarray) -> np.ndarray:
    """Each call's count of its variant's allele (variants x people, int8; -1 missing)."""
    if calls.shape[2] == 2:  # diploid: one table look-up per call
        pairs = np.ascontiguousarray(calls).view(np.uint16)[:, :, 0]
        counts = np.empty(pairs.shape, dtype=np.int8)
        for allele in np.unique(alleles):
            rows = alleles == allele
            counts[rows] = np.take(_diploid_table(int(allele)), pairs[rows])
        return counts
    counts = np.zeros(calls.shape[:2], dtype=np.int8)
    missing = np.zeros(calls.shape[:2], dtype=bool)
    for copy in range(calls.shape[2]):
        allele = calls[:, :, copy]
        counts += (allele == alleles.astype(np.int8)[:, None]).view(np.int8)
        missing |= allele == MISSING
    counts[missing] = -1
    return counts


def _chunk_sums(
    codes: np.ndarray, rows: np.ndarray, alleles: np.ndarray, d: np.ndarray, e: np.ndarray
) -> np.ndarray:
    """``[G0ᵀD, (G0∘G0)ᵀe, MᵀD]`` (v x 2q+1) of one chunk of people: ``codes`` their
    genotype codes at the sites (sites x people x ploidy), ``rows`` each variant's site
    row, ``alleles`` its allele, ``d`` and ``e`` these people's rows of D and e.

    Decoded in int8 (a table look-up per diploid call) and summed with one BLAS product,
    so a block never exists as a people x variants matrix of float64 with NaNs (that
    costs ten times as much here)."""
    calls = codes[rows] if len(rows) != len(codes) or np.any(np.diff(rows) != 1) else codes
    counts = _alt_counts(calls, alleles)
    g = counts.astype(np.float64)
    some = (counts < 0).any(axis=1)  # variants with a missing call
    if some.any():
        np.maximum(g, 0.0, out=g)
    gd = g @ d
    np.square(g, out=g)
    gg = g @ e
    md = np.zeros_like(gd)
    if some.any():
        md[some] = (counts[some] < 0).astype(np.float64) @ d
    return np.column_stack([gd, gg, md])


def _add(*parts: np.ndarray) -> np.ndarray:
    return np.sum(parts, axis=0)


def sums(
    calls: da.Array,
    site_idx: np.ndarray,
    allele_idx: np.ndarray,
    d: np.ndarray,
    e: np.ndarray,
    compute: Compute,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(G0ᵀD, (G0∘G0)ᵀe, MᵀD)`` of the split alleles ``(site_idx, allele_idx)`` over all
    the genotype-matrix columns: ``d`` (columns x q) and ``e`` (columns) are zero for the
    people not in the analysis. G0 are the dosages with missing calls as 0, M the 0/1
    missingness. Read ``SUMS_VARIANTS`` variants at a time, one dask task per chunk of
    people each: memory is bounded by a chunk, not by the cohort or the region."""
    site_idx = np.asarray(site_idx, dtype=np.int64)
    # pieces that end where a Zarr chunk of sites ends, so each chunk is decoded once
    chunk = calls.chunks[0][0] if calls.chunks[0] else 1
    edges = np.flatnonzero(np.diff(site_idx // chunk) != 0) + 1
    out = [_block_sums(calls, site_idx[:0], np.asarray(allele_idx)[:0], d, e, compute)]
    for piece in np.split(np.arange(len(site_idx)), edges):
        for i in range(0, len(piece), SUMS_VARIANTS):
            part = piece[i : i + SUMS_VARIANTS]
            out.append(_block_sums(calls, site_idx[part], np.asarray(allele_idx)[part], d, e,
                                   compute))  # fmt: skip
    return tuple(np.concatenate(parts) for parts in zip(*out, strict=True))  # type: ignore[return-value]


def _block_sums(
    calls: da.Array,
    site_idx: np.ndarray,
    allele_idx: np.ndarray,
    d: np.ndarray,
    e: np.ndarray,
    compute: Compute,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sums`` of one block of variants: one dask task per chunk of people, each reading
    its chunks of the block's sites; the tasks' results summed."""
    alleles = np.asarray(allele_idx, dtype=np.int8)
    q = d.shape[1]
    if len(site_idx) == 0:
        empty = np.zeros((0, q))
        return empty, np.zeros(0), empty
    unique, rows = np.unique(site_idx, return_inverse=True)
    lo, hi = int(unique[0]), int(unique[-1]) + 1
    if hi - lo <= 2 * len(unique):  # a block in genome order: read the sites' range
        sites, rows = calls[lo:hi], site_idx - lo
    else:
        sites = calls[unique]
    parts, start = [], 0
    for width in sites.chunks[1]:
        stop = start + width
        if e[start:stop].any() or d[start:stop].any():
            piece = sites[:, start:stop]
            parts.append(
                dask.delayed(_chunk_sums)(piece, rows, alleles, d[start:stop], e[start:stop])
            )
        start = stop
    if not parts:
        empty = np.zeros((len(site_idx), q))
        return empty, np.zeros(len(site_idx)), empty.copy()
    (total,) = compute.compute(dask.delayed(_add)(*parts))
    return total[:, :q], total[:, q], total[:, q + 1 :]


def block_size(people: int) -> int:
    """Variants per block so that a block's dosages stay near ``BLOCK_BYTES``."""
    return int(max(16, min(4096, BLOCK_BYTES // (8 * max(people, 1)))))


def blocks(
    calls: da.Array,
    site_idx: np.ndarray,
    allele_idx: np.ndarray,
    columns: np.ndarray,
    compute: Compute,
    size: int | None = None,
) -> Iterator[tuple[slice, np.ndarray]]:
    """``(which variants, their dosages)`` block by block, in the order given."""
    size = size or block_size(len(columns))
    for start in range(0, len(site_idx), size):
        part = slice(start, min(start + size, len(site_idx)))
        (block,) = compute.compute(dosages(calls, site_idx[part], allele_idx[part], columns))
        yield part, np.asarray(block)
