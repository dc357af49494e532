"""What may leave the node: small-count suppression, query budgets, a differencing guard.

* Counts from 1 to ``min_count - 1`` are reported as ``min_count`` with ``countPrecision``
  ``imprecise``; larger counts are rounded to ``round_to`` (``rounded``). The same query
  always gets the same answer, so repeating it averages nothing away.
* Each caller (an identity, or an anonymous client address) has a daily query budget,
  kept in SQLite so every worker process of the node charges the same ledger.
* The differencing guard remembers, per caller, the sets of individuals behind recent
  count answers. A count whose set differs from an earlier one (or from the whole
  dataset) by fewer than ``k`` individuals is withheld: subtracting the two would single
  those individuals out.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genofed._exceptions import BudgetExhaustedError
from genofed.config import Disclosure

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
        self.path = path
        self._local = threading.local()

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(
                "CREATE TABLE IF NOT EXISTS budget "
                "(caller TEXT, day INTEGER, used INTEGER, PRIMARY KEY (caller, day))"
            )
            self._local.con = con
        return con

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
    """Per caller and dataset: which individual sets were answered with a count."""

    def __init__(self, k: int, max_callers: int = 10_000):
        self.k = k
        self._seen: OrderedDict[tuple[str, str], deque[np.ndarray]] = OrderedDict()
        self._max_callers = max_callers
        self._lock = threading.Lock()

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
        key = (caller, dataset)
        with self._lock:
            history = self._seen.get(key)
            if history is None:
                history = self._seen[key] = deque(maxlen=_HISTORY)
                if len(self._seen) > self._max_callers:
                    self._seen.popitem(last=False)
            for earlier in history:
                # Individuals in exactly one of the two sets: what subtracting reveals.
                common = len(np.intersect1d(current, earlier, assume_unique=True))
                if 0 < (n - common) + (len(earlier) - common) < self.k:
                    return False
            history.append(current)
            return True
