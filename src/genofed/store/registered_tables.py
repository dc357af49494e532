"""Tables an operator registers for Data Connect: a CSV, TSV or Parquet file copied in.

    NODE/tables/<digest>.duckdb     the table ``data`` and one row of ``meta``

The file is copied, not linked: the node serves what was registered even if the source
changes or moves, and the query engine never needs file access. It is written under a
temporary name and renamed, so a failed registration leaves the node as it was, and
registering a name again replaces that table.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from genofed._exceptions import IngestError
from genofed.store.node_dir import NodeDir

TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")
_READERS = {
    ".csv": "read_csv",
    ".tsv": "read_csv",
    ".txt": "read_csv",
    ".parquet": "read_parquet",
}


@dataclass(frozen=True)
class RegisteredTable:
    name: str
    path: Path
    description: str | None = None
    tier: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # column -> description


def _table_path(node: NodeDir, name: str) -> Path:
    # Names may hold '.' and ':'; the file is named by a digest of the name instead.
    return node.tables_dir / f"{hashlib.sha256(name.encode()).hexdigest()[:24]}.duckdb"


def _reader(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    reader = _READERS.get(suffixes[-1] if suffixes else "")
    if reader is None:
        raise IngestError(
            "unknown file type; register a .csv, .tsv (optionally .gz) or .parquet file",
            source=str(path),
        )
    return reader


def register_table(
    node: NodeDir,
    name: str,
    source: Path,
    *,
    description: str | None = None,
    tier: str | None = None,
    columns: dict[str, str] | None = None,
) -> RegisteredTable:
    """Copy ``source`` into the node as table ``name`` (replacing one of that name)."""
    if not TABLE_NAME.match(name):
        raise IngestError(
            f"table name {name!r} is not allowed: use letters, digits and _ . : - "
            "(at most 128 characters, not starting with . : or -)"
        )
    taken = {f"{v.dataset_id}.{kind}" for v in node.datasets() for kind in DATASET_TABLES}
    if name in taken:
        raise IngestError(f"table name {name!r} is already used by a dataset; choose another")
    if not source.is_file():
        raise IngestError("file not found", source=str(source))
    reader = _reader(source)
    target = _table_path(node, name)
    target.parent.mkdir(exist_ok=True)
    temporary = target.with_suffix(f".tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(temporary))
        try:
            con.execute(f"CREATE TABLE data AS SELECT * FROM {reader}(?)", [str(source)])
            present = {row[0] for row in con.execute("DESCRIBE data").fetchall()}
            unknown = sorted(set(columns or {}) - present)
            if unknown:
                raise IngestError(
                    f"--describe names columns the file does not have: {', '.join(unknown)}",
                    source=str(source),
                )
            con.execute("CREATE TABLE meta (doc VARCHAR)")
            meta = {
                "name": name,
                "description": description,
                "tier": tier,
                "columns": columns or {},
                "source": source.name,
            }
            con.execute("INSERT INTO meta VALUES (?)", [json.dumps(meta)])
            con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            raise IngestError(
                f"cannot read the file as a table: {str(exc).splitlines()[0]}", source=str(source)
            ) from exc
        finally:
            con.close()
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
    return RegisteredTable(name, target, description, tier, columns or {})


def registered_tables(node: NodeDir) -> list[RegisteredTable]:
    tables = []
    for path in sorted(node.tables_dir.glob("*.duckdb")):
        con = duckdb.connect(str(path), read_only=True)
        try:
            meta = json.loads(con.execute("SELECT doc FROM meta").fetchone()[0])
        finally:
            con.close()
        tables.append(
            RegisteredTable(
                meta["name"], path, meta.get("description"), meta.get("tier"), meta["columns"]
            )
        )
    return tables


# Tables every dataset offers to Data Connect, as ``<dataset id>.<kind>``.
DATASET_TABLES = ("variants", "individuals")
