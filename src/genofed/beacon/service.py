"""Answering Beacon entry queries at a node: datasets in scope, what each gives the
caller (decided by the node's ``ReleasePolicy``), and the response envelopes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from genofed._exceptions import AccessDeniedError, NotFoundError, QueryError
from genofed.beacon import framework, records
from genofed.beacon.filtering_terms import filtering_terms
from genofed.beacon.model import API_VERSION, EntryType, returned_schema
from genofed.beacon.request import BeaconRequest, variant_query
from genofed.config import Granularity
from genofed.governance.access import Caller, Entitlement
from genofed.governance.disclosure import SafeCount
from genofed.governance.gatekeeper import Gatekeeper
from genofed.governance.release import Terms
from genofed.store.dataset_reader import DatasetReader
from genofed.store.filters import PERSON_ENTITIES
from genofed.store.live import DatasetCatalog, LiveDatasets
from genofed.store.selection import VARIANT, Context, Selection, carriers, select
from genofed.store.variant_query import VariantQuery

_PUBLIC_CANDIDATES = 5000  # variants examined per dataset by the public allele guard


@dataclass
class _DatasetAnswer:
    reader: DatasetReader
    selection: Selection
    terms: Terms
    query: VariantQuery | None = None  # the variant query as run on this dataset
    count: SafeCount | None = None  # the count as released (at count granularity or more)
    warnings: list[str] = field(default_factory=list)  # what was withheld, and why
    withheld: bool = False  # the whole answer: neither yes nor a count leaves

    @property
    def exists(self) -> bool:
        return not self.withheld and self.selection.count > 0

    @property
    def granularity(self) -> Granularity:
        """What this dataset's answer carries: yes or no only, when its count was withheld."""
        if self.withheld or (self.terms.counts and self.count is None):
            return Granularity.BOOLEAN
        return self.terms.granularity


@dataclass
class _Plan:
    readers: list[tuple[DatasetReader, Entitlement]]  # visible datasets, what each gives
    warnings: list[str] = field(default_factory=list)
    variant_query: VariantQuery | None = None


class Notes(Protocol):
    """Where an answer notes what the audit log records of it."""

    datasets: list[str]
    results: int | None


