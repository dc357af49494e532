"""The SQL guard: Data Connect's Trino SQL in, checked DuckDB SQL out.

A query is parsed with sqlglot (Trino dialect, the one the Data Connect grammar is built
on) and refused unless it is one SELECT (or UNION/INTERSECT/EXCEPT of SELECTs) made only
of allow-listed syntax and functions, over tables the caller may see. Table names are
resolved here, so a table that does not exist and one the caller may not see get the
same answer. Anything not on the lists (table functions, file readers, settings, system
catalogs, DDL/DML, PRAGMA, several statements) never reaches the engine.

For callers who may see only aggregates of a table, the query must be an aggregate over
that one table (``count``, ``sum``, ``avg`` grouped by columns); the guard adds hidden
columns with the number of distinct records behind each group and their ids, which the
node's disclosure rules use to suppress small groups and differencing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import sqlglot
from sqlglot import exp
from sqlglot.dialects.trino import Trino
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from genofed._exceptions import QueryError
from genofed.dataconnect.catalog import ROW_ID, TableSource

MAX_QUERY_CHARS = 100_000
# Bounds checked on the tokens, before parsing: parsing, checking and planning take time
# and stack in proportion to them (a sum of 30,000 terms blocked a node for 9 s; 5,000
# nested parentheses or 20,000 NOTs overflowed the parser's stack).
MAX_QUERY_TOKENS = 10_000
MAX_NESTING = 64  # parentheses (and CASE ... END) inside one another
MAX_UNARY_RUN = 16  # NOT, -, + or ~ in a row
MAX_SELECTS = 32  # SELECTs in one query (CTEs, subqueries, set operations)
# Functions whose result can be much longer than their input: one of them inside another
# (nested replace() built 10 GB strings and killed a node) is refused, and what they add
# must be short and literal.
STRING_GROWTH: tuple[type[exp.Expression], ...] = (
    exp.Replace,
    exp.RegexpReplace,
)
MAX_GROWTH_LITERAL = 256  # characters of a replacement
HIDDEN_COUNT = "__genofed_n"
HIDDEN_IDS = "__genofed_ids"

_ALLOWED_NAMES = """
Select Union Intersect Except Subquery With CTE From Join Where Group Having Order Ordered
Limit Offset Fetch Distinct Alias TableAlias Table Column Identifier Star Literal Boolean
Null Paren Neg Not And Or Xor EQ NEQ GT GTE LT LTE Is In Between Like ILike Escape
NullSafeEQ NullSafeNEQ SimilarTo Add Sub Mul Div IntDiv Mod DPipe Case If Coalesce Nullif
Cast TryCast DataType DataTypeParam Placeholder Unnest Extract Var CurrentDate CurrentTime
CurrentTimestamp Count Sum Min Max Avg Stddev StddevPop StddevSamp Variance VariancePop
CountIf ApproxDistinct Median Quantile ApproxQuantile ArrayAgg GroupConcat AnyValue
Substring Lower Upper Length Trim Replace StrPosition Concat ConcatWs Left Right Lpad Rpad
Reverse Split Abs Round Floor Ceil Sqrt Pow Ln Log Exp Sign Greatest Least
JSONExtract JSONExtractScalar JSONPath JSONPathKey JSONPathRoot JSONPathSubscript
JSONPathWildcard ParseJSON JSONFormat
Interval Array Tuple Dot Bracket Exists Any All Window WindowSpec PartitionedBy RowNumber
Rank DenseRank Lag Lead FirstValue LastValue Values Struct PropertyEQ Slice
RegexpLike RegexpExtract RegexpReplace StartsWith DateAdd DateSub DateDiff DateTrunc
TimestampTrunc Date StrToDate TsOrDsToDate Year Month Day DayOfWeek DayOfYear ToChar
ArraySize ArrayContains ArrayJoin ArrayToString ElementAt Filter Lambda Cardinality
Semicolon
"""
ALLOWED_NODES: frozenset[type[exp.Expression]] = frozenset(
    getattr(exp, name) for name in _ALLOWED_NAMES.split() if hasattr(exp, name)
)
# Functions sqlglot does not model (it parses them as Anonymous), allowed by name.
ALLOWED_FUNCTION_NAMES = frozenset(
    {
        "ga4gh_type",
        "json_extract_string",
        "json_array_length",
        "contains",
        "strpos",
        "regexp_matches",
        "list_contains",
        "array_length",
        "len",
        "nullif",
        "typeof",
    }
)
# What aggregate-only callers may compute: totals and means of groups. min, max and the
# list-building aggregates would hand out single records' values.
AGGREGATE_ONLY_FUNCTIONS: tuple[type[exp.Expression], ...] = (exp.Count, exp.Sum, exp.Avg)


@dataclass(frozen=True)
class AggregatePlan:
    """How to make an aggregate-only answer safe: which output columns are counts."""

    table: TableSource
    count_columns: tuple[int, ...]
    row_counts: frozenset[int] = frozenset()  # those of count_columns that are count(*)


@dataclass(frozen=True)
class PointLookup:
    """A query pinned to one position of a variants table (``chrom = ? AND pos = ?``):
    only rows the dataset's position index gives for that position can match, so the
    plan also restricts the scan to them. Each value is ``("value", v)`` or
    ``("parameter", i)``, the i-th (0-based) of the caller's parameters.

    ``sql`` is the plan's SQL without the two conditions, for when the index answers
    them exactly (a chromosome name and a whole position): then every pinned row
    matches, and DuckDB need not test 120,000 rows of a row group for them.
    """

    table: TableSource
    chrom: tuple[str, Any]
    pos: tuple[str, Any]
    sql: str = ""


@dataclass(frozen=True)
class Plan:
    sql: str  # DuckDB SQL, parameters as $1, $2, ...
    tables: tuple[str, ...]  # the tables the query reads
    parameters: int
    refs: dict[str, str] = field(default_factory=dict)  # output column -> ga4gh_type $ref
    aggregate: AggregatePlan | None = None
    point: PointLookup | None = None  # two more parameters: the first and last row to scan


def search_body(raw: bytes) -> tuple[str, list[Any] | None]:
    """The ``query`` and ``parameters`` of a ``POST /search`` body."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise QueryError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise QueryError('send a JSON object {"query": "SELECT ...", "parameters": [...]}')
    parameters = body.get("parameters")
    if parameters is not None and not isinstance(parameters, list):
        raise QueryError("parameters must be a JSON array")
    return body["query"], parameters


