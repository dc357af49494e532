"""Running Data Connect queries as jobs, and handing out their results a page at a time.

A query is a job of the node's ``JobRuntime`` (kind ``data-connect``), run in a query
thread of the worker that received it. DuckDB writes each row as JSON itself
(``results.json_rows_sql``) and the thread fetches a page of rows at a time, so memory
stays flat whatever the result size. The first page goes to the waiting request in memory
when it is ready in time, and a query answered in one page never touches the disk; every
other page is an output of the job (``page-<k>.json``, the last ``page-<k>-last.json``)
in the spool, where any server worker can serve it to the query's owner, once: a page is
deleted when read, and the job with its last page. A page not ready yet is waited for up
to ``page_wait_s``, then answered empty with ``Retry-After``, which clients poll.

Limits: a query still running after ``statement_timeout_s`` is interrupted (one watchdog
thread for all queries), a result is cut at ``max_rows`` with an error entry saying so,
at most ``_SPOOL_AHEAD`` unread pages wait on disk, and unread results are deleted after
``result_ttl_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import duckdb

from genofed._exceptions import NotFoundError, QueryFailedError
from genofed.config import DataConnect
from genofed.dataconnect.catalog import QueryEngine
from genofed.jobs.runtime import Job, JobRuntime, JobState

KIND = "data-connect"
_SPOOL_AHEAD = 8  # unread pages a query may have on disk before it waits for its reader
_ABANDONED_S = 600.0  # a reader silent this long has gone: the query stops
_LOST_AFTER_S = 60.0  # a running query silent this much past its timeout: its worker died


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


class QueryRun:
    """One running query: the first page's hand-over to the request that started it,
    and the writing of every other page into its job's spool."""

    def __init__(self, model: bytes):
        self.model = model
        self.job: Job | None = None
        self.failure: tuple[int, str, str] | None = None
        self._lock = threading.Lock()
        self._first_ready = threading.Event()
        self._first: tuple[bytes, bool, list[dict[str, str]], int] | None = None
        self._first_abandoned = False
        self._listeners: list[Callable[[], None]] = []

    @property
    def id(self) -> str:
        assert self.job is not None
        return self.job.id

    def run(
        self,
        job: Job,
        engine: QueryEngine,
        sql: str,
        parameters: list[Any],
        *,
        settings: DataConnect,
        watchdog: Watchdog,
        transform: Transform | None,
        values: bool = True,
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
                    self._publish(job, index, previous, last=False)
                    index += 1
                if job.cancelled:  # nobody reads the result any more
                    break
                if texts or previous is None:
                    previous = texts
                if not fetched or len(fetched) < settings.page_rows or errors:
                    break
            if job.cancelled:
                job.update(state=JobState.CANCELLED, message="nobody read the result")
                shutil.rmtree(job.dir, ignore_errors=True)
                return
            if transform is not None:
                errors.extend(transform.notes)
            self._publish(job, index, previous or [], last=True, errors=errors)
            job.update(result={"pages": index + 1, "rows": rows})
        except duckdb.InterruptException:
            self._fail(
                job,
                408,
                "Query timed out",
                f"the query ran longer than {settings.statement_timeout_s:g} s, this node's "
                "limit; narrow it or aggregate",
            )
        except duckdb.Error as exc:
            self._fail(job, 400, "Invalid query", engine_message(exc, values=values))
        except Exception as exc:  # noqa: BLE001 - recorded for the client
            self._fail(job, 500, "Internal error", f"the query failed ({type(exc).__name__})")
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

    def _spool(self, job: Job) -> None:
        """Put the job in the spool on first need, with its data model."""
        if not job.persisted:
            job.publish("model.json", self.model)

    def _publish(
        self,
        job: Job,
        index: int,
        texts: list[str],
        *,
        last: bool,
        errors: list[dict[str, str]] = (),  # type: ignore[assignment]
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
        self._spool(job)
        self._wait_for_reader(job, index)
        if job.cancelled:
            return
        # first line: the page's errors and row count; then its rows
        head = json.dumps({"errors": list(errors), "rows": len(texts)}).encode()
        job.publish(page_name(index, last), head + b"\n" + data)
        job.update(progress=None, message=f"{index + 1} page(s) written")

    def _wait_for_reader(self, job: Job, index: int) -> None:
        """Keep at most ``_SPOOL_AHEAD`` unread pages on disk, so a slow or vanished reader
        cannot fill it; give up (cancel the job) once nobody has read a page for
        ``_ABANDONED_S``."""
        waited_since = time.monotonic()
        while index - _oldest_unread(job) >= _SPOOL_AHEAD and not job.cancelled:
            if time.monotonic() - waited_since > _ABANDONED_S:
                job.cancel()
                return
            time.sleep(0.02)

    def _fail(self, job: Job, status: int, title: str, detail: str) -> None:
        self.failure = (status, title, detail)
        error = {"status": status, "title": title, "detail": detail}
        with self._lock:
            if not self._first_abandoned:
                job.update(state=JobState.FAILED, error=error)
                return  # the waiting request reports it
        self._spool(job)
        job.update(state=JobState.FAILED, error=error)

    def _take_first(self) -> tuple[bytes, bool, list[dict[str, str]], int] | None:
        with self._lock:
            first, self._first = self._first, None
            if first is None and self.failure is None:
                self._first_abandoned = True
        if (first is None and self.failure is None) or (first is not None and not first[1]):
            assert self.job is not None
            self._spool(self.job)  # the caller will ask for more: the job must be spooled
        return first


def _oldest_unread(job: Job) -> int:
    indices = [int(p.stem.split("-")[1]) for p in job.dir.glob("page-*.json")]
    return min(indices, default=1 << 62)


class QueryJobs:
    """Data Connect's use of the job runtime: starts queries and serves their pages."""

    def __init__(self, jobs: JobRuntime, settings: DataConnect):
        self.jobs = jobs
        self.settings = settings
        self._watchdog: Watchdog | None = None
        # Query threads are reused (each keeps its DuckDB connection): starting one per
        # query cost 0.4 ms. Their number caps the queries running at once; a query
        # waiting for a thread is polled like any slow one.
        jobs.run_kind_on(
            KIND,
            ThreadPoolExecutor(
                max_workers=settings.concurrent_queries, thread_name_prefix="data-connect"
            ),
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
        values: bool = True,
    ) -> QueryRun:
        """Start running a query in a query thread; without ``values`` its errors carry
        no data values (``engine_message``)."""
        if self._watchdog is None:
            self._watchdog = Watchdog()
        run = QueryRun(model)
        watchdog = self._watchdog

        def body(job: Job) -> None:
            run.run(
                job,
                engine,
                sql,
                parameters,
                settings=self.settings,
                watchdog=watchdog,
                transform=transform,
                values=values,
            )

        run.job = self.jobs.submit(
            KIND, owner, body, persist=False, ttl_s=self.settings.result_ttl_s
        )
        return run

    async def first_page(self, run: QueryRun) -> Page:
        """A launched query's first page, or an empty one to poll if it is not ready within
        ``page_wait_s``; raises ``QueryFailedError`` if the query failed by then."""
        ready = await run.first_page(self.settings.page_wait_s)
        if ready is None:
            if run.failure is not None:
                raise QueryFailedError(*run.failure)
            return Page(None, run.id, 0, last=False)
        data, last, errors, rows = ready
        return Page(data, run.id, 0, last, run.model, errors, rows)

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
        """Page ``index`` of a job, for its owner; ``NotFoundError`` if there is none."""
        if index < 0:
            raise NotFoundError("no such page")
        try:
            record = self.jobs.record(job_id, owner)  # a snapshot, taken before looking
        except NotFoundError:
            raise NotFoundError("no such page") from None
        for last in (False, True):
            content = self.jobs.output(job_id, page_name(index, last), consume=True)
            if content is None:
                continue
            model = self.jobs.output(job_id, "model.json")
            if last:
                self.jobs.remove(job_id)
            head, _, data = content.partition(b"\n")
            facts = json.loads(head)
            return Page(data, job_id, index, last, model, facts["errors"], facts["rows"])
        if record.state == JobState.FAILED and record.error:
            self.jobs.remove(job_id)
            error = record.error
            raise QueryFailedError(error["status"], error["title"], error["detail"])
        if record.state.finished:
            raise NotFoundError("no such page (each page can be read once)")
        lost_after = self.settings.statement_timeout_s + _LOST_AFTER_S
        if self.jobs.local(job_id) is None and self.jobs.clock() - record.updated > lost_after:
            raise QueryFailedError(
                500, "Query lost", "the node restarted while running it; send it again"
            )
        return Page(None, job_id, index, last=False)


def page_name(index: int, last: bool) -> str:
    # The last page says so in its name: a poller must know without waiting for the record.
    return f"page-{index}{'-last' if last else ''}.json"


def engine_message(exc: duckdb.Error, *, values: bool = True) -> str:
    """The engine's first line, which names the column or type at fault. Without
    ``values`` (a caller who may not see records), every quoted value is taken out: the
    engine quotes the data it failed on ("Could not convert string '<a document>'")."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = text.replace("__genofed_rows:", "")
    if not values:
        text = _QUOTED.sub("'…'", text)
        text = _LONG.sub("…", text)
    return text[:500]


_QUOTED = re.compile(r"'(?:[^']|'')*'?")
_LONG = re.compile(r"[{\[][^\n]{40,}")  # a JSON document or list written into the message
