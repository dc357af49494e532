"""Gene coordinates an operator loads so that ``geneId`` queries find variants by position.

Accepted inputs: BED (``chrom start end name``; 0-based half-open, as Beacon) and GTF
(``gene`` features; 1-based closed, converted). Stored per assembly as Parquet.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from genofed._exceptions import IngestError
from genofed.store import reference

_GTF_NAME = re.compile(r'gene_name "([^"]+)"')
_GTF_ID = re.compile(r'gene_id "([^"]+)"')


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else path.open()


def read_gene_file(path: Path) -> list[tuple[str, str, int, int]]:
    """``(gene, chrom, start, end)`` rows, 0-based half-open; clear errors on bad lines."""
    if not path.is_file():
        raise IngestError("file not found", source=str(path))
    name = path.name.lower().removesuffix(".gz")
    is_gtf = name.endswith((".gtf", ".gff", ".gff3"))
    genes: list[tuple[str, str, int, int]] = []
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\n").split("\t")
            where = f"line {line_no}"
            try:
                if is_gtf:
                    if len(fields) < 9:
                        raise ValueError("a GTF line has 9 tab-separated fields")
                    if fields[2] != "gene":
                        continue
                    match = _GTF_NAME.search(fields[8]) or _GTF_ID.search(fields[8])
                    if not match:
                        raise ValueError("no gene_name or gene_id attribute")
                    gene, chrom, start, end = (
                        match.group(1),
                        fields[0],
                        int(fields[3]) - 1,
                        int(fields[4]),
                    )
                else:
                    if len(fields) < 4:
                        raise ValueError("a BED line needs chrom, start, end and name")
                    gene, chrom, start, end = fields[3], fields[0], int(fields[1]), int(fields[2])
            except ValueError as exc:
                raise IngestError(str(exc), source=str(path), where=where) from exc
            contig = reference.parse_contig(chrom)
            if contig is None:
                continue  # alt contigs and patches: no variants can be stored there anyway
            if end <= start:
                raise IngestError(
                    f"end {end} is not after start {start}", source=str(path), where=where
                )
            genes.append((gene, contig.chrom, start, end))
    if not genes:
        raise IngestError(
            "no genes found (expected BED with a name column, or GTF)", source=str(path)
        )
    return genes


def save_genes(genes: list[tuple[str, str, int, int]], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "gene": [g[0] for g in genes],
            "chrom": [g[1] for g in genes],
            "start": [g[2] for g in genes],
            "end": [g[3] for g in genes],
        }
    )
    tmp = target.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(target)


def load_gene_index(genes_dir: Path) -> dict[str, dict[str, list[tuple[str, int, int]]]]:
    """assembly → gene symbol (upper case) → regions."""
    index: dict[str, dict[str, list[tuple[str, int, int]]]] = {}
    for path in sorted(genes_dir.glob("*.parquet")):
        table = pq.read_table(path).to_pylist()
        genes = index.setdefault(path.stem, {})
        for row in table:
            genes.setdefault(row["gene"].upper(), []).append(
                (row["chrom"], row["start"], row["end"])
            )
    return index
