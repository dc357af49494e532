"""A memory-mapped position index answering the common variant look-ups without SQL.

DuckDB answers any query, but each one costs about a millisecond of planning and
execution; a Beacon's hot path is a position look-up that a binary search answers in
microseconds. At ingest the position columns are written as an uncompressed Arrow IPC file
(``positions.arrow``); a server memory-maps it (zero copy, shared through the page cache).

Variants of one contig are contiguous and sorted by start (ingest guarantees it), so a
query is a ``searchsorted`` inside the contig's slice. Queries the index does not cover
(genes, types, lengths, HGVS, too many candidates to check alleles) return ``None`` and the
caller uses DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from genofed.store import reference
from genofed.store.variant_query import VariantQuery

FILE_NAME = "positions.arrow"
# Beyond this many candidates, checking alleles one by one in Python loses to SQL.
_MAX_ALLELE_CHECKS = 5_000
_BATCH_ROWS = 131_072


def write_position_index(con: duckdb.DuckDBPyConnection, target: Path) -> None:
    """Write the index from the ``variants`` table, streamed in record batches so memory
    stays flat however many variants there are (rows come in insertion order, which is
    ``variant_idx`` order: DuckDB preserves it for a plain scan)."""
    # Chromosomes as their index in reference.CHROMOSOMES, computed by DuckDB: converting
    # through NumPy would make pyarrow import pandas (see dataset_db).
    names = ", ".join(f"'{c}'" for c in reference.CHROMOSOMES)
    batches = con.sql(
        f"SELECT CAST(list_position([{names}], chrom) - 1 AS TINYINT) AS chrom, "
        'CAST(start AS BIGINT) AS start, CAST("end" AS BIGINT) AS "end", '
        "CAST(ref AS VARCHAR) AS ref, CAST(alt AS VARCHAR) AS alt, "
        "(ac > 0 OR an = 0) AS present FROM variants"
    ).to_arrow_reader(_BATCH_ROWS)
    schema = pa.schema(
        [
            ("chrom", pa.int8()),
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("ref", pa.large_string()),
            ("alt", pa.large_string()),
            ("present", pa.bool_()),
        ]
    )
    with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch.cast(schema))


@dataclass
class _Contig:
    lo: int
    hi: int
    max_length: int


class PositionIndex:
    def __init__(self, path: Path):
        table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
        self.start = table.column("start").combine_chunks().to_numpy()
        self.end = table.column("end").combine_chunks().to_numpy()
        self.present = table.column("present").combine_chunks().to_numpy(zero_copy_only=False)
        self.ref = table.column("ref").combine_chunks()
        self.alt = table.column("alt").combine_chunks()
        chrom = table.column("chrom").combine_chunks().to_numpy()
        self.contigs: dict[str, _Contig] = {}
        if len(chrom):
            bounds = np.flatnonzero(np.diff(chrom)) + 1
            for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(chrom)], strict=True):
                name = reference.CHROMOSOMES[int(chrom[lo])]
                length = int((self.end[lo:hi] - self.start[lo:hi]).max())
                self.contigs[name] = _Contig(int(lo), int(hi), length)

    @staticmethod
    def covers(query: VariantQuery) -> bool:
        return (
            query.chrom is not None
            and bool(query.start)
            and not (
                query.gene_id
                or query.aminoacid_change
                or query.allele_short_form
                or query.variant_ids
                or query.variant_type
                or query.min_length is not None
                or query.max_length is not None
                or query.min_allele_count > 0
                or query.min_allele_frequency > 0
            )
        )

    def lookup(self, query: VariantQuery) -> np.ndarray | None:
        """Row numbers (= variant_idx) of matching variants, or None if SQL must answer."""
        contig = self.contigs.get(query.chrom or "")
        if contig is None:
            return np.zeros(0, dtype=np.int64)
        starts = self.start[contig.lo : contig.hi]
        ends = self.end[contig.lo : contig.hi]
        s, e = query.start, query.end
        if len(s) == 2 and len(e) == 2:  # bracket
            lo = np.searchsorted(starts, s[0], "left")
            hi = np.searchsorted(starts, s[1], "right")
            rows = np.arange(lo, hi)
            rows = rows[(ends[lo:hi] >= e[0]) & (ends[lo:hi] <= e[1])]
        elif len(s) == 1 and len(e) == 1:  # range: any overlap
            lo = np.searchsorted(starts, s[0] - contig.max_length, "left")
            hi = np.searchsorted(starts, e[0], "left")
            rows = np.arange(lo, hi)
            rows = rows[ends[lo:hi] > s[0]]
        elif len(s) == 1 and not e:  # sequence
            lo, hi = self.rows_at(query.chrom or "", s[0])
            rows = np.arange(lo, hi) - contig.lo
        else:
            return None
        rows = rows + contig.lo
        rows = rows[self.present[rows]]
        if query.reference_bases or query.alternate_bases is not None:
            if len(rows) > _MAX_ALLELE_CHECKS:
                return None
            rows = self._alleles_match(rows, query)
            if rows is None:
                return None
        return rows.astype(np.int64)

    def rows_at(self, chrom: str, start: int) -> tuple[int, int]:
        """Rows (``lo``, ``hi``: half open, in ``variant_idx`` order) of the variants of
        ``chrom`` that start at 0-based ``start``."""
        contig = self.contigs.get(chrom)
        if contig is None:
            return 0, 0
        starts = self.start[contig.lo : contig.hi]
        lo = int(np.searchsorted(starts, start, "left"))
        hi = int(np.searchsorted(starts, start, "right"))
        return contig.lo + lo, contig.lo + hi

    def _alleles_match(self, rows: np.ndarray, query: VariantQuery) -> np.ndarray | None:
        ref = (query.reference_bases or "").upper()
        alt = query.alternate_bases.upper() if query.alternate_bases is not None else None
        if "N" in ref or (alt is not None and "N" in alt):
            return None  # wildcards: leave them to SQL's LIKE
        keep = []
        for row in rows.tolist():
            if ref and self.ref[row].as_py() != ref:
                continue
            if alt is not None and self.alt[row].as_py() != alt:
                continue
            keep.append(row)
        return np.array(keep, dtype=np.int64)
