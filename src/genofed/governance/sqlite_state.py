"""Node state shared by the CLI and every server worker: small SQLite files in WAL mode."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class SqliteState:
    """One connection per thread to ``path``, created with ``schema`` on first use."""

    def __init__(
        self,
        path: Path,
        schema: str,
        *,
        rows_as_dicts: bool = False,
        durable: bool = True,
        columns: dict[str, dict[str, str]] | None = None,
    ):
        """``columns`` (table -> column -> definition) are added to a table an earlier
        release created without them: the file is upgraded in place, keeping its rows."""
        self.path = path
        self.schema = schema
        self.columns = columns or {}
        self.rows_as_dicts = rows_as_dicts
        self.durable = durable
        self._local = threading.local()

    def __call__(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit: each statement is its own transaction, and a busy file is waited on.
            con = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            if self.rows_as_dicts:
                con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            if not self.durable:
                # Per-request counters: no fsync per write (a power cut may lose the last
                # few increments, never corrupt the file).
                con.execute("PRAGMA synchronous=NORMAL")
            con.executescript(self.schema)
            for table, wanted in self.columns.items():
                have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
                for column, definition in wanted.items():
                    if column not in have:
                        con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            self._local.con = con
        return con
