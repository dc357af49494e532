"""What a Beacon genomic-variant query asks, and the SQL ``WHERE`` clause that answers it.

Coordinates are Beacon's: 0-based, half-open. The four query kinds of the spec map to:
sequence (``start`` + bases), range (``start``/``end``, any overlap), bracket (two
``start`` and two ``end`` values) and gene (``geneId``, through the operator's gene table
or the VCF's own annotations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_TYPE_SYNONYMS = {
    "SNV": ("SNP",),
    "SNP": ("SNP",),
    "INDEL": ("DEL", "INS", "INDEL"),
    "CNV": ("CNV", "DEL", "DUP"),
    "SO:0001483": ("SNP",),
    "SO:0000159": ("DEL",),
    "SO:0000667": ("INS",),
    "SO:1000032": ("DEL", "INS", "INDEL"),
}
# Length of a variant in bases, as Beacon's variantMin/MaxLength mean it.
LENGTH_SQL = (
    'CASE WHEN alt LIKE \'<%\' THEN "end" - start ELSE greatest("end" - start, length(alt)) END'
)


@dataclass
class VariantQuery:
    """A parsed and checked ``g_variants`` query (all coordinates 0-based)."""

    chrom: str | None = None
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    reference_bases: str | None = None
    alternate_bases: str | None = None
    variant_type: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    gene_id: str | None = None
    gene_regions: list[tuple[str, int, int]] | None = None  # from the gene table
    aminoacid_change: str | None = None
    allele_short_form: str | None = None
    variant_ids: list[str] = field(default_factory=list)
    # Disclosure floors for public callers: rarer alleles are treated as absent.
    min_allele_count: int = 0
    min_allele_frequency: float = 0.0


def _bases_condition(column: str, bases: str, params: list[Any]) -> str:
    """Exact match; ``N`` matches any one base; an empty string matches an empty allele."""
    bases = bases.upper()
    if "N" in bases:
        params.append(bases.replace("N", "_"))
        return f"{column} LIKE ?"
    params.append(bases)
    return f"{column} = ?"


def where_clause(query: VariantQuery) -> tuple[str, list[Any]]:
    # A site in the file that nobody carries is not "present": AC > 0. Imported variants
    # without genotypes (AN = 0) are present because the source listed them as observed.
    parts: list[str] = ["(ac > 0 OR an = 0)"]
    params: list[Any] = []
    if query.variant_ids:
        parts.append("variant_id IN (SELECT unnest(?))")
        params.append(query.variant_ids)
    if query.chrom is not None:
        parts.append("chrom = ?")
        params.append(query.chrom)
        parts.extend(_coordinates(query, params))
    if query.gene_id:
        gene_parts = ["list_contains(genes, ?)"]
        params.append(query.gene_id)
        for chrom, start, end in query.gene_regions or []:
            gene_parts.append('(chrom = ? AND start < ? AND "end" > ?)')
            params.extend([chrom, end, start])
        parts.append("(" + " OR ".join(gene_parts) + ")")
    if query.reference_bases and query.reference_bases.upper() != "N":
        parts.append(_bases_condition("ref", query.reference_bases, params))
    if query.alternate_bases is not None:
        if query.alternate_bases.upper() != "N" or len(query.start) == 1 and not query.end:
            parts.append(_bases_condition("alt", query.alternate_bases, params))
    if query.variant_type:
        kinds = _TYPE_SYNONYMS.get(query.variant_type.upper(), (query.variant_type.upper(),))
        parts.append("vtype IN (SELECT unnest(?))")
        params.append(list(kinds))
    if query.min_length is not None:
        parts.append(f"{LENGTH_SQL} >= ?")
        params.append(query.min_length)
    if query.max_length is not None:
        parts.append(f"{LENGTH_SQL} <= ?")
        params.append(query.max_length)
    if query.aminoacid_change:
        parts.append("list_contains(aa_changes, ?)")
        params.append(query.aminoacid_change)
    if query.allele_short_form:
        parts.append("list_contains(hgvs, ?)")
        params.append(query.allele_short_form)
    if query.min_allele_count > 0 or query.min_allele_frequency > 0:
        # Variants without genotypes (AN = 0) have no count to check, so they stay hidden.
        parts.append("an > 0 AND ac >= ? AND af >= ?")
        params.extend([query.min_allele_count, query.min_allele_frequency])
    return " AND ".join(parts), params


def _coordinates(query: VariantQuery, params: list[Any]) -> list[str]:
    start, end = query.start, query.end
    if len(start) == 2 and len(end) == 2:  # bracket query
        params.extend([start[0], start[1], end[0], end[1]])
        return ["start BETWEEN ? AND ?", '"end" BETWEEN ? AND ?']
    if len(start) == 1 and len(end) == 1:  # range query: any overlap
        params.extend([end[0], start[0]])
        return ["start < ?", '"end" > ?']
    if len(start) == 1:  # sequence query
        params.append(start[0])
        return ["start = ?"]
    if len(end) == 1:
        params.append(end[0])
        return ['"end" = ?']
    return []
