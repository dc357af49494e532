"""Which entries of one dataset answer a Beacon query, across entity types.

Entries link through the ids they carry: a run names its biosample and individual, an
analysis its run. A filter or a path context on one entity selects entries of another by
the most specific key both share (run, then biosample, then individual). Genomic variants
link to biosamples through the genotype matrix: a variant is linked to the samples that
carry it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genofed._exceptions import QueryError
from genofed.store.dataset_reader import DatasetReader
from genofed.store.filters import Filter, FilterContext, is_variant_field, matching_ids
from genofed.store.variant_query import VariantQuery

VARIANT = "genomicVariation"
COLLECTIONS = ("dataset", "cohort")
_LINK_LEVELS = (2, 1, 0)  # run_id, biosample_id, individual_id in DatasetReader.entry_links
# Beyond this many candidate variants a filtered variant query is refused: it would read
# that many rows of the genotype matrix. Narrow the region instead.
MAX_CANDIDATES = 2_000_000
_GENOTYPE_BLOCK = 20_000


@dataclass(frozen=True)
class Context:
    """The entry named in the path, e.g. ``/individuals/{id}/g_variants``."""

    entity: str
    id: str


@dataclass(frozen=True)
class Group:
    """The people a variant query's filters or context leave, and for each selected
    variant how many of them carry it and with how many copies: floors and counts below
    record level are about these people, not the whole dataset."""

    columns: np.ndarray  # their genotype-matrix columns
    carriers: np.ndarray  # per selected variant: carriers among them
    allele_counts: np.ndarray  # per selected variant: copies among them


@dataclass
class Selection:
    """The outcome for one dataset: entry ids, or variant indices, that match."""

    ids: list[str] = field(default_factory=list)
    variant_idx: np.ndarray | None = None  # for variants when samples restrict them
    variant_count: int | None = None  # for variants without sample restriction
    group: Group | None = None  # for variants when samples restrict them

    def keep(self, mask: np.ndarray) -> Selection:
        """The selected variants where ``mask`` holds (a group's counts kept aligned)."""
        assert self.variant_idx is not None
        group = self.group
        if group is not None:
            group = Group(group.columns, group.carriers[mask], group.allele_counts[mask])
        return Selection(variant_idx=self.variant_idx[mask], group=group)

    @property
    def count(self) -> int:
        if self.variant_count is not None:
            return self.variant_count
        if self.variant_idx is not None:
            return len(self.variant_idx)
        return len(self.ids)


def link(reader: DatasetReader, target: str, source: str, ids: set[str]) -> set[str]:
    """Ids of ``target`` entries linked to the given ``source`` entries."""
    if source == target:
        return set(ids)
    src = reader.entry_links(source)
    dst = reader.entry_links(target)
    for level in _LINK_LEVELS:
        keys = {src[i][level] for i in ids if i in src and src[i][level] is not None}
        if keys and any(v[level] is not None for v in dst.values()):
            return {t for t, v in dst.items() if v[level] in keys}
    return set()


def select(
    reader: DatasetReader,
    target: str,
    *,
    filters: list[Filter],
    context: Context | None,
    filter_context: FilterContext,
    variant_query: VariantQuery | None = None,
    min_entries: int = 1,
) -> Selection:
    """Evaluate a query for entity ``target`` on one dataset. A collection (the dataset,
    its cohorts) matches a filter on its entries when at least ``min_entries`` do."""
    allowed: set[str] | None = None  # target ids (entries) still allowed
    samples: set[str] | None = None  # biosample ids whose carriers restrict variants
    dataset_ok = True
    variant_query = variant_query or VariantQuery()
    restricted_by_variant: set[str] | None = None

    def narrow(current: set[str] | None, new: set[str]) -> set[str]:
        return new if current is None else current & new

    if context is not None:
        if context.entity in COLLECTIONS:
            dataset_ok = context.id in reader.entry_ids(context.entity)
        elif context.entity == VARIANT:
            restricted_by_variant = _carrier_biosamples(reader, context.id)
        elif target == VARIANT:
            samples = narrow(samples, link(reader, "biosample", context.entity, {context.id}))
        else:
            allowed = narrow(allowed, link(reader, target, context.entity, {context.id}))

    # Variant filters on another entity select the carriers of the matching variants.
    carried: VariantQuery | None = None
    for flt in filters:
        scope = flt.scope or _default_scope(flt, target, filter_context)
        if scope == VARIANT:
            if target != VARIANT:
                carried = carried or VariantQuery()
                _apply_variant_filter(flt, carried)
            else:
                _apply_variant_filter(flt, variant_query)
            continue
        matched = matching_ids(reader, flt, scope, filter_context)
        if (scope in COLLECTIONS or target in COLLECTIONS) and target != scope:
            # A dataset (and its cohort) matches when enough of its entries do.
            dataset_ok = dataset_ok and len(matched) >= min_entries
        elif target == VARIANT:
            samples = narrow(samples, link(reader, "biosample", scope, matched))
        else:
            allowed = narrow(allowed, link(reader, target, scope, matched))

    if carried is not None:
        biosamples = _carrier_biosamples_of(reader, carried)
        if target in COLLECTIONS:
            carriers_in = link(reader, "individual", "biosample", biosamples)
            dataset_ok = dataset_ok and len(carriers_in) >= min_entries
        else:
            allowed = narrow(allowed, link(reader, target, "biosample", biosamples))

    if restricted_by_variant is not None:
        if target == VARIANT:
            samples = narrow(samples, restricted_by_variant)
        else:
            allowed = narrow(allowed, link(reader, target, "biosample", restricted_by_variant))

    if not dataset_ok:
        return Selection(variant_count=0) if target == VARIANT else Selection()
    if target == VARIANT:
        return _select_variants(reader, variant_query, samples)
    ids = reader.entry_ids(target)
    if allowed is not None:
        ids = [i for i in ids if i in allowed]
    return Selection(ids=ids)


def _default_scope(flt: Filter, target: str, context: FilterContext) -> str:
    """Apply a filter to the target entity if it occurs there, else where it does occur.

    Variants carry no documents of their own here, so on ``g_variants`` only the variant
    fields (geneIds, aminoacidChanges, variantType) are variant filters; anything else is
    about the people carrying them. A filter known nowhere keeps the target (it matches
    nothing, and the response says why in ``info.warnings``).
    """
    if is_variant_field(flt):
        return VARIANT if target == VARIANT else "individual"
    scopes = context.scopes_of(flt) - {VARIANT}
    if target in scopes or not scopes:
        return target if target != VARIANT else "individual"
    for preferred in ("individual", "biosample", "run", "analysis", "dataset", "cohort"):
        if preferred in scopes:
            return preferred
    return sorted(scopes)[0]


def _apply_variant_filter(flt: Filter, query: VariantQuery) -> None:
    field = flt.id.split(".")[-1]
    if flt.kind != "alphanumeric" or flt.operator != "=":
        raise QueryError(
            f"variant filter {flt.id!r}: only '=' alphanumeric filters on "
            "geneIds, aminoacidChanges or variantType are supported"
        )
    if field == "geneIds":
        query.gene_id = flt.value
    elif field == "aminoacidChanges":
        query.aminoacid_change = flt.value
    elif field == "variantType":
        query.variant_type = flt.value
    else:
        raise QueryError(
            f"variant filter field {flt.id!r} is not supported; use "
            "molecularAttributes.geneIds, molecularAttributes.aminoacidChanges "
            "or variantType"
        )


def _carrier_biosamples(reader: DatasetReader, variant_id: str) -> set[str]:
    rows = reader.find_variants(VariantQuery(variant_ids=[variant_id]))
    if not rows:
        return set()
    calls = carriers(reader, rows[0])
    return {biosample for biosample, _, _ in calls}


def _carrier_biosamples_of(reader: DatasetReader, query: VariantQuery) -> set[str]:
    """The biosamples carrying any variant that ``query`` selects."""
    idx, site, allele = reader.variant_sites(query, MAX_CANDIDATES)
    if len(idx) > MAX_CANDIDATES:
        raise QueryError(
            f"these variant filters match more than {MAX_CANDIDATES:,} variants; "
            "use a more specific geneId, aminoacidChange or variantType"
        )
    carrying = np.zeros(len(reader.samples), dtype=bool)
    for lo in range(0, len(idx), _GENOTYPE_BLOCK):
        hi = lo + _GENOTYPE_BLOCK
        block = reader.genotype_rows(site[lo:hi]) == allele[lo:hi, None, None]
        carrying |= block.any(axis=(0, 2))
    return {reader.samples[i][0] for i in np.flatnonzero(carrying)}


def carriers(reader: DatasetReader, row: dict) -> list[tuple[str, str, int]]:
    """``(biosample_id, individual_id, copies)`` of every sample carrying a variant row."""
    genotypes = reader.genotype_rows(np.array([row["site_idx"]]))[0]
    copies = (genotypes == row["allele_idx"]).sum(axis=1)
    samples = reader.samples
    return [(samples[i][0], samples[i][1], int(copies[i])) for i in np.flatnonzero(copies)]


def _select_variants(
    reader: DatasetReader, query: VariantQuery, samples: set[str] | None
) -> Selection:
    if samples is None:
        return Selection(variant_count=reader.count_variants(query))
    columns = np.array(
        [i for i, (bs, _) in enumerate(reader.samples) if bs in samples], dtype=np.int64
    )
    empty = np.array([], dtype=np.int64)
    if len(columns) == 0:
        return Selection(variant_idx=empty, group=Group(columns, empty, empty))
    idx, site, allele = reader.variant_sites(query, MAX_CANDIDATES)
    if len(idx) > MAX_CANDIDATES:
        raise QueryError(
            f"this query with filters would examine more than {MAX_CANDIDATES:,} variants; "
            "narrow it with referenceName/start/end or a geneId"
        )
    carriers = np.zeros(len(idx), dtype=np.int64)
    copies = np.zeros(len(idx), dtype=np.int64)
    for lo in range(0, len(idx), _GENOTYPE_BLOCK):
        hi = lo + _GENOTYPE_BLOCK
        block = reader.genotype_rows(site[lo:hi])[:, columns, :] == allele[lo:hi, None, None]
        per_person = block.sum(axis=2)
        carriers[lo:hi] = (per_person > 0).sum(axis=1)
        copies[lo:hi] = per_person.sum(axis=1)
    keep = carriers > 0
    group = Group(columns, carriers[keep], copies[keep])
    return Selection(variant_idx=idx[keep], group=group)
