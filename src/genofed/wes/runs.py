"""Workflow runs on disk: one folder each, their records written atomically, so that any
server worker, the supervisor that runs the engine and the operator's CLI all see one
state.

    state/wes/runs/<run_id>/
        run.json            the record (WES state, times, exit code, system logs)
        work/               the run's working directory: its attachments, params.json,
                            and what it writes (``/workflow`` in the sandbox)
        tmp/                its /tmp
        stdout.log, stderr.log   the engine's, held in the airlock like any output
        airlock/            the run's outputs, held until a custodian releases them
        cancel              present once its owner asked to cancel it
    state/wes/slots/<n>     a lock per run that may go at once (the rest queue)

A run moves QUEUED → INITIALIZING → RUNNING → COMPLETE | EXECUTOR_ERROR | SYSTEM_ERROR |
CANCELED (through CANCELING); one whose supervisor is gone before it finished (the node's
machine restarted) is PREEMPTED.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from genofed._exceptions import NotFoundError, QueryError
from genofed.jobs.runtime import write_atomically


class State(StrEnum):
    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELED = "CANCELED"
    CANCELING = "CANCELING"
    PREEMPTED = "PREEMPTED"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({State.COMPLETE, State.EXECUTOR_ERROR, State.SYSTEM_ERROR,
                      State.CANCELED, State.PREEMPTED})  # fmt: skip

RUN_ID = re.compile(r"run-[0-9a-f]{20}")


def owner_of(sub: str | None, iss: str | None, client: str = "") -> str:
    """Whose a run is: a digest of the caller's subject and issuer, as a pair (a
    ``"sub (iss)"`` string could be spelled by two different pairs)."""
    if sub is None:
        return f"anonymous {client}"  # no run is ever theirs: runs need a Passport
    return hashlib.sha256(f"{sub}\0{iss}".encode()).hexdigest()


@dataclass
class RunRecord:
    run_id: str
    owner: str  # owner_of the caller who may see it
    caller: str  # who they are, for people: "sub (iss)"
    request: dict[str, Any]  # the WES RunRequest, as given
    engine: str
    engine_version: str
    workflow: str  # the primary workflow file, relative to work/
    digest: str  # its sha256, which the operator approved
    datasets: list[str]  # what it sees at /data/<id>
    limits: dict[str, int]
    state: State = State.QUEUED
    created: float = field(default_factory=time.time)
    start_time: float | None = None
    end_time: float | None = None
    exit_code: int | None = None
    cmd: list[str] = field(default_factory=list)
    system_logs: list[str] = field(default_factory=list)
    supervisor: int | None = None  # the pid of the process that runs it

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        return cls(**{**data, "state": State(data["state"])})


def _safe_name(name: str) -> Path:
    """An attachment's name as a path inside the run's folder, or a 400: a plain relative
    path (one spelling per file: no '.', '..', empty parts or trailing '/'), no part an
    engine would read as an option ('-...'), and none of the run's own files."""
    if not name or len(name) > 255 or "\\" in name or "\x00" in name:
        raise QueryError(f"attachment name {name[:80]!r} is not allowed")
    path = PurePosixPath(name)
    plain = str(path) == name and not path.is_absolute()
    if not plain or any(part in ("..", ".", "") or part.startswith("-") for part in path.parts):
        raise QueryError(
            f"attachment name {name[:80]!r} is not allowed: use a plain relative path inside "
            "the run (no '..', './', '//', trailing '/' or leading '-')"
        )
    if path.parts[0] in ("out", "wdl", "params.json"):
        raise QueryError(f"attachment name {name[:80]!r} is reserved for the run's own files")
    return Path(name)


class RunStore:
    def __init__(self, state_dir: Path):
        self.root = state_dir / "wes"
        self.runs = self.root / "runs"

    def folder(self, run_id: str) -> Path:
        if not RUN_ID.fullmatch(run_id):
            raise NotFoundError(f"no run {run_id[:80]!r}: run ids are run- and 20 hex digits")
        return self.runs / run_id

    def create(self, record: RunRecord, attachments: dict[str, bytes], params: bytes) -> None:
        folder = self.folder(record.run_id)
        work = folder / "work"
        for sub in ("work", "tmp", "airlock"):
            (folder / sub).mkdir(parents=True)
        for name, content in attachments.items():
            target = work / _safe_name(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        (work / "params.json").write_bytes(params)
        self.save(record)

    @staticmethod
    def new_id() -> str:
        return f"run-{secrets.token_hex(10)}"

    def save(self, record: RunRecord) -> None:
        write_atomically(self.folder(record.run_id) / "run.json",
                         json.dumps(record.as_json(), indent=1).encode())  # fmt: skip

    def load(self, run_id: str) -> RunRecord:
        try:
            return RunRecord.from_json(json.loads((self.folder(run_id) / "run.json").read_text()))
        except FileNotFoundError:
            raise NotFoundError(f"no run {run_id!r} of yours; GET /runs lists them") from None

    def get(self, run_id: str, owner: str) -> RunRecord:
        record = self.load(run_id)
        if record.owner != owner:  # the same answer as for a run that does not exist
            raise NotFoundError(f"no run {run_id!r} of yours; GET /runs lists them")
        return self.reaped(record)

    def all(self, owner: str | None = None) -> list[RunRecord]:
        """Runs, oldest first (a stable order to page through); ``owner``'s only if given."""
        if not self.runs.is_dir():
            return []
        records = []
        for folder in self.runs.iterdir():
            try:
                record = RunRecord.from_json(json.loads((folder / "run.json").read_text()))
            except (OSError, ValueError, TypeError):
                continue  # a run being created, or a damaged one: not listed
            if owner is None or record.owner == owner:
                records.append(self.reaped(record))
        return sorted(records, key=lambda r: (r.created, r.run_id))

    @contextlib.contextmanager
    def locked(self, run_id: str) -> Iterator[None]:
        """One writer of a run's record at a time (the supervisor, a cancel, a reaping)."""
        with (self.folder(run_id) / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def update(self, run_id: str, change: Callable[[RunRecord], None]) -> RunRecord:
        with self.locked(run_id):
            record = self.load(run_id)
            change(record)
            self.save(record)
            return record

    def reaped(self, record: RunRecord) -> RunRecord:
        """A run whose supervisor died before it finished is PREEMPTED (said once)."""
        if record.state.finished or record.supervisor is None or _alive(record.supervisor):
            return record

        def preempt(r: RunRecord) -> None:
            if not r.state.finished and r.supervisor is not None and not _alive(r.supervisor):
                r.state, r.end_time = State.PREEMPTED, time.time()
                r.system_logs.append("its supervisor stopped (the node restarted?); submit "
                                     "it again")  # fmt: skip

        return self.update(record.run_id, preempt)

    def cancel(self, run_id: str, owner: str) -> RunRecord:
        record = self.get(run_id, owner)
        if record.state.finished:
            return record
        (self.folder(run_id) / "cancel").touch()

        def canceling(r: RunRecord) -> None:
            if not r.state.finished:
                r.state = State.CANCELING

        return self.update(run_id, canceling)

    def cancelled(self, run_id: str) -> bool:
        return (self.folder(run_id) / "cancel").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet waited for by the server that started it) is gone too
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    return True
