"""Running Data Connect queries and handing out their results a page at a time.

A query runs in a thread of the server worker that received it. DuckDB writes each row as
JSON itself (``results.json_rows_sql``) and the thread fetches a page of rows at a time,
so memory stays flat whatever the result size. The first page goes to the waiting request
in memory when it is ready in time; every other page is written to the node's spool
(``state/data-connect/<job>/page-<k>.json``), where any server worker can serve it to the
caller who ran the query, once: a page is deleted when read. A query with no page ready
yet answers with an empty page and ``Retry-After``, which clients poll.

Limits: a query still running after ``statement_timeout_s`` is interrupted (one watchdog
thread for all queries), a result is cut at ``max_rows`` with an error entry saying so,
and unread pages are deleted after ``result_ttl_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb

from genofed._exceptions import QueryFailedError
from genofed.config import DataConnect
from genofed.dataconnect.catalog import QueryEngine

_JOB_ID_BYTES = 18
_SPOOL_AHEAD = 8  # unread pages a query may have on disk before it waits for its reader
_ABANDONED_S = 600.0  # a reader silent this long has gone: the query stops


class _AbandonedError(Exception):
    """Nobody is reading the result any more."""


@dataclass
class Page:
    """One page of a result, or news that it is not ready yet."""

    data: bytes | None  # a JSON array of rows; None: not ready (poll again)
    job_id: str
    index: int
    last: bool
    model: bytes | None = None  # the data_model, as JSON
    errors: list[dict[str, str]] = field(default_factory=list)
    rows: int = 0


class Transform(Protocol):
    """Makes fetched rows ``(json, *hidden)`` safe to send (disclosure control) and returns
    their JSON; ``notes`` are added to the last page's errors."""

    notes: list[dict[str, str]]

    def __call__(self, rows: list[tuple[Any, ...]]) -> list[str]: ...