def plan_query(
    query: str,
    visible: Mapping[str, TableSource],
    aggregate_only: frozenset[str] = frozenset(),
) -> Plan:
    """Check ``query`` and translate it; raises ``QueryError`` saying what is wrong.

    ``visible`` are the tables the caller may query; ``aggregate_only`` those of them
    they may see only aggregates of.
    """
    try:
        return _plan(query, visible, aggregate_only)
    except RecursionError:
        raise QueryError("the query is nested too deeply; simplify it") from None


def _plan(
    query: str,
    visible: Mapping[str, TableSource],
    aggregate_only: frozenset[str],
) -> Plan:
    tree = _parse(query)
    _check_nodes(tree)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    tables = _resolve_tables(tree, visible, ctes)
    refs = _strip_ga4gh_types(tree)
    parameters = _number_placeholders(tree)
    guarded = sorted(set(tables) & aggregate_only)
    if guarded:
        aggregate = _make_aggregate_only(tree, visible[guarded[0]], len(tables))
        return Plan(_duckdb(tree), tuple(tables), parameters, refs, aggregate)
    pinned = _pin_to_position(tree, visible, parameters)
    if pinned is None:
        return Plan(_duckdb(tree), tuple(tables), parameters, refs)
    point, conditions = pinned
    sql = _duckdb(tree)
    for condition, value in conditions:
        # a parameter stays, as `$k IS NOT NULL`: DuckDB refuses parameters it does not use
        condition.replace(
            exp.not_(exp.Is(this=value.copy(), expression=exp.Null()))
            if isinstance(value, exp.Placeholder)
            else exp.true()
        )
    point = replace(point, sql=_duckdb(tree))
    return Plan(sql, tuple(tables), parameters, refs, point=point)


def _duckdb(tree: exp.Expression) -> str:
    return tree.sql(dialect="duckdb", comments=False)


