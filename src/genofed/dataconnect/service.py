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
from genofed.config import Granularity
from genofed.dataconnect.catalog import (
    QueryEngine,
    TableSource,
    dataset_tables,
    quote,
    registered_table_source,
    row_count,
)
from genofed.dataconnect.query_job import Page, QueryJobs, QueryRun, Transform, engine_message
from genofed.dataconnect.results import (
    COUNT_PRECISION,
    RowsAsJson,
    data_model,
    json_rows_sql,
)
from genofed.dataconnect.sql import HIDDEN_COUNT, HIDDEN_IDS, Plan, PointLookup, plan_query
from genofed.governance.access import Caller, Entitlement
from genofed.governance.gatekeeper import Gatekeeper
from genofed.governance.release import ReleasePolicy, Terms
from genofed.jobs.runtime import JobRuntime
from genofed.store.dataset_reader import DatasetReader
from genofed.store.live import DatasetCatalog
from genofed.store.node_dir import NodeDir
from genofed.store.registered_tables import registered_tables

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
    entitlements: dict[str, Entitlement]


@dataclass(frozen=True)
class _Catalog:
    """The engine over one state of the node, and the datasets it reads."""

    key: tuple[float, float]  # when the datasets and the registered tables last changed
    engine: QueryEngine
    readers: dict[str, DatasetReader]  # by dataset id: their position indexes pin rows


class DataConnectService:
    """Data Connect over one node's datasets and registered tables."""

    def __init__(
        self,
        node: NodeDir,
        datasets: DatasetCatalog,
        gate: Gatekeeper,
        jobs: JobRuntime,
        query_jobs: QueryJobs | None = None,
    ):
        self.node = node
        self.datasets = datasets
        self.gate = gate
        self.settings = gate.config.data_connect
        # Given when the service is rebuilt for a new node.yaml: running queries go on.
        self.jobs = query_jobs or QueryJobs(jobs, self.settings)
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
        live = self.datasets.live()
        directory = self.node.tables_dir
        key = (live.catalog_mtime, directory.stat().st_mtime if directory.is_dir() else 0.0)
        current = self._catalog
        if current is not None and current.key == key:
            return current
        with self._lock:
            if self._catalog is None or self._catalog.key != key:
                sources = [t for r in live.readers.values() for t in dataset_tables(r)]
                registered = registered_tables(self.node)
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
        access = self.gate.access
        tables: dict[str, TableSource] = {}
        aggregate_only = set()
        entitlements = {}
        for name, source in (engine or self.engine()).sources.items():
            entitlement = access.entitlement(caller, source.owner, source.tier, source.ceiling)
            if entitlement is None or entitlement.granularity < Granularity.COUNT:
                continue
            tables[name] = source
            entitlements[name] = entitlement
            if entitlement.granularity < Granularity.RECORD:
                aggregate_only.add(name)
        return Visible(tables, frozenset(aggregate_only), entitlements)

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

    def search(
        self, caller: Caller, query: str, parameters: list[Any] | None
    ) -> tuple[Plan, QueryRun]:
        catalog = self.catalog()
        visible = self.visible(caller, catalog.engine)
        plan = self._plan(query, visible)
        values = bind_parameters(plan.parameters, parameters)
        return plan, self._run(caller, catalog, plan, values, visible)

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

    def table_data(self, caller: Caller, name: str) -> tuple[Plan, QueryRun]:
        catalog = self.catalog()
        source, aggregate_only = self._source(caller, name, catalog.engine)
        if aggregate_only:
            raise AccessDeniedError(
                f"you may see only aggregates of {name!r}: POST /data-connect/search with "
                "count, sum or avg grouped by columns"
            )
        plan = plan_query(f"SELECT * FROM {quote(name)}", {name: source})
        return plan, self._run(caller, catalog, plan, [], None)

    async def page(self, caller: Caller, job_id: str, index: int) -> Page:
        return await self.jobs.wait_for_page(job_id, index, caller.identity)

    def _run(
        self,
        caller: Caller,
        catalog: _Catalog,
        plan: Plan,
        values: list[Any],
        visible: Visible | None,
    ) -> QueryRun:
        engine = catalog.engine
        sql, few_rows = plan.sql, False
        if plan.point is not None:
            rows, exact = _pinned_rows(catalog, plan.point, values)
            values = [*values, *rows]
            if exact:  # at most the variants at one position
                sql, few_rows = plan.point.sql, True
        records = plan.aggregate is None  # the caller may see the rows (and their values)
        shape = self._shape(
            engine, sql, plan.refs, values, few_rows=few_rows, values_in_errors=records
        )
        transform: Transform | None = shape.encode
        model = shape.model
        if plan.aggregate is not None and visible is not None:
            table = plan.aggregate.table
            release = self.gate.release
            terms = release.terms(
                visible.entitlements[table.name],
                Granularity.COUNT,
                person_level=table.person_level,
            )
            counts = [shape.public[i][0] for i in plan.aggregate.count_columns]
            precisions = {
                shape.public[i][0]: release.precision(terms, rows=i in plan.aggregate.row_counts)
                for i in plan.aggregate.count_columns
            }
            transform = DisclosedAggregates(
                counts,
                table,
                release,
                terms,
                caller.identity,
                self._population(engine, table.name) if table.person_level else 0,
            )
            model = _with_count_precision(model, precisions)
        return self.jobs.launch(
            engine,
            shape.sql,
            values,
            owner=caller.identity,
            model=model,
            transform=transform,
            values=records,
        )

    def _shape(
        self,
        engine: QueryEngine,
        sql: str,
        refs: dict[str, str],
        values: list[Any],
        *,
        few_rows: bool = False,
        values_in_errors: bool = True,
    ) -> _Shape:
        """Names and types of a query's result (bound, not run), which of them are hidden,
        and the data model of the others, once per query and parameter types: the types
        of ``?`` can change a result's types. A result of ``few_rows`` of plain types is
        written as JSON in Python (``RowsAsJson``), any other by DuckDB."""
        key = (sql, tuple(_type_key(v) for v in values), few_rows)
        known = self._shapes.get(key)
        if known is None:
            cursor = engine.cursor()
            try:
                relation = cursor.sql(f"SELECT * FROM ({sql}) AS __q", params=values or None)
                columns = list(zip(relation.columns, relation.types, strict=True))
            except duckdb.Error as exc:
                message = engine_message(exc, values=values_in_errors)
                raise QueryFailedError(400, "Invalid query", message) from None
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
    """Aggregate rows as they may leave for a caller who may see only aggregates: each
    row is released or withheld, and its counts made safe, by the node's release policy
    (``ReleasePolicy.group`` and ``safe``). Rows arrive as ``(json, records[, ids])``."""

    count_columns: list[str]
    table: TableSource
    release: ReleasePolicy
    terms: Terms
    caller: str
    population: int
    withheld: int = 0
    notes: list[dict[str, str]] = field(default_factory=list)

    def __call__(self, rows: list[tuple[Any, ...]]) -> list[str]:
        kept = []
        subject = self.table.subject
        for row in rows:
            ids = (lambda row=row: (str(x) for x in row[2])) if self.table.person_level else None
            released = self.release.group(
                self.terms,
                row[1],
                caller=self.caller,
                subject=subject,
                ids=ids,
                population=self.population,
            )
            if not released:
                self.withheld += 1
                continue
            if not self.count_columns:
                kept.append(row[0])
                continue
            values = orjson.loads(row[0])
            for name in self.count_columns:
                if values.get(name) is not None:
                    values[name] = str(self.release.safe(self.terms, int(values[name])).value)
            kept.append(orjson.dumps(values).decode())
        if self.withheld:
            self.notes = [
                {
                    "title": "Rows withheld",
                    "detail": f"{self.withheld} group(s) were withheld by this node's disclosure "
                    f"rules (fewer than {self.terms.min_group} records, or too close to an "
                    "earlier answer); counts are rounded",
                }
            ]
        return kept


