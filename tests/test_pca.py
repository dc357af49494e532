"""Federated PCA (``genofed.analysis.pca``): subspace iteration on the nodes' summed
products spans the pooled PCA's subspace, and each node's components are its rows of the
pooled left singular vectors."""

from __future__ import annotations

import numpy as np
from scipy.linalg import subspace_angles

from genofed.analysis import pca


def _populations(n: int, v: int, rng: np.random.Generator) -> np.ndarray:
    """Dosages of people from five populations with drifted allele frequencies: four
    components carry the structure."""
    base = rng.uniform(0.1, 0.9, v)
    groups = rng.integers(0, 5, n)
    freqs = np.clip(base + rng.normal(0, 0.15, (5, v)), 0.02, 0.98)
    return rng.binomial(2, freqs[groups]).astype(float)


def test_federated_pcs_span_the_pooled_pca_subspace() -> None:
    rng = np.random.default_rng(2)
    g = _populations(700, 300, rng)
    g[rng.random(g.shape) < 0.01] = np.nan
    cuts = [0, 350, 560, 700]  # three uneven nodes
    nodes = [g[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    scaling = pca.Scaling.from_moments(sum(pca.moments_part(d) for d in nodes))
    xs = [pca.standardised(d, scaling) for d in nodes]
    fit = pca.start(g.shape[1], 4, seed=1)
    while not fit.converged:
        fit = pca.advance(fit, sum(pca.product_part(x, fit.basis) for x in xs))
    assert fit.change < pca.TOLERANCE and fit.iterations < pca.MAX_ITERATIONS

    mean, sd = np.nanmean(g, axis=0), np.nanstd(g, axis=0, ddof=1)
    pooled = np.where(np.isnan(g), 0.0, (g - mean) / sd)
    u, s, vt = np.linalg.svd(pooled, full_matrices=False)
    angles = subspace_angles(fit.basis[:, :4], vt[:4].T)
    assert np.max(angles) < 1e-6
    np.testing.assert_allclose(fit.eigenvalues, s[:4] ** 2, rtol=1e-8)
    ours = np.vstack([pca.components(x, fit) for x in xs])
    for j in range(4):  # each component, up to its sign
        sign = np.sign(ours[:, j] @ u[:, j])
        np.testing.assert_allclose(sign * ours[:, j], u[:, j], atol=1e-6)
