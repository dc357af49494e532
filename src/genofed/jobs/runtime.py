"""Jobs: work that outlives the request that started it.

A job has an owner (the caller identity that may see it), a kind, a state
(``queued → running → succeeded | failed | cancelled``), progress, a time to live, and
named outputs. Its body runs on the runtime's executor (threads of this worker by
default; any ``concurrent.futures.Executor``, such as a ``dask.distributed`` client, can
be given instead).

A job the request itself can finish stays in memory: a Data Connect query whose only
page goes back with its request never touches the disk. Once a job must outlive its
request it is *persisted*: its record and outputs go to the node's spool, where any server
worker can serve them::

    state/jobs/<id>/job.json      the record (written atomically on every change)
    state/jobs/<id>/<output>      outputs, each written atomically

A job is deleted once it has been left alone (no change, no output read) for its time to
live (looked for at most once a minute).
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
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from genofed._exceptions import GenofedError, NotFoundError

_ID_BYTES = 18
_READ_AT = ".read-at"  # when a reader last took an output (the runtime's clock)
_CLEAN_EVERY_S = 60.0


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass
class JobRecord:
    """What anyone may learn of a job (its owner only): persisted as ``job.json``."""

    id: str
    kind: str
    owner: str
    state: JobState
    created: float
    updated: float
    expires: float
    progress: float | None = None  # 0..1, when the body knows
    message: str | None = None
    error: dict[str, Any] | None = None  # {"status", "title", "detail"} of a failure
    result: dict[str, Any] = field(default_factory=dict)  # a small summary

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        return cls(**{**data, "state": JobState(data["state"])})


class Job:
    """One job of this worker: its record, its spool directory, and the calls its body
    makes to report progress and hand over outputs."""

    def __init__(self, record: JobRecord, directory: Path, clock: Callable[[], float]):
        self.record = record
        self.dir = directory
        self.clock = clock
        self._lock = threading.Lock()
        self._persisted = False
        self._cancelled = threading.Event()

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def owner(self) -> str:
        return self.record.owner

    @property
    def persisted(self) -> bool:
        return self._persisted

    @property
    def cancelled(self) -> bool:
        """Whether the job was cancelled: a body should stop at its next step."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def snapshot(self) -> JobRecord:
        with self._lock:
            return replace(self.record, result=dict(self.record.result))

    def persist(self) -> None:
        """Write the job to the spool, so any worker can serve it (once; idempotent)."""
        with self._lock:
            if not self._persisted:
                self.dir.mkdir(parents=True, exist_ok=True)
                self._persisted = True
                self._write_record()

    def update(
        self,
        *,
        state: JobState | None = None,
        progress: float | None = None,
        message: str | None = None,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            record = self.record
            if state is not None:
                record.state = state
            if progress is not None:
                record.progress = progress
            if message is not None:
                record.message = message
            if result is not None:
                record.result = {**record.result, **result}
            if error is not None:
                record.error = error
            record.updated = self.clock()
            if self._persisted:
                self._write_record()

    def publish(self, name: str, data: bytes) -> None:
        """Hand over one output (the job is persisted first)."""
        self.persist()
        write_atomically(self.dir / _output_name(name), data)

    def _write_record(self) -> None:
        try:
            write_atomically(self.dir / "job.json", json.dumps(self.record.as_json()).encode())
        except FileNotFoundError:
            pass  # removed meanwhile (its last output was read, or it expired)


def _output_name(name: str) -> str:
    if not name or name == "job.json" or "/" in name or name.startswith("."):
        raise ValueError(f"not an output name: {name!r}")
    return name


def write_atomically(path: Path, content: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)


Body = Callable[[Job], None]


class JobRuntime:
    """The jobs of one node (or hub): submitted here, served by any worker from the spool."""

    def __init__(
        self,
        root: Path,
        *,
        ttl_s: float = 86400.0,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
    ):
        self.root = root
        self.ttl_s = ttl_s
        self.clock = clock
        self._default = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genofed-job")
        self._executors: dict[str, Executor] = {}
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._cleaned = -math.inf

    def run_kind_on(self, kind: str, executor: Executor) -> None:
        """Run jobs of ``kind`` on ``executor`` (their own threads, a Dask cluster...)."""
        self._executors[kind] = executor

    def submit(
        self,
        kind: str,
        owner: str,
        body: Body,
        *,
        persist: bool = True,
        ttl_s: float | None = None,
    ) -> Job:
        """Start ``body(job)`` on the executor. With ``persist`` the job is in the spool
        from the start; otherwise only once the body (or a reader) persists it."""
        self.clean_up()
        now = self.clock()
        job_id = secrets.token_urlsafe(_ID_BYTES)
        record = JobRecord(
            job_id, kind, owner, JobState.QUEUED, now, now, now + (ttl_s or self.ttl_s)
        )
        job = Job(record, self.root / job_id, self.clock)
        if persist:
            job.persist()
        with self._lock:
            self._jobs[job_id] = job
        self._executors.get(kind, self._default).submit(self._run, job, body)
        return job

    def _run(self, job: Job, body: Body) -> None:
        try:
            if job.cancelled:
                job.update(state=JobState.CANCELLED)
                return
            job.update(state=JobState.RUNNING)
            body(job)
        except GenofedError as exc:
            error = {"status": exc.status, "title": _title(exc), "detail": str(exc)}
            job.update(state=JobState.FAILED, error=error)
        except Exception as exc:  # noqa: BLE001 - recorded for the owner to read
            error = {
                "status": 500,
                "title": "Internal error",
                "detail": f"the job failed ({type(exc).__name__})",
            }
            job.update(state=JobState.FAILED, error=error)
        else:
            if job.record.state == JobState.RUNNING:
                job.update(state=JobState.CANCELLED if job.cancelled else JobState.SUCCEEDED)
        finally:
            with self._lock:
                self._jobs.pop(job.id, None)

    def local(self, job_id: str) -> Job | None:
        """The job, if it runs in this worker."""
        return self._jobs.get(job_id)

    def record(self, job_id: str, owner: str) -> JobRecord:
        """A job's record, for its owner; ``NotFoundError`` for anyone else or no job."""
        job = self._jobs.get(job_id)
        if job is not None:
            record = job.snapshot()  # the body goes on changing the live one
        else:
            record = self._read_record(job_id)
        if record is None or record.owner != owner:
            raise NotFoundError(f"no job {job_id!r} of yours")
        return record

    def _read_record(self, job_id: str) -> JobRecord | None:
        if not _plausible_id(job_id):
            return None
        try:
            return JobRecord.from_json(json.loads((self.root / job_id / "job.json").read_bytes()))
        except (FileNotFoundError, NotADirectoryError, ValueError, KeyError, TypeError):
            return None

    def output(self, job_id: str, name: str, *, consume: bool = False) -> bytes | None:
        """An output of a job (``None`` if not there); ``consume`` deletes it once read.
        Callers check the owner first (``record``)."""
        if not _plausible_id(job_id):
            return None
        path = self.root / job_id / _output_name(name)
        try:
            content = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if consume:
            try:
                path.unlink()
            except FileNotFoundError:
                return None  # another reader took it first
            # A reader is there: the job is in use (the clean-up looks at this).
            with contextlib.suppress(FileNotFoundError):
                write_atomically(path.parent / _READ_AT, repr(self.clock()).encode())
        return content

    def outputs(self, job_id: str) -> list[str]:
        if not _plausible_id(job_id):
            return []
        directory = self.root / job_id
        try:
            return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def remove_output(self, job_id: str, name: str) -> None:
        if _plausible_id(job_id):
            (self.root / job_id / _output_name(name)).unlink(missing_ok=True)

    def remove(self, job_id: str) -> None:
        if _plausible_id(job_id):
            shutil.rmtree(self.root / job_id, ignore_errors=True)

    def cancel(self, job_id: str, owner: str) -> JobRecord:
        """Ask a job of this worker to stop (a finished job is left as it is)."""
        record = self.record(job_id, owner)
        job = self._jobs.get(job_id)
        if job is not None and not record.state.finished:
            job.cancel()
        return record

    def clean_up(self) -> None:
        """Delete jobs past their time to live (looked for at most once a minute)."""
        wall = self.clock()
        if wall - self._cleaned < _CLEAN_EVERY_S or not self.root.is_dir():
            return
        self._cleaned = wall
        for directory in self.root.iterdir():
            if directory.name in self._jobs:
                continue  # running here
            record = self._read_record(directory.name)
            if record is None:  # a directory left half-removed: by the file system's clock
                try:
                    orphaned = directory.stat().st_mtime + self.ttl_s < time.time()
                except FileNotFoundError:
                    continue
                if orphaned:
                    shutil.rmtree(directory, ignore_errors=True)
                continue
            # Activity keeps a job: its record changing, or a reader taking an output.
            try:
                read_at = float((directory / _READ_AT).read_text())
            except (FileNotFoundError, ValueError):
                read_at = 0.0
            if max(record.updated, read_at) + (record.expires - record.created) < wall:
                shutil.rmtree(directory, ignore_errors=True)

    def close(self) -> None:
        for executor in {self._default, *self._executors.values()}:
            executor.shutdown(wait=False, cancel_futures=True)


def _plausible_id(job_id: str) -> bool:
    return bool(job_id) and job_id.replace("-", "").replace("_", "").isalnum()


def _title(exc: GenofedError) -> str:
    return str(getattr(exc, "title", None) or type(exc).__name__)
