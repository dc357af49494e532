"""Writing one dataset version: the variants table, samples, entries and genotypes.

A version directory holds ``dataset.duckdb`` with these tables:

- ``variants``  one row per ALT allele, in file order (sorted by position within a contig):
  ``variant_idx, site_idx, allele_idx, variant_id, chrom, pos, start, end, ref, alt, vtype,
  vcf_id, ac, an, af, n_het, n_homalt, genes, aa_changes, hgvs, effects, doc``
- ``samples``   ``sample_idx`` (column of the genotype matrix) → biosample and individual
- ``entries``   Beacon documents of individuals, biosamples, runs, analyses, cohorts, datasets
- ``entry_terms`` / ``entry_values``  the documents flattened for filters (see documents.py)
- ``meta``      one JSON row describing the version (assembly, granularity, counts, …)

and ``genotypes.zarr`` with ``call_genotype`` (sites × samples × 2, int8, -1 missing,
-2 no allele for haploid calls) in VCF Zarr naming.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import zarr
from numcodecs import blosc
from zarr.codecs import BloscCodec

from genofed.store.documents import flatten
from genofed.store.position_index import FILE_NAME as POSITIONS_FILE
from genofed.store.position_index import write_position_index

FORMAT_VERSION = 1
# Variant rows per Parquet part of a dataset being written (see VariantWriter).
PART_ROWS = 131_072
# Parts loaded into dataset.duckdb per statement (see create_variants).
LOAD_PARTS = 8
# The variants table. Rows arrive as NumPy columns, which DuckDB scans directly: making
# Arrow arrays from Python values would make pyarrow import pandas (0.4 s) wherever it is
# installed, for nothing.
VARIANT_COLUMNS = {
    "variant_idx": "BIGINT",
    "site_idx": "BIGINT",
    "allele_idx": "TINYINT",
    "variant_id": "VARCHAR",
    "chrom": "VARCHAR",
    "pos": "BIGINT",
    "start": "BIGINT",
    "end": "BIGINT",
    "ref": "VARCHAR",
    "alt": "VARCHAR",
    "vtype": "VARCHAR",
    "vcf_id": "VARCHAR",
    "ac": "INTEGER",
    "an": "INTEGER",
    "af": "DOUBLE",
    "n_het": "INTEGER",
    "n_homalt": "INTEGER",
    "genes": "VARCHAR[]",
    "aa_changes": "VARCHAR[]",
    "hgvs": "VARCHAR[]",
    "effects": "VARCHAR[]",
    "doc": "VARCHAR",
}
SITES_PER_CHUNK = 4096
SAMPLES_PER_CHUNK = 1024
ENTITIES = ("individual", "biosample", "run", "analysis", "cohort", "dataset")


def allele_counts(genotypes: np.ndarray, allele: int) -> dict[str, np.ndarray]:
    """AC, AN, het and hom-alt counts of one allele, per site.

    ``genotypes`` is ``(sites, samples, 2)`` with -1 for a missing allele and -2 where a
    call has only one allele (haploid). A sample is hom-alt when all its called alleles are
    this allele and het when only some are (so a 1/2 call is het for both ALT alleles, as
    after ``bcftools norm -m-``).
    """
    first, second = genotypes[..., 0], genotypes[..., 1]
    # int8 sums of two booleans stay within range and avoid wide temporaries.
    per_sample = (first == allele).view(np.int8) + (second == allele).view(np.int8)
    ploidy = (first >= 0).view(np.int8) + (second >= 0).view(np.int8)
    carrier = per_sample > 0
    return {
        "ac": per_sample.sum(axis=1, dtype=np.int64),
        "an": ploidy.sum(axis=1, dtype=np.int64),
        "n_het": np.count_nonzero(carrier & (per_sample < ploidy), axis=1),
        "n_homalt": np.count_nonzero(carrier & (per_sample == ploidy), axis=1),
    }


@dataclass
class BlockCounts:
    """Per-site statistics of a block; ``ac``/``n_het``/``n_homalt`` are (alleles, sites)."""

    ac: np.ndarray
    an: np.ndarray
    n_het: np.ndarray
    n_homalt: np.ndarray
    max_allele: np.ndarray


def block_allele_counts(genotypes: np.ndarray, max_alts: int) -> BlockCounts:
    """Counts for every ALT allele of every site of a block.

    Most sites are biallelic with no missing call: there a call is one int16 (two int8
    alleles side by side) and two passes give carriers and hom-alts. Other sites go
    through ``allele_counts`` for each ALT allele.
    """
    sites, n_samples = genotypes.shape[:2]
    shape = (max(max_alts, 1), sites)
    ac, n_het, n_homalt = (np.zeros(shape, dtype=np.int64) for _ in range(3))
    an = np.zeros(sites, dtype=np.int64)
    if n_samples == 0 or sites == 0:
        return BlockCounts(ac, an, n_het, n_homalt, np.zeros(sites, dtype=np.int64))
    low = genotypes.min(axis=(1, 2))
    high = genotypes.max(axis=(1, 2)).astype(np.int64)
    clean = (low >= 0) & (high <= 1)
    if clean.any():
        calls = genotypes if clean.all() else genotypes[clean]
        pairs = np.ascontiguousarray(calls).view(np.int16).reshape(len(calls), n_samples)
        carriers = np.count_nonzero(pairs, axis=1)
        hom = np.count_nonzero(pairs == 0x0101, axis=1)
        ac[0, clean] = carriers + hom
        n_het[0, clean] = carriers - hom
        n_homalt[0, clean] = hom
        an[clean] = 2 * n_samples
    other = np.flatnonzero(~clean)
    if len(other):
        rest = genotypes[other]
        for allele in range(1, max_alts + 1):
            counts = allele_counts(rest, allele)
            ac[allele - 1, other] = counts["ac"]
            n_het[allele - 1, other] = counts["n_het"]
            n_homalt[allele - 1, other] = counts["n_homalt"]
            an[other] = counts["an"]
    return BlockCounts(ac, an, n_het, n_homalt, high)


@contextmanager
def lean_codecs() -> Iterator[None]:
    """One Blosc thread and one zarr worker while writing.

    Ingest already keeps both cores busy (decompression, parsing, decoding); codec thread
    pools on top of that only add contention, measured here as 5-15 % slower ingest.
    """
    previous = blosc.set_nthreads(1)
    try:
        with zarr.config.set({"threading.max_workers": 1}):
            yield
    finally:
        blosc.set_nthreads(previous)


class GenotypeWriter:
    """Appends blocks of sites to ``genotypes.zarr/call_genotype``."""

    def __init__(self, path: Path, sample_ids: list[str], ploidy: int = 2):
        self.group = zarr.open_group(str(path), mode="w")
        n_samples = len(sample_ids)
        self.array = self.group.create_array(
            "call_genotype",
            shape=(0, n_samples, ploidy),
            chunks=(SITES_PER_CHUNK, min(SAMPLES_PER_CHUNK, max(n_samples, 1)), ploidy),
            dtype="int8",
            fill_value=-1,
            # Genotype codes are small integers: bit-shuffled LZ4 compresses them about as
            # well as zstd at a third of the cost, which matters at ingest.
            compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")],
        )
        self.group.attrs["sample_id"] = list(sample_ids)
        self.group.attrs["vcf_zarr_version"] = "0.4"
        self.n_sites = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zarr-write")
        self._pending: Future[None] | None = None

    def append(self, block: np.ndarray) -> None:
        """Queue a block; compression runs in a thread while the caller parses the next one.

        The caller must not modify ``block`` afterwards.
        """
        self.flush()
        start = self.n_sites
        self.n_sites += block.shape[0]
        self.array.resize((self.n_sites, *self.array.shape[1:]))
        if block.shape[1]:
            self._pending = self._pool.submit(
                self.array.__setitem__, slice(start, self.n_sites), block
            )

    def flush(self) -> None:
        """Wait until every queued block is written (and raise if writing failed)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def __enter__(self) -> GenotypeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)


