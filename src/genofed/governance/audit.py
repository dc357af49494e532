"""A tamper-evident, append-only audit log: one JSON line per request, hash-chained.

Each entry carries its sequence number and the hash of the entry before it; its own hash is
SHA-256 over the previous hash and the entry's JSON (sorted keys, no ``hash``), and is
written as the line's last member, so checking a line hashes its own bytes. Changing, deleting,
inserting or reordering any entry breaks the chain at that point, and ``verify`` names it.
Removing entries from the end leaves a shorter valid chain, so ``head`` gives the latest
``seq:hash`` to record elsewhere (a ticket, another node) and ``verify --expect-head`` checks
that it is still there; the hub keeps signed heads of every node it federates for
``verify --anchors`` (``audit_anchors``).

Appends take an exclusive ``flock``, so several server workers share one log. There is no
switch to turn auditing off: if an entry cannot be written, the request fails (503). An
entry is in the file (the kernel's page cache) before the answer leaves, so it survives the
server process being killed; surviving a power cut as well would take an ``fsync`` per
request, which the log does not do (put it on a journaling file system, as for any log).

A line left half-written (the process killed mid-write, a full disk) is a torn tail: the next
append moves those bytes to ``audit.log.torn-<time>`` and carries on from the last whole entry,
and ``verify`` reports every torn file beside the log. Long request texts (a path, a query, a
body) are recorded as their SHA-256 and length, the text itself kept under ``texts/`` named by
that digest, so an entry records the whole request whatever its size and ``verify`` checks the
texts too.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

GENESIS = "0" * 64
_TAIL = 8192  # bytes read back at a time to find the last entry
MAX_INLINE_TEXT = 2048  # longer texts are kept under texts/, the entry holding their digest


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
        self._handle: Any = None  # kept open across appends: see _open
        self._opened_by = 0
        self.texts = path.parent / "texts"

    def text(self, value: str) -> str | dict[str, Any]:
        """``value`` as an entry records it: itself when short, otherwise its digest and
        length, the text kept (once) under ``texts/``."""
        if len(value) <= MAX_INLINE_TEXT:
            return value
        data = value.encode("utf-8", "surrogateescape")
        digest = hashlib.sha256(data).hexdigest()
        target = self.texts / digest
        if not target.exists():
            self.texts.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}")
            partial.write_bytes(data)
            partial.replace(target)  # whole or absent, never half a text
        return {"sha256": digest, "chars": len(value)}

    def _open(self) -> Any:
        """The log, opened once and kept: opening and closing it per request was most of
        an append's cost. Opened again in a new process (a handle inherited through fork
        shares its flock with the parent, which would then not exclude it) and when the
        file at ``path`` is no longer the one open (moved aside or deleted)."""
        handle = self._handle
        if handle is not None and self._opened_by == os.getpid():
            try:
                if os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino:
                    return handle
            except FileNotFoundError:
                pass
            handle.close()
        self._handle = handle = self.path.open("ab+", buffering=0)
        self._opened_by = os.getpid()
        self._known = None
        return handle

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Write ``entry`` (plus seq, time, prev and hash) at the end of the chain."""
        with self._lock:
            handle = self._open()
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                size = os.fstat(handle.fileno()).st_size
                if self._known is not None and self._known[0] == size:
                    seq, prev = self._known[1], self._known[2]
                else:
                    size = _set_aside_torn_tail(self.path, handle, size)
                    seq, prev = _last(handle, size)
                record = {"seq": seq + 1, "time": round(time.time(), 6), **entry, "prev": prev}
                line, record["hash"] = _line(record)
                if os.write(handle.fileno(), line) != len(line):  # O_APPEND: at the end
                    raise OSError(f"{self.path}: short write (is the disk full?)")
                self._known = (size + len(line), record["seq"], record["hash"])
                return record
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self._handle.close()

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last entry (``(0, GENESIS)`` for an empty log)."""
        if not self.path.exists():
            return 0, GENESIS
        with self.path.open("rb") as handle:
            return _last(handle, _whole_size(handle, os.fstat(handle.fileno()).st_size))


def _tail_start(handle: Any, size: int) -> int:
    """Where the last line that ends in a newline begins (lines may be any length)."""
    end = size
    handle.seek(end - 1)
    if handle.read(1) == b"\n":
        end -= 1  # the newline that ends the last line
    position = end
    while position > 0:
        start = max(0, position - _TAIL)
        handle.seek(start)
        found = handle.read(position - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        position = start
    return 0


def _whole_size(handle: Any, size: int) -> int:
    """The size of the log up to its last whole, readable entry."""
    if size == 0:
        return 0
    handle.seek(size - 1)
    end = size if handle.read(1) == b"\n" else None
    if end is None:  # the last line was never finished
        return _tail_start(handle, size)
    start = _tail_start(handle, size)
    handle.seek(start)
    try:
        last = orjson.loads(handle.read(end - start))
        int(last["seq"]), str(last["hash"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return start  # a whole line, but not an entry: set aside like a torn one
    return size


def _set_aside_torn_tail(path: Path, handle: Any, size: int) -> int:
    whole = _whole_size(handle, size)
    if whole == size:
        return size
    handle.seek(whole)
    torn = handle.read(size - whole)
    aside = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns()}")
    aside.write_bytes(torn)
    handle.truncate(whole)
    return whole


def _last(handle: Any, size: int) -> tuple[int, str]:
    if size == 0:
        return 0, GENESIS
    start = _tail_start(handle, size)
    handle.seek(start)
    last = orjson.loads(handle.read(size - start))
    return int(last["seq"]), str(last["hash"])


def torn_files(path: Path) -> list[Path]:
    """Torn tails set aside beside the log, oldest first."""
    return sorted(path.parent.glob(f"{path.name}.torn-*"))


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
    torn: list[Path]  # torn tails set aside (reported; the chain before them is checked)
    torn_tail: bool = False  # the log ends in a line never finished (set aside on next write)

    @property
    def ok(self) -> bool:
        return not self.problems


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


def verify(path: Path, anchors: Sequence[tuple[int, str]] = ()) -> Verification:
    """Check the whole chain; every break is named by line and sequence number. Each of
    ``anchors`` (``(seq, hash)`` recorded elsewhere earlier) must still be in it."""
    problems: list[Problem] = []
    jumps: list[tuple[int, int, int]] = []  # (line, seq, expected seq)
    seen: set[int] = set()
    repeated: set[int] = set()
    prev, last_seq, count = GENESIS, 0, 0
    last = (0, GENESIS)
    heads = sorted(set(anchors))
    wanted = {seq for seq, _ in heads}
    found: dict[int, str] = {}
    torn_tail = False
    for number, raw in enumerate(_lines(path) if path.exists() else [], start=1):
        count += 1
        try:
            entry = orjson.loads(raw)
            seq, stored, linked = int(entry["seq"]), str(entry["hash"]), str(entry["prev"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            if not raw.endswith(b"\n"):  # the last line, never finished: a torn tail
                torn_tail = True
                count -= 1
                continue
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
        problems.extend(_text_problems(path.parent / "texts", number, seq, entry))
        seen.add(seq)
        if seq in wanted:
            found.setdefault(seq, stored)
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
    for seq, digest in heads:
        if found.get(seq) == digest:
            continue
        what = (
            "is missing: entries were removed from the end"
            if seq > last[0]
            else "has a different hash: the log was rewritten up to there"
        )
        problems.append(Problem(count, seq, f"the recorded head {digest[:12]}… {what}"))
    return Verification(count, last, problems, torn_files(path), torn_tail)


def _text_problems(texts: Path, line: int, seq: int, entry: dict[str, Any]) -> list[Problem]:
    found = []
    for name, value in entry.items():
        if not (isinstance(value, dict) and set(value) == {"sha256", "chars"}):
            continue
        digest = str(value["sha256"])
        target = texts / digest
        if not target.is_file():
            found.append(Problem(line, seq, f"the full {name} (texts/{digest[:12]}…) is missing"))
        elif hashlib.sha256(target.read_bytes()).hexdigest() != digest:
            found.append(Problem(line, seq, f"the full {name} (texts/{digest[:12]}…) was modified"))
    return found
