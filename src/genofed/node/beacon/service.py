"""Answering Beacon entry queries: datasets in scope, per-dataset granularity, envelopes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from genofed._exceptions import QueryError
from genofed.config import GRANULARITY_ORDER, Granularity
from genofed.node.beacon import records
from genofed.node.beacon.model import API_VERSION, EntryType, returned_schema
from genofed.node.beacon.request import BeaconRequest, variant_query
from genofed.node.runtime import LiveDatasets, NodeRuntime
from genofed.store.dataset_reader import DatasetReader
from genofed.store.selection import VARIANT, Context, Selection, carriers, select
from genofed.store.variant_query import VariantQuery


def lower_granularity(a: Granularity, b: Granularity) -> Granularity:
    return a if GRANULARITY_ORDER.index(a) <= GRANULARITY_ORDER.index(b) else b


@dataclass
class _DatasetAnswer:
    reader: DatasetReader
    selection: Selection
    granularity: Granularity
    query: VariantQuery | None = None  # the variant query as run on this dataset

    @property
    def exists(self) -> bool:
        return self.selection.count > 0


@dataclass
class _Plan:
    readers: list[DatasetReader]
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
        *,
        context: Context | None = None,
        single_id: str | None = None,
    ) -> dict[str, Any]:
        live = self.runtime.live()
        plan = self._plan(entry, request, live, single_id)
        filters = [live.filter_context.classify(f) for f in request.filters]
        for flt in filters:
            warning = live.filter_context.warning(flt)
            if warning:
                plan.warnings.append(warning)
        target = entry.entity
        if single_id is not None and target != VARIANT:
            context = Context(target, single_id)
        answers = []
        for reader in plan.readers:
            query = None
            if plan.variant_query is not None:
                query = VariantQuery(**vars(plan.variant_query))
                if query.gene_id:  # the operator's gene table, in this dataset's assembly
                    genes = live.genes.get(reader.assembly, {})
                    query.gene_regions = genes.get(query.gene_id.upper())
            selection = select(
                reader,
                target,
                filters=filters,
                context=context,
                filter_context=live.filter_context,
                variant_query=query,
            )
            granularity = lower_granularity(request.granularity, reader.granularity)  # type: ignore[arg-type]
            answers.append(_DatasetAnswer(reader, selection, granularity, query))
        if entry.collection:
            return self._collections(entry, request, answers, plan)
        return self._resultsets(entry, request, answers, plan, with_carriers=single_id is not None)

    def _plan(
        self, entry: EntryType, request: BeaconRequest, live: LiveDatasets, single_id: str | None
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
            missing = wanted - set(live.readers)
            if missing:
                plan.warnings.append(f"dataset(s) {sorted(missing)} are not available here")
        for dataset_id, reader in live.readers.items():
            if wanted is not None and dataset_id not in wanted:
                continue
            if reader.test_data != request.test_mode:
                continue
            if assembly and reader.assembly != assembly:
                continue
            plan.readers.append(reader)
        return plan

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
        if plan.warnings:
            doc["info"] = {"warnings": plan.warnings}
        if granularity == "boolean":
            return doc
        countable = [a for a in answers if a.granularity != "boolean"]
        summary["numTotalResults"] = sum(a.selection.count for a in countable)
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
        result_set: dict[str, Any] = {
            "id": answer.reader.dataset_id,
            "setType": "dataset",
            "exists": answer.exists,
            "resultsCount": answer.selection.count,
            "results": results,
        }
        if answer.granularity != "record":
            result_set["info"] = {"returnedGranularity": answer.granularity}
        return result_set

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
