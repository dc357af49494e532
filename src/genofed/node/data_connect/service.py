"""Data Connect at one node: which tables a caller sees, and their queries run safely.

Governance is the Beacon's: a table's tier (its dataset's, or the one given when it was
registered) and the caller's Passport decide what they get. ``record`` callers may run
any allowed SELECT; ``count`` callers only aggregates, whose groups must stand for at
least ``disclosure.min_count`` records, whose counts are rounded, and which may not
differ from an earlier answer by fewer than ``differencing_k`` people; anyone else does
not see the table at all.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import duckdb
import orjson

from genofed._exceptions import AccessDeniedError, NotFoundError, QueryError, QueryFailedError
from genofed.config import Disclosure
from genofed.dataconnect.catalog import (
    QueryEngine,
    TableSource,
    dataset_tables,
    quote,
    registered_table_source,
    row_count,
)
from genofed.dataconnect.jobs import Job, Page, QueryJobs, Transform, engine_message
from genofed.dataconnect.results import RowsAsJson, data_model, json_rows_sql
from genofed.dataconnect.sql import HIDDEN_COUNT, HIDDEN_IDS, Plan, PointLookup, plan_query
from genofed.governance.access import Caller
from genofed.governance.disclosure import DifferencingGuard, safe_count
from genofed.node.runtime import NodeRuntime
from genofed.store.dataset_reader import DatasetReader
from genofed.store.registered_tables import registered_tables, tables_dir

RESULT_DESCRIPTION = "Rows of a Data Connect query result"
_PLAN_CACHE = 1024


class _Shape(NamedTuple):
    """What a query's result looks like, worked out once per query text."""

    sql: str  # the query, wrapped to give each row as JSON (and the hidden columns)
    public: list[tuple[str, str]]  # the columns callers see: (name, DuckDB type)
    model: bytes  # their data model, as JSON
    encode: RowsAsJson | None  # when set, ``sql`` gives plain rows and this writes them


@dataclass(frozen=True)
class Visible:
    """The tables one caller may query, and those they may see only aggregates of."""

    tables: dict[str, TableSource]
    aggregate_only: frozenset[str]


@dataclass(frozen=True)
class _Catalog:
    """The engine over one state of the node, and the datasets it reads."""

    key: tuple[float, float]  # when the datasets and the registered tables last changed
    engine: QueryEngine
    readers: dict[str, DatasetReader]  # by dataset id: their position indexes pin rows


