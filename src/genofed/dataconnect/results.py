"""SQL values as Data Connect JSON, and the JSON Schema ``data_model`` that describes them.

The mapping is the specification's: tinyint..integer, real and double are numbers; bigint
and decimal are strings (JSON numbers lose precision past 2^53); dates and times are ISO
8601 strings; intervals are ISO 8601 durations; arrays, rows and maps are arrays and
objects; JSON columns are the JSON value itself.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
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


def rows_as_json(table: pa.Table, sql_types: list[str]) -> list[dict[str, Any]]:
    """The rows of ``table`` as JSON-ready dicts (column lists first: faster than per row)."""
    names = table.column_names
    columns = [_column_values(table.column(i), sql_types[i]) for i in range(table.num_columns)]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _column_values(column: pa.ChunkedArray, sql_type: str) -> list[Any]:
    kind = column.type
    upper = sql_type.upper()
    if pa.types.is_int64(kind) or pa.types.is_uint64(kind) or pa.types.is_decimal(kind):
        return pc.cast(column, pa.string()).to_pylist()  # bigint and decimal: strings
    if upper == "JSON":
        return [None if v is None else orjson.loads(v) for v in column.to_pylist()]
    if (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_string(kind)
        or pa.types.is_boolean(kind)
    ):
        return column.to_pylist()
    convert = _converter(kind)
    return [None if v is None else convert(v) for v in column.to_pylist()]


def _converter(kind: pa.DataType) -> Callable[[Any], Any]:
    """Python value of an Arrow type -> JSON-ready value (for nested and temporal types)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        item = _converter(kind.value_type)
        return lambda v: [None if x is None else item(x) for x in v]
    if pa.types.is_struct(kind):
        fields = {
            f.name: _converter(f.type) for f in (kind.field(i) for i in range(kind.num_fields))
        }
        return lambda v: {k: None if x is None else fields[k](x) for k, x in v.items()}
    if pa.types.is_map(kind):
        value = _converter(kind.item_type)
        return lambda v: {str(k): None if x is None else value(x) for k, x in v}
    if pa.types.is_interval(kind):
        return iso_duration
    if pa.types.is_int64(kind) or pa.types.is_uint64(kind) or pa.types.is_decimal(kind):
        return str
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return lambda v: v.hex()
    return _scalar


def _scalar(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, int) and abs(value) > 2**53:
        return str(value)
    return value


def iso_duration(value: Any) -> str:
    """Arrow month-day-nano interval -> ISO 8601 (``P1Y2M``, ``P3DT4H``, ``PT0S``)."""
    months, days, nanos = value.months, value.days, value.nanoseconds
    date = ""
    if months:
        years, months = divmod(months, 12)
        date += (f"{years}Y" if years else "") + (f"{months}M" if months else "")
    if days:
        date += f"{days}D"
    seconds, fraction = divmod(nanos, 1_000_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    time = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if seconds or fraction:
        text = f"{seconds}.{fraction:09d}".rstrip("0").rstrip(".") if fraction else f"{seconds}"
        time += f"{text}S"
    if not date and not time:
        return "PT0S"
    return "P" + date + (f"T{time}" if time else "")
