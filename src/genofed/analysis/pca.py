"""Principal components of genotypes across nodes, by subspace iteration on sums.

The pooled matrix X (people x variants, each variant standardised with its pooled mean
and standard deviation, missing dosages at 0 = the mean) is split by rows over the
nodes. Its right singular vectors are those of XᵀX = Σ XᵢᵀXᵢ, so subspace iteration
needs only sums: the coordinator sends an orthonormal Q (variants x l), every node sends
XᵢᵀXᵢQ, and the coordinator orthonormalises their sum (``advance``). Nothing about a
person leaves a node: each node computes its own people's components Uᵢ = XᵢV / √λ
(``components``) and keeps them.

Step 0 is the standardisation: each node sends per variant the sum of its observed
dosages, their squares and how many are observed (``moments_part``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from genofed._exceptions import QueryError

TOLERANCE = 1e-10  # largest change of the subspace (sine of the largest principal angle)
MAX_ITERATIONS = 300


def moments_part(dosages: np.ndarray) -> np.ndarray:
    """``[Σg, Σg², observed]`` per variant (3 x v, flattened) of this node's dosages."""
    g = np.asarray(dosages, dtype=np.float64)
    observed = ~np.isnan(g)
    g0 = np.where(observed, g, 0.0)
    return np.concatenate([g0.sum(axis=0), (g0 * g0).sum(axis=0), observed.sum(axis=0)])


@dataclass
class Scaling:
    """Each variant's pooled mean and standard deviation (plink2's --pca scales by the
    allele frequency instead; either gives the same PCs up to the variants' weights)."""

    mean: list[float]
    sd: list[float]

    @classmethod
    def from_moments(cls, total: np.ndarray) -> Scaling:
        sums, squares, observed = np.asarray(total, dtype=np.float64).reshape(3, -1)
        if np.any(observed < 2):
            raise QueryError("a variant observed fewer than twice cannot be standardised")
        mean = sums / observed
        variance = (squares - observed * mean**2) / (observed - 1)
        if np.any(variance <= 0):
            raise QueryError("a variant without variation cannot be in a PCA: prune it first")
        return cls(mean.tolist(), np.sqrt(variance).tolist())

    def part(self, which: slice | np.ndarray) -> Scaling:
        """The scaling of some of the variants (a slice, or a mask or indices)."""
        mean, sd = np.asarray(self.mean)[which], np.asarray(self.sd)[which]
        return Scaling(mean.tolist(), sd.tolist())


def standardised(dosages: np.ndarray, scaling: Scaling) -> np.ndarray:
    """This node's dosages standardised with the pooled scaling; missing ones at 0."""
    x = (np.asarray(dosages, dtype=np.float64) - np.asarray(scaling.mean)) / np.asarray(scaling.sd)
    return np.where(np.isnan(x), 0.0, x)


def product_part(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """This node's XᵢᵀXᵢQ (variants x l)."""
    return x.T @ (x @ q)


@dataclass
class PcaFit:
    """The coordinator's state between rounds (plain values: it persists as JSON)."""

    k: int
    q: list[list[float]]  # variants x l, orthonormal
    iterations: int = 0
    change: float | None = None
    eigenvalues: list[float] = field(default_factory=list)
    converged: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def basis(self) -> np.ndarray:
        return np.asarray(self.q)


def start(variants: int, k: int, *, oversample: int | None = None, seed: int = 0) -> PcaFit:
    """A random orthonormal start of ``k`` + oversampling columns (the hub's seed: no
    analyst chooses it)."""
    columns = min(variants, k + (oversample if oversample is not None else max(k, 10)))
    if k < 1 or k > columns:
        raise QueryError(f"{k} components of {variants} variants")
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((variants, columns)))
    return PcaFit(k=k, q=q.tolist())


def advance(fit: PcaFit, total: np.ndarray) -> PcaFit:
    """The next basis from the nodes' summed XᵀXQ (Rayleigh–Ritz, so the first k columns
    are the current estimates of the top k right singular vectors, in order)."""
    q = fit.basis
    z = np.asarray(total, dtype=np.float64).reshape(q.shape)
    small = q.T @ z  # QᵀXᵀXQ
    values, vectors = np.linalg.eigh((small + small.T) / 2)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    ritz = z @ vectors  # XᵀX times the Ritz vectors
    new, _ = np.linalg.qr(ritz)
    new = new * np.sign(np.sum(new * ritz, axis=0))  # keep each column's direction
    top_old, top_new = (q @ vectors)[:, : fit.k], new[:, : fit.k]
    # sine of the largest principal angle between the old and new top-k subspaces
    cosines = np.linalg.svd(top_old.T @ top_new, compute_uv=False)
    fit.change = float(np.sqrt(max(0.0, 1 - float(np.min(cosines)) ** 2)))
    fit.q, fit.iterations = new.tolist(), fit.iterations + 1
    fit.eigenvalues = values[: fit.k].tolist()
    fit.converged = fit.change < TOLERANCE or fit.iterations >= MAX_ITERATIONS
    return fit


def components(x: np.ndarray, fit: PcaFit) -> np.ndarray:
    """This node's people's components (people x k): XᵢV / √λ, the pooled left singular
    vectors' rows for these people."""
    v = fit.basis[:, : fit.k]
    return (x @ v) / np.sqrt(np.asarray(fit.eigenvalues))
