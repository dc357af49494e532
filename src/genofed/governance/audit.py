"""A tamper-evident, append-only audit log: one JSON line per request, hash-chained.

Each entry carries its sequence number and the hash of the entry before it; its own hash is
SHA-256 over the previous hash and the entry's JSON (sorted keys, no ``hash``), and is
written as the line's last member, so checking a line hashes its own bytes. Changing, deleting,
inserting or reordering any entry breaks the chain at that point, and ``verify`` names it.
Removing entries from the end leaves a shorter valid chain, so ``head`` gives the latest
``seq:hash`` to record elsewhere (a ticket, another node) and ``verify --expect-head`` checks
that it is still there.

Appends take an exclusive ``flock``, so several server workers share one log. There is no
switch to turn auditing off: if an entry cannot be written, the request fails (503).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

GENESIS = "0" * 64
_TAIL = 8192


_HASH_MEMBER = b',"hash":"'


def entry_hash(prev: str, body: bytes) -> str:
    """The hash of an entry whose JSON without ``hash`` is ``body``."""
    return hashlib.sha256(prev.encode() + body).hexdigest()


def _line(record: dict[str, Any]) -> tuple[bytes, str]:
    body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    digest = entry_hash(record["prev"], body)
    return body[:-1] + _HASH_MEMBER + digest.encode() + b'"}\n', digest


class AuditLog:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._known: tuple[int, int, str] | None = None  # (file size, last seq, last hash)

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Write ``entry`` (plus seq, time, prev and hash) at the end of the chain."""
        with self._lock, self.path.open("ab+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                size = os.fstat(handle.fileno()).st_size
                if self._known is not None and self._known[0] == size:
                    seq, prev = self._known[1], self._known[2]
                else:
                    seq, prev = _last(handle, size)
                record = {"seq": seq + 1, "time": round(time.time(), 6), **entry, "prev": prev}
                line, record["hash"] = _line(record)
                handle.write(line)
                handle.flush()
                self._known = (size + len(line), record["seq"], record["hash"])
                return record
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last entry (``(0, GENESIS)`` for an empty log)."""
        if not self.path.exists():
            return 0, GENESIS
        with self.path.open("rb") as handle:
            return _last(handle, os.fstat(handle.fileno()).st_size)


def _last(handle: Any, size: int) -> tuple[int, str]:
    if size == 0:
        return 0, GENESIS
    handle.seek(max(0, size - _TAIL))
    tail = handle.read()
    lines = tail.rstrip(b"\n").split(b"\n")
    last = orjson.loads(lines[-1])
    return int(last["seq"]), str(last["hash"])


@dataclass(frozen=True)
class Problem:
    line: int
    seq: int | None
    what: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" (seq {self.seq})" if self.seq is not None else "")
        return f"{where}: {self.what}"


@dataclass(frozen=True)
class Verification:
    entries: int
    head: tuple[int, str]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


def verify(path: Path, expect_head: tuple[int, str] | None = None) -> Verification:
    """Check the whole chain; every break is named by line and sequence number."""
    problems: list[Problem] = []
    jumps: list[tuple[int, int, int]] = []  # (line, seq, expected seq)
    seen: set[int] = set()
    repeated: set[int] = set()
    prev, last_seq, count = GENESIS, 0, 0
    last = (0, GENESIS)
    anchored: str | None = None
    for number, raw in enumerate(_lines(path) if path.exists() else [], start=1):
        count += 1
        try:
            entry = orjson.loads(raw)
            seq, stored, linked = int(entry["seq"]), str(entry["hash"]), str(entry["prev"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            problems.append(Problem(number, None, "not a valid audit entry (edited by hand?)"))
            continue
        cut = raw.rfind(_HASH_MEMBER)
        if cut < 0 or entry_hash(linked, raw[:cut] + b"}") != stored:
            problems.append(Problem(number, seq, "modified: its contents do not match its hash"))
        if seq in seen:
            repeated.add(seq)
            problems.append(Problem(number, seq, f"inserted: seq {seq} appears a second time"))
        elif seq != last_seq + 1:
            jumps.append((number, seq, last_seq + 1))
        elif linked != prev:
            problems.append(
                Problem(number, seq, "does not follow the entry before it (inserted or replaced)")
            )
        seen.add(seq)
        if expect_head is not None and seq == expect_head[0]:
            anchored = stored
        prev, last_seq = stored, seq
        last = (seq, stored)
    for number, seq, expected in jumps:
        absent = [s for s in range(min(seq, expected), max(seq, expected)) if s not in seen]
        if seq > expected and len(absent) == seq - expected:
            what = f"entries {expected}..{seq - 1} are missing (deleted)"
        else:
            what = f"out of order: seq {seq} where {expected} was expected (reordered)"
        problems.append(Problem(number, seq, what))
    problems.sort(key=lambda p: p.line)
    if expect_head is not None and anchored != expect_head[1]:
        seq, digest = expect_head
        what = (
            "is missing: entries were removed from the end"
            if seq > last[0]
            else "has a different hash: the log was rewritten up to there"
        )
        problems.append(Problem(count, seq, f"the recorded head {digest[:12]}… {what}"))
    return Verification(count, last, problems)
