"""Answering Beacon entry queries: datasets in scope, per-dataset granularity, envelopes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genofed._exceptions import AccessDeniedError, QueryError
from genofed.config import GRANULARITY_ORDER, Granularity
from genofed.governance.access import Caller
from genofed.governance.disclosure import SafeCount, safe_count
from genofed.node.beacon import records
from genofed.node.beacon.model import API_VERSION, EntryType, returned_schema
from genofed.node.beacon.request import BeaconRequest, variant_query
from genofed.node.runtime import LiveDatasets, NodeRuntime
from genofed.store.dataset_reader import DatasetReader
from genofed.store.selection import VARIANT, Context, Selection, carriers, select
from genofed.store.variant_query import VariantQuery

_PUBLIC_CANDIDATES = 5000  # variants examined per dataset by the public individual guard


def lower_granularity(a: Granularity, b: Granularity) -> Granularity:
    return a if GRANULARITY_ORDER.index(a) <= GRANULARITY_ORDER.index(b) else b


@dataclass
class _DatasetAnswer:
    reader: DatasetReader
    selection: Selection
    granularity: Granularity
    query: VariantQuery | None = None  # the variant query as run on this dataset
    warning: str | None = None  # why a count was withheld

    @property
    def exists(self) -> bool:
        return self.selection.count > 0


@dataclass
class _Plan:
    readers: list[tuple[DatasetReader, Granularity]]  # visible datasets, most the caller gets
    warnings: list[str] = field(default_factory=list)
    variant_query: VariantQuery | None = None


class BeaconService:
    def __init__(self, runtime: NodeRuntime):
        self.runtime = runtime

    # -- envelopes --------------------------------------------------------------------

    def meta(
        self, request: BeaconRequest, entry: EntryType | None, granularity: Granularity
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "beaconId": self.runtime.config.beacon_id,
            "apiVersion": API_VERSION,
            "returnedGranularity": granularity,
            "receivedRequestSummary": request.summary(),
            "returnedSchemas": [returned_schema(entry)] if entry else [],
        }
        if request.test_mode:
            meta["testMode"] = True
        return meta

    def error(self, request: BeaconRequest | None, status: int, message: str) -> dict[str, Any]:
        request = request or BeaconRequest()
        return {
            "meta": self.meta(request, None, "boolean"),
            "error": {"errorCode": status, "errorMessage": message},
        }

    # -- queries ----------------------------------------------------------------------

    def query(
        self,
        entry: EntryType,
        request: BeaconRequest,
        caller: Caller,
        *,
        context: Context | None = None,
        single_id: str | None = None,
        outcome: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Answer one entry query for ``caller``; ``outcome`` receives what the audit log
        records (datasets touched, results returned)."""
        live = self.runtime.live()
        visible = self.visible(live, caller)
        plan = self._plan(entry, request, live, single_id, visible)
        if outcome is not None:
            outcome["datasets"] = [reader.dataset_id for reader, _ in plan.readers]
        filter_context = live.filter_context(visible)
        filters = [filter_context.classify(f) for f in request.filters]
        for flt in filters:
            warning = filter_context.warning(flt)
            if warning:
                plan.warnings.append(warning)
        target = entry.entity
        if single_id is not None and target != VARIANT:
            context = Context(target, single_id)
        answers = []
        gate = self.runtime.gate
        rules = self.runtime.config.disclosure
        for reader, allowed in plan.readers:
            query = None
            public = False
            if plan.variant_query is not None:
                query = VariantQuery(**vars(plan.variant_query))
                if query.gene_id:  # the operator's gene table, in this dataset's assembly
                    genes = live.genes.get(reader.assembly, {})
                    query.gene_regions = genes.get(query.gene_id.upper())
                if not caller.registered and not gate.access.holds_grant(caller, reader.dataset_id):
                    # Public allele queries never reveal rare alleles.
                    query.min_allele_count = rules.public_min_allele_count
                    query.min_allele_frequency = rules.public_min_allele_frequency
                    public = True
            selection = select(
                reader,
                target,
                filters=filters,
                context=context,
                filter_context=filter_context,
                variant_query=query,
            )
            if public and target == VARIANT and query is not None and rules.public_individual_guard:
                selection = self._guard_individuals(reader, query, selection)
            granularity = lower_granularity(request.granularity, allowed)  # type: ignore[arg-type]
            answer = _DatasetAnswer(reader, selection, granularity, query)
            if granularity == "count" and target != VARIANT and not entry.collection:
                self._guard_differencing(answer, caller, target)
            answers.append(answer)
        if entry.collection:
            doc = self._collections(entry, request, answers, plan)
        else:
            doc = self._resultsets(entry, request, answers, plan, single_id is not None)
        if outcome is not None:
            outcome["results"] = doc.get("responseSummary", {}).get("numTotalResults")
        return doc

    def _guard_individuals(
        self, reader: DatasetReader, query: VariantQuery, selection: Selection
    ) -> Selection:
        """Public allele answers without any allele that one carrier alone lifts over the
        floor (``IndividualGuard``); looks at the first ``_PUBLIC_CANDIDATES`` matches."""
        if selection.variant_idx is not None:
            candidates = selection.variant_idx[:_PUBLIC_CANDIDATES]
        elif selection.count == 0:
            return selection
        else:
            candidates = reader.variant_sites(query, _PUBLIC_CANDIDATES)[0][:_PUBLIC_CANDIDATES]
        if len(candidates) == 0:
            return selection
        sites, alleles, counts = reader.allele_rows(candidates)

        def copies(rows: np.ndarray) -> np.ndarray:
            genotypes = reader.genotype_rows(sites[rows])
            return (genotypes == alleles[rows, None, None]).sum(axis=2)

        kept = self.runtime.gate.individuals.kept(
            reader.dataset_id,
            reader.biosample_ids,
            candidates,
            counts,
            copies,
            max(self.runtime.config.disclosure.public_min_allele_count, 1),
        )
        return Selection(variant_idx=kept)

    def _guard_differencing(self, answer: _DatasetAnswer, caller: Caller, entity: str) -> None:
        """Withhold a count that, set against an earlier one, isolates < k individuals."""
        reader = answer.reader
        population = len(reader.entry_ids(entity))
        if not self.runtime.gate.differencing.allows(
            caller.identity, f"{reader.dataset_id}/{entity}", answer.selection.ids, population
        ):
            answer.granularity = "boolean"
            answer.warning = (
                f"dataset {reader.dataset_id}: count withheld; with an earlier query it would "
                f"single out fewer than {self.runtime.config.disclosure.differencing_k} "
                "individuals"
            )

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
    ) -> dict[str, tuple[DatasetReader, Granularity]]:
        """Datasets ``caller`` may see, with the most detail each gives them."""
        access = self.runtime.gate.access
        visible = {}
        for dataset_id, reader in live.readers.items():
            allowed = access.granularity(
                caller,
                dataset_id,
                reader.tier,
                reader.granularity,  # type: ignore[arg-type]
            )
            if allowed is not None:
                visible[dataset_id] = (reader, allowed)
        return visible

    def _returned_granularity(
        self, request: BeaconRequest, answers: list[_DatasetAnswer]
    ) -> Granularity:
        best: Granularity = "boolean"
        for answer in answers:
            if GRANULARITY_ORDER.index(answer.granularity) > GRANULARITY_ORDER.index(best):
                best = answer.granularity
        return lower_granularity(request.granularity, best)

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
        warnings = plan.warnings + [a.warning for a in answers if a.warning]
        if warnings:
            doc["info"] = {"warnings": warnings}
        if granularity == "boolean":
            return doc
        countable = [a for a in answers if a.granularity != "boolean"]
        counts = [self._count(a) for a in countable]
        summary["numTotalResults"] = sum(c.value for c in counts)
        precision = {c.precision for c in counts} - {"exact"}
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
        if answer.granularity == "record":
            results = self._page(entry, request, answer, with_carriers)
        count = self._count(answer)
        result_set: dict[str, Any] = {
            "id": answer.reader.dataset_id,
            "setType": "dataset",
            "exists": answer.exists,
            "resultsCount": count.value,
            "results": results,
        }
        if count.precision != "exact":
            result_set["countPrecision"] = count.precision
        if answer.granularity != "record":
            result_set["info"] = {"returnedGranularity": answer.granularity}
        return result_set

    def _count(self, answer: _DatasetAnswer) -> SafeCount:
        """Exact for callers who see the records anyway; made safe for aggregate callers."""
        n = answer.selection.count
        if answer.granularity == "record":
            return SafeCount(n, "exact")
        return safe_count(n, self.runtime.config.disclosure)

    def _limit(self, request: BeaconRequest) -> int:
        config = self.runtime.config
        if request.limit == 0:
            return config.max_limit
        return min(request.limit, config.max_limit)

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
            rows = reader.variants_by_index(page)
        else:
            rows = reader.find_variants(answer.query or VariantQuery(), limit=limit, offset=skip)
        return [
            records.variant_document(
                row,
                assembly=reader.assembly,
                dataset_id=reader.dataset_id,
                carriers=carriers(reader, row) if with_carriers else None,
            )
            for row in rows
        ]

    def _collections(
        self, entry: EntryType, request: BeaconRequest, answers: list[_DatasetAnswer], plan: _Plan
    ) -> dict[str, Any]:
        """Datasets and cohorts: catalogue metadata, returned as records to anyone."""
        docs = []
        for answer in answers:
            docs.extend(answer.reader.entry_docs(entry.entity, answer.selection.ids))
        skip, limit = request.skip, self._limit(request)
        page = [_strip(d) for d in docs[skip : skip + limit]]
        doc: dict[str, Any] = {
            "meta": self.meta(request, entry, "record"),
            "responseSummary": {"exists": bool(docs), "numTotalResults": len(docs)},
            "response": {"collections": page},
        }
        if plan.warnings:
            doc["info"] = {"warnings": plan.warnings}
        return doc


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}