def check_size(query: str) -> None:
    """Refuse, before parsing, a query too long, too nested or with too many tokens."""
    if not query.strip():
        raise QueryError("the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is longer than {MAX_QUERY_CHARS:,} characters")
    try:
        tokens = Trino().tokenize(query)
    except TokenError as exc:
        raise QueryError(f"syntax error: {exc}") from None
    if len(tokens) > MAX_QUERY_TOKENS:
        raise QueryError(
            f"the query has {len(tokens):,} tokens; at most {MAX_QUERY_TOKENS:,} are allowed "
            "(send long lists of values as an array parameter)"
        )
    depth = run = selects = 0
    for token in tokens:
        kind = token.token_type
        if kind in _OPENING:
            depth += 1
            if depth > MAX_NESTING:
                raise QueryError(
                    f"the query is nested too deeply (more than {MAX_NESTING} levels); simplify it"
                )
        elif kind in _CLOSING:
            depth -= 1
        run = run + 1 if kind in _UNARY else 0
        if run > MAX_UNARY_RUN:
            raise QueryError(f"more than {MAX_UNARY_RUN} NOT or signs in a row; simplify")
        selects += kind is TokenType.SELECT
        if selects > MAX_SELECTS:
            raise QueryError(f"the query has more than {MAX_SELECTS} SELECTs; simplify it")


_OPENING = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.CASE})
_CLOSING = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.END})
_UNARY = frozenset({TokenType.NOT, TokenType.DASH, TokenType.PLUS, TokenType.TILDE})


def _parse(query: str) -> exp.Expression:
    check_size(query)
    try:
        statements = [s for s in sqlglot.parse(query, read="trino") if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = (
            f" at line {first.get('line')}, column {first.get('col')}" if first.get("line") else ""
        )
        description = str(first.get("description") or exc).splitlines()[0]
        raise QueryError(f"syntax error{where}: {description}") from None
    except TokenError as exc:
        raise QueryError(f"syntax error: {exc}") from None
    if len(statements) != 1:
        raise QueryError(f"send one SELECT statement; this has {len(statements)}")
    tree = statements[0]
    if isinstance(tree, exp.Subquery):
        tree = tree.unnest()
    if not isinstance(tree, exp.Query):
        raise QueryError(
            f"only SELECT queries are allowed, not {tree.key.upper()}; Data Connect is read-only"
        )
    return tree


def _check_nodes(tree: exp.Expression) -> None:
    for node in tree.walk():
        if isinstance(node, exp.With) and node.args.get("recursive"):
            raise QueryError("WITH RECURSIVE is not allowed in a Data Connect query")
        if isinstance(node, STRING_GROWTH):
            _check_growth(node)
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name not in ALLOWED_FUNCTION_NAMES:
                raise QueryError(f"function {node.name}() is not allowed here")
            continue
        if type(node) not in ALLOWED_NODES:
            if isinstance(node, exp.Func):
                raise QueryError(f"function {node.sql_name()}() is not allowed here")
            raise QueryError(f"{node.key.upper()} is not allowed in a Data Connect query")
        if isinstance(node, exp.Identifier) and not node.quoted and node.name.startswith("$"):
            raise QueryError("use ? for parameters, not named or numbered placeholders")
        if isinstance(node, exp.Identifier) and node.name.lower().startswith("__genofed"):
            # the node's own columns and views (row ids, hidden counts)
            raise QueryError(f"names starting with __genofed are reserved: {node.name}")
        if isinstance(node, exp.Join) and not isinstance(node.this, exp.Unnest):
            if not (node.args.get("on") or node.args.get("using")):
                raise QueryError(
                    "joins need a condition: write JOIN ... ON (cross joins of tables are not "
                    "allowed)"
                )


def _check_growth(node: exp.Expression) -> None:
    name = node.sql_name().lower() if isinstance(node, exp.Func) else node.key
    nested = (
        isinstance(inner, STRING_GROWTH)
        for child in node.iter_expressions()
        for inner in child.walk()
    )
    if any(nested):
        raise QueryError(f"{name}() may not hold another replace()")
    added = node.args.get("replacement")
    if added is not None:
        if not (isinstance(added, exp.Literal) and added.is_string):
            raise QueryError(f"the text {name}() adds must be a string literal")
        if len(added.this) > MAX_GROWTH_LITERAL:
            raise QueryError(
                f"the text {name}() adds is longer than {MAX_GROWTH_LITERAL} characters"
            )


def _table_name(table: exp.Table) -> str:
    return ".".join(part.name for part in table.parts)


def _resolve_tables(
    tree: exp.Expression, visible: Mapping[str, TableSource], ctes: set[str]
) -> list[str]:
    used: list[str] = []
    for table in list(tree.find_all(exp.Table)):
        if not isinstance(table.this, exp.Identifier):
            raise QueryError("table functions are not allowed; name a table instead")
        name = _table_name(table)
        if len(table.parts) == 1 and name in ctes:
            continue
        source = visible.get(name)
        if source is None:
            raise QueryError(
                f"unknown table {name!r}; GET /data-connect/tables lists the tables you may query"
            )
        if name not in used:
            used.append(name)
        alias = table.alias or table.name  # keep `individuals.id` working, as in Trino
        table.replace(
            exp.Table(
                this=exp.to_identifier(source.name, quoted=True),
                alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)),
            )
        )
    if not used:
        raise QueryError("the query reads no table; name one from GET /data-connect/tables")
    return used


