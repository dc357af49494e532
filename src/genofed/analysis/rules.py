"""The disclosure rules a node applies to an analysis payload before it leaves (and
before it is masked for secure aggregation). Each rule is checked and recorded; if any
fails, the whole payload is withheld, never part of it, and the task says which rule."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from genofed.config import AnalysisRules


@dataclass(frozen=True)
class RuleCheck:
    rule: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def enough_observations(n: int, rules: AnalysisRules) -> RuleCheck:
    return RuleCheck(
        "min_n",
        n >= rules.min_n,
        f"{'at least' if n >= rules.min_n else 'fewer than'} {rules.min_n} complete observations",
    )


def subset_size(n: int, rules: AnalysisRules, what: str = "subset") -> RuleCheck:
    """A subset (a cohort, the complete rows) of 1..nfilter.subset-1 people is refused."""
    ok = n == 0 or n >= rules.nfilter_subset
    return RuleCheck(
        "nfilter.subset",
        ok,
        f"the {what} is large enough"
        if ok
        else f"the {what} has fewer than {rules.nfilter_subset}",
    )


def parameters_per_observation(p: int, n: int, rules: AnalysisRules) -> RuleCheck:
    """A model close to saturated would let its fitted values reveal the rows."""
    ok = n > 0 and p <= rules.nfilter_glm * n
    return RuleCheck(
        "nfilter.glm",
        ok,
        f"{p} parameters for {n} observations "
        f"({'within' if ok else 'above'} the limit of {rules.nfilter_glm:g} per observation)",
    )


def outcome_levels(
    y: np.ndarray, rules: AnalysisRules, where: str = "this node's rows"
) -> RuleCheck:
    """Both levels of a binomial outcome at least nfilter.tab times at this node."""
    cases = int(np.sum(y == 1))
    controls = int(np.sum(y == 0))
    ok = min(cases, controls) >= rules.nfilter_tab
    return RuleCheck(
        "nfilter.tab",
        ok,
        f"both outcome levels are frequent enough in {where}"
        if ok
        else f"an outcome level occurs fewer than {rules.nfilter_tab} times in {where}",
    )


def table_cells(counts: np.ndarray, rules: AnalysisRules) -> RuleCheck:
    """Every non-zero cell of a table at least nfilter.tab."""
    small = int(np.sum((counts > 0) & (counts < rules.nfilter_tab)))
    return RuleCheck(
        "nfilter.tab",
        small == 0,
        "every non-zero cell is large enough"
        if small == 0
        else f"{small} cell(s) below {rules.nfilter_tab} (and above 0)",
    )


def released(payload: Any, checks: list[RuleCheck]) -> Any | None:
    """``payload`` if every check passed, else ``None`` (all of it withheld)."""
    return payload if all(c.passed for c in checks) else None
