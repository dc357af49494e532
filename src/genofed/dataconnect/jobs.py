"""Running Data Connect queries and handing out their results a page at a time.

A query runs in a thread of the server worker that received it and streams from DuckDB in
Arrow batches, so memory stays flat whatever the result size. The first page is handed to
the waiting request in memory when it is ready in time; every other page is written to
the node's spool (``state/data-connect/<job>/page-<k>.arrow``), where any server worker
can serve it to the caller who ran the query, once: a page is deleted when read. A query
that has no page ready answers with an empty page and ``Retry-After``, which clients poll.

Limits: a query still running after ``statement_timeout_s`` is interrupted, a result is
cut at ``max_rows`` (with an error entry saying so), and unread pages are deleted after
``result_ttl_s``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from genofed._exceptions import QueryFailedError
from genofed.config import DataConnect


class Transform(Protocol):
    """Rewrites each page before it is kept (disclosure control); ``notes`` are added to
    the last page's errors."""

    notes: list[dict[str, str]]

    def __call__(self, table: pa.Table) -> pa.Table: ...


_JOB_ID_BYTES = 18
_ERRORS = b"genofed.errors"


@dataclass
class Page:
    """One page of a result, or news that it is not ready yet."""

    table: pa.Table | None  # None: not ready (poll again)
    job_id: str
    index: int
    last: bool
    model: dict[str, Any] | None = None
    sql_types: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)


class Job:
    """One query: its thread, its first page (in memory) and its spool directory."""

    def __init__(self, directory: Path, owner: str):
        self.id = directory.name
        self.dir = directory
        self.owner = owner
        self.failure: tuple[int, str, str] | None = None
        self._lock = threading.Lock()
        self._first_ready = threading.Event()
        self._first: tuple[pa.Table, bool, list[dict[str, str]]] | None = None
        self._first_abandoned = False
        self._model: dict[str, Any] | None = None
        self._spooled = self._model_written = False

    @property
    def model(self) -> dict[str, Any] | None:
        return self._model

    def _spool(self) -> None:
        """Create the spool directory on first need: a result whose only page goes back
        with the request never touches the disk."""
        with self._lock:
            if not self._spooled:
                self.dir.mkdir(parents=True, exist_ok=True)
                (self.dir / "owner").write_text(self.owner)
                self._spooled = True
            if self._model is not None and not self._model_written:
                _write_json(self.dir / "model.json", self._model)
                self._model_written = True

    def run(
        self,
        cursor: duckdb.DuckDBPyConnection,
        sql: str,
        parameters: list[Any],
        *,
        settings: DataConnect,
        model: Callable[[list[str], list[str]], dict[str, Any]],
        transform: Transform | None,
    ) -> None:
        timer = threading.Timer(settings.statement_timeout_s, cursor.interrupt)
        timer.daemon = True
        timer.start()
        errors: list[dict[str, str]] = []
        try:
            relation = cursor.sql(sql, params=parameters or None)
            names, sql_types = list(relation.columns), [str(t) for t in relation.types]
            reader = relation.to_arrow_reader(min(settings.page_rows, 100_000))
            previous: pa.Table | None = None
            index = rows = 0
            for table in _pages(reader, settings.page_rows):
                if transform is not None:
                    table = transform(table)
                if previous is None and index == 0:
                    kept = set(table.column_names)
                    types = [t for n, t in zip(names, sql_types, strict=True) if n in kept]
                    self._model = {"model": model(table.column_names, types), "types": types}
                    if self._spooled:
                        self._spool()
                if rows + table.num_rows > settings.max_rows:
                    table = table.slice(0, settings.max_rows - rows)
                    errors.append(
                        {
                            "title": "Result truncated",
                            "detail": f"the result was cut at {settings.max_rows:,} rows, this "
                            "node's limit; narrow the query or aggregate",
                        }
                    )
                rows += table.num_rows
                if previous is not None:
                    if table.num_rows == 0:
                        continue
                    self._publish(index, previous, last=False)
                    index += 1
                previous = table
                if errors:
                    break
            if transform is not None:
                errors.extend(transform.notes)
            assert previous is not None  # _pages yields at least one (maybe empty) page
            self._publish(index, previous, last=True, errors=errors)
            if self._spooled:
                with contextlib.suppress(FileNotFoundError):  # gone once its last page is read
                    _write_json(self.dir / "done.json", {"pages": index + 1})
        except duckdb.InterruptException:
            self._fail(
                408,
                "Query timed out",
                f"the query ran longer than {settings.statement_timeout_s:g} s, this node's "
                "limit; narrow it or aggregate",
            )
        except duckdb.Error as exc:
            self._fail(400, "Invalid query", _engine_message(exc))
        except Exception as exc:  # noqa: BLE001 - recorded for the client; details in the log
            self._fail(500, "Internal error", f"the query failed ({type(exc).__name__})")
        finally:
            timer.cancel()
            cursor.close()
            self._first_ready.set()

    def _publish(
        self, index: int, table: pa.Table, *, last: bool, errors: list[dict[str, str]] = ()
    ) -> None:
        """Hand a page over: the first to the waiting request if it still waits, every
        other one to the spool. The last page carries the result's errors."""
        if index == 0:
            with self._lock:
                if not self._first_abandoned:
                    self._first = (table, last, list(errors))
                    self._first_ready.set()
                    return
        self._spool()
        if errors:
            metadata = {_ERRORS: json.dumps(list(errors)).encode()}
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        _write_arrow(self.dir / _page_name(index, last), table)

    def _fail(self, status: int, title: str, detail: str) -> None:
        self.failure = (status, title, detail)
        with self._lock:
            if not self._first_abandoned:
                return  # the waiting request reports it
        self._spool()
        _write_json(
            self.dir / "done.json",
            {"failed": {"status": status, "title": title, "detail": detail}},
        )

    def first_page(self, wait: float) -> tuple[pa.Table, bool, list[dict[str, str]]] | None:
        """The first page if it is ready within ``wait`` seconds; otherwise it is left to
        the spool, to be polled."""
        self._first_ready.wait(wait)
        with self._lock:
            first, self._first = self._first, None
            if first is None and self.failure is None:
                self._first_abandoned = True
        if (first is None and self.failure is None) or (first is not None and not first[1]):
            self._spool()  # the caller will ask for more: the directory and owner must exist
        return first