def _strip_ga4gh_types(tree: exp.Expression) -> dict[str, str]:
    """``ga4gh_type(x, '$ref:URL')`` in the select list: keep ``x``, note the $ref."""
    refs: dict[str, str] = {}
    outer = tree if isinstance(tree, exp.Select) else None
    for call in list(tree.find_all(exp.Anonymous)):
        if call.name.lower() != "ga4gh_type":
            continue
        parent = call.parent
        item = parent if isinstance(parent, exp.Alias) else call
        if outer is None or item.parent is not outer or item not in outer.expressions:
            raise QueryError("ga4gh_type() may only wrap a column of the outermost select list")
        args = call.expressions
        if len(args) != 2 or not (isinstance(args[1], exp.Literal) and args[1].is_string):
            raise QueryError("ga4gh_type() takes a value and a string '$ref:<JSON Schema URL>'")
        kind = args[1].this
        if not kind.startswith("$ref:"):
            raise QueryError("the second argument of ga4gh_type() must start with '$ref:'")
        value = args[0]
        name = parent.alias if isinstance(parent, exp.Alias) else value.output_name
        refs[name] = kind.removeprefix("$ref:")
        call.replace(value)
    return refs


def _number_placeholders(tree: exp.Expression) -> int:
    """``?`` becomes ``$1``, ``$2``... in the order written, whatever the translation does."""
    count = 0
    for node in list(tree.walk(bfs=False)):
        if isinstance(node, exp.Placeholder):
            if node.this:
                raise QueryError("use ? for parameters, not named or numbered placeholders")
            count += 1
            node.replace(exp.Placeholder(this=str(count)))
    return count


