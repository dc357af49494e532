"""What may leave the node: small-count suppression, query budgets, a differencing guard.

* Counts from 1 to ``min_count - 1`` are reported as ``min_count`` with ``countPrecision``
  ``imprecise``; larger counts are rounded to ``round_to`` (``rounded``). The same query
  always gets the same answer, so repeating it averages nothing away.
* Each caller (an identity, or an anonymous client address) has a daily query budget,
  kept in SQLite so every worker process of the node charges the same ledger.
* Public allele answers: alleles below a floor are hidden, and ``IndividualGuard`` makes
  sure no single carrier is ever what lifts an allele over it.
* The differencing guard remembers, per caller, the sets of individuals behind recent
  count answers. A count whose set differs from an earlier one (or from the whole
  dataset) by fewer than ``k`` individuals is withheld: subtracting the two would single
  those individuals out.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genofed._exceptions import BudgetExhaustedError
from genofed.config import Disclosure
from genofed.governance.sqlite_state import SqliteState

_DAY = 86400
_HISTORY = 256  # count answers remembered per caller and dataset


@dataclass(frozen=True)
class SafeCount:
    value: int
    precision: str  # exact | imprecise | rounded


def safe_count(n: int, rules: Disclosure) -> SafeCount:
    if n == 0:
        return SafeCount(0, "exact")
    if n < rules.min_count:
        return SafeCount(rules.min_count, "imprecise")
    if rules.round_to > 1:
        rounded = int((n + rules.round_to // 2) // rules.round_to * rules.round_to)
        return SafeCount(max(rounded, rules.min_count), "rounded")
    return SafeCount(n, "exact")


class QueryBudget:
    """``charge(caller)`` counts one query against today's budget, or raises."""

    def __init__(self, path: Path, per_day: int | None):
        self.per_day = per_day
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
        day = int(time.time() // _DAY)
        used = (
            self._con()
            .execute(
                "INSERT INTO budget VALUES (?, ?, 1) ON CONFLICT (caller, day) "
                "DO UPDATE SET used = used + 1 RETURNING used",
                (caller, day),
            )
            .fetchone()[0]
        )
        if used > self.per_day:
            raise BudgetExhaustedError(
                f"this caller has used today's budget of {self.per_day} queries; "
                "try again tomorrow or ask the node operator for a larger budget",
                retry_after=int((day + 1) * _DAY - time.time()) + 1,
            )
        return int(used)


class DifferencingGuard:
    """Per caller and dataset: which individual sets were answered with a count.

    Kept in SQLite, so a caller cannot spread a differencing attack over several server
    workers; each check and its record happen in one write transaction.
    """

    def __init__(self, path: Path, k: int):
        self.k = k
        self._con = SqliteState(
            path,
            "CREATE TABLE IF NOT EXISTS answered (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "caller TEXT, dataset TEXT, ids BLOB);"
            "CREATE INDEX IF NOT EXISTS answered_key ON answered (caller, dataset, seq);",
            durable=False,
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
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            rows = con.execute(
                "SELECT ids FROM answered WHERE caller = ? AND dataset = ? "
                "ORDER BY seq DESC LIMIT ?",
                [caller, dataset, _HISTORY],
            ).fetchall()
            for (blob,) in rows:
                earlier = np.frombuffer(blob, dtype=np.uint64)
                # Individuals in exactly one of the two sets: what subtracting reveals.
                common = len(np.intersect1d(current, earlier, assume_unique=True))
                if 0 < (n - common) + (len(earlier) - common) < self.k:
                    con.execute("COMMIT")
                    return False
            con.execute(
                "INSERT INTO answered (caller, dataset, ids) VALUES (?, ?, ?)",
                [caller, dataset, current.tobytes()],
            )
            con.execute("COMMIT")
            return True
        except BaseException:
            con.execute("ROLLBACK")
            raise


class IndividualGuard:
    """No single individual ever decides a public allele answer (after Raisaro et al. 2017,
    with a budget of zero pivotal answers per individual).

    An allele shown to public callers must reach the floor ``T`` without any one carrier:
    if removing a carrier would drop it below ``T``, that carrier is excluded from public
    allele answers from then on (recorded in SQLite, for every caller and worker), and
    the allele is counted without them. Every answer is then the same whether or not a
    given person is in the dataset, which is what a membership attack needs to differ.
    Registered callers and grant holders are not affected.
    """

    def __init__(self, path: Path):
        self._con = SqliteState(
            path,
            "CREATE TABLE IF NOT EXISTS excluded "
            "(dataset TEXT, sample TEXT, since REAL, PRIMARY KEY (dataset, sample));",
        )

    def excluded(self, dataset: str) -> set[str]:
        rows = self._con().execute("SELECT sample FROM excluded WHERE dataset = ?", [dataset])
        return {r[0] for r in rows.fetchall()}

    def exclude(self, dataset: str, samples: Iterable[str]) -> None:
        now = time.time()
        self._con().executemany(
            "INSERT OR IGNORE INTO excluded VALUES (?, ?, ?)", [(dataset, s, now) for s in samples]
        )

    def kept(
        self,
        dataset: str,
        sample_ids: Sequence[str],
        candidates: np.ndarray,
        allele_counts: np.ndarray,
        genotypes: Callable[[np.ndarray], np.ndarray],
        floor: int,
    ) -> np.ndarray:
        """The candidate variants that stay above ``floor`` with no pivotal carrier.

        ``genotypes(rows)`` gives the copies of the allele per sample for candidate rows
        (``(len(rows), samples)``); it is only called for alleles close to the floor.
        """
        excluded = self.excluded(dataset)
        # Far enough above the floor, no carrier (at most two copies each) can matter,
        # even after the excluded ones are taken away.
        margin = floor + 2 + 2 * len(excluded)
        keep = allele_counts >= margin
        near = np.flatnonzero(~keep & (allele_counts >= floor))
        newly: set[str] = set()
        if len(near):
            out = np.array([s in excluded for s in sample_ids], dtype=bool)
            copies = genotypes(near)
            for row, i in enumerate(near):
                c = copies[row].astype(np.int64)
                c[out] = 0
                while True:
                    total = int(c.sum())
                    if total < floor:
                        break
                    pivotal = np.flatnonzero((c > 0) & (total - c < floor))
                    if len(pivotal) == 0:
                        keep[i] = True
                        break
                    out[pivotal] = True
                    c[pivotal] = 0
                    newly.update(sample_ids[p] for p in pivotal)
        if newly:
            self.exclude(dataset, newly)
        return candidates[keep]