def _with_count_precision(model: bytes, precisions: dict[str, str]) -> bytes:
    """The data model, its count columns marked with how precise their values are (the
    hub reads it to make merged counts safe again)."""
    if not precisions:
        return model
    schema = orjson.loads(model)
    for name, precision in precisions.items():
        schema["properties"][name][COUNT_PRECISION] = precision
    return orjson.dumps(schema)


def _type_key(value: Any) -> Any:
    """What of a parameter decides a result's types: its type, and those of its elements."""
    if isinstance(value, list):
        return ("list", tuple(sorted({repr(_type_key(v)) for v in value})))
    if isinstance(value, dict):
        return ("dict", tuple((k, _type_key(v)) for k, v in sorted(value.items())))
    return type(value).__name__


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
    _check_parameter_size(parameters)
    return [_sql_value(v, i) for i, v in enumerate(parameters, start=1)]


# Deeply nested or huge parameters cost DuckDB far more to bind than they cost to send.
MAX_PARAMETER_DEPTH = 4  # arrays or objects inside one parameter
MAX_PARAMETER_ELEMENTS = 100_000  # values in all the parameters together


def _check_parameter_size(parameters: list[Any]) -> None:
    # Iterative, so that a parameter nested a thousand levels deep is refused, not a crash.
    stack = [(value, position, 0) for position, value in enumerate(parameters, start=1)]
    elements = 0
    while stack:
        value, position, depth = stack.pop()
        if not isinstance(value, list | dict):
            continue
        if depth >= MAX_PARAMETER_DEPTH:
            raise QueryError(
                f"parameter {position} nests arrays or objects more than "
                f"{MAX_PARAMETER_DEPTH} levels deep"
            )
        children = value.values() if isinstance(value, dict) else value
        elements += len(children)
        if elements > MAX_PARAMETER_ELEMENTS:
            raise QueryError(
                f"the parameters hold more than {MAX_PARAMETER_ELEMENTS:,} values in all; "
                "send fewer, or narrow the query"
            )
        stack.extend((child, position, depth + 1) for child in children)


def _sql_value(value: Any, position: int) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)  # JSON numbers are doubles, as the specification says
    if isinstance(value, list):
        values = [_sql_value(v, position) for v in value]
        if len({type(v) for v in values if v is not None}) > 1:
            raise QueryError(f"parameter {position}: all elements of an array must be one type")
        return values
    if isinstance(value, dict):
        return {str(k): _sql_value(v, position) for k, v in value.items()}
    raise QueryError(f"parameter {position} is not a JSON value")
