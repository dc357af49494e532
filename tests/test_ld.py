"""LD pruning from summed products (``genofed.analysis.ld``): the nodes' bands add up to
the pooled correlations (numpy's on the pooled, mean-imputed dosages), and the kept
variants are exactly those the rule describes."""

from __future__ import annotations

import numpy as np
import pytest

from genofed.analysis import ld, pca

WINDOW = 7


def _linked(n: int, v: int, rng: np.random.Generator) -> np.ndarray:
    """Dosages in runs of correlated variants: each copies the one before it for most
    people, and some calls are missing."""
    g = rng.binomial(2, rng.uniform(0.1, 0.9, v), (n, v)).astype(float)
    for j in range(1, v):
        copied = rng.random(n) < rng.choice([0.0, 0.6, 0.95])
        g[copied, j] = g[copied, j - 1]
    g[rng.random(g.shape) < 0.02] = np.nan
    return g


def _pooled_r2(g: np.ndarray) -> np.ndarray:
    imputed = np.where(np.isnan(g), np.nanmean(g, axis=0), g)
    return np.corrcoef(imputed, rowvar=False) ** 2


def _node_bands(g: np.ndarray, cuts: list[int], block: int) -> np.ndarray:
    scaling = pca.Scaling.from_moments(
        sum(pca.moments_part(g[a:b]) for a, b in zip(cuts, cuts[1:], strict=False))
    )
    bands = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        x = pca.standardised(g[a:b], scaling)
        blocks = (x[:, s : s + block] for s in range(0, x.shape[1], block))
        bands.append(ld.streamed_band_part(blocks, WINDOW))
    return sum(bands)


@pytest.mark.parametrize("block", [1, 3, WINDOW - 1, 25, 1000])
def test_the_nodes_bands_sum_to_the_pooled_correlations(block: int) -> None:
    rng = np.random.default_rng(5)
    g = _linked(400, 90, rng)
    band = _node_bands(g, [0, 170, 310, 400], block)
    assert band.shape == (90, WINDOW)
    pooled = _pooled_r2(g)
    r2 = ld.r_squared(band)
    for d in range(WINDOW):
        i = np.arange(90 - d)
        np.testing.assert_allclose(r2[i, d], pooled[i, i + d], rtol=1e-10, atol=1e-13)
        if d:
            assert not r2[90 - d :, d].any()  # nothing past the last variant


def test_the_kept_variants_are_those_the_rule_describes() -> None:
    """Kept: no kept variant before it in its window has r² above the threshold. Pruned:
    one has. Both checked against numpy's correlations of the pooled rows."""
    rng = np.random.default_rng(8)
    g = _linked(500, 300, rng)
    threshold = 0.3
    keep = ld.prune(_node_bands(g, [0, 260, 420, 500], 40), threshold)
    pooled = _pooled_r2(g)
    assert 30 < keep.sum() < 270  # the data prune some variants, not all
    for j in range(g.shape[1]):
        earlier = [i for i in range(max(0, j - WINDOW + 1), j) if keep[i]]
        linked = [i for i in earlier if pooled[i, j] > threshold]
        assert keep[j] == (not linked), j
    kept = np.flatnonzero(keep)
    for a, i in enumerate(kept):  # so no two kept variants in a window are linked
        near = kept[a + 1 :][kept[a + 1 :] < i + WINDOW]
        assert np.all(pooled[i, near] <= threshold)


def test_a_threshold_of_one_keeps_everything_but_exact_copies() -> None:
    rng = np.random.default_rng(1)
    g = rng.binomial(2, 0.4, (200, 20)).astype(float)
    g[:, 5] = g[:, 4]  # an exact copy: r² = 1, which is not above 1
    g[:, 9] = 2 - g[:, 8]  # perfectly anti-correlated: r² = 1 too
    assert ld.prune(_node_bands(g, [0, 120, 200], 8), 1.0).all()
    assert not ld.prune(_node_bands(g, [0, 120, 200], 8), 0.99)[[5, 9]].any()