class GenotypeRangeWriter:
    """Writes rows ``start`` onwards of an existing ``call_genotype`` array: a partition of
    a parallel ingest, whose place in the dataset the VCF's index tells beforehand.

    Chunks wholly inside the partition's rows are written here, directly (no other
    partition touches them); the partial chunks at its two ends are kept as ``pieces``
    (``(row, rows)``) for the finaliser, the one writer of chunks two partitions share.
    """

    def __init__(self, path: Path, start: int):
        self.array = zarr.open_group(str(path), mode="r+")["call_genotype"]
        self.chunk = self.array.chunks[0]
        self.position = start  # row of the first pending row
        self.n_sites = 0
        self.pieces: list[tuple[int, np.ndarray]] = []
        self._pending: list[np.ndarray] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zarr-write")
        self._writing: Future[None] | None = None

    def append(self, block: np.ndarray) -> None:
        """Queue a block (the caller must not modify it afterwards)."""
        self.n_sites += len(block)
        self._pending.append(block)
        self._drain(final=False)

    def _drain(self, final: bool) -> None:
        rows = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        position = self.position
        if position % self.chunk:  # the partition's first rows: up to a chunk boundary
            need = self.chunk - position % self.chunk
            if len(rows) < need and not final:
                self._pending = [rows]
                return
            self.pieces.append((position, rows[:need].copy()))
            rows, position = rows[need:], position + min(need, len(rows))
        whole = len(rows) // self.chunk * self.chunk
        if whole and rows.shape[1]:
            self.flush()
            target = slice(position, position + whole)
            self._writing = self._pool.submit(self.array.__setitem__, target, rows[:whole])
        rows, position = rows[whole:], position + whole
        if final and len(rows):  # the partition's last rows
            self.pieces.append((position, rows.copy()))
            rows, position = rows[len(rows) :], position + len(rows)
        self._pending = [rows] if len(rows) else []
        self.position = position

    def flush(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def __enter__(self) -> GenotypeRangeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._pending and exc[0] is None:
                self._drain(final=True)
            self.flush()
        finally:
            self._pool.shutdown(wait=True)


class VariantWriter:
    """Streams variant rows, a block at a time, into Parquet files (``variants.parts/``
    of the stage); ``build_database`` loads them into ``dataset.duckdb`` in one INSERT.

    Why not insert each block: committing each one costs a WAL flush (16 ms per 4,000
    variants here), and one transaction for the whole dataset holds every row in memory
    until the end (about 300 bytes a variant: 7 GB at 20 M variants). Parquet parts keep
    ingest memory flat in the number of variants, and one INSERT from them streams.
    """

    def __init__(self, stage: Path, folder: str = "variants.parts"):
        self.folder = stage / folder
        self.folder.mkdir()
        self.parts: list[Path] = []
        self._pending: list[dict[str, Any]] = []
        self._pending_rows = 0
        self._con = duckdb.connect()  # in memory: only converts blocks to Parquet

    def write(self, columns: dict[str, Any]) -> None:
        """Write rows given as columns (NumPy arrays or lists; absent columns are NULL;
        a NaN ``af`` is NULL). Blocks are gathered into parts of about ``PART_ROWS``."""
        unknown = set(columns) - set(VARIANT_COLUMNS)
        if unknown:
            raise ValueError(f"not columns of the variants table: {sorted(unknown)}")
        self._pending.append(columns)
        self._pending_rows += len(next(iter(columns.values()), []))
        if self._pending_rows >= PART_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the gathered blocks as one part."""
        if not self._pending:
            return
        blocks, self._pending = self._pending, []
        self._pending_rows = 0
        names = [n for n in VARIANT_COLUMNS if n in blocks[0]]
        columns = {n: _concatenate([_numpy(b[n]) for b in blocks]) for n in names}
        # Every part gets the table's full schema, so they load as one.
        select = ", ".join(
            (
                "nullif(af, 'NaN'::DOUBLE) AS af"
                if name == "af" and name in columns
                else f'CAST("{name}" AS {kind}) AS "{name}"'
                if name in columns
                else f'CAST(NULL AS {kind}) AS "{name}"'
            )
            for name, kind in VARIANT_COLUMNS.items()
        )
        part = self.folder / f"part-{len(self.parts):07d}.parquet"
        _run_on(
            self._con,
            columns,
            f"COPY (SELECT {select} FROM _incoming) TO '{part}' (FORMAT parquet)",
        )
        self.parts.append(part)

    def __enter__(self) -> VariantWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._con.close()


def _concatenate(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def create_variants(
    con: duckdb.DuckDBPyConnection, variant_parts: list[tuple[list[Path], int, int]]
) -> None:
    """Create the variants table from the writers' Parquet parts, in order, with the
    offsets added to ``variant_idx`` and ``site_idx`` (each partition of a parallel
    ingest numbers its rows from 0). A CASE on the file name adds them: a projection
    keeps the rows in order, where a join would not. Parts are loaded ``LOAD_PARTS`` at a
    time, each load committed, so DuckDB's memory stays flat however many there are."""
    columns = ", ".join(f'"{name}" {kind}' for name, kind in VARIANT_COLUMNS.items())
    con.execute(f"CREATE TABLE variants ({columns})")
    files = [(part, v, s) for parts, v, s in variant_parts for part in parts]
    for lo in range(0, len(files), LOAD_PARTS):
        group = files[lo : lo + LOAD_PARTS]
        variant_case = " ".join(f"WHEN '{p}' THEN {v}" for p, v, _ in group)
        site_case = " ".join(f"WHEN '{p}' THEN {s}" for p, _, s in group)
        listed = ", ".join(f"'{p}'" for p, _, _ in group)
        con.execute(
            "INSERT INTO variants SELECT * EXCLUDE (filename) REPLACE ("
            f"variant_idx + CASE filename {variant_case} END AS variant_idx, "
            f"site_idx + CASE filename {site_case} END AS site_idx) "
            f"FROM read_parquet([{listed}], filename = true)"
        )


def open_database(stage: Path) -> duckdb.DuckDBPyConnection:
    """The staging ``dataset.duckdb``. DuckDB's buffer pool is capped low and it writes
    with one thread: nothing reads the staging copy, so the blocks it keeps cached after
    writing them only grow memory (up to the cap, reached from about a million variants
    on), and each thread's buffers made the peak grow with the table."""
    config = {"memory_limit": "64MB", "threads": 1}
    return duckdb.connect(str(stage / "dataset.duckdb"), config=config)


def build_database(
    stage: Path,
    variant_parts: list[tuple[list[Path], int, int]],
    *,
    samples: list[tuple[str, str]],
    entries: Iterable[tuple[str, dict[str, Any]]],
    meta: dict[str, Any],
) -> None:
    """Write ``dataset.duckdb``: the variants, samples, entry documents, meta and the
    position index.

    ``variant_parts`` lists the Parquet parts of each ``VariantWriter`` (one, or a
    parallel ingest's partitions in order) with the ``variant_idx`` and ``site_idx`` its
    rows start at. ``samples`` lists
    ``(biosample_id, individual_id)`` in genotype-matrix column order.
    """
    con = open_database(stage)
    create_variants(con, variant_parts)
    con.execute(
        "CREATE TABLE samples (sample_idx INTEGER, biosample_id VARCHAR, individual_id VARCHAR)"
    )
    if samples:
        _insert(
            con,
            "samples",
            {
                "sample_idx": np.arange(len(samples), dtype=np.int32),
                "biosample_id": [bs for bs, _ in samples],
                "individual_id": [ind for _, ind in samples],
            },
        )
    _write_entries(con, entries)
    con.execute("CREATE TABLE meta (doc VARCHAR)")
    con.execute(
        "INSERT INTO meta VALUES (?)",
        [json.dumps({**meta, "format_version": FORMAT_VERSION})],
    )
    write_position_index(con, stage / POSITIONS_FILE)
    con.execute("CHECKPOINT")
    con.close()


def _write_entries(con: duckdb.DuckDBPyConnection, entries: Iterable[tuple[str, dict]]) -> None:
    rows: list[tuple[Any, ...]] = []
    terms: list[tuple[str, str, str, str | None]] = []
    values: list[tuple[str, str, str, str, float | None]] = []
    for entity, doc in entries:
        if entity not in ENTITIES:
            raise ValueError(f"unknown entity {entity!r}")
        entry_id = str(doc["id"])
        rows.append(
            (
                entity,
                entry_id,
                _link(doc, "individualId", entity == "individual"),
                _link(doc, "biosampleId", entity == "biosample"),
                _link(doc, "runId", entity == "run"),
                orjson.dumps(doc).decode(),
            )
        )
        flat = flatten(doc)
        terms.extend((entity, entry_id, t, label) for t, label in flat.terms.items())
        values.extend((entity, entry_id, p, text, num) for p, text, num in flat.values)
    con.execute(
        "CREATE TABLE entries (entity VARCHAR, id VARCHAR, individual_id VARCHAR, "
        "biosample_id VARCHAR, run_id VARCHAR, doc VARCHAR)"
    )
    con.execute(
        "CREATE TABLE entry_terms (entity VARCHAR, id VARCHAR, term VARCHAR, label VARCHAR)"
    )
    con.execute(
        "CREATE TABLE entry_values (entity VARCHAR, id VARCHAR, path VARCHAR, text VARCHAR, "
        "num DOUBLE)"
    )
    for table, data in (("entries", rows), ("entry_terms", terms), ("entry_values", values)):
        if data:
            columns = zip(*data, strict=True)
            _insert(con, table, dict(zip(_COLUMNS[table], map(list, columns), strict=True)))


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, Any]) -> None:
    """Insert ``columns`` into ``table`` by name."""
    _run_on(con, columns, f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")


def _run_on(con: duckdb.DuckDBPyConnection, columns: dict[str, Any], sql: str) -> None:
    """Run ``sql`` on ``columns`` seen as the table ``_incoming``, through DuckDB's scan of
    NumPy arrays (lists become object arrays, which DuckDB reads value by value)."""
    con.register("_incoming", {name: _numpy(values) for name, values in columns.items()})
    try:
        con.execute(sql)
    finally:
        con.unregister("_incoming")


def _numpy(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    # fromiter keeps each value whole (a list stays one list, never a row of a 2-D array)
    return np.fromiter(values, dtype=object, count=len(values))


_COLUMNS = {
    "entries": ("entity", "id", "individual_id", "biosample_id", "run_id", "doc"),
    "entry_terms": ("entity", "id", "term", "label"),
    "entry_values": ("entity", "id", "path", "text", "num"),
}


def _link(doc: dict[str, Any], key: str, is_self: bool) -> str | None:
    if is_self:
        return str(doc["id"])
    value = doc.get(key)
    return str(value) if value is not None else None
