"""Pruning variants in linkage disequilibrium, from the nodes' summed products.

The pooled correlation of two variants needs only sums. With every dosage standardised
by its variant's pooled mean and standard deviation, a missing one at 0 (imputed with the
mean, as the PCA uses them), r_ij = Σ xᵢxⱼ / √(Σ xᵢ² Σ xⱼ²) over everyone. Each node sends
its part of Σ xᵢxⱼ for every candidate variant i and the ``window`` - 1 candidates after it
(``band_part``, ``streamed_band_part``); the coordinator sums them and keeps the candidates
in order (``prune``): a variant is kept unless a variant kept before it, within its window,
has r² above the threshold with it.

This is one pass of a sliding window whose step is one variant, keeping the earlier
variant of a correlated pair. plink's ``--indep-pairwise`` looks at all pairs in a window
and prefers to keep the variant with the higher allele frequency, so the two may keep
different (equally valid) sets; either leaves no kept pair within a window above the
threshold. No library prunes from summed products, so the rule is written here.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

_TILE = 64  # variants per matrix product: small enough that little of it is off the band


def band_part(x: np.ndarray, window: int) -> np.ndarray:
    """``out[i, d] = xᵢᵀxᵢ₊d`` for d = 0 … window-1 (variants x window, zero past the
    last variant) of standardised dosages ``x`` (people x variants)."""
    v = x.shape[1]
    out = np.zeros((v, window))
    offsets = np.arange(window)
    for a in range(0, v, _TILE):
        b, c = min(a + _TILE, v), min(a + _TILE + window - 1, v)
        products = x[:, a:b].T @ x[:, a:c]  # (b - a) x (c - a)
        rows = np.arange(b - a)[:, None]
        cols = rows + offsets
        inside = cols < c - a
        out[a:b] = np.where(inside, products[rows, np.minimum(cols, c - a - 1)], 0.0)
    return out


def streamed_band_part(blocks: Iterable[np.ndarray], window: int) -> np.ndarray:
    """``band_part`` of the variants of consecutive column ``blocks``, holding only one
    block and the window - 1 variants before it at a time."""
    parts, tail = [], None
    for block in blocks:
        x = block if tail is None else np.hstack([tail, block])
        done = x.shape[1] - (window - 1)  # these variants' partners are all in x
        if done > 0:
            parts.append(band_part(x, window)[:done])
            tail = x[:, done:]
        else:
            tail = x
    if tail is not None and tail.shape[1]:
        parts.append(band_part(tail, window))
    return np.vstack(parts) if parts else np.zeros((0, window))


def r_squared(band: np.ndarray) -> np.ndarray:
    """``r2[i, d]``: the squared correlation of variant i and variant i + d, from a
    summed band (0 past the last variant)."""
    v, window = band.shape
    diagonal = band[:, 0]
    partner = np.arange(v)[:, None] + np.arange(window)
    inside = partner < v
    denominator = diagonal[:, None] * diagonal[np.minimum(partner, v - 1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(inside & (denominator > 0), band**2 / denominator, 0.0)
    return np.minimum(r2, 1.0)  # the sums' rounding may put a perfect pair a hair above 1


def prune(band: np.ndarray, threshold: float) -> np.ndarray:
    """Which variants are kept (bool, in order): each one unless a kept variant before it
    in its window has r² above ``threshold`` with it."""
    r2 = r_squared(band)
    v, window = r2.shape
    keep = np.zeros(v, dtype=bool)
    for j in range(v):
        earlier = np.arange(max(0, j - window + 1), j)
        keep[j] = not np.any(keep[earlier] & (r2[earlier, j - earlier] > threshold))
    return keep