class QueryJobs:
    """The spool of one node: starts jobs and serves their pages."""

    def __init__(self, root: Path, settings: DataConnect):
        self.root = root / "state" / "data-connect"
        self.settings = settings
        self._cleaned = -math.inf

    def start(
        self,
        cursor: duckdb.DuckDBPyConnection,
        sql: str,
        parameters: list[Any],
        *,
        owner: str,
        model: Callable[[list[str], list[str]], dict[str, Any]],
        transform: Transform | None = None,
    ) -> Page:
        """Run a query; returns its first page, or an empty one to poll."""
        self._clean_up()
        directory = self.root / secrets.token_urlsafe(_JOB_ID_BYTES)
        job = Job(directory, owner)
        thread = threading.Thread(
            target=job.run,
            args=(cursor, sql, parameters),
            kwargs={"settings": self.settings, "model": model, "transform": transform},
            name=f"data-connect-{job.id[:8]}",
            daemon=True,
        )
        thread.start()
        ready = job.first_page(self.settings.first_page_wait_s)
        if ready is None:
            if job.failure is not None:
                raise QueryFailedError(*job.failure)
            return Page(None, job.id, 0, last=False)
        first, last, errors = ready
        return self._page(directory, 0, first, last, errors, job.model)

    def page(self, job_id: str, index: int, owner: str) -> Page:
        """Page ``index`` of a job, for its owner; raises ``LookupError`` if there is none."""
        if not job_id.replace("-", "").replace("_", "").isalnum() or index < 0:
            raise LookupError("no such page")
        directory = self.root / job_id
        try:
            if (directory / "owner").read_text() != owner:
                raise LookupError("no such page")
        except FileNotFoundError:
            raise LookupError("no such page") from None
        for last in (False, True):
            path = directory / _page_name(index, last)
            if path.exists():
                with pa.memory_map(str(path)) as source:
                    table = pa.ipc.open_file(source).read_all()
                path.unlink()
                stored = (table.schema.metadata or {}).get(_ERRORS)
                errors = json.loads(stored) if stored else []
                return self._page(directory, index, table.replace_schema_metadata(), last, errors)
        done = _read_json(directory / "done.json")
        if done is None:
            if time.time() - directory.stat().st_mtime > self.settings.statement_timeout_s + 60:
                raise QueryFailedError(
                    500, "Query lost", "the node restarted while running it; send it again"
                )
            return Page(None, job_id, index, last=False)
        if "failed" in done:
            failed = done["failed"]
            raise QueryFailedError(failed["status"], failed["title"], failed["detail"])
        raise LookupError("no such page (each page can be read once)")

    def _page(
        self,
        directory: Path,
        index: int,
        table: pa.Table,
        last: bool,
        errors: list[dict[str, str]],
        stored: dict[str, Any] | None = None,
    ) -> Page:
        stored = stored or _read_json(directory / "model.json") or {}
        if last:
            shutil.rmtree(directory, ignore_errors=True)
        return Page(
            table, directory.name, index, last, stored.get("model"), stored.get("types", []), errors
        )

    def _clean_up(self) -> None:
        """Delete results nobody came back for (looked at once a minute at most)."""
        now = time.monotonic()
        if now - self._cleaned < 60 or not self.root.is_dir():
            return
        self._cleaned = now
        cutoff = time.time() - self.settings.result_ttl_s
        for directory in self.root.iterdir():
            try:
                if directory.stat().st_mtime < cutoff:
                    shutil.rmtree(directory, ignore_errors=True)
            except FileNotFoundError:
                continue


def _pages(reader: pa.RecordBatchReader, page_rows: int) -> Iterator[pa.Table]:
    """Re-cut Arrow batches into pages of ``page_rows`` rows (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    size = 0
    emitted = False
    for batch in reader:
        pending.append(batch)
        size += batch.num_rows
        while size >= page_rows:
            table = pa.Table.from_batches(pending, schema=reader.schema)
            yield table.slice(0, page_rows)
            emitted = True
            rest = table.slice(page_rows)
            pending, size = rest.to_batches(), rest.num_rows
    if size or not emitted:
        yield pa.Table.from_batches(pending, schema=reader.schema)


def _page_name(index: int, last: bool) -> str:
    # The last page says so in its name: a poller must know without waiting for done.json.
    return f"page-{index}{'-last' if last else ''}.arrow"


def _write_arrow(path: Path, table: pa.Table) -> None:
    temporary = path.with_suffix(".tmp")
    with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(temporary, path)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value))
    os.replace(temporary, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _engine_message(exc: duckdb.Error) -> str:
    """The engine's first line, which names the column or type at fault."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.replace("__genofed_rows:", "")[:500]
