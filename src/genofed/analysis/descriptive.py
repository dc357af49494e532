"""Descriptive statistics across nodes from sums: counts, means, variances, a
correlation matrix, and contingency tables.

A node sends n, the column sums and the cross-products of its complete rows
(``moments_part``); their sum over the nodes gives the pooled means, variances and
correlations exactly (``describe``). A contingency table is the nodes' cell counts
summed, over levels agreed first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from genofed._exceptions import QueryError


def moments_part(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """``[n, sums (k), cross-products (k x k)]`` of the rows complete in ``names``."""
    missing = [n for n in names if n not in frame]
    if missing:
        raise QueryError(f"unknown variable(s) {', '.join(missing)}")
    data = frame[names].dropna()
    for name in names:
        if not pd.api.types.is_numeric_dtype(data[name]):
            raise QueryError(f"{name} is not numeric: tabulate it instead")
    x = data.to_numpy(dtype=np.float64)
    return np.concatenate([[len(x)], x.sum(axis=0), (x.T @ x).ravel()])


@dataclass
class Moments:
    names: list[str]
    n: int
    means: list[float]
    variances: list[float]  # sample variances (n - 1)
    correlation: list[list[float]]


def describe(total: np.ndarray, names: list[str]) -> Moments:
    """Pooled statistics from the nodes' summed ``moments_part`` vectors."""
    k = len(names)
    n = float(total[0])
    if n < 2:
        raise QueryError("fewer than 2 complete observations in all")
    sums = total[1 : 1 + k]
    cross = total[1 + k :].reshape(k, k)
    means = sums / n
    covariance = (cross - n * np.outer(means, means)) / (n - 1)
    sd = np.sqrt(np.diag(covariance))
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = covariance / np.outer(sd, sd)
    return Moments(
        names=names,
        n=int(round(n)),
        means=means.tolist(),
        variances=np.diag(covariance).tolist(),
        correlation=correlation.tolist(),
    )


def table_part(
    frame: pd.DataFrame, row: str, column: str, levels: dict[str, list[str]]
) -> np.ndarray:
    """This node's counts of ``row`` by ``column`` over the agreed ``levels`` (rows missing
    either are left out)."""
    for name in (row, column):
        if name not in frame:
            raise QueryError(f"unknown variable {name}")
    data = frame[[row, column]].dropna().astype(str)
    counts = np.zeros((len(levels[row]), len(levels[column])), dtype=np.int64)
    index_r = {v: i for i, v in enumerate(levels[row])}
    index_c = {v: i for i, v in enumerate(levels[column])}
    for (r, c), count in data.value_counts().items():
        counts[index_r[r], index_c[c]] += int(count)
    return counts
