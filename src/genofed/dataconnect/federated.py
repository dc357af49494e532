"""Data Connect SQL at the hub: a query goes to one node, or an aggregate to all of them.

The hub names each node's table ``<node>.<table>``. A query whose tables are all of one
node is sent to that node with the prefix taken off. A query over ``"*.<name>"`` reads
every node's tables called ``<name>`` or ending in ``.<name>`` (``"*.individuals"``: every
dataset's individuals): it must be one ``SELECT`` of ``GROUP BY`` keys and ``count``,
``sum``, ``min``, ``max`` or ``avg``, which the hub splits into what each node computes
and what the hub adds up. An average is a sum and a count at each node, divided once at
the hub: never an average of averages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from genofed._exceptions import QueryError
from genofed.api.responses import dig
from genofed.dataconnect.results import COUNT_PRECISION
from genofed.dataconnect.sql import check_size
from genofed.governance.disclosure import Precision, SafeCount
from genofed.governance.release import Part, ReleasePolicy

ALL_NODES = "*"
Kind = Literal["key", "count", "sum", "min", "max", "avg"]
_AGGREGATES: dict[type[exp.Expression], Kind] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Min: "min",
    exp.Max: "max",
    exp.Avg: "avg",
}


@dataclass(frozen=True)
class Routed:
    """A query for one node, its tables named as the node names them."""

    node: str
    sql: str


@dataclass(frozen=True)
class Output:
    """One column of a federated answer and the node columns it is made of."""

    name: str
    kind: Kind
    columns: tuple[str, ...]  # node result columns: avg has (sum, count)


@dataclass(frozen=True)
class Federated:
    """An aggregate asked of every node's tables called ``table``."""

    table: str
    node_sql: str  # with {table} where each node table's quoted name goes
    outputs: tuple[Output, ...]
    order: tuple[tuple[str, bool], ...] = ()  # (output name, descending)
    limit: int | None = None
    parameters: int = 0

    def for_table(self, name: str) -> str:
        return self.node_sql.replace("{table}", '"' + name.replace('"', '""') + '"')

    def matches(self, name: str) -> bool:
        return name == self.table or name.endswith("." + self.table)


def plan(query: str) -> Routed | Federated:
    """Where ``query`` goes; raises ``QueryError`` saying what is wrong."""
    try:
        return _plan(query)
    except RecursionError:
        raise QueryError("the query is nested too deeply; simplify it") from None


