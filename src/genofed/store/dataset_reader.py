"""Read access to one live dataset version: variants, entries and genotypes.

One DuckDB connection per version, opened read-only; each thread gets its own cursor
because DuckDB connections are not shared between threads.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections import OrderedDict
from functools import cached_property
from typing import Any

import duckdb
import numpy as np
import zarr

from genofed._exceptions import ConfigError
from genofed.config import Granularity
from genofed.store.dataset_db import FORMAT_VERSION
from genofed.store.node_dir import DatasetVersion, hold_for_reading
from genofed.store.position_index import FILE_NAME as POSITIONS_FILE
from genofed.store.position_index import PositionIndex
from genofed.store.variant_query import VariantQuery, where_clause

VARIANT_COLUMNS = (
    'variant_idx, site_idx, allele_idx, variant_id, chrom, pos, start, "end", ref, alt, '
    "vtype, vcf_id, ac, an, af, n_het, n_homalt, genes, aa_changes, hgvs, effects, doc"
)
VARIANT_FIELDS = tuple(c.strip().strip('"') for c in VARIANT_COLUMNS.split(","))
# Filter answers kept per reader (a dataset version never changes), up to this many ids in
# all: the same filters are asked again and again, and each costs a DuckDB query.
_FILTER_CACHE_IDS = 200_000


class DatasetReader:
    def __init__(self, version: DatasetVersion):
        self.version = version
        # prune leaves this version alone while the reader lives (closed with it, or when a
        # replaced reader is collected)
        self._hold = weakref.finalize(self, os.close, hold_for_reading(version.database))
        self._con = duckdb.connect(str(version.database), read_only=True)
        self._local = threading.local()
        self._entry_ids: dict[str, tuple[str, ...]] = {}
        self._entry_links: dict[str, dict[str, tuple[str | None, str | None, str | None]]] = {}
        self._filtered: OrderedDict[tuple, frozenset[str]] = OrderedDict()
        self._filtered_ids = 0
        self._filtered_lock = threading.Lock()
        doc = self._con.execute("SELECT doc FROM meta").fetchone()
        self.meta: dict[str, Any] = json.loads(doc[0])
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise ConfigError(
                f"dataset {version.dataset_id} was written in format "
                f"{self.meta.get('format_version')}; re-ingest it with this genofed"
            )

    @property
    def dataset_id(self) -> str:
        return self.version.dataset_id

    @property
    def assembly(self) -> str:
        return str(self.meta["assembly"])

    @property
    def granularity(self) -> Granularity:
        """The most this dataset ever gives anyone (set at ingest)."""
        return Granularity(self.meta.get("granularity", "boolean"))

    @property
    def tier(self) -> str | None:
        """The tier given at ingest (``node.yaml`` may override it)."""
        tier = self.meta.get("tier")
        return str(tier) if tier else None

    @property
    def test_data(self) -> bool:
        return bool(self.meta.get("test_data", False))

    def cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self._con.cursor()
        return cur

    def close(self) -> None:
        self._con.close()
        self._hold()

    # -- variants ---------------------------------------------------------------------

    @cached_property
    def _positions(self) -> PositionIndex | None:
        path = self.version.path / POSITIONS_FILE
        return PositionIndex(path) if path.exists() else None

    def position_rows(self, chrom: str, pos: int) -> tuple[int, int] | None:
        """First and last row (``variant_idx``) of the variants at 1-based ``pos`` of
        ``chrom`` (first > last when there are none); ``None`` without a position index."""
        if self._positions is None:
            return None
        lo, hi = self._positions.rows_at(chrom, pos - 1)
        return lo, hi - 1

    def _indexed(self, query: VariantQuery) -> np.ndarray | None:
        if self._positions is None or not PositionIndex.covers(query):
            return None
        return self._positions.lookup(query)

    def count_variants(self, query: VariantQuery) -> int:
        rows = self._indexed(query)
        if rows is not None:
            return len(rows)
        where, params = where_clause(query)
        row = self.cursor().execute(f"SELECT count(*) FROM variants WHERE {where}", params)
        return int(row.fetchone()[0])

    def find_variants(
        self, query: VariantQuery, *, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        rows = self._indexed(query)
        if rows is not None:
            page = rows[offset:] if limit is None else rows[offset : offset + limit]
            return self.variants_by_index([int(i) for i in page])
        where, params = where_clause(query)
        sql = f"SELECT {VARIANT_COLUMNS} FROM variants WHERE {where} ORDER BY variant_idx"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params = [*params, limit, offset]
        rows = self.cursor().execute(sql, params).fetchall()
        return [dict(zip(VARIANT_FIELDS, row, strict=True)) for row in rows]

    def find_variant_indices(
        self, query: VariantQuery, *, limit: int, offset: int = 0
    ) -> list[int]:
        """``variant_idx`` of a page of the variants ``query`` matches, in order."""
        rows = self._indexed(query)
        if rows is not None:
            return [int(i) for i in rows[offset : offset + limit]]
        where, params = where_clause(query)
        sql = (
            f"SELECT variant_idx FROM variants WHERE {where} ORDER BY variant_idx LIMIT ? OFFSET ?"
        )
        return [int(r[0]) for r in self.cursor().execute(sql, [*params, limit, offset]).fetchall()]

    def variant_sites(
        self, query: VariantQuery, cap: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(variant_idx, site_idx, allele_idx)`` of matches, at most ``cap`` + 1 of them."""
        where, params = where_clause(query)
        rows = (
            self.cursor()
            .execute(
                f"SELECT variant_idx, site_idx, allele_idx FROM variants WHERE {where} "
                "ORDER BY variant_idx LIMIT ?",
                [*params, cap + 1],
            )
            .fetchnumpy()
        )
        return (
            np.asarray(rows["variant_idx"], dtype=np.int64),
            np.asarray(rows["site_idx"], dtype=np.int64),
            np.asarray(rows["allele_idx"], dtype=np.int64),
        )

    def allele_rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(site_idx, allele_idx, ac)`` of the given variants, in the order given."""
        rows = (
            self.cursor()
            .execute(
                "SELECT variant_idx, site_idx, allele_idx, ac FROM variants "
                "WHERE variant_idx IN (SELECT unnest(?))",
                [np.asarray(indices, dtype=np.int64).tolist()],
            )
            .fetchnumpy()
        )
        order = {int(v): i for i, v in enumerate(rows["variant_idx"])}
        pick = np.array([order[int(v)] for v in indices], dtype=np.int64)
        return (
            np.asarray(rows["site_idx"], dtype=np.int64)[pick],
            np.asarray(rows["allele_idx"], dtype=np.int64)[pick],
            np.asarray(rows["ac"], dtype=np.int64)[pick],
        )

    def variants_by_index(self, indices: list[int]) -> list[dict[str, Any]]:
        rows = (
            self.cursor()
            .execute(
                f"SELECT {VARIANT_COLUMNS} FROM variants WHERE variant_idx IN (SELECT unnest(?)) "
                "ORDER BY variant_idx",
                [indices],
            )
            .fetchall()
        )
        return [dict(zip(VARIANT_FIELDS, row, strict=True)) for row in rows]

    # -- genotypes --------------------------------------------------------------------

    @cached_property
    def _genotypes(self) -> zarr.Array:
        return zarr.open_array(str(self.version.genotypes / "call_genotype"), mode="r")

    @cached_property
    def samples(self) -> list[tuple[str, str]]:
        """``(biosample_id, individual_id)`` per genotype-matrix column."""
        rows = (
            self.cursor()
            .execute("SELECT biosample_id, individual_id FROM samples ORDER BY sample_idx")
            .fetchall()
        )
        return [(r[0], r[1]) for r in rows]

    @cached_property
    def biosample_ids(self) -> list[str]:
        """Biosample id per genotype-matrix column."""
        return [biosample for biosample, _ in self.samples]

    def genotype_rows(self, site_indices: np.ndarray) -> np.ndarray:
        """Genotypes of the given sites: ``(len(site_indices), samples, 2)``."""
        if len(site_indices) == 0 or not self.samples:
            return np.zeros((len(site_indices), len(self.samples), 2), dtype=np.int8)
        return self._genotypes.get_orthogonal_selection(
            (np.asarray(site_indices), slice(None), slice(None))
        )

    # -- entries ----------------------------------------------------------------------

    def entry_docs(self, entity: str, ids: list[str] | None = None) -> list[dict[str, Any]]:
        sql = "SELECT doc FROM entries WHERE entity = ?"
        params: list[Any] = [entity]
        if ids is not None:
            sql += " AND id IN (SELECT unnest(?))"
            params.append(ids)
        rows = self.cursor().execute(sql + " ORDER BY id", params).fetchall()
        return [json.loads(r[0]) for r in rows]

    def entry_ids(self, entity: str) -> list[str]:
        # A dataset version never changes, so entry ids and links are read once.
        cached = self._entry_ids.get(entity)
        if cached is not None:
            return list(cached)
        rows = (
            self.cursor()
            .execute("SELECT id FROM entries WHERE entity = ? ORDER BY id", [entity])
            .fetchall()
        )
        self._entry_ids[entity] = tuple(r[0] for r in rows)
        return [r[0] for r in rows]

    def entry_links(self, entity: str) -> dict[str, tuple[str | None, str | None, str | None]]:
        """id → (individual_id, biosample_id, run_id) for every entry of one entity."""
        cached = self._entry_links.get(entity)
        if cached is not None:
            return cached
        rows = (
            self.cursor()
            .execute(
                "SELECT id, individual_id, biosample_id, run_id FROM entries WHERE entity = ?",
                [entity],
            )
            .fetchall()
        )
        links = {r[0]: (r[1], r[2], r[3]) for r in rows}
        self._entry_links[entity] = links
        return links

    def ids_with_terms(self, entity: str, terms: list[str]) -> set[str]:
        rows = (
            self.cursor()
            .execute(
                "SELECT DISTINCT id FROM entry_terms WHERE entity = ? "
                "AND term IN (SELECT unnest(?))",
                [entity, terms],
            )
            .fetchall()
        )
        return {r[0] for r in rows}

    def ids_with_value(self, entity: str, sql: str, params: list[Any]) -> set[str]:
        key = (entity, sql, *map(repr, params))
        with self._filtered_lock:
            cached = self._filtered.get(key)
            if cached is not None:
                self._filtered.move_to_end(key)
                return set(cached)
        rows = (
            self.cursor()
            .execute(
                f"SELECT DISTINCT id FROM entry_values WHERE entity = ? AND ({sql})",
                [entity, *params],
            )
            .fetchall()
        )
        ids = frozenset(r[0] for r in rows)
        with self._filtered_lock:
            if key not in self._filtered and len(ids) <= _FILTER_CACHE_IDS:
                self._filtered[key] = ids
                self._filtered_ids += len(ids)
                while self._filtered_ids > _FILTER_CACHE_IDS:
                    _, dropped = self._filtered.popitem(last=False)
                    self._filtered_ids -= len(dropped)
        return set(ids)

    def term_index(self) -> list[tuple[str, str, str | None]]:
        """(entity, term, label) of every ontology term present."""
        return (
            self.cursor()
            .execute("SELECT entity, term, any_value(label) FROM entry_terms GROUP BY entity, term")
            .fetchall()
        )

    def value_paths(self) -> list[tuple[str, str, int, bool]]:
        """(entity, path, distinct values, numeric) of every scalar field present."""
        return (
            self.cursor()
            .execute(
                "SELECT entity, path, count(DISTINCT text), bool_and(num IS NOT NULL) "
                "FROM entry_values GROUP BY entity, path"
            )
            .fetchall()
        )

    def small_value_sets(self, max_values: int) -> list[tuple[str, str, str]]:
        """(entity, path, value) for text fields with at most ``max_values`` values."""
        return (
            self.cursor()
            .execute(
                "WITH c AS (SELECT entity, path FROM entry_values GROUP BY entity, path "
                "HAVING count(DISTINCT text) <= ?) "
                "SELECT DISTINCT v.entity, v.path, v.text FROM entry_values v "
                "JOIN c USING (entity, path) ORDER BY 1, 2, 3",
                [max_values],
            )
            .fetchall()
        )
