"""The public individual guard as it was before genofed 0.1's release policy: for the
membership bench to measure the new guard side by side with it, not to run in a node.

It left every carrier who would decide a public allele answer out of *every* later public
allele answer of the dataset, for every caller, for good; its "near the floor" margin grew
with everyone it had left out, so enough queries could leave the whole dataset out and
turn every anonymous allele answer into "exists: false". (The algorithm as it was in
``governance/disclosure.py`` at commit 98f59c3, with its state in memory.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from genofed.governance.disclosure import GuardedAlleles


class LegacyIndividualGuard:
    """Drop-in for ``PublicAlleleGuard.shown``."""

    def __init__(self) -> None:
        self._excluded: dict[str, set[str]] = {}

    def excluded(self, dataset: str) -> set[str]:
        return self._excluded.setdefault(dataset, set())

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
        excluded = self.excluded(dataset)
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
        excluded |= newly
        return GuardedAlleles(candidates[keep], floor)
