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
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import zarr

from genofed._exceptions import QueryError
from genofed.store.dataset_reader import DatasetReader

MISSING = -1
# Dosages of one block (variants x people, float64) are kept near this many bytes.
BLOCK_BYTES = 64 * 2**20
# Decoded genotype chunks a process keeps (``ChunkCache``): a GWAS's blocks of variants
# do not end where the Zarr's chunks of sites end, so consecutive blocks (several in
# flight) share chunks; decoding is most of the work of a block.
CHUNK_CACHE_BYTES = 256 * 2**20


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
_COLUMNS = "variant_id, vcf_id, chrom, pos, ref, alt, site_idx, allele_idx"


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
    out), in ``region`` or of the variant ``ids`` (``chrom-pos-ref-alt``, or the VCF's
    own ID such as an rsID), in genome order."""
    where, params = ["an > 0", "alt NOT LIKE '<%'"], []
    if region is not None:
        chrom, start, end = parse_region(region)
        where.append("chrom = ? AND pos BETWEEN ? AND ?")
        params += [chrom, start, end]
    if ids is not None:
        # an rsID is looked up in the VCF's own IDs (and only an rsID: a VCF may give a
        # multi-allelic site's alleles one ID that looks like one of our variant ids)
        rsids = [i for i in ids if re.fullmatch(r"rs[0-9]+", i)]
        where.append("(variant_id IN (SELECT unnest(?)) OR vcf_id IN (SELECT unnest(?)))")
        params += [list(ids), rsids]
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


class ChunkCache:
    """Decoded chunks, least recently used first out past ``limit`` bytes. A chunk asked
    for by several threads at once is decoded once: the others wait for it."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._chunks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._pending: dict[tuple, Future[np.ndarray]] = {}
        self._bytes = 0

    def get(self, key: tuple, read: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            chunk = self._chunks.get(key)
            if chunk is not None:
                self._chunks.move_to_end(key)
                return chunk
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = future = Future()
        if pending is not None:
            return pending.result()
        try:
            chunk = read()
            chunk.flags.writeable = False  # shared between tasks
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            future.set_exception(exc)
            raise
        with self._lock:
            del self._pending[key]
            if chunk.nbytes <= self.limit:
                self._chunks[key] = chunk
                self._bytes += chunk.nbytes
                while self._bytes > self.limit:
                    self._bytes -= self._chunks.popitem(last=False)[1].nbytes
        future.set_result(chunk)
        return chunk


_CHUNKS = ChunkCache(CHUNK_CACHE_BYTES)


@functools.lru_cache(maxsize=64)
def _zarr_array(path: str) -> zarr.Array:
    return zarr.open_array(path, mode="r")


@dataclass(frozen=True)
class Genotypes:
    """A dataset version's genotype matrix (sites x samples x ploidy, int8), read one Zarr
    chunk at a time through this process's ``ChunkCache`` (a version's Zarr never
    changes, so its path names its chunks)."""

    path: str  # .../genotypes.zarr/call_genotype
    shape: tuple[int, ...]
    chunks: tuple[int, ...]

    @classmethod
    def open(cls, genotypes: Path) -> Genotypes:
        path = str(genotypes / "call_genotype")
        array = _zarr_array(path)
        return cls(path, tuple(array.shape), tuple(array.chunks))

    def chunk(self, i: int, j: int) -> np.ndarray:
        """The codes of chunk ``i`` of sites and ``j`` of samples (every ploidy)."""
        sites, samples = self.chunks[0], self.chunks[1]

        def read() -> np.ndarray:
            return _zarr_array(self.path)[
                i * sites : (i + 1) * sites, j * samples : (j + 1) * samples
            ]

        return _CHUNKS.get((self.path, i, j), read)


def _alt_counts(calls: np.ndarray, alleles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each call's count of its variant's allele (variants x people, int8) and where a
    call has a missing allele (bool)."""
    if calls.shape[2] == 2:  # diploid: both codes of a call in one uint16, compared at once
        pairs = np.ascontiguousarray(calls).view(np.uint16)[:, :, 0]
        low, high = pairs & 0xFF, pairs >> 8  # the two codes, in either order
        allele = alleles.astype(np.uint16)[:, None]
        counts = (low == allele).view(np.int8) + (high == allele).view(np.int8)
        missing = (low == _MISSING_BYTE) | (high == _MISSING_BYTE)
    else:
        counts = np.zeros(calls.shape[:2], dtype=np.int8)
        missing = np.zeros(calls.shape[:2], dtype=bool)
        for copy in range(calls.shape[2]):
            code = calls[:, :, copy]
            counts += (code == alleles.astype(np.int8)[:, None]).view(np.int8)
            missing |= code == MISSING
    return counts, missing


_MISSING_BYTE = np.uint16(np.int8(MISSING).view(np.uint8))
# Variants decoded and summed at a time within a chunk: a piece's float64 dosages
# (~2 MB for a chunk of 1024 people) stay in the CPU's cache between the steps.
_PIECE = 256


def _chunk_sums(
    codes: np.ndarray, rows: np.ndarray, alleles: np.ndarray, d: np.ndarray, e: np.ndarray
) -> np.ndarray:
    """``[G0ᵀD, (G0∘G0)ᵀe, MᵀD]`` (v x 2q+1) of one chunk of people: ``codes`` their
    genotype codes at the sites (sites x people x ploidy), ``rows`` each variant's site
    row, ``alleles`` its allele, ``d`` and ``e`` these people's rows of D and e.

    Decoded with byte comparisons and summed with BLAS products, ``_PIECE`` variants at a
    time, so the dosages never exist as a people x variants matrix of float64 (going
    through memory that way costs several times as much here). Missing calls are few:
    MᵀD is added call by call unless they are many."""
    v, n = len(rows), codes.shape[1]
    q = d.shape[1]
    out = np.zeros((v, 2 * q + 1))
    md = out[:, q + 1 :]
    for start in range(0, v, _PIECE):
        stop = min(start + _PIECE, v)
        counts, missing = _alt_counts(codes[rows[start:stop]], alleles[start:stop])
        at = np.flatnonzero(missing)
        counts.ravel()[at] = 0  # a half-missing call (./1) is missing too
        if len(at) * 50 > missing.size:
            md[start:stop] = missing.astype(np.float64) @ d
        elif len(at):
            np.add.at(md, start + at // n, d[at % n])
        g = counts.astype(np.float64)
        out[start:stop, :q] = g @ d
        np.square(g, out=g)
        out[start:stop, q] = g @ e
    return out


def _add(*parts: np.ndarray) -> np.ndarray:
    return np.sum(parts, axis=0)


def sums(
    genotypes: Genotypes,
    site_idx: np.ndarray,
    allele_idx: np.ndarray,
    d: np.ndarray,
    e: np.ndarray,
    compute: Compute,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(G0ᵀD, (G0∘G0)ᵀe, MᵀD)`` of the split alleles ``(site_idx, allele_idx)`` over all
    the genotype-matrix columns: ``d`` (columns x q) and ``e`` (columns) are zero for the
    people not in the analysis. G0 are the dosages with missing calls as 0, M the 0/1
    missingness.

    One dask task per Zarr chunk (of sites and of people) that holds variants, all in one
    graph computed at once; each task reads its chunk through the process's
    ``ChunkCache``. Memory is bounded by the chunks in flight and the cache, not by the
    cohort or the region."""
    site_idx = np.asarray(site_idx, dtype=np.int64)
    alleles = np.asarray(allele_idx, dtype=np.int8)
    q = d.shape[1]
    sites, samples = genotypes.chunks[0], genotypes.chunks[1]
    people = [j for j in range(-(-genotypes.shape[1] // samples))
              if e[j * samples : (j + 1) * samples].any()
              or d[j * samples : (j + 1) * samples].any()]  # fmt: skip
    total = np.zeros((len(site_idx), 2 * q + 1))
    if len(site_idx) == 0 or not people:
        return total[:, :q], total[:, q], total[:, q + 1 :]
    chunk_of = site_idx // sites
    edges = np.flatnonzero(np.diff(chunk_of) != 0) + 1
    tasks = []
    for piece in np.split(np.arange(len(site_idx)), edges):
        i = int(chunk_of[piece[0]])
        rows = site_idx[piece] - i * sites
        parts = [
            dask.delayed(_chunk_task)(
                genotypes,
                i,
                j,
                rows,
                alleles[piece],
                d[j * samples : (j + 1) * samples],
                e[j * samples : (j + 1) * samples],
            )  # fmt: skip
            for j in people
        ]
        tasks.append(dask.delayed(_add)(*parts))
    total = np.concatenate(compute.compute(*tasks))
    return total[:, :q], total[:, q], total[:, q + 1 :]


def _chunk_task(
    genotypes: Genotypes,
    i: int,
    j: int,
    rows: np.ndarray,
    alleles: np.ndarray,
    d: np.ndarray,
    e: np.ndarray,
) -> np.ndarray:
    return _chunk_sums(genotypes.chunk(i, j), rows, alleles, d, e)


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
