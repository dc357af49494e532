"""Genome-wide association across nodes from per-node sums, exactly as on the pooled rows.

**Linear models** (quantitative traits), one round. For a block of variants each node
sends, over its complete rows (covariates C with the intercept, phenotypes Y, dosages G
with missing genotypes as 0 and M their 0/1 missingness):

    n, CᵀC, CᵀY, diag(YᵀY), CᵀG, diag(GᵀG), GᵀY, ΣG, CᵀM, ΣM, MᵀY

The hub sums them. Missing dosages are imputed with the variant's **pooled** mean
μ = ΣG / (n − ΣM), as REGENIE imputes with the mean (here of all the nodes' rows, so the
answer is the pooled one): with G' = G + μM, and G∘M = 0,

    CᵀG' = CᵀG + μ CᵀM,   diag(G'ᵀG') = diag(GᵀG) + μ² ΣM,   G'ᵀY = GᵀY + μ MᵀY.

Then, per variant g and phenotype y, with A = (CᵀC)⁻¹ (Frisch–Waugh–Lovell):

    g̃ᵀg̃ = gᵀg − (Cᵀg)ᵀA(Cᵀg),  g̃ᵀỹ = gᵀy − (Cᵀg)ᵀA(Cᵀy),  ỹᵀỹ = yᵀy − (Cᵀy)ᵀA(Cᵀy)
    β = g̃ᵀỹ / g̃ᵀg̃,  RSS = ỹᵀỹ − β g̃ᵀỹ,  SE = √(RSS / (n − k − 1) / g̃ᵀg̃),  t = β / SE

which is the OLS of y on [C, g] over the pooled rows. Several phenotypes share one pass.

plink2 drops a sample's missing genotype for that variant instead (its OBS_CT varies by
variant); with no missing genotypes the two agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from genofed._exceptions import QueryError


def _unpack(
    vector: np.ndarray, shapes: list[tuple[int, ...]], what: str
) -> tuple[float, list[np.ndarray]]:
    """``[n, *arrays]`` of a summed vector, the arrays of the given shapes."""
    sizes = [int(np.prod(s)) for s in shapes]
    values = np.asarray(vector, dtype=np.float64)
    if values.shape != (1 + sum(sizes),):
        raise QueryError(f"{what} has {1 + sum(sizes)} values, not {values.size}")
    out, at = [], 1
    for shape, size in zip(shapes, sizes, strict=True):
        out.append(values[at : at + size].reshape(shape))
        at += size
    return float(values[0]), out


@dataclass
class LinearBlockPart:
    """One node's sums for one block of ``v`` variants (or their sum over the nodes)."""

    n: float
    ctc: np.ndarray  # k x k
    cty: np.ndarray  # k x m
    yty: np.ndarray  # m
    ctg: np.ndarray  # k x v
    gtg: np.ndarray  # v
    gty: np.ndarray  # v x m
    g_sum: np.ndarray  # v: sum of the observed dosages
    ctm: np.ndarray  # k x v
    m_sum: np.ndarray  # v: missing genotypes
    mty: np.ndarray  # v x m

    @property
    def shape(self) -> tuple[int, int, int]:
        """(covariates k, phenotypes m, variants v)."""
        return self.ctc.shape[0], self.cty.shape[1], self.ctg.shape[1]

    def vector(self) -> np.ndarray:
        """Everything in one vector, as secure aggregation sums it."""
        parts = [self.ctc, self.cty, self.yty, self.ctg, self.gtg, self.gty, self.g_sum,
                 self.ctm, self.m_sum, self.mty]  # fmt: skip
        return np.concatenate([[self.n], *(np.ravel(p) for p in parts)])

    @classmethod
    def from_vector(cls, vector: np.ndarray, k: int, m: int, v: int) -> LinearBlockPart:
        shapes = [(k, k), (k, m), (m,), (k, v), (v,), (v, m), (v,), (k, v), (v,), (v, m)]
        n, parts = _unpack(vector, shapes, f"a linear block of {v} variants")
        return cls(n, *parts)

    def __add__(self, other: LinearBlockPart) -> LinearBlockPart:
        return LinearBlockPart.from_vector(self.vector() + other.vector(), *self.shape)