def _make_aggregate_only(tree: exp.Expression, source: TableSource, n_tables: int) -> AggregatePlan:
    """Check an aggregate-only query on its structure, against an allow-list: one SELECT
    over the table (and UNNEST of its own lists) whose output columns are GROUP BY keys
    and ``count``, ``sum`` or ``avg`` of a plain value, nothing around them; keys and
    aggregated values are columns or scalar reads of one (a JSON field, a length, a
    cast); no identifying column anywhere; no HAVING. Anything else could select single
    people inside a group (``sum(CASE WHEN id = ...)``), or undo the rounding of counts
    (``count(*) + 0``, ``sum(1)``)."""
    name = source.name
    hint = f"you may see only aggregates of {name!r}: "
    if not isinstance(tree, exp.Select) or tree.find(exp.CTE) is not None:
        raise QueryError(hint + "send one SELECT with count, sum or avg over that table")
    if n_tables > 1:
        raise QueryError(hint + "it cannot be joined with other tables")
    for clause in ("having", "qualify", "distinct"):
        if tree.args.get(clause):
            raise QueryError(hint + f"{clause.upper()} is not allowed")
    for node in tree.walk():
        if node is not tree and isinstance(node, exp.Query | exp.Subquery):
            raise QueryError(hint + "subqueries are not allowed")
        if isinstance(node, exp.Window):
            raise QueryError(hint + "window functions are not allowed")
        if isinstance(node, exp.AggFunc) and not isinstance(node, AGGREGATE_ONLY_FUNCTIONS):
            raise QueryError(hint + f"{node.key.upper()}() is not allowed, only count, sum, avg")
        if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
            raise QueryError(hint + "name the grouping columns instead of *")
        identifying = _identifying(node, source)
        if identifying is not None:
            raise QueryError(
                hint + f"{identifying} identifies individuals and may not be used below "
                "record level"
            )
    unnested = set()
    for join in tree.args.get("joins") or []:
        if not isinstance(join.this, exp.Unnest):
            raise QueryError(hint + "it can only be joined with UNNEST of its own columns")
        alias = join.this.args.get("alias")
        unnested |= {c.name for c in (alias.columns if alias else [])} | (
            {alias.name} if alias is not None and alias.name else set()
        )

    group = tree.args.get("group")
    keys = list(group.expressions) if group else []
    items = list(tree.expressions)
    key_sql: set[str] = set()
    for key in keys:
        if isinstance(key, exp.Literal) and key.is_int and 0 < int(key.this) <= len(items):
            key_sql.add(_unaliased(items[int(key.this) - 1]).sql())
        elif isinstance(key, exp.Column) and key.name in {i.alias for i in items if i.alias}:
            key_sql.add(_unaliased(next(i for i in items if i.alias == key.name)).sql())
        elif _plain_value(key):
            key_sql.add(key.sql())
        else:
            raise QueryError(hint + f"GROUP BY a column, not {key.sql()}")
    aggregates = 0
    count_columns = []
    row_counts: set[int] = set()
    for position, item in enumerate(items):
        value = _unaliased(item)
        if value.find(exp.AggFunc) is not None:
            if not isinstance(value, AGGREGATE_ONLY_FUNCTIONS):
                raise QueryError(
                    hint + f"{value.sql()}: an output column is an aggregate as it is, with "
                    "nothing around it"
                )
            argument = value.this
            if isinstance(argument, exp.Distinct):
                argument = argument.expressions[0] if len(argument.expressions) == 1 else None
            star = isinstance(argument, exp.Star) and isinstance(value, exp.Count)
            if not star and not _plain_value(argument):
                raise QueryError(
                    hint + f"{value.sql()}: count, sum and avg take a column (or a field of "
                    "one), not an expression"
                )
            aggregates += 1
            if isinstance(value, exp.Count):
                count_columns.append(position)
                if star:
                    row_counts.add(position)
        elif value.sql() not in key_sql:
            if value.find(exp.Column) is not None:
                raise QueryError(hint + f"{value.sql()} must be in GROUP BY or inside an aggregate")
            raise QueryError(hint + f"{value.sql()}: output columns are keys or aggregates")
    if not aggregates:
        raise QueryError(hint + "use count, sum or avg (grouped by columns if you like)")

    row = _read_internal_view(tree.args["from_"].this, source)
    tree.select(
        exp.alias_(exp.Count(this=exp.Distinct(expressions=[row])), HIDDEN_COUNT),
        copy=False,
    )
    if source.person_level:
        # who is behind each group: the individuals of a dataset's table (the ids the
        # Beacon's answers are guarded by), the rows of any other table
        person = row.copy()
        if source.people is not None:
            person = exp.column(source.people, table=row.args.get("table"))
        ids = exp.ArrayAgg(this=exp.Distinct(expressions=[person]))
        tree.select(exp.alias_(ids, HIDDEN_IDS), copy=False)
    return AggregatePlan(source, tuple(count_columns), frozenset(row_counts))


# Scalar reads of one column, allowed in aggregate-only queries (with literal paths).
_READS = (
    exp.JSONExtract,
    exp.JSONExtractScalar,
    exp.Lower,
    exp.Upper,
    exp.Length,
    exp.ArraySize,
    exp.Year,
    exp.Month,
    exp.Cast,
    exp.TryCast,
    exp.Paren,
    exp.Coalesce,
)
_READ_FUNCTIONS = {"json_extract_string", "len", "array_length", "json_array_length"}


def _plain_value(node: exp.Expression | None) -> bool:
    """A column, or a scalar read of one column whose other arguments are literals (a JSON
    path, a default): nothing that tests a value (no comparison, CASE, IF, arithmetic)."""
    if node is None:
        return False
    if isinstance(node, exp.Column):
        return True
    if isinstance(node, _READS) or (
        isinstance(node, exp.Anonymous) and node.name.lower() in _READ_FUNCTIONS
    ):
        parts = [node.this] if node.this is not None and not isinstance(node, exp.Anonymous) else []
        parts += list(node.expressions)
        parts += [
            node.args[k] for k in ("expression",) if isinstance(node.args.get(k), exp.Expression)
        ]
        columns = [p for p in parts if not isinstance(p, exp.Literal | exp.DataType | exp.JSONPath)]
        return len(columns) == 1 and _plain_value(columns[0])
    return False