class DataConnectService:
    def __init__(self, runtime: NodeRuntime):
        self.runtime = runtime
        self.settings = runtime.config.data_connect
        self.jobs = QueryJobs(runtime.node.root, self.settings)
        self._lock = threading.Lock()
        self._catalog: _Catalog | None = None
        self._populations: dict[str, int] = {}
        self._plans: dict[tuple[str, frozenset[str], frozenset[str]], Plan] = {}
        self._shapes: dict[tuple[str, tuple[str, ...], bool], _Shape] = {}

    # -- the catalogue -------------------------------------------------------------------

    def catalog(self) -> _Catalog:
        """The engine over the live datasets and registered tables, rebuilt when either
        changes (an ingest or a registration while the server runs). A request takes it
        once: its tables and its position indexes are then of the same state."""
        live = self.runtime.live()
        directory = tables_dir(self.runtime.node)
        key = (live.catalog_mtime, directory.stat().st_mtime if directory.is_dir() else 0.0)
        current = self._catalog
        if current is not None and current.key == key:
            return current
        with self._lock:
            if self._catalog is None or self._catalog.key != key:
                sources = [t for r in live.readers.values() for t in dataset_tables(r)]
                registered = registered_tables(self.runtime.node)
                sources += [registered_table_source(t) for t in registered]
                engine = QueryEngine(sources, self.settings)
                self._catalog = _Catalog(key, engine, dict(live.readers))
                self._populations = {}
                self._plans = {}
                self._shapes = {}
            return self._catalog

    def engine(self) -> QueryEngine:
        return self.catalog().engine

    def visible(self, caller: Caller, engine: QueryEngine | None = None) -> Visible:
        access = self.runtime.gate.access
        tables: dict[str, TableSource] = {}
        aggregate_only = set()
        for name, source in (engine or self.engine()).sources.items():
            level = access.granularity(caller, source.owner, source.tier, source.ceiling)
            if level == "record":
                tables[name] = source
            elif level == "count":
                tables[name] = source
                aggregate_only.add(name)
        return Visible(tables, frozenset(aggregate_only))

    def _source(
        self, caller: Caller, name: str, engine: QueryEngine | None = None
    ) -> tuple[TableSource, bool]:
        visible = self.visible(caller, engine)
        source = visible.tables.get(name)
        if source is None:
            # the same answer for a table that does not exist and one closed to the caller
            raise NotFoundError(f"no table {name!r}; GET /data-connect/tables lists yours")
        return source, name in visible.aggregate_only

    def describe(self, source: TableSource, engine: QueryEngine | None = None) -> dict[str, Any]:
        columns = (engine or self.engine()).columns(source.name)
        return {
            "name": source.name,
            "description": source.description,
            "data_model": data_model(
                columns, descriptions=source.columns, description=source.description
            ),
        }

    def list_tables(self, caller: Caller) -> dict[str, Any]:
        engine = self.engine()
        visible = self.visible(caller, engine)
        return {
            "tables": [self.describe(visible.tables[n], engine) for n in sorted(visible.tables)]
        }

    def table_info(self, caller: Caller, name: str) -> dict[str, Any]:
        return self.describe(self._source(caller, name)[0])

    # -- queries -------------------------------------------------------------------------

    def search(self, caller: Caller, query: str, parameters: list[Any] | None) -> tuple[Plan, Job]:
        catalog = self.catalog()
        plan = self._plan(query, self.visible(caller, catalog.engine))
        values = bind_parameters(plan.parameters, parameters)
        return plan, self._run(caller, catalog, plan, values)

    def _plan(self, query: str, visible: Visible) -> Plan:
        """Checked and translated once per query text and set of visible tables: the same
        query with new parameters (a point look-up) skips parsing."""
        key = (query, frozenset(visible.tables), visible.aggregate_only)
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_query(query, visible.tables, visible.aggregate_only)
            if len(self._plans) >= _PLAN_CACHE:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def table_data(self, caller: Caller, name: str) -> tuple[Plan, Job]:
        catalog = self.catalog()
        source, aggregate_only = self._source(caller, name, catalog.engine)
        if aggregate_only:
            raise AccessDeniedError(
                f"you may see only aggregates of {name!r}: POST /data-connect/search with "
                "count, sum or avg grouped by columns"
            )
        plan = plan_query(f"SELECT * FROM {quote(name)}", {name: source})
        return plan, self._run(caller, catalog, plan, [])

    async def page(self, caller: Caller, job_id: str, index: int) -> Page:
        try:
            return await self.jobs.wait_for_page(job_id, index, caller.identity)
        except LookupError as exc:
            raise NotFoundError(str(exc)) from None

    def _run(self, caller: Caller, catalog: _Catalog, plan: Plan, values: list[Any]) -> Job:
        engine = catalog.engine
        sql, few_rows = plan.sql, False
        if plan.point is not None:
            rows, exact = _pinned_rows(catalog, plan.point, values)
            values = [*values, *rows]
            if exact:  # at most the variants at one position
                sql, few_rows = plan.point.sql, True
        shape = self._shape(engine, sql, plan.refs, values, few_rows=few_rows)
        transform: Transform | None = shape.encode
        if plan.aggregate is not None:
            table = plan.aggregate.table
            transform = DisclosedAggregates(
                [shape.public[i][0] for i in plan.aggregate.count_columns],
                table,
                self.runtime.config.disclosure,
                self.runtime.gate.differencing,
                caller.identity,
                self._population(engine, table.name) if table.person_level else 0,
            )
        return self.jobs.launch(
            engine, shape.sql, values, owner=caller.identity, model=shape.model, transform=transform
        )

    def _shape(
        self,
        engine: QueryEngine,
        sql: str,
        refs: dict[str, str],
        values: list[Any],
        *,
        few_rows: bool = False,
    ) -> _Shape:
        """Names and types of a query's result (bound, not run), which of them are hidden,
        and the data model of the others, once per query and parameter types: the types
        of ``?`` can change a result's types. A result of ``few_rows`` of plain types is
        written as JSON in Python (``RowsAsJson``), any other by DuckDB."""
        key = (sql, tuple(type(v).__name__ for v in values), few_rows)
        known = self._shapes.get(key)
        if known is None:
            cursor = engine.cursor()
            try:
                relation = cursor.sql(f"SELECT * FROM ({sql}) AS __q", params=values or None)
                columns = list(zip(relation.columns, relation.types, strict=True))
            except duckdb.Error as exc:
                raise QueryFailedError(400, "Invalid query", engine_message(exc)) from None
            finally:
                cursor.close()
            hidden = tuple(n for n, _ in columns if n in (HIDDEN_COUNT, HIDDEN_IDS))
            public = [(n, str(t)) for n, t in columns if n not in hidden]
            model = data_model(public, refs=refs, description=RESULT_DESCRIPTION)
            encode = RowsAsJson.for_columns(columns) if few_rows and not hidden else None
            wrapped = sql if encode is not None else json_rows_sql(sql, columns, hidden)
            known = _Shape(wrapped, public, orjson.dumps(model), encode)
            if len(self._shapes) >= _PLAN_CACHE:
                self._shapes.clear()
            self._shapes[key] = known
        return known

    def _population(self, engine: QueryEngine, name: str) -> int:
        known = self._populations.get(name)
        if known is None:
            known = self._populations[name] = row_count(engine, name)
        return known


