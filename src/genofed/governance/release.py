"""What may leave a node or the hub: the one place that decides.

Every answer that leaves goes through ``ReleasePolicy``: Beacon booleans, counts and
records, Data Connect aggregate rows, the counts behind a cohort, and the hub's merges of
the nodes' answers. ``ReleasePolicy.terms`` decides, from what the caller is entitled to
(``AccessPolicy.entitlement``: their Passport against the dataset's tier) and what they
asked for, which rules apply to one answer; the other methods apply those terms with the
mechanisms of ``governance.disclosure``, which nothing else calls:

* **granularity**: the lower of what was asked and what the caller is entitled to;
* **counts**: exact for a caller entitled to the records (they could count them); made
  safe (``safe_count``) for anyone else, whatever granularity they asked for;
* **floors**: anonymous allele answers show only alleles at or above the public floor that
  no single carrier decides (``PublicAlleleGuard``, whose state is bounded per dataset and
  time window); what the floor hides is withheld and the answer says so, never reported
  absent;
* **budgets**: every request is charged to its caller's daily budget (``admit``);
* **differencing**: a count over people for a caller not entitled to their records is
  withheld when, set against an earlier answer, it would single out fewer than ``k``;
* **groups**: an aggregate row standing for fewer than ``min_count`` records is withheld
  from such callers;
* **merges** (the hub): a sum of counts is exact only if every part is; otherwise it is
  made safe again under the hub's own rules.

A guard withholds and says so (a warning naming the rule); it never turns a true answer
into a false one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genofed.config import Disclosure, Granularity
from genofed.governance.access import Entitlement, Standing
from genofed.governance.disclosure import (
    Clock,
    DifferencingGuard,
    GuardedAlleles,
    Precision,
    PublicAlleleGuard,
    QueryBudget,
    SafeCount,
    safe_count,
)


@dataclass(frozen=True)
class AlleleFloor:
    """The public floor of allele answers: what an anonymous caller is shown."""

    min_count: int
    min_frequency: float
    guard: bool  # no single carrier may decide an answer


@dataclass(frozen=True)
class Terms:
    """The rules one answer to one caller is released under (``ReleasePolicy.terms``)."""

    granularity: Granularity  # what the answer carries
    exact: bool  # counts are exact (the caller may see the records they count)
    floor: AlleleFloor | None  # anonymous allele answers
    differencing: bool  # counts over people are checked by the differencing guard
    min_group: int  # aggregate rows standing for fewer records are withheld

    @property
    def counts(self) -> bool:
        """Whether the answer carries counts (not just yes or no)."""
        return self.granularity >= Granularity.COUNT


@dataclass(frozen=True)
class Released:
    """A count as it leaves: its value and precision, or withheld (``count`` None) with
    the reason in ``warning``."""

    count: SafeCount | None
    warning: str | None = None


@dataclass(frozen=True)
class Part:
    """One node's (or dataset's) contribution to a merged count: its count as released
    (``None``: it gave none) and why not."""

    source: str
    count: SafeCount | None
    reason: str | None = None


@dataclass(frozen=True)
class Merged:
    """A sum of counts as the hub releases it."""

    count: SafeCount | None  # None: no part gave a count
    partial: bool  # some part gave no count: the total leaves it out
    missing: tuple[Part, ...]  # the parts without a count, with why


class ReleasePolicy:
    """A node's or a hub's disclosure rules, with the state their guards keep.

    ``state_dir`` holds that state (shared by every worker); a hub, which only merges,
    has none.
    """

    def __init__(self, rules: Disclosure, state_dir: Path | None, *, clock: Clock = time.time):
        self.rules = rules
        self.budget: QueryBudget | None = None
        self.differencing: DifferencingGuard | None = None
        self.alleles: PublicAlleleGuard | None = None
        if state_dir is not None:
            self.budget = QueryBudget(state_dir / "budgets.sqlite", rules.query_budget, clock=clock)
            self.differencing = DifferencingGuard(
                state_dir / "differencing.sqlite", rules.differencing_k, clock=clock
            )
            self.alleles = PublicAlleleGuard(
                state_dir / "public-allele-guard.sqlite",
                rules.public_guard_max_excluded,
                window_days=rules.public_guard_window_days,
                clock=clock,
            )

    # -- the decision ------------------------------------------------------------------

    def terms(
        self, entitlement: Entitlement, asked: Granularity, *, person_level: bool = True
    ) -> Terms:
        """The rules of one answer: ``entitlement`` is what the caller may have of the
        dataset or table, ``asked`` what they asked for; ``person_level`` says whether
        counts are counts of people (not of variants)."""
        rules = self.rules
        exact = entitlement.granularity >= Granularity.RECORD
        floor = None
        if entitlement.standing == Standing.ANONYMOUS and (
            rules.public_min_allele_count > 0
            or rules.public_min_allele_frequency > 0
            or rules.public_individual_guard
        ):
            floor = AlleleFloor(
                rules.public_min_allele_count,
                rules.public_min_allele_frequency,
                rules.public_individual_guard,
            )
        granularity = min(Granularity(asked), entitlement.granularity)
        return Terms(
            granularity=granularity,
            exact=exact,
            floor=floor,
            differencing=person_level and not exact,
            min_group=1 if exact else rules.min_count,
        )

    def refusal(self, terms: Terms, *, names: str | None, identifiers: Sequence[str]) -> str | None:
        """Why a question may not be answered under ``terms``, or ``None``. Below record
        level no question may name one person: not by an entry in the path
        (``/individuals/{id}/...``), not by a filter on an identifying field."""
        if terms.exact:
            return None
        if names is not None:
            return (
                f"a question about one named {names.split()[0]} ({names}) needs record-level access"
            )
        if identifiers:
            return (
                f"filters on identifying fields ({', '.join(sorted(set(identifiers)))}) single "
                "out individuals and need record-level access"
            )
        return None

    # -- applying it -------------------------------------------------------------------

    def admit(self, caller: str) -> None:
        """Charge one request to the caller's budget (``BudgetExhaustedError`` if spent)."""
        if self.budget is not None and self.budget.per_day is not None:
            self.budget.charge(caller)

    def count(
        self,
        terms: Terms,
        n: int,
        *,
        caller: str,
        subject: str,
        ids: Callable[[], Iterable[str]] | None = None,
        population: int = 0,
    ) -> Released:
        """The count ``n`` of ``subject`` (a dataset's entity, a table) under ``terms``.

        ``ids`` gives the people counted, for the differencing guard (with ``population``,
        how many there are in all); it is only called when the guard applies.
        """
        if terms.exact:
            return Released(SafeCount(n, Precision.EXACT))
        if (
            terms.differencing
            and ids is not None
            and not self._differs(caller, subject, ids(), population)
        ):
            return Released(
                None,
                f"{subject}: count withheld; with an earlier query it would single out "
                f"fewer than {self.rules.differencing_k} individuals",
            )
        return Released(safe_count(n, self.rules))

    def people_asked_about(
        self,
        terms: Terms,
        *,
        caller: str,
        subject: str,
        ids: Callable[[], Iterable[str]],
        population: int,
    ) -> str | None:
        """Why an answer about the people ``ids`` (those a question's filters leave) is
        withheld, or ``None``. Below record level even a yes or no about a set of people
        is checked by the differencing guard: two filters whose people differ by fewer
        than k (age >= 43 and age > 43) would, side by side, answer for those few."""
        if terms.exact or self._differs(caller, subject, ids(), population):
            return None
        return (
            f"{subject}: answer withheld; the people your filters leave differ from an "
            f"earlier query's by fewer than {self.rules.differencing_k} individuals, so the "
            "two answers together would be about those few"
        )

    def group(
        self,
        terms: Terms,
        records: int,
        *,
        caller: str,
        subject: str,
        ids: Callable[[], Iterable[str]] | None = None,
        population: int = 0,
    ) -> bool:
        """Whether one aggregate row standing for ``records`` records may be released."""
        if terms.exact:
            return True
        if records < terms.min_group:
            return False
        return not (
            terms.differencing
            and ids is not None
            and not self._differs(caller, subject, ids(), population)
        )

    def safe(self, terms: Terms, n: int) -> SafeCount:
        """A count inside a released row (already past ``group``)."""
        return SafeCount(n, Precision.EXACT) if terms.exact else safe_count(n, self.rules)

    def precision(self, terms: Terms, *, rows: bool = True) -> Precision:
        """How exact a count column of released aggregate rows is: exact, or rounded when
        the rules round. A count of the rows themselves is at least ``min_group``; any
        other count (of a column's values) may be smaller, and then stands as the floor."""
        if terms.exact:
            return Precision.EXACT
        if not rows and self.rules.min_count > 1:
            return Precision.IMPRECISE
        return Precision.EXACT if self.rules.round_to <= 1 else Precision.ROUNDED

    def _differs(self, caller: str, subject: str, ids: Iterable[str], population: int) -> bool:
        if self.differencing is None:
            return True
        return self.differencing.allows(caller, subject, ids, population)

    def public_alleles(
        self,
        terms: Terms,
        *,
        caller: str,
        dataset: str,
        sample_ids: Sequence[str],
        candidates: np.ndarray,
        allele_counts: np.ndarray,
        genotypes: Callable[[np.ndarray], np.ndarray],
        first_only: bool,
    ) -> GuardedAlleles:
        """The candidate alleles (each at or above ``terms.floor.min_count`` already) an
        anonymous caller is shown."""
        floor = terms.floor
        if floor is None or not floor.guard or self.alleles is None:
            return GuardedAlleles(candidates, floor.min_count if floor else 0)
        return self.alleles.shown(
            caller,
            dataset,
            sample_ids,
            candidates,
            allele_counts,
            genotypes,
            max(floor.min_count, 1),
            first_only=first_only,
        )

    def floor_warning(self, terms: Terms, dataset: str, floor: int | None = None) -> str | None:
        """What an anonymous allele answer says about what it does not show."""
        if terms.floor is None:
            return None
        shown = floor if floor is not None else terms.floor.min_count
        frequency = (
            f" or with a frequency below {terms.floor.min_frequency:g}"
            if terms.floor.min_frequency > 0
            else ""
        )
        guard = "; nor an allele that one person's genotype decides" if terms.floor.guard else ""
        return (
            f"dataset {dataset}: anonymous callers are not shown alleles seen fewer than "
            f"{shown} times{frequency}{guard}. Such alleles are withheld, not absent: "
            "'exists: false' means none at or above that count; a registered Passport "
            "sees them"
        )

    def merge(self, parts: Sequence[Part]) -> Merged:
        """The sum of the parts' counts, exact only when every part counted exactly;
        otherwise made safe again under this policy's rules."""
        counted = [p for p in parts if p.count is not None]
        missing = tuple(p for p in parts if p.count is None)
        if not counted:
            return Merged(None, bool(missing), missing)
        total = sum(p.count.value for p in counted)  # type: ignore[union-attr]
        precisions = {p.count.precision for p in counted}  # type: ignore[union-attr]
        if precisions <= {Precision.EXACT}:
            return Merged(SafeCount(total, Precision.EXACT), bool(missing), missing)
        again = safe_count(total, self.rules)
        worst = (
            Precision.IMPRECISE
            if Precision.IMPRECISE in precisions | {again.precision}
            else Precision.ROUNDED
        )
        return Merged(SafeCount(again.value, worst), bool(missing), missing)