def _identifying(node: exp.Expression, source: TableSource) -> str | None:
    """The identifying column or JSON field ``node`` names, if any: the table's own
    identifying columns, and ``$.id`` or a ``...Id`` / ``..._id`` field of a JSON one."""
    if isinstance(node, exp.Column) and node.name in source.identifiers:
        return f"column {node.name}"
    if isinstance(node, exp.Literal) and node.is_string and node.this.startswith("$"):
        path = node.this.removeprefix("$").strip(".").replace("[", ".").split(".")
        last = path[-1] if path else ""
        if (len(path) == 1 and last.lower() == "id") or (
            last != "id" and last.lower().endswith(("id", "_id"))
        ):
            return f"field {node.this}"
    if isinstance(node, exp.JSONPath):
        keys = [p.this for p in node.expressions if isinstance(p, exp.JSONPathKey)]
        last = str(keys[-1]) if keys else ""
        if (len(keys) == 1 and last.lower() == "id") or (
            last != "id" and last.lower().endswith(("id", "_id"))
        ):
            return f"field $.{'.'.join(str(k) for k in keys)}"
    return None


def _pin_to_position(
    tree: exp.Expression, visible: Mapping[str, TableSource], parameters: int
) -> tuple[PointLookup, list[tuple[exp.EQ, exp.Expression]]] | None:
    """For one SELECT over one variants table whose WHERE requires ``chrom = <value>``
    and ``pos = <value>``, restrict the scan to the rows of that position. Returns the
    look-up and the two conditions, written ``column = value``."""
    if not isinstance(tree, exp.Select) or tree.args.get("joins"):
        return None
    base = tree.args.get("from_")
    table = base.this if base is not None else None
    if not isinstance(table, exp.Table):
        return None
    source = visible.get(table.name)
    where = tree.args.get("where")
    if source is None or source.dataset is None or where is None:
        return None
    alias = table.alias
    found: dict[str, tuple[str, Any]] = {}
    values: dict[str, tuple[exp.EQ, exp.Expression]] = {}  # the condition and its value
    for condition in where.this.flatten() if isinstance(where.this, exp.And) else [where.this]:
        if not isinstance(condition, exp.EQ):
            continue
        sides = (condition.this, condition.expression)
        for column, value in (sides, sides[::-1]):
            if (
                isinstance(column, exp.Column)
                and column.name in ("chrom", "pos")
                and column.table in ("", alias)
                and (ref := _value_of(value)) is not None
            ):
                found.setdefault(column.name, ref)
                values.setdefault(column.name, (condition, value))
    if set(found) != {"chrom", "pos"} or not _hides_row_ids(tree, table):
        return None
    row = _read_internal_view(table, source)
    pinned = exp.Between(
        this=row,
        low=exp.Placeholder(this=str(parameters + 1)),
        high=exp.Placeholder(this=str(parameters + 2)),
    )
    where.set("this", exp.and_(where.this, pinned, copy=False))
    return PointLookup(source, found["chrom"], found["pos"]), list(values.values())


def _hides_row_ids(tree: exp.Select, table: exp.Table) -> bool:
    """Make the select list's ``*`` leave out the row id of the internal view; False if
    the row id could still show: a ``*`` elsewhere (but in ``count(*)``), or the table's
    name used as a value (DuckDB gives the whole row as a struct)."""
    for node in tree.walk():
        if (
            isinstance(node, exp.Column)
            and not node.table
            and node.name in (table.alias, table.name)
        ):
            return False
        if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
            item = node.parent if isinstance(node.parent, exp.Column) else node
            if item.parent is not tree:
                return False
    for star in tree.find_all(exp.Star):
        if not isinstance(star.parent, exp.Count):
            star.set("except_", [exp.column(ROW_ID)])
    return True


def _read_internal_view(table: exp.Table, source: TableSource) -> exp.Column:
    """Read ``table`` from the view that also has row ids; returns its row-id column."""
    table.set("this", exp.to_identifier(source.internal, quoted=True))
    return exp.column(ROW_ID, table=exp.to_identifier(table.alias, quoted=True))


def _value_of(node: exp.Expression) -> tuple[str, Any] | None:
    if isinstance(node, exp.Placeholder) and node.this:
        return ("parameter", int(node.this) - 1)
    if isinstance(node, exp.Literal):
        return ("value", node.this if node.is_string else float(node.this))
    return None


def _unaliased(item: exp.Expression) -> exp.Expression:
    return item.this if isinstance(item, exp.Alias) else item