@dataclass
class DisclosedAggregates:
    """Makes aggregate rows safe for a caller who may see only aggregates: groups behind
    fewer than ``min_count`` records are dropped, so are groups that differ from one of
    the caller's earlier answers by fewer than ``k`` people, and counts are rounded as the
    Beacon rounds them. Rows arrive as ``(json, records[, record ids])``."""

    count_columns: list[str]
    table: TableSource
    rules: Disclosure
    differencing: DifferencingGuard
    caller: str
    population: int
    withheld: int = 0
    notes: list[dict[str, str]] = field(default_factory=list)

    def __call__(self, rows: list[tuple[Any, ...]]) -> list[str]:
        kept = []
        for row in rows:
            if row[1] < self.rules.min_count or (
                self.table.person_level
                and not self.differencing.allows(
                    self.caller,
                    f"data-connect:{self.table.name}",
                    (str(x) for x in row[2]),
                    self.population,
                )
            ):
                self.withheld += 1
                continue
            if not self.count_columns:
                kept.append(row[0])
                continue
            values = orjson.loads(row[0])
            for name in self.count_columns:
                if values.get(name) is not None:
                    values[name] = str(safe_count(int(values[name]), self.rules).value)
            kept.append(orjson.dumps(values).decode())
        if self.withheld:
            self.notes = [
                {
                    "title": "Rows withheld",
                    "detail": f"{self.withheld} group(s) were withheld by this node's disclosure "
                    f"rules (fewer than {self.rules.min_count} records, or too close to an "
                    "earlier answer); counts are rounded",
                }
            ]
        return kept


def _pinned_rows(
    catalog: _Catalog, point: PointLookup, values: list[Any]
) -> tuple[tuple[int, int], bool]:
    """The rows a point query may match, from the dataset's position index (all rows when
    the values are not a chromosome name and a position), and whether exactly those rows
    match: the index holds the table's own chromosome names and positions, so it is exact
    for a string and a whole number."""

    def value(ref: tuple[str, Any]) -> Any:
        kind, item = ref
        return values[item] if kind == "parameter" else item

    everything = ((0, 1 << 62), False)
    chrom, pos = value(point.chrom), value(point.pos)
    if not isinstance(chrom, str) or isinstance(pos, bool):
        return everything  # DuckDB may cast these: leave the match to it
    try:
        number = float(pos)
    except (TypeError, ValueError):
        return everything
    if not number.is_integer():
        return (1, 0), False  # no BIGINT position equals it
    reader = catalog.readers.get(point.table.dataset or "")
    rows = reader.position_rows(chrom, int(number)) if reader else None
    if rows is None:
        return everything
    # a string position ('123', ' 123') is left to DuckDB's own cast rules
    return rows, isinstance(pos, int | float)


def bind_parameters(expected: int, parameters: list[Any] | None) -> list[Any]:
    """The JSON parameters as SQL values: boolean, number (double), string, array, object."""
    parameters = [] if parameters is None else parameters
    if not isinstance(parameters, list):
        raise QueryError("parameters must be a JSON array")
    if len(parameters) != expected:
        raise QueryError(
            f"the query has {expected} ? placeholder(s) but {len(parameters)} parameter(s) "
            "were sent"
        )
    return [_sql_value(v, i) for i, v in enumerate(parameters, start=1)]


def _sql_value(value: Any, position: int) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)  # JSON numbers are doubles, as the specification says
    if isinstance(value, list):
        kinds = {type(_sql_value(v, position)) for v in value if v is not None}
        if len(kinds) > 1:
            raise QueryError(f"parameter {position}: all elements of an array must be one type")
        return [_sql_value(v, position) for v in value]
    if isinstance(value, dict):
        return {str(k): _sql_value(v, position) for k, v in value.items()}
    raise QueryError(f"parameter {position} is not a JSON value")