@dataclass
class DosageSums:
    """Sums over a node's rows of a block's dosages against the columns of a matrix D
    (rows x q) and a weight e (rows): everything a block's part is built from.

    ``gd`` = G0ᵀD (v x q), ``gg`` = (G0∘G0)ᵀe (v), ``md`` = MᵀD (v x q), with G0 the
    dosages (missing as 0) and M their 0/1 missingness. A node computes them chunk by
    chunk of its genotype matrix (``genofed.store.dosages.sums``); ``dosage_sums`` is the
    same from a dosage matrix.
    """

    gd: np.ndarray
    gg: np.ndarray
    md: np.ndarray


def dosage_sums(dosages: np.ndarray, d: np.ndarray, e: np.ndarray) -> DosageSums:
    """``DosageSums`` of ``dosages`` (rows x v, NaN where missing)."""
    g = np.asarray(dosages, dtype=np.float64)
    missing = np.isnan(g)
    g0 = np.where(missing, 0.0, g)
    return DosageSums(g0.T @ d, (g0 * g0).T @ e, missing.T.astype(np.float64) @ d)


def linear_columns(covariates: np.ndarray, phenotypes: np.ndarray) -> tuple[np.ndarray, ...]:
    """D and e of a linear block: [C, Y, 1] and 1."""
    c = np.asarray(covariates, dtype=np.float64)
    y = np.asarray(phenotypes, dtype=np.float64)
    if len(c) != len(y):
        raise QueryError("covariates, phenotypes and dosages need the same rows")
    return np.column_stack([c, y, np.ones(len(c))]), np.ones(len(c))


def linear_part(
    covariates: np.ndarray, phenotypes: np.ndarray, sums: DosageSums
) -> LinearBlockPart:
    """This node's sums for one block from its ``DosageSums`` with ``linear_columns``."""
    c = np.asarray(covariates, dtype=np.float64)
    y = np.asarray(phenotypes, dtype=np.float64)
    k, m = c.shape[1], y.shape[1]
    if sums.gd.shape[1] != k + m + 1:
        raise QueryError("the dosage sums were not taken with this block's columns")
    return LinearBlockPart(
        n=float(len(c)),
        ctc=c.T @ c,
        cty=c.T @ y,
        yty=np.einsum("ij,ij->j", y, y),
        ctg=sums.gd[:, :k].T.copy(),
        gtg=sums.gg,
        gty=sums.gd[:, k : k + m].copy(),
        g_sum=sums.gd[:, k + m].copy(),
        ctm=sums.md[:, :k].T.copy(),
        m_sum=sums.md[:, k + m].copy(),
        mty=sums.md[:, k : k + m].copy(),
    )


def linear_block_part(
    covariates: np.ndarray, phenotypes: np.ndarray, dosages: np.ndarray
) -> LinearBlockPart:
    """This node's sums for one block: ``covariates`` n x k (with the intercept column),
    ``phenotypes`` n x m, ``dosages`` n x v (NaN where a genotype is missing), over the
    same complete rows."""
    if len(dosages) != len(covariates):
        raise QueryError("covariates, phenotypes and dosages need the same rows")
    columns = linear_columns(covariates, phenotypes)
    return linear_part(covariates, phenotypes, dosage_sums(dosages, *columns))


@dataclass
class LinearResults:
    """Per variant (rows) and phenotype (columns); NaN where a variant cannot be tested
    (no variation left after the covariates: plink2's CONST_OMITTED_ALLELE)."""

    beta: np.ndarray
    se: np.ndarray
    t: np.ndarray
    p: np.ndarray
    alt_freq: np.ndarray  # per variant: the pooled ALT frequency of the observed genotypes
    observed: np.ndarray  # per variant: genotypes observed (the rest imputed)
    n: int
    df: int


