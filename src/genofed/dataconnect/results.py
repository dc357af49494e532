"""SQL values as Data Connect JSON, and the JSON Schema ``data_model`` that describes them.

The mapping is the specification's: tinyint..integer, real and double are numbers (NaN
and infinities, which JSON cannot write, are null); bigint
and decimal are strings (JSON numbers lose precision past 2^53); dates and times are ISO
8601 strings; intervals are ISO 8601 durations; arrays, rows and maps are arrays and
objects; JSON columns are the JSON value itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson

from genofed.dataconnect.catalog import quote

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
# A keyword of a count column's schema: how precise its values are (exact, rounded), as a
# Beacon's countPrecision says; JSON Schema ignores keywords it does not know.
COUNT_PRECISION = "x-genofed-countPrecision"
_NUMBER_FORMATS = {
    "TINYINT": "tinyint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "UTINYINT": "tinyint",
    "USMALLINT": "smallint",
    "UINTEGER": "bigint",
    "FLOAT": "real",
    "DOUBLE": "double",
}
_STRING_FORMATS = {
    "BIGINT": "bigint",
    "UBIGINT": "bigint",
    "HUGEINT": "bigint",
    "UHUGEINT": "bigint",
    "VARCHAR": "varchar",
    "UUID": "varchar",
    "BLOB": "varbinary",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP_NS": "timestamp",
    "TIMESTAMP_MS": "timestamp",
    "TIMESTAMP_S": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
    "TIME WITH TIME ZONE": "time with time zone",
    "INTERVAL": "interval",
}


def property_schema(sql_type: str, description: str | None = None) -> dict[str, Any]:
    """The JSON Schema of one column, from its DuckDB type name."""
    schema = _type_schema(sql_type.strip())
    if description:
        schema["description"] = description
    return schema


def _type_schema(sql_type: str) -> dict[str, Any]:
    upper = sql_type.upper()
    if upper.endswith("[]"):
        return {"type": "array", "format": "array", "items": _type_schema(sql_type[:-2])}
    if upper == "BOOLEAN":
        return {"type": "boolean", "format": "boolean"}
    if upper in _NUMBER_FORMATS:
        kind = "number" if upper in ("FLOAT", "DOUBLE") else "integer"
        return {"type": kind, "format": _NUMBER_FORMATS[upper]}
    if upper.startswith("DECIMAL"):
        return {"type": "string", "format": "decimal"}
    if upper in _STRING_FORMATS:
        return {"type": "string", "format": _STRING_FORMATS[upper]}
    if upper == "JSON":
        return {"format": "json"}
    if upper.startswith("STRUCT"):
        return {"type": "object", "format": "row"}
    if upper.startswith("MAP"):
        return {"type": "object", "format": "map"}
    return {"format": sql_type.lower()}


def data_model(
    columns: list[tuple[str, str]],
    *,
    descriptions: dict[str, str] | None = None,
    refs: dict[str, str] | None = None,
    description: str,
) -> dict[str, Any]:
    """A draft-07 schema for rows with ``columns`` ``(name, DuckDB type)``; a column with a
    ``ga4gh_type`` reference is described by that ``$ref`` alone."""
    properties: dict[str, Any] = {}
    for name, sql_type in columns:
        ref = (refs or {}).get(name)
        properties[name] = (
            {"$ref": ref} if ref else property_schema(sql_type, (descriptions or {}).get(name))
        )
    return {
        "$schema": DRAFT_07,
        "description": description,
        "type": "object",
        "properties": properties,
    }


def json_rows_sql(sql: str, columns: list[tuple[str, Any]], extra: tuple[str, ...] = ()) -> str:
    """``sql`` wrapped so DuckDB returns each row as one JSON object in the specification's
    mapping (bigint and decimal as strings, ISO 8601 times and durations), built in C++
    rather than value by value in Python. ``columns`` are ``(name, DuckDBPyType)`` of
    ``sql``'s result; ``extra`` columns are returned next to the JSON, as SQL values."""
    fields = ", ".join(
        f"{quote(name)} := {_json_value(f'__q.{quote(name)}', kind)}"
        for name, kind in columns
        if name not in extra
    )
    hidden = "".join(f", __q.{quote(name)}" for name in extra)
    return f"SELECT to_json(struct_pack({fields})){hidden} FROM ({sql}) AS __q"