def _plan(query: str) -> Routed | Federated:
    check_size(query)  # the same bounds as a node's, before the hub spends time parsing
    try:
        statements = [s for s in sqlglot.parse(query, read="trino") if s is not None]
    except (ParseError, TokenError) as exc:
        raise QueryError(f"syntax error: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise QueryError("send one SELECT statement")
    tree = statements[0]
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    tables = [t for t in tree.find_all(exp.Table) if t.name not in ctes or t.args.get("db")]
    if not tables:
        raise QueryError("the query reads no table; GET /data-connect/tables lists them")
    names = [".".join(part.name for part in t.parts) for t in tables]
    nodes = {n.split(".", 1)[0] for n in names}
    if any("." not in n for n in names) or len(nodes) != 1:
        raise QueryError(
            "name tables as <node>.<table> (GET /data-connect/tables): a query reads the "
            'tables of one node, or one table of every node as "*.<table>"'
        )
    node = nodes.pop()
    for table, name in zip(tables, names, strict=True):
        table.replace(_table(name.split(".", 1)[1], table.alias))
    if node != ALL_NODES:
        return Routed(node, tree.sql(dialect="trino"))
    if len(tables) != 1:
        raise QueryError('a "*." query reads one table: joins across nodes are not supported')
    return _federated(tree, names[0].split(".", 1)[1])


def _table(name: str, alias: str) -> exp.Table:
    table = exp.Table(this=exp.to_identifier(name, quoted=True))
    if alias:
        table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    return table


def _federated(tree: exp.Expression, table_name: str) -> Federated:
    hint = 'a "*." query '
    if not isinstance(tree, exp.Select) or tree.args.get("joins") or tree.find(exp.CTE):
        raise QueryError(hint + "is one SELECT over one table, without joins")
    for node in tree.walk():
        if node is not tree and isinstance(node, exp.Query | exp.Subquery):
            raise QueryError(hint + "has no subqueries")
        if isinstance(node, exp.Window):
            raise QueryError(hint + "has no window functions")
    if tree.args.get("having") or tree.args.get("distinct"):
        raise QueryError(hint + "has no HAVING or SELECT DISTINCT (filter the merged rows)")
    where = tree.args.get("where")
    placeholders = sum(1 for _ in tree.find_all(exp.Placeholder))
    if placeholders != (sum(1 for _ in where.find_all(exp.Placeholder)) if where else 0):
        raise QueryError(hint + "has ? parameters in its WHERE clause only")
    group = tree.args.get("group")
    keys = [k.sql(dialect="trino") for k in (group.expressions if group else [])]
    items = list(tree.expressions)
    outputs: list[Output] = []
    node_items: list[exp.Expression] = []
    key_exprs: list[exp.Expression] = []
    for i, item in enumerate(items):
        value = item.this if isinstance(item, exp.Alias) else item
        name = item.alias_or_name
        kind = _AGGREGATES.get(type(value))
        if kind is None:
            if any(isinstance(n, exp.AggFunc) for n in value.walk()):
                raise QueryError(
                    hint + "has aggregates only as count, sum, min, max or avg of a value: "
                    f"{value.sql(dialect='trino')}"
                )
            ordinal = str(i + 1)
            if value.sql(dialect="trino") not in keys and ordinal not in keys and name not in keys:
                raise QueryError(
                    hint + f"groups by every non-aggregate column: add {name} to GROUP BY"
                )
            column = f"__k{len(key_exprs)}"
            key_exprs.append(value)
            node_items.append(exp.alias_(value.copy(), column, quoted=True))
            outputs.append(Output(name, "key", (column,)))
            continue
        if not isinstance(item, exp.Alias) and kind != "count":
            raise QueryError(hint + f"names each aggregate: {value.sql(dialect='trino')} AS name")
        if isinstance(value.this, exp.Distinct):
            raise QueryError(
                hint + "cannot merge distinct counts: the same value may be at several nodes"
            )
        column = f"__a{i}"
        if kind == "avg":
            argument = value.this.copy()
            node_items.append(exp.alias_(exp.Sum(this=argument), f"{column}s", quoted=True))
            node_items.append(
                exp.alias_(exp.Count(this=argument.copy()), f"{column}c", quoted=True)
            )
            outputs.append(Output(name, kind, (f"{column}s", f"{column}c")))
        else:
            node_items.append(exp.alias_(value.copy(), column, quoted=True))
            outputs.append(Output(name, kind, (column,)))
    if len({o.name for o in outputs}) != len(outputs):
        raise QueryError(hint + "gives each output column its own name")
    order = []
    for ordered in tree.args.get("order").expressions if tree.args.get("order") else []:
        target = ordered.this
        name = target.name if isinstance(target, exp.Column) else target.sql(dialect="trino")
        if name not in {o.name for o in outputs}:
            raise QueryError(hint + f"orders by output columns only, not {name}")
        order.append((name, bool(ordered.args.get("desc"))))
    limit = tree.args.get("limit")
    limit_value = None
    if limit is not None:
        expression = limit.expression
        if not (isinstance(expression, exp.Literal) and expression.is_int):
            raise QueryError(hint + "has a whole number as LIMIT")
        limit_value = int(expression.this)
    node_tree = exp.Select(expressions=node_items)
    node_tree.set("from_", tree.args["from_"].copy())
    if where is not None:
        node_tree.set("where", where.copy())
    if key_exprs:
        node_tree.set("group", exp.Group(expressions=[k.copy() for k in key_exprs]))
    placeholder = "__genofed_hub_table__"
    node_tree.find(exp.Table).set("this", exp.to_identifier(placeholder, quoted=False))
    sql = node_tree.sql(dialect="trino").replace(placeholder, "{table}")
    return Federated(table_name, sql, tuple(outputs), tuple(order), limit_value, placeholders)


# -- merging the nodes' rows -----------------------------------------------------------


@dataclass(frozen=True)
class NodeRows:
    """One node's rows of a federated aggregate, and how exact its count columns are
    (``results.COUNT_PRECISION`` of its data model; absent: exact)."""

    node: str
    rows: list[dict[str, Any]]
    precision: dict[str, Precision]


def merge_rows(
    plan_: Federated, partials: list[NodeRows], release: ReleasePolicy
) -> list[dict[str, Any]]:
    """The federated answer from every node's rows: groups merged by key, counts summed by
    ``release.merge`` (made safe again when any node's were), sums summed, averages from
    sums and counts, minima and maxima compared."""
    keys = [o for o in plan_.outputs if o.kind == "key"]
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for partial in partials:
        for row in partial.rows:
            group_key = tuple(repr(row.get(o.columns[0])) for o in keys)
            merged = groups.get(group_key)
            if merged is None:
                groups[group_key] = merged = {o.name: row.get(o.columns[0]) for o in keys}
                merged["__parts"] = {o.name: [] for o in plan_.outputs if o.kind != "key"}
            for output in plan_.outputs:
                if output.kind != "key":
                    values = [row.get(c) for c in output.columns]
                    precision = partial.precision.get(output.columns[0], Precision.EXACT)
                    merged["__parts"][output.name].append((values, partial.node, precision))
    rows = []
    for merged in groups.values():
        parts = merged.pop("__parts")
        rows.append(
            {
                o.name: merged[o.name] if o.kind == "key" else _combine(o, parts[o.name], release)
                for o in plan_.outputs
            }
        )
    for name, descending in reversed(plan_.order):
        present = [r for r in rows if _number_or_text(r[name]) is not None]
        missing = [r for r in rows if _number_or_text(r[name]) is None]
        present.sort(key=lambda r: _number_or_text(r[name]), reverse=descending)
        rows = present + missing  # NULLs last, as in DuckDB
    return rows if plan_.limit is None else rows[: plan_.limit]


def _combine(
    output: Output, parts: list[tuple[list[Any], str, Precision]], release: ReleasePolicy
) -> Any:
    if output.kind == "count":
        counted = [
            Part(node, SafeCount(int(_number(values[0])), precision))
            for values, node, precision in parts
            if values[0] is not None
        ]
        merged = release.merge(counted).count
        return _text(merged.value if merged is not None else 0)
    values_of = [values for values, _, _ in parts]
    if output.kind == "sum":
        values = [_number(p[0]) for p in values_of if p[0] is not None]
        if not values:
            return None
        total = sum(values)
        # bigint and decimal results are JSON strings in Data Connect, doubles are numbers
        as_text = any(isinstance(p[0], str) for p in values_of)
        return _text(total) if as_text else total
    if output.kind in ("min", "max"):
        present = [p[0] for p in values_of if p[0] is not None]
        if not present:
            return None
        pick = min if output.kind == "min" else max
        return pick(present, key=_number_or_text)
    sums = [_number(p[0]) for p in values_of if p[0] is not None]
    count = sum(_number(p[1]) for p in values_of if p[1] is not None)
    return float(sum(sums)) / float(count) if count else None


def merge_answers(
    query: Federated,
    answered: list[tuple[str, dict[str, Any]]],
    errors: list[dict[str, str]],
    release: ReleasePolicy,
) -> dict[str, Any]:
    """The federated answer (a TableData page) from each node's ``rows``, data ``models``,
    ``notes`` and matching ``tables``: rows merged, and what each node said or could not
    answer as ``errors`` (``errors`` holds those of the nodes that did not answer)."""
    errors = list(errors)
    partials = []
    models = []
    for node, document in answered:
        precision: dict[str, Precision] = {}
        for model in document["models"]:
            precision.update(model_precisions(model))
        problem = _bad_rows(query, document["rows"])
        if problem is not None:  # a node's nonsense is its own error, never the hub's
            errors.append(
                {
                    "source": node,
                    "title": "Node error",
                    "detail": f"the node's rows cannot be merged: {problem}",
                    "code": "node_error",
                }
            )
            continue
        partials.append(NodeRows(node, document["rows"], precision))
        models += document["models"]
        errors += [{**n, "source": node} for n in document["notes"] if isinstance(n, dict)]
        if not document["tables"]:
            errors.append(
                {
                    "source": node,
                    "title": "No such table",
                    "detail": f"the node has no table {query.table!r} you may query",
                    "code": "not_found",
                }
            )
    body: dict[str, Any] = {
        "data_model": merged_model(query, models),
        "data": merge_rows(query, partials, release),
        "pagination": {},
    }
    if errors:
        body["errors"] = errors
    return body


def _bad_rows(query: Federated, rows: list[dict[str, Any]]) -> str | None:
    """What is wrong with a node's rows, if anything: counts must be whole numbers, sums
    and the parts of averages finite numbers."""
    for row in rows:
        for output in query.outputs:
            if output.kind in ("key", "min", "max"):
                continue
            for column in output.columns:
                value = row.get(column)
                if value is None:
                    continue
                try:
                    number = _number(value)
                except (TypeError, ValueError):
                    return f"{output.name}: {str(value)[:40]!r} is not a number"
                if not math.isfinite(number):
                    return f"{output.name}: {value!r} is not finite"
                if output.kind == "count" and (number < 0 or float(number) != int(number)):
                    return f"{output.name}: {value!r} is not a count"
    return None


def merged_model(query: Federated, models: list[dict[str, Any]]) -> dict[str, Any]:
    """The merged answer's data model, from the nodes' models of their columns; count
    columns say how exact the merged counts are."""
    node_properties: dict[str, Any] = {}
    for model in models:
        for name, schema in dig(model, "properties", default={}).items():
            node_properties.setdefault(name, schema)
    properties: dict[str, Any] = {}
    for output in query.outputs:
        if output.kind == "count":
            properties[output.name] = {"type": "string", "format": "bigint"}
            precisions = {
                dig(m, "properties", output.columns[0], COUNT_PRECISION, default="") for m in models
            } - {"", Precision.EXACT}
            if precisions:
                properties[output.name][COUNT_PRECISION] = (
                    Precision.IMPRECISE if Precision.IMPRECISE in precisions else Precision.ROUNDED
                )
        elif output.kind == "avg":
            properties[output.name] = {"type": "number", "format": "double"}
        else:
            properties[output.name] = node_properties.get(output.columns[0], {})
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "description": f"Aggregates over every node's {query.table!r} tables, merged by the hub",
        "type": "object",
        "properties": properties,
    }


def model_precisions(model: dict[str, Any]) -> dict[str, Precision]:
    """The precision of each count column a node's data model marks."""
    marked = {}
    for name, schema in dig(model, "properties", default={}).items():
        value = schema.get(COUNT_PRECISION) if isinstance(schema, dict) else None
        if value is not None:
            try:
                marked[name] = Precision(value)
            except ValueError:
                marked[name] = Precision.IMPRECISE
    return marked


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    text = str(value)
    try:
        return int(text)
    except ValueError:
        return float(text)


def _number_or_text(value: Any) -> Any:
    if value is None:
        return None
    try:
        number = _number(value)
        return (0, number) if not (isinstance(number, float) and math.isnan(number)) else None
    except (TypeError, ValueError):
        return (1, str(value))


def _text(value: int | float) -> str:
    return str(value) if isinstance(value, int) or not value.is_integer() else str(int(value))