def linear_association(total: LinearBlockPart) -> LinearResults:
    """β, SE, t and p of every variant and phenotype from the nodes' summed sums."""
    k, _, _ = total.shape
    n = total.n
    observed = n - total.m_sum
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(observed > 0, total.g_sum / observed, 0.0)
    ctg = total.ctg + mu[None, :] * total.ctm
    gtg = total.gtg + mu**2 * total.m_sum
    gty = total.gty + mu[:, None] * total.mty
    try:
        inverse = np.linalg.inv(total.ctc)
    except np.linalg.LinAlgError:
        raise QueryError(
            "the covariates are collinear (or constant): drop one and run again"
        ) from None
    a_cty = inverse @ total.cty  # k x m
    a_ctg = inverse @ ctg  # k x v
    gg = gtg - np.einsum("kv,kv->v", ctg, a_ctg)  # residual g'g per variant
    gy = gty - ctg.T @ a_cty  # v x m
    yy = total.yty - np.einsum("km,km->m", total.cty, a_cty)  # m
    df = int(round(n)) - k - 1
    if df <= 0:
        raise QueryError(f"{int(n)} observations for {k + 1} coefficients")
    # a variant whose residual variation is (numerically) nothing cannot be tested
    testable = gg > 1e-9 * np.maximum(gtg, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(testable[:, None], gy / gg[:, None], np.nan)
        rss = yy[None, :] - beta * gy
        se = np.sqrt(rss / df / gg[:, None])
        t = beta / se
    p = 2 * stats.t.sf(np.abs(t), df)
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = np.where(observed > 0, total.g_sum / (2 * observed), np.nan)
    return LinearResults(beta, se, t, p, freq, observed, int(round(n)), df)


# --------------------------------------------------------------------------------------
# logistic models: the score test at the pooled null model
# --------------------------------------------------------------------------------------
#
# With the null model (covariates only) fitted across the nodes by the federated GLM,
# each node has its fitted means μ̂, weights W = μ̂(1-μ̂) and residuals r = y - μ̂. The
# score test of a variant g (imputed with its pooled mean, as above) is
#
#     U = g'ᵀr,   V = g'ᵀWg' - (CᵀWg')ᵀ (CᵀWC)⁻¹ (CᵀWg'),   z = U / √V
#
# exactly the pooled score test; with G' = G + μM and G∘M = 0 every term is a sum the
# nodes send (g0ᵀr, Σwg0², CᵀWg0, and the same of M).


@dataclass
class ScoreBlockPart:
    n: float
    ctwc: np.ndarray  # k x k
    ctwg: np.ndarray  # k x v
    gwg: np.ndarray  # v
    gr: np.ndarray  # v
    g_sum: np.ndarray  # v
    m_sum: np.ndarray  # v
    ctwm: np.ndarray  # k x v
    wm: np.ndarray  # v
    mr: np.ndarray  # v

    @property
    def shape(self) -> tuple[int, int]:
        return self.ctwc.shape[0], self.ctwg.shape[1]

    def vector(self) -> np.ndarray:
        parts = [self.ctwc, self.ctwg, self.gwg, self.gr, self.g_sum, self.m_sum, self.ctwm,
                 self.wm, self.mr]  # fmt: skip
        return np.concatenate([[self.n], *(np.ravel(p) for p in parts)])

    @classmethod
    def from_vector(cls, vector: np.ndarray, k: int, v: int) -> ScoreBlockPart:
        shapes = [(k, k), (k, v), (v,), (v,), (v,), (v,), (k, v), (v,), (v,)]
        n, parts = _unpack(vector, shapes, f"a score block of {v} variants")
        return cls(n, *parts)

    def __add__(self, other: ScoreBlockPart) -> ScoreBlockPart:
        return ScoreBlockPart.from_vector(self.vector() + other.vector(), *self.shape)


def score_columns(
    covariates: np.ndarray, outcome: np.ndarray, fitted: np.ndarray
) -> tuple[np.ndarray, ...]:
    """D and e of a score block: [CW, r, 1, w] and w, with the null model's weights
    w = μ̂(1-μ̂) and residuals r = y - μ̂."""
    c = np.asarray(covariates, dtype=np.float64)
    r = np.asarray(outcome, dtype=np.float64) - fitted
    w = fitted * (1 - fitted)
    return np.column_stack([c * w[:, None], r, np.ones(len(c)), w]), w


def score_part(covariates: np.ndarray, fitted: np.ndarray, sums: DosageSums) -> ScoreBlockPart:
    """This node's sums for one block from its ``DosageSums`` with ``score_columns``."""
    c = np.asarray(covariates, dtype=np.float64)
    k = c.shape[1]
    if sums.gd.shape[1] != k + 3:
        raise QueryError("the dosage sums were not taken with this block's columns")
    w = fitted * (1 - fitted)
    return ScoreBlockPart(
        n=float(len(c)),
        ctwc=(c * w[:, None]).T @ c,
        ctwg=sums.gd[:, :k].T.copy(),
        gwg=sums.gg,
        gr=sums.gd[:, k].copy(),
        g_sum=sums.gd[:, k + 1].copy(),
        m_sum=sums.md[:, k + 1].copy(),
        ctwm=sums.md[:, :k].T.copy(),
        wm=sums.md[:, k + 2].copy(),
        mr=sums.md[:, k].copy(),
    )


def score_block_part(
    covariates: np.ndarray, outcome: np.ndarray, fitted: np.ndarray, dosages: np.ndarray
) -> ScoreBlockPart:
    """This node's sums for one block: ``fitted`` are the null model's means μ̂ on these
    rows (from the pooled null coefficients)."""
    columns = score_columns(covariates, outcome, fitted)
    return score_part(covariates, fitted, dosage_sums(dosages, *columns))


def minor_allele_counts(sums: DosageSums, one: int, rows: int) -> np.ndarray:
    """Each variant's minor allele count over ``rows`` diploid rows, from sums whose
    column ``one`` of D is 1 on every row."""
    alt = sums.gd[:, one]
    called = 2 * (rows - sums.md[:, one])
    return np.minimum(alt, called - alt)


@dataclass
class ScoreResults:
    """Per variant: the score U, its variance V, z = U/√V and p (two-sided); the one-step
    estimate U/V and its standard error 1/√V (an approximation of the Wald β near 0)."""

    u: np.ndarray
    v: np.ndarray
    z: np.ndarray
    p: np.ndarray
    alt_freq: np.ndarray
    observed: np.ndarray
    n: int


def score_association(total: ScoreBlockPart) -> ScoreResults:
    observed = total.n - total.m_sum
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(observed > 0, total.g_sum / observed, 0.0)
        freq = np.where(observed > 0, total.g_sum / (2 * observed), np.nan)
    ctwg = total.ctwg + mu[None, :] * total.ctwm
    gwg = total.gwg + mu**2 * total.wm
    u = total.gr + mu * total.mr
    try:
        solved = np.linalg.solve(total.ctwc, ctwg)
    except np.linalg.LinAlgError:
        raise QueryError("the covariates are collinear (or constant): drop one") from None
    v = gwg - np.einsum("kv,kv->v", ctwg, solved)
    testable = v > 1e-9 * np.maximum(gwg, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(testable, u / np.sqrt(v), np.nan)
    p = 2 * stats.norm.sf(np.abs(z))
    return ScoreResults(u, np.where(testable, v, np.nan), z, p, freq, observed,
                        int(round(total.n)))  # fmt: skip