class BeaconService:
    """The Beacon of one node: its live datasets under its governance."""

    def __init__(self, datasets: DatasetCatalog, gate: Gatekeeper):
        self.datasets = datasets
        self.gate = gate
        self.config = gate.config

    # -- envelopes --------------------------------------------------------------------

    def meta(
        self, request: BeaconRequest, entry: EntryType | None, granularity: Granularity
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "beaconId": self.config.beacon_id,
            "apiVersion": API_VERSION,
            "returnedGranularity": granularity,
            "receivedRequestSummary": request.summary(),
            "returnedSchemas": [returned_schema(entry)] if entry else [],
        }
        if request.test_mode:
            meta["testMode"] = True
        return meta

    # -- queries ----------------------------------------------------------------------

    def query(
        self,
        entry: EntryType,
        request: BeaconRequest,
        caller: Caller,
        *,
        context: Context | None = None,
        single_id: str | None = None,
        notes: Notes | None = None,
    ) -> dict[str, Any]:
        """Answer one entry query for ``caller``; ``notes`` receives what the audit log
        records (datasets touched, results returned)."""
        if request.limit is None:
            request.limit = self.config.default_limit
        if len(request.filters) > self.config.max_filters:
            # each filter is a look-up: thousands of them cost seconds of CPU per request
            raise QueryError(
                f"the request has {len(request.filters):,} filters; this node answers at most "
                f"{self.config.max_filters:,} in one request"
            )
        live = self.datasets.live()
        visible = self.visible(live, caller)
        plan = self._plan(entry, request, live, single_id, visible)
        if notes is not None:
            notes.datasets = [reader.dataset_id for reader, _ in plan.readers]
        filter_context = live.filter_context(visible)
        filters = [filter_context.classify(f) for f in request.filters]
        for flt in filters:
            warning = filter_context.warning(flt)
            if warning:
                plan.warnings.append(warning)
        target = entry.entity
        if single_id is not None and target != VARIANT:
            context = Context(target, single_id)
        named = context is not None and context.entity in PERSON_ENTITIES
        identifiers = [f.id for f in filters if filter_context.names_individuals(f)]
        release = self.gate.release
        answers = []
        refusals = []
        for reader, entitlement in plan.readers:
            terms = release.terms(entitlement, request.granularity, person_level=target != VARIANT)
            refusal = release.refusal(
                terms,
                names=f"{context.entity} {context.id}" if named else None,  # type: ignore[union-attr]
                identifiers=identifiers,
            )
            if refusal is not None:
                refusals.append(refusal)
                answers.append(
                    _DatasetAnswer(
                        reader,
                        Selection(),
                        terms,
                        withheld=True,
                        warnings=[f"dataset {reader.dataset_id}: {refusal}"],
                    )
                )
                continue
            query = None
            if plan.variant_query is not None:
                query = VariantQuery(**vars(plan.variant_query))
                if query.gene_id:  # the operator's gene table, in this dataset's assembly
                    genes = live.genes.get(reader.assembly, {})
                    query.gene_regions = genes.get(query.gene_id.upper())
                if terms.floor is not None:
                    # Anonymous allele queries never reveal rare alleles.
                    query.min_allele_count = terms.floor.min_count
                    query.min_allele_frequency = terms.floor.min_frequency
            selection = select(
                reader,
                target,
                filters=filters,
                context=context,
                filter_context=filter_context,
                variant_query=query,
                min_entries=terms.min_group,
            )
            answer = _DatasetAnswer(reader, selection, terms, query)
            if target == VARIANT and selection.group is not None and not terms.exact:
                self._floor_in_group(answer, caller)
            elif terms.floor is not None and target == VARIANT and query is not None:
                self._guard_alleles(answer, caller)
            elif target != VARIANT and not entry.collection:
                self._enough_people(answer, caller, target)
            if terms.counts and not entry.collection and not answer.withheld:
                self._release_count(answer, caller, target)
            answers.append(answer)
        if refusals and len(refusals) == len(plan.readers):
            raise AccessDeniedError(refusals[0] + "; ask with a DAC grant for the dataset")
        if plan.variant_query is not None and not any(a.exists for a in answers):
            plan.warnings.extend(_why_no_variant(plan.variant_query, live.genes))
        if entry.collection:
            doc = self._collections(entry, request, answers, plan)
        else:
            doc = self._resultsets(entry, request, answers, plan, single_id is not None)
        if notes is not None:
            notes.results = doc.get("responseSummary", {}).get("numTotalResults")
        return doc

    def _guard_alleles(self, answer: _DatasetAnswer, caller: Caller) -> None:
        """An anonymous allele answer: only alleles the release policy shows (at or above
        the floor, none decided by one carrier; ``PublicAlleleGuard``), looking at the
        first ``_PUBLIC_CANDIDATES`` matches; and a note of what is withheld."""
        reader, query, selection = answer.reader, answer.query, answer.selection
        assert query is not None
        release = self.gate.release
        floor = None
        if selection.variant_idx is not None:
            candidates = selection.variant_idx[:_PUBLIC_CANDIDATES]
        elif selection.count == 0:
            candidates = np.zeros(0, dtype=np.int64)
        else:
            candidates = reader.variant_sites(query, _PUBLIC_CANDIDATES)[0][:_PUBLIC_CANDIDATES]
        if len(candidates):
            sites, alleles, counts = reader.allele_rows(candidates)

            def copies(rows: np.ndarray) -> np.ndarray:
                genotypes = reader.genotype_rows(sites[rows])
                return (genotypes == alleles[rows, None, None]).sum(axis=2)

            guarded = release.public_alleles(
                answer.terms,
                caller=caller.identity,
                dataset=reader.dataset_id,
                sample_ids=reader.biosample_ids,
                candidates=candidates,
                allele_counts=counts,
                genotypes=copies,
                first_only=not answer.terms.counts,
            )
            answer.selection = Selection(variant_idx=guarded.shown)
            floor = guarded.floor
        if not answer.exists or answer.terms.counts:
            warning = release.floor_warning(answer.terms, reader.dataset_id, floor)
            if warning:
                answer.warnings.append(warning)

    def _enough_people(self, answer: _DatasetAnswer, caller: Caller, entity: str) -> None:
        """Below record level, an answer about people stands for at least ``min_count`` of
        them: fewer (none included, or the two could be told apart) are withheld."""
        minimum = answer.terms.min_group
        if answer.terms.exact:
            return
        if minimum > 1 and answer.selection.count < minimum:
            answer.withheld = True
            answer.warnings.append(
                f"dataset {answer.reader.dataset_id}: fewer than {answer.terms.min_group} "
                "match (perhaps none); answers about so few people are withheld, not "
                "reported absent"
            )
        elif not answer.terms.counts and entity in PERSON_ENTITIES:
            # a yes is guarded like a count (counts go through _release_count)
            self._differenced(answer, caller, answer.selection.ids, entity)

    def _differenced(
        self, answer: _DatasetAnswer, caller: Caller, people: list[str], entity: str
    ) -> bool:
        """Withhold ``answer`` when the people it is about (``entity`` entries of its
        dataset) differ from an earlier answer's by fewer than k; say so."""
        reader = answer.reader
        warning = self.gate.release.people_asked_about(
            answer.terms,
            caller=caller.identity,
            subject=f"{reader.dataset_id}/{entity}",
            ids=lambda: people,
            population=len(reader.entry_ids(entity)),
        )
        if warning is None:
            return False
        answer.withheld = True
        answer.warnings.append(f"dataset {warning}")
        return True

    def _floor_in_group(self, answer: _DatasetAnswer, caller: Caller) -> None:
        """A variant query whose filters or context leave some people, below record
        level: a variant is shown only when at least ``min_count`` of those people carry
        it, and, to anonymous callers, when it reaches the public floor among them with no
        one carrier deciding it. The floors are about the people asked about, not the
        whole dataset."""
        reader, terms, selection = answer.reader, answer.terms, answer.selection
        group = selection.group
        assert group is not None and selection.variant_idx is not None
        people = [reader.samples[c][1] for c in group.columns]
        if self._differenced(answer, caller, people, PERSON_ENTITIES[0]):
            return
        mask = group.carriers >= terms.min_group
        floor = terms.floor
        if floor is not None:
            mask &= group.allele_counts >= floor.min_count
            if floor.min_frequency > 0:
                chromosomes = max(2 * len(group.columns), 1)
                mask &= group.allele_counts / chromosomes >= floor.min_frequency
        selection = selection.keep(mask)
        shown_floor = None
        if floor is not None and floor.guard and selection.variant_idx is not None:
            candidates = selection.variant_idx[:_PUBLIC_CANDIDATES]
            counts = selection.group.allele_counts[:_PUBLIC_CANDIDATES]  # type: ignore[union-attr]
            if len(candidates):
                sites, alleles, _ = reader.allele_rows(candidates)
                columns = group.columns

                def copies(rows: np.ndarray) -> np.ndarray:
                    genotypes = reader.genotype_rows(sites[rows])[:, columns, :]
                    return (genotypes == alleles[rows, None, None]).sum(axis=2)

                guarded = self.gate.release.public_alleles(
                    terms,
                    caller=caller.identity,
                    dataset=reader.dataset_id,
                    sample_ids=[reader.biosample_ids[c] for c in columns],
                    candidates=candidates,
                    allele_counts=counts,
                    genotypes=copies,
                    first_only=not terms.counts,
                )
                selection = selection.keep(np.isin(selection.variant_idx, guarded.shown))
                shown_floor = guarded.floor
        answer.selection = selection
        if not answer.exists or terms.counts:
            answer.warnings.append(
                f"dataset {reader.dataset_id}: below record level a variant is shown only "
                f"when at least {terms.min_group} of the people your filters leave carry it"
                + (
                    f" and it is seen at least {shown_floor or floor.min_count} times among them"
                    if floor is not None
                    else ""
                )
                + "; others are withheld, not absent"
            )

    def _release_count(self, answer: _DatasetAnswer, caller: Caller, entity: str) -> None:
        """The dataset's count as the release policy lets it leave (exact for callers
        entitled to the records; made safe, or withheld by the differencing guard, for
        the others)."""
        reader = answer.reader
        released = self.gate.release.count(
            answer.terms,
            answer.selection.count,
            caller=caller.identity,
            subject=f"{reader.dataset_id}/{entity}",
            ids=lambda: answer.selection.ids,
            population=len(reader.entry_ids(entity)) if entity != VARIANT else 0,
        )
        answer.count = released.count
        if released.warning:
            answer.warnings.append(f"dataset {released.warning}")

    def _plan(
        self,
        entry: EntryType,
        request: BeaconRequest,
        live: LiveDatasets,
        single_id: str | None,
        visible: dict[str, tuple[DatasetReader, Granularity]],
    ) -> _Plan:
        plan = _Plan(readers=[])
        assembly = None
        if entry.entity == VARIANT:
            parsed = variant_query(request.parameters)
            plan.variant_query = parsed.query
            assembly = parsed.assembly
            if single_id is not None:
                plan.variant_query.variant_ids = [single_id]
        elif request.parameters:
            raise QueryError(
                f"requestParameters {sorted(request.parameters)} apply to g_variants only; "
                f"use filters to select {entry.path}"
            )
        wanted = set(request.datasets) if request.datasets else None
        if wanted:
            missing = wanted - set(visible)
            if missing:
                # The same answer whether a dataset is absent or closed to this caller.
                raise AccessDeniedError(
                    f"dataset(s) {sorted(missing)} do not exist here or are not open to you; "
                    "see /beacon/v2/datasets for those you can query, or apply to the "
                    "node's Data Access Committee"
                )
        for dataset_id, (reader, allowed) in visible.items():
            if wanted is not None and dataset_id not in wanted:
                continue
            if reader.test_data != request.test_mode:
                continue
            if assembly and reader.assembly != assembly:
                continue
            plan.readers.append((reader, allowed))
        return plan

    def visible(
        self, live: LiveDatasets, caller: Caller
    ) -> dict[str, tuple[DatasetReader, Entitlement]]:
        """Datasets ``caller`` may see, with the most each gives them."""
        access = self.gate.access
        visible = {}
        for dataset_id, reader in live.readers.items():
            entitlement = access.entitlement(caller, dataset_id, reader.tier, reader.granularity)
            if entitlement is not None:
                visible[dataset_id] = (reader, entitlement)
        return visible

    def filtering_terms(
        self,
        caller: Caller,
        *,
        scope: str | None = None,
        entry: tuple[EntryType, str] | None = None,
    ) -> dict[str, Any]:
        """The terms ``caller`` may filter on: of the datasets they may see (no test data),
        optionally of one scope, or of one entry (whose terms describe it: only for those
        who may see its record)."""
        live = self.datasets.live()
        visible = [
            (reader, entitlement)
            for reader, entitlement in self.visible(live, caller).values()
            if not reader.test_data
        ]
        if entry is None:
            readers = [reader for reader, _ in visible]
            response = filtering_terms(live, scope=scope, readers=readers)
        else:
            kind, entry_id = entry
            record = kind.entity not in ("dataset", "cohort")
            readers = [
                reader
                for reader, entitlement in visible
                if (entitlement.granularity == Granularity.RECORD or not record)
                and (
                    reader.dataset_id == entry_id
                    if kind.entity == "dataset"
                    else entry_id in reader.entry_ids(kind.entity)
                )
            ]
            if not readers:
                raise NotFoundError(f"{kind.id} {entry_id!r} not found (or not open to you)")
            one = (kind.entity, entry_id) if record else None
            response = filtering_terms(live, readers=readers, entry=one)
        return {
            "meta": framework.informational_meta(
                self.config,
                {"entityType": "filteringTerm", "schema": "beacon-filtering-terms-v2.0.0"},
            ),
            "response": response,
        }

    def _returned_granularity(
        self, request: BeaconRequest, answers: list[_DatasetAnswer]
    ) -> Granularity:
        best = max((a.granularity for a in answers), default=Granularity.BOOLEAN)
        return min(Granularity(request.granularity), best)

    def _resultsets(
        self,
        entry: EntryType,
        request: BeaconRequest,
        answers: list[_DatasetAnswer],
        plan: _Plan,
        with_carriers: bool,
    ) -> dict[str, Any]:
        granularity = self._returned_granularity(request, answers)
        exists = any(a.exists for a in answers)
        summary: dict[str, Any] = {"exists": exists}
        doc: dict[str, Any] = {
            "meta": self.meta(request, entry, granularity),
            "responseSummary": summary,
        }
        warnings = plan.warnings + [w for a in answers for w in a.warnings]
        if warnings:
            doc["info"] = {"warnings": warnings}
        if granularity == Granularity.BOOLEAN:
            return doc
        countable = [a for a in answers if a.granularity != Granularity.BOOLEAN]
        counts = [a.count for a in countable if a.count is not None]
        summary["numTotalResults"] = sum(c.value for c in counts)
        precision = {c.precision for c in counts} - {"exact"}
        if len(countable) < len(answers) and any(a.terms.counts for a in answers):
            precision.add("imprecise")  # a dataset's count was withheld: the total omits it
        if precision:
            # Beacon v2.2: the total is not exact (rounded, or a floor for small counts).
            summary["countPrecision"] = "imprecise" if "imprecise" in precision else "rounded"
        result_sets = []
        if request.include != "NONE":
            for answer in countable:
                if request.include == "HIT" and not answer.exists:
                    continue
                if request.include == "MISS" and answer.exists:
                    continue
                result_sets.append(self._resultset(entry, request, answer, with_carriers))
        doc["response"] = {"resultSets": result_sets}
        return doc

    def _resultset(
        self, entry: EntryType, request: BeaconRequest, answer: _DatasetAnswer, with_carriers: bool
    ) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        if answer.granularity == Granularity.RECORD:
            results = self._page(entry, request, answer, with_carriers)
        count = answer.count
        assert count is not None
        result_set: dict[str, Any] = {
            "id": answer.reader.dataset_id,
            "setType": "dataset",
            "exists": answer.exists,
            "resultsCount": count.value,
            "results": results,
        }
        if count.precision != "exact":
            result_set["countPrecision"] = count.precision
        if answer.granularity != Granularity.RECORD:
            result_set["info"] = {"returnedGranularity": answer.granularity}
        return result_set

    def _limit(self, request: BeaconRequest) -> int:
        config = self.config
        limit = config.default_limit if request.limit is None else request.limit
        if limit == 0:
            return config.max_limit
        return min(limit, config.max_limit)

    def _page(
        self, entry: EntryType, request: BeaconRequest, answer: _DatasetAnswer, with_carriers: bool
    ) -> list[dict[str, Any]]:
        reader, selection = answer.reader, answer.selection
        limit, skip = self._limit(request), request.skip
        if entry.entity != VARIANT:
            ids = selection.ids[skip : skip + limit]
            return [_strip(doc) for doc in reader.entry_docs(entry.entity, ids)]
        if selection.variant_idx is not None:
            page = [int(i) for i in selection.variant_idx[skip : skip + limit]]
        else:
            page = reader.find_variant_indices(
                answer.query or VariantQuery(), limit=limit, offset=skip
            )
        results = []
        for site_idx, allele_idx, text in records.variant_records(reader, page):
            if with_carriers:
                row = {"site_idx": site_idx, "allele_idx": allele_idx}
                text = records.with_case_level_data(text, carriers(reader, row))
            results.append(orjson.Fragment(text))
        return results

    def _collections(
        self, entry: EntryType, request: BeaconRequest, answers: list[_DatasetAnswer], plan: _Plan
    ) -> dict[str, Any]:
        """Datasets and cohorts: catalogue metadata, returned as records to anyone who
        does not ask for less (a boolean or a count of the collections)."""
        docs = []
        for answer in answers:
            docs.extend(answer.reader.entry_docs(entry.entity, answer.selection.ids))
        granularity = request.granularity if request.granularity_given else Granularity.RECORD
        summary: dict[str, Any] = {"exists": bool(docs)}
        if granularity >= Granularity.COUNT:
            summary["numTotalResults"] = len(docs)
        doc: dict[str, Any] = {
            "meta": self.meta(request, entry, granularity),
            "responseSummary": summary,
        }
        if granularity >= Granularity.RECORD:
            skip, limit = request.skip, self._limit(request)
            doc["response"] = {"collections": [_strip(d) for d in docs[skip : skip + limit]]}
        if plan.warnings:
            doc["info"] = {"warnings": plan.warnings}
        return doc


def _why_no_variant(query: VariantQuery, genes: dict[str, dict[str, Any]]) -> list[str]:
    """Hints for a variant query nothing answered, from the query alone and the node's
    gene tables (never from the data: a hint must not tell what a floor withholds)."""
    hints = []
    if query.chrom is not None and len(query.start) == 1 and not query.end:
        start = query.start[0]
        hints.append(
            f"no variant starts at start={start}; Beacon v2 coordinates are 0-based, so a VCF "
            f"POS of {start} is start={start - 1} (and start={start} is VCF POS {start + 1})"
        )
    if query.gene_id and not any(query.gene_id.upper() in table for table in genes.values()):
        listed = sum(len(table) for table in genes.values())
        hints.append(
            f"geneId {query.gene_id!r} is not in this node's gene table "
            + (f"({listed:,} genes)" if listed else "(it has none)")
            + "; it matches only variants annotated with that gene symbol: check the HGNC "
            "symbol's spelling"
        )
    return hints


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}