class Watchdog:
    """Interrupts queries that outlive their deadline. One thread looks every 50 ms, so
    starting and ending a query costs a dictionary update, not a thread wake-up."""

    def __init__(self) -> None:
        self._running: dict[int, tuple[float, duckdb.DuckDBPyConnection]] = {}
        self._counter = itertools.count()
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="data-connect-watchdog", daemon=True).start()

    @contextlib.contextmanager
    def watching(self, cursor: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
        ticket = next(self._counter)
        with self._lock:
            self._running[ticket] = (time.monotonic() + seconds, cursor)
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(ticket, None)

    def _run(self) -> None:
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            with self._lock:  # held while interrupting: the step cannot end and reuse it
                # A late step is interrupted at every look until it ends: DuckDB forgets an
                # interrupt that arrives before the query starts executing.
                for deadline, cursor in self._running.values():
                    if deadline <= now:
                        with contextlib.suppress(duckdb.Error):
                            cursor.interrupt()


class Job:
    """One query: its thread, its first page (in memory) and its spool directory."""

    def __init__(self, directory: Path, owner: str, model: bytes):
        self.id = directory.name
        self.dir = directory
        self.owner = owner
        self.model = model
        self.failure: tuple[int, str, str] | None = None
        self._lock = threading.Lock()
        self._first_ready = threading.Event()
        self._first: tuple[bytes, bool, list[dict[str, str]], int] | None = None
        self._first_abandoned = False
        self._spooled = False
        self._listeners: list[Callable[[], None]] = []

    def run(
        self,
        engine: QueryEngine,
        sql: str,
        parameters: list[Any],
        *,
        settings: DataConnect,
        watchdog: Watchdog,
        transform: Transform | None,
    ) -> None:
        errors: list[dict[str, str]] = []
        limit = settings.statement_timeout_s
        cursor = engine.thread_cursor()
        try:
            # The time limit applies to each step, executing and fetching a page: time spent
            # waiting for a slow reader to catch up does not count.
            with watchdog.watching(cursor, limit):
                cursor.execute(sql, parameters)
            previous: list[str] | None = None
            index = rows = 0
            while True:
                with watchdog.watching(cursor, limit):
                    fetched = cursor.fetchmany(settings.page_rows)
                texts = transform(fetched) if transform else [row[0] for row in fetched]
                if rows + len(texts) > settings.max_rows:
                    texts = texts[: settings.max_rows - rows]
                    errors.append(
                        {
                            "title": "Result truncated",
                            "detail": f"the result was cut at {settings.max_rows:,} rows, this "
                            "node's limit; narrow the query or aggregate",
                        }
                    )
                rows += len(texts)
                if previous is not None and texts:
                    self._publish(index, previous, last=False)
                    index += 1
                if texts or previous is None:
                    previous = texts
                if not fetched or len(fetched) < settings.page_rows or errors:
                    break
            if transform is not None:
                errors.extend(transform.notes)
            self._publish(index, previous or [], last=True, errors=errors)
            if self._spooled:
                with contextlib.suppress(FileNotFoundError):  # gone once its last page is read
                    _write(self.dir / "done.json", json.dumps({"pages": index + 1}).encode())
        except _AbandonedError:
            shutil.rmtree(self.dir, ignore_errors=True)
        except duckdb.InterruptException:
            self._fail(
                408,
                "Query timed out",
                f"the query ran longer than {settings.statement_timeout_s:g} s, this node's "
                "limit; narrow it or aggregate",
            )
        except duckdb.Error as exc:
            self._fail(400, "Invalid query", engine_message(exc))
        except Exception as exc:  # noqa: BLE001 - recorded for the client
            self._fail(500, "Internal error", f"the query failed ({type(exc).__name__})")
        finally:
            with contextlib.suppress(duckdb.Error):
                cursor.abort()  # a result cut short or failed must not block its next query
            with self._lock:
                self._ready()

    def _ready(self) -> None:
        """The first page (or the failure) is there: wake whoever waits (lock held)."""
        if not self._first_ready.is_set():
            self._first_ready.set()
            for listener in self._listeners:
                listener()

    async def first_page(self, wait: float) -> tuple[bytes, bool, list[dict[str, str]], int] | None:
        """The first page if it is ready within ``wait`` seconds; otherwise it is left to
        the spool, to be polled. Waits in the event loop: no thread is held meanwhile."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(lambda: ready.done() or ready.set_result(None))

        with self._lock:
            if self._first_ready.is_set():
                ready.set_result(None)
            else:
                self._listeners.append(wake)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready, wait)
        return self._take_first()

    def _spool(self) -> None:
        """Create the spool directory on first need: a result whose only page goes back
        with the request never touches the disk."""
        with self._lock:
            if not self._spooled:
                self.dir.mkdir(parents=True, exist_ok=True)
                (self.dir / "model.json").write_bytes(self.model)
                (self.dir / "owner").write_text(self.owner)
                self._spooled = True

    def _publish(
        self, index: int, texts: list[str], *, last: bool, errors: list[dict[str, str]] = ()
    ) -> None:
        """Hand a page over: the first to the waiting request if it still waits, every
        other one to the spool. The last page carries the result's errors."""
        data = ("[" + ",".join(texts) + "]").encode()
        if index == 0:
            with self._lock:
                if not self._first_abandoned:
                    self._first = (data, last, list(errors), len(texts))
                    self._ready()
                    return
        self._spool()
        self._wait_for_reader(index)
        # first line: the page's errors and row count; then its rows
        head = json.dumps({"errors": list(errors), "rows": len(texts)}).encode()
        _write(self.dir / _page_name(index, last), head + b"\n" + data)

    def _wait_for_reader(self, index: int) -> None:
        """Keep at most ``_SPOOL_AHEAD`` unread pages on disk, so a slow or vanished reader
        cannot fill it; give up once nobody has read a page for ``_ABANDONED_S``."""
        waited_since = time.monotonic()
        while index - self._oldest_unread() >= _SPOOL_AHEAD:
            if time.monotonic() - waited_since > _ABANDONED_S:
                raise _AbandonedError
            time.sleep(0.02)

    def _oldest_unread(self) -> int:
        indices = [int(p.stem.split("-")[1]) for p in self.dir.glob("page-*.json")]
        return min(indices, default=1 << 62)

    def _fail(self, status: int, title: str, detail: str) -> None:
        self.failure = (status, title, detail)
        with self._lock:
            if not self._first_abandoned:
                return  # the waiting request reports it
        self._spool()
        failed = {"failed": {"status": status, "title": title, "detail": detail}}
        _write(self.dir / "done.json", json.dumps(failed).encode())

    def _take_first(self) -> tuple[bytes, bool, list[dict[str, str]], int] | None:
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
        self._watchdog: Watchdog | None = None
        # Query threads are reused: starting one per query cost 0.4 ms. Their number caps
        # the queries running at once; a query waiting for a thread is polled like any
        # slow one.
        self._threads = ThreadPoolExecutor(
            max_workers=settings.concurrent_queries, thread_name_prefix="data-connect"
        )

    def launch(
        self,
        engine: QueryEngine,
        sql: str,
        parameters: list[Any],
        *,
        owner: str,
        model: bytes,
        transform: Transform | None = None,
    ) -> Job:
        """Start running a query in a query thread."""
        self._clean_up()
        if self._watchdog is None:
            self._watchdog = Watchdog()
        job = Job(self.root / secrets.token_urlsafe(_JOB_ID_BYTES), owner, model)
        self._threads.submit(
            job.run,
            engine,
            sql,
            parameters,
            settings=self.settings,
            watchdog=self._watchdog,
            transform=transform,
        )
        return job

    async def first_page(self, job: Job) -> Page:
        """A launched query's first page, or an empty one to poll if it is not ready within
        ``page_wait_s``; raises ``QueryFailedError`` if the query failed by then."""
        ready = await job.first_page(self.settings.page_wait_s)
        if ready is None:
            if job.failure is not None:
                raise QueryFailedError(*job.failure)
            return Page(None, job.id, 0, last=False)
        data, last, errors, rows = ready
        return Page(data, job.id, 0, last, job.model, errors, rows)

    async def wait_for_page(self, job_id: str, index: int, owner: str) -> Page:
        """Page ``index`` of a job, waiting up to ``page_wait_s`` for the query to write
        it: a client that reads faster than the query runs should get its page as soon
        as it is there, not after a whole ``Retry-After``. The spool is looked at again
        every few milliseconds (any server worker may be the one running the query),
        without holding a thread in between."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.settings.page_wait_s
        delay = 0.002
        while True:
            page = await loop.run_in_executor(None, self.page, job_id, index, owner)
            if page.data is not None or time.monotonic() >= deadline:
                return page
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

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
            try:
                content = path.read_bytes()
            except FileNotFoundError:
                continue
            path.unlink()
            model = (directory / "model.json").read_bytes()
            if last:
                shutil.rmtree(directory, ignore_errors=True)
            head, _, data = content.partition(b"\n")
            facts = json.loads(head)
            return Page(data, job_id, index, last, model, facts["errors"], facts["rows"])
        try:
            done = json.loads((directory / "done.json").read_bytes())
        except FileNotFoundError:
            if time.time() - directory.stat().st_mtime > self.settings.statement_timeout_s + 60:
                raise QueryFailedError(
                    500, "Query lost", "the node restarted while running it; send it again"
                ) from None
            return Page(None, job_id, index, last=False)
        if "failed" in done:
            shutil.rmtree(directory, ignore_errors=True)
            raise QueryFailedError(*done["failed"].values())
        raise LookupError("no such page (each page can be read once)")

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


def _page_name(index: int, last: bool) -> str:
    # The last page says so in its name: a poller must know without waiting for done.json.
    return f"page-{index}{'-last' if last else ''}.json"


def _write(path: Path, content: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)


def engine_message(exc: duckdb.Error) -> str:
    """The engine's first line, which names the column or type at fault."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.replace("__genofed_rows:", "")[:500]
