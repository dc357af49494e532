"""The mechanisms of disclosure control: safe counts, query budgets, the differencing
guard and the public allele guard, with the state they keep.

Which of them applies to an answer is not decided here: ``governance.release`` decides
that, for every API, from what the caller is entitled to. This module holds the maths and
the small SQLite files that every server worker of a node shares.

* Counts from 1 to ``min_count - 1`` are reported as ``min_count`` (``imprecise``);
  larger counts are rounded to ``round_to`` (``rounded``). The same query always gets the
  same answer, so repeating it averages nothing away.
* Each caller (an identity, or an anonymous client address) has a daily query budget.
* The differencing guard remembers, per caller, the sets of individuals behind recent
  count answers. A count whose set differs from an earlier one (or from the whole
  dataset) by fewer than ``k`` individuals is withheld: subtracting the two would single
  those individuals out.
* The public allele guard: an allele shown to an anonymous caller must reach the floor
  without any one carrier, and a carrier who would decide an answer is left out of the
  dataset's later anonymous allele answers (after Raisaro et al. 2017). Its state is per
  dataset and time window, and bounded: once ``max_excluded`` people are left out, the
  floor rises so far that no one carrier can matter, instead of leaving out more. An
  allele the guard does not show is withheld, never reported absent.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from genofed._exceptions import BudgetExhaustedError
from genofed.config import Disclosure
from genofed.governance.sqlite_state import SqliteState

DAY = 86400
_HISTORY = 1024  # count answers remembered per set of people (a dataset's, across callers)
_DIFFERENCING_DAYS = 30  # ... for at most this long

Clock = Callable[[], float]


class Precision(StrEnum):
    """How exact a released count is (Beacon's ``countPrecision``)."""

    EXACT = "exact"
    ROUNDED = "rounded"  # rounded to ``round_to``
    IMPRECISE = "imprecise"  # a floor standing for 1 .. min_count - 1, or a sum of such


@dataclass(frozen=True)
class SafeCount:
    value: int
    precision: Precision


def safe_count(n: int, rules: Disclosure) -> SafeCount:
    """``n`` as a caller who may see only aggregates gets it."""
    if n == 0:
        return SafeCount(0, Precision.EXACT)
    if n < rules.min_count:
        return SafeCount(rules.min_count, Precision.IMPRECISE)
    if rules.round_to > 1:
        rounded = int((n + rules.round_to // 2) // rules.round_to * rules.round_to)
        return SafeCount(max(rounded, rules.min_count), Precision.ROUNDED)
    return SafeCount(n, Precision.EXACT)


def _day(clock: Clock) -> int:
    return int(clock() // DAY)


class QueryBudget:
    """``charge(caller)`` counts one query against today's budget, or raises."""

    def __init__(
        self,
        path: Path,
        per_day: int | None,
        *,
        clock: Clock = time.time,
        unit: str = "queries",
    ):
        self.per_day = per_day
        self.clock = clock
        self.unit = unit
        self._con = SqliteState(
            path,
            "CREATE TABLE IF NOT EXISTS budget "
            "(caller TEXT, day INTEGER, used INTEGER, PRIMARY KEY (caller, day));",
            durable=False,
        )

    def charge(self, caller: str) -> int:
        """Queries used today including this one."""
        if self.per_day is None:
            return 0
        day = _day(self.clock)
        con = self._con()
        used = con.execute(
            "INSERT INTO budget VALUES (?, ?, 1) ON CONFLICT (caller, day) "
            "DO UPDATE SET used = used + 1 RETURNING used",
            (caller, day),
        ).fetchone()[0]
        if used == 1:  # the first query of a caller's day: forget earlier days
            con.execute("DELETE FROM budget WHERE day < ?", [day])
        if used > self.per_day:
            raise BudgetExhaustedError(
                f"this caller has used today's budget of {self.per_day} {self.unit}; "
                "try again tomorrow or ask the node operator for a larger budget",
                retry_after=int((day + 1) * DAY - self.clock()) + 1,
            )
        return int(used)

    def status(self) -> list[tuple[str, int]]:
        """Today's ``(caller, queries used)``, most used first."""
        rows = self._con().execute(
            "SELECT caller, used FROM budget WHERE day = ? ORDER BY used DESC, caller",
            [_day(self.clock)],
        )
        return [(str(c), int(u)) for c, u in rows.fetchall()]

    def reset(self, caller: str | None = None) -> int:
        """Forget today's use (of one caller, or of all); returns the rows removed."""
        sql, params = "DELETE FROM budget", []
        if caller is not None:
            sql, params = sql + " WHERE caller = ?", [caller]
        return self._con().execute(sql, params).rowcount


def _near(earlier: int | None, n: int, k: int) -> bool:
    """Whether a set of ``earlier`` people (``None``: not recorded) could differ from one
    of ``n`` by fewer than k: sets whose sizes differ by k or more never can."""
    return earlier is None or abs(earlier - n) < k


class DifferencingGuard:
    """Per set of people (a dataset's individuals, a table's rows): which subsets were
    answered with a count, by anyone, through any API.

    The history is the people's, not a caller's: subtracting two answers isolates the
    same people whoever asked them, so a second identity, address or API gains an
    attacker nothing. Kept in SQLite, so an attack cannot be spread over server workers;
    each check and its record happen in one write transaction. At most the last
    ``_HISTORY`` answers per set of people, of the last ``_DIFFERENCING_DAYS`` days, are
    kept (``caller`` is recorded for the operator).
    """

    def __init__(self, path: Path, k: int, *, clock: Clock = time.time):
        self.k = k
        self.clock = clock
        self._con = SqliteState(
            path,
            "CREATE TABLE IF NOT EXISTS answered (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "caller TEXT, dataset TEXT, ids BLOB, day INTEGER, n INTEGER, digest BLOB);"
            "CREATE INDEX IF NOT EXISTS answered_people ON answered (dataset, seq);",
            durable=False,
            # files of releases before 0.1 have no day: their answers count as today's;
            # nor sizes and digests: those answers are compared in full
            columns={
                "answered": {
                    "day": f"INTEGER NOT NULL DEFAULT {_day(clock)}",
                    "n": "INTEGER",
                    "digest": "BLOB",
                }
            },
        )

    @staticmethod
    def _ids(ids: Iterable[str]) -> np.ndarray:
        digests = [hashlib.blake2b(i.encode(), digest_size=8).digest() for i in ids]
        return np.unique(np.frombuffer(b"".join(digests), dtype=np.uint64))

    def allows(self, caller: str, dataset: str, ids: Iterable[str], population: int) -> bool:
        """Whether a count over ``ids`` may be answered; remembers it if so."""
        current = self._ids(ids)
        n = len(current)
        if 0 < population - n < self.k:
            return False  # the complement (everyone minus this set) would be tiny
        if self.k <= 1:
            return True  # nothing to compare: the guard is off
        digest = hashlib.blake2b(current.tobytes(), digest_size=16).digest()
        day = _day(self.clock)
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            window = con.execute(
                "SELECT seq, n, digest FROM answered WHERE dataset = ? AND day >= ? "
                "ORDER BY seq DESC LIMIT ?",
                [dataset, day - _DIFFERENCING_DAYS, _HISTORY],
            ).fetchall()
            same = [seq for seq, _, d in window if d == digest]
            if same:
                # The same people as an answer already given, which every later answer
                # was checked against: nothing new. It moves to the front of the window.
                con.execute("DELETE FROM answered WHERE seq = ?", [same[0]])
            elif not self._apart(con, current, [s for s, m, _ in window if _near(m, n, self.k)]):
                con.execute("COMMIT")
                return False
            con.execute(
                "INSERT INTO answered (caller, dataset, ids, day, n, digest) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [caller, dataset, current.tobytes(), day, n, digest],
            )
            if len(window) == _HISTORY and not same:
                con.execute(
                    "DELETE FROM answered WHERE dataset = ? AND seq NOT IN "
                    "(SELECT seq FROM answered WHERE dataset = ? ORDER BY seq DESC LIMIT ?)",
                    [dataset, dataset, _HISTORY],
                )
            con.execute("COMMIT")
            return True
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _apart(self, con: sqlite3.Connection, current: np.ndarray, candidates: list[int]) -> bool:
        """Whether ``current`` differs from each earlier set in ``candidates`` by none or
        by at least k people (the individuals in exactly one of the two: what subtracting
        the answers reveals)."""
        for lo in range(0, len(candidates), 500):
            chunk = candidates[lo : lo + 500]
            marks = ",".join("?" * len(chunk))
            for (blob,) in con.execute(f"SELECT ids FROM answered WHERE seq IN ({marks})", chunk):
                earlier = np.frombuffer(blob, dtype=np.uint64)
                common = len(np.intersect1d(current, earlier, assume_unique=True))
                if 0 < (len(current) - common) + (len(earlier) - common) < self.k:
                    return False
        return True

    def status(self) -> list[tuple[str, str, int]]:
        """``(caller, dataset, answers remembered)`` of the window."""
        rows = self._con().execute(
            "SELECT caller, dataset, count(*) FROM answered WHERE day >= ? "
            "GROUP BY caller, dataset ORDER BY 3 DESC, 1, 2",
            [_day(self.clock) - _DIFFERENCING_DAYS],
        )
        return [(str(c), str(d), int(n)) for c, d, n in rows.fetchall()]

    def reset(self, caller: str | None = None) -> int:
        sql, params = "DELETE FROM answered", []
        if caller is not None:
            sql, params = sql + " WHERE caller = ?", [caller]
        return self._con().execute(sql, params).rowcount


@dataclass(frozen=True)
class GuardedAlleles:
    """What the public allele guard lets a caller see of some candidate alleles."""

    shown: np.ndarray  # the candidates shown
    floor: int  # the floor now: alleles below it were withheld


class PublicAlleleGuard:
    """No single individual decides a public allele answer.

    An allele is shown to anonymous callers when it reaches the floor ``T`` without the
    carriers already left out, and without any one of the remaining carriers. A carrier
    without whom a shown allele would fall below ``T`` is left out of every anonymous
    allele answer of the dataset for the rest of the window (``window_days``), so later
    answers do not depend on that person either. The state is the dataset's, not a
    caller's: an attacker with many addresses gains nothing by changing address.

    It is bounded: at most ``max_excluded`` people are left out per dataset and window.
    Then the floor becomes ``T + 2 + 2 * max_excluded``, above which no carrier (two
    copies at most) and no one left out can change an answer, so nothing more needs to be
    remembered; common alleles are always shown. What the guard does not show is
    withheld, never reported absent (``ReleasePolicy.floor_warning``).
    """

    def __init__(
        self, path: Path, max_excluded: int, *, window_days: int = 1, clock: Clock = time.time
    ):
        self.max_excluded = max_excluded
        self.window_days = window_days
        self.clock = clock
        self._con = SqliteState(
            path,
            "CREATE TABLE IF NOT EXISTS left_out (dataset TEXT, window INTEGER, sample TEXT, "
            "caller TEXT, PRIMARY KEY (dataset, window, sample));"
            "CREATE TABLE IF NOT EXISTS full (dataset TEXT, window INTEGER, caller TEXT, "
            "PRIMARY KEY (dataset, window));",
            durable=False,
        )

    def _window(self) -> int:
        return _day(self.clock) // self.window_days

    def left_out(self, dataset: str) -> set[str]:
        """The people left out of the dataset's anonymous allele answers this window."""
        rows = self._con().execute(
            "SELECT sample FROM left_out WHERE dataset = ? AND window = ?",
            [dataset, self._window()],
        )
        return {r[0] for r in rows.fetchall()}

    def is_full(self, dataset: str) -> bool:
        """Whether no one more may be left out this window."""
        row = self._con().execute(
            "SELECT 1 FROM full WHERE dataset = ? AND window = ?", [dataset, self._window()]
        )
        return row.fetchone() is not None

    def _leave_out(self, dataset: str, samples: set[str], full: bool, caller: str) -> bool:
        """Record ``samples`` as left out (and the window as full); returns whether the
        window is full. Checked again inside one write transaction: workers answering at
        the same time cannot leave out more than ``max_excluded`` between them."""
        window = self._window()
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            current = {
                r[0]
                for r in con.execute(
                    "SELECT sample FROM left_out WHERE dataset = ? AND window = ?",
                    [dataset, window],
                ).fetchall()
            }
            if len(current | samples) > self.max_excluded:
                full = True  # others left people out meanwhile: no room for these
            else:
                con.executemany(
                    "INSERT OR IGNORE INTO left_out VALUES (?, ?, ?, ?)",
                    [(dataset, window, s, caller) for s in samples],
                )
            if full:
                con.execute(
                    "INSERT OR IGNORE INTO full VALUES (?, ?, ?)", [dataset, window, caller]
                )
            con.execute("DELETE FROM left_out WHERE window < ?", [window])
            con.execute("DELETE FROM full WHERE window < ?", [window])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return full

    def shown(
        self,
        caller: str,
        dataset: str,
        sample_ids: Sequence[str],
        candidates: np.ndarray,
        allele_counts: np.ndarray,
        genotypes: Callable[[np.ndarray], np.ndarray],
        floor: int,
        *,
        first_only: bool = False,
    ) -> GuardedAlleles:
        """The candidate alleles an anonymous caller may be shown (``caller`` is recorded,
        for the operator, as the one whose question left people out).

        ``genotypes(rows)`` gives the copies of the allele per sample for candidate rows
        (``(len(rows), samples)``); it is only called for alleles close to the floor.
        With ``first_only`` (a yes/no answer) the guard stops at the first allele shown.
        """
        excluded = self.left_out(dataset)
        full = len(excluded) >= self.max_excluded or self.is_full(dataset)
        robust_floor = floor + 2 + 2 * max(len(excluded), self.max_excluded if full else 0)
        keep = allele_counts >= robust_floor
        if full or (first_only and keep.any()):
            return GuardedAlleles(candidates[keep], robust_floor if full else floor)
        near = np.flatnonzero(~keep & (allele_counts >= floor))
        newly: set[str] = set()
        if len(near):
            out = np.array([s in excluded for s in sample_ids], dtype=bool)
            copies = genotypes(near)
            for row, i in enumerate(near):
                c = copies[row].astype(np.int64)
                c[out] = 0
                total = int(c.sum())
                if total < floor:
                    continue  # below the floor without those left out: withheld
                pivotal = np.flatnonzero((c > 0) & (total - c < floor))
                if len(pivotal) == 0:
                    keep[i] = True
                    if first_only:
                        break
                    continue
                # Withheld, and its pivotal carriers left out from now on (while room).
                room = self.max_excluded - len(excluded) - len(newly)
                if len(pivotal) > room:
                    full = True
                    break
                out[pivotal] = True
                newly.update(sample_ids[p] for p in pivotal)
        if newly or full:
            full = self._leave_out(dataset, newly, full, caller)
        if full:
            # No room to leave out more: only alleles no carrier can matter to are shown.
            robust_floor = floor + 2 + 2 * max(self.max_excluded, len(excluded))
            keep = allele_counts >= robust_floor
            return GuardedAlleles(candidates[keep], robust_floor)
        return GuardedAlleles(candidates[keep], floor)

    def status(self) -> list[tuple[str, int, bool, list[str]]]:
        """This window's ``(dataset, people left out, full, callers whose questions left
        them out)``."""
        window = self._window()
        con = self._con()
        found: dict[str, tuple[int, bool, set[str]]] = {}
        for dataset, sample_count, callers in con.execute(
            "SELECT dataset, count(*), group_concat(DISTINCT caller) FROM left_out "
            "WHERE window = ? GROUP BY dataset",
            [window],
        ).fetchall():
            found[dataset] = (int(sample_count), False, set(str(callers).split(",")))
        for dataset, caller in con.execute(
            "SELECT dataset, caller FROM full WHERE window = ?", [window]
        ).fetchall():
            n, _, callers = found.get(dataset, (0, False, set()))
            found[dataset] = (n, True, callers | {caller})
        return [(d, n, full, sorted(c)) for d, (n, full, c) in sorted(found.items())]

    def reset(self, dataset: str | None = None) -> int:
        """Forget who is left out (of one dataset, or of all)."""
        con = self._con()
        removed = 0
        for table in ("left_out", "full"):
            sql, params = f"DELETE FROM {table}", []
            if dataset is not None:
                sql, params = sql + " WHERE dataset = ?", [dataset]
            removed += con.execute(sql, params).rowcount
        return removed