def _json_value(x: str, kind: Any) -> str:
    """An SQL expression turning ``x`` of type ``kind`` into what ``to_json`` must see."""
    name = kind.id
    if name in ("bigint", "hugeint", "ubigint", "uhugeint", "decimal", "uuid"):
        return f"CAST({x} AS VARCHAR)"
    if name in ("double", "float"):
        return f"if(isfinite({x}), {x}, NULL)"  # JSON has no NaN or Infinity: null
    if name.startswith("timestamp"):
        return f"replace(CAST({x} AS VARCHAR), ' ', 'T')"
    if name == "interval":
        return _iso_interval(x)
    if name == "blob":
        return f"hex({x})"
    if name in ("list", "array"):
        child = dict(kind.children)["child"]
        inner = _json_value("e", child)
        return x if inner == "e" else f"list_transform({x}, lambda e: {inner})"
    if name == "struct":
        parts = [(k, _json_value(f"{x}.{quote(k)}", t)) for k, t in kind.children]
        if all(v == f"{x}.{quote(k)}" for k, v in parts):
            return x
        packed = ", ".join(f"{quote(k)} := {v}" for k, v in parts)
        return f"CASE WHEN {x} IS NULL THEN NULL ELSE struct_pack({packed}) END"
    return x


def _iso_interval(x: str) -> str:
    """ISO 8601 duration of an interval: P1Y2M3DT4H5M6.5S, or PT0S."""

    def part(unit: str) -> str:
        return f"date_part('{unit}', {x})"

    date = "".join(
        f"if({part(u)} <> 0, {part(u)} || '{s}', '')" + ("" if i == 2 else " || ")
        for i, (u, s) in enumerate((("year", "Y"), ("month", "M"), ("day", "D")))
    )
    seconds = f"({part('microseconds')} / 1000000)"
    time = (
        f"if({part('hour')} <> 0, {part('hour')} || 'H', '') || "
        f"if({part('minute')} <> 0, {part('minute')} || 'M', '') || "
        f"if({part('microseconds')} <> 0, "
        f"regexp_replace(printf('%.6f', {seconds}), '\\.?0+$', '') || 'S', '')"
    )
    text = f"'P' || {date} || if(({time}) <> '', 'T' || {time}, '')"
    return f"CASE WHEN {x} IS NULL THEN NULL ELSE if(({text}) = 'P', 'PT0S', {text}) END"


# Types whose Python values orjson writes in the specification's mapping as they are, and
# those that need a conversion first.
_AS_IS = {
    "boolean",
    "tinyint",
    "smallint",
    "integer",
    "utinyint",
    "usmallint",
    "uinteger",
    "varchar",
}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


_CONVERTED: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(("bigint", "ubigint", "hugeint", "uhugeint"), str),
    "double": _finite,
    "float": _finite,
}


class RowsAsJson:
    """Rows of plain SQL values written as JSON objects in Python, in the same mapping as
    ``json_rows_sql``. For results of a few rows only (a point query): DuckDB's JSON
    functions cost half a millisecond a query, which is most of such a query, while
    Python takes microseconds a row; for large results DuckDB is three times faster."""

    def __init__(self, columns: list[tuple[str, Callable[[Any], Any] | None]]):
        self.columns = columns
        self.notes: list[dict[str, str]] = []  # nothing to report, ever

    @classmethod
    def for_columns(cls, columns: list[tuple[str, Any]]) -> RowsAsJson | None:
        """An encoder for ``columns`` ``(name, DuckDBPyType)``, or None when a type needs
        DuckDB's conversion (decimals, times, intervals, nested types, ...)."""
        converters: list[tuple[str, Callable[[Any], Any] | None]] = []
        for name, kind in columns:
            if kind.id in _AS_IS or (
                kind.id == "list" and dict(kind.children)["child"].id in _AS_IS
            ):
                converters.append((name, None))
            elif kind.id in _CONVERTED:
                converters.append((name, _CONVERTED[kind.id]))
            else:
                return None
        return cls(converters)

    def __call__(self, rows: list[tuple[Any, ...]]) -> list[str]:
        columns = self.columns
        return [
            orjson.dumps(
                {
                    name: value if convert is None or value is None else convert(value)
                    for (name, convert), value in zip(columns, row, strict=True)
                }
            ).decode()
            for row in rows
        ]
