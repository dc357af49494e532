"""Generalised linear models fitted across nodes by Fisher scoring, exactly.

Each round, every node computes from its own rows, at the coefficients the coordinator
sends, the information matrix XᵀWX, the working vector XᵀWz and the deviance (``glm_part``);
the coordinator sums them (securely: it sees only the sums) and solves for the next
coefficients (``advance``). This is R's ``glm.fit`` iteration (IRLS, started from R's
``mustart``, stopped when the relative change in deviance is below 1e-8, at most 25
iterations) with the sums taken over nodes instead of rows, so the estimates are the
pooled ones. Standard errors come from the information at the final estimates, so they
are the pooled maximum-likelihood ones to the convergence tolerance.

The families are gaussian/identity, binomial/logit and poisson/log (canonical links), and
a poisson model takes an offset. All a round's statistics travel as one vector
(``GlmPart.vector``), which is what secure aggregation sums.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from scipy import special, stats

from genofed._exceptions import QueryError

Family = Literal["gaussian", "binomial", "poisson"]
FAMILIES: tuple[Family, ...] = ("gaussian", "binomial", "poisson")
EPSILON = 1e-8  # R's glm.control(epsilon)
MAX_ITERATIONS = 25  # R's glm.control(maxit)


# --------------------------------------------------------------------------------------
# the families (canonical links: W = var(mu) and z = eta + (y - mu) / var(mu))
# --------------------------------------------------------------------------------------


def _mean(family: Family, eta: np.ndarray) -> np.ndarray:
    if family == "gaussian":
        return eta
    if family == "binomial":
        return special.expit(eta)
    return np.exp(eta)


def _variance(family: Family, mu: np.ndarray) -> np.ndarray:
    if family == "gaussian":
        return np.ones_like(mu)
    if family == "binomial":
        return mu * (1 - mu)
    return mu


def _link(family: Family, mu: np.ndarray | float) -> np.ndarray | float:
    if family == "gaussian":
        return mu
    if family == "binomial":
        return special.logit(mu)
    return np.log(mu)


def _start(family: Family, y: np.ndarray) -> np.ndarray:
    """R's ``mustart``: where the first iteration starts."""
    if family == "gaussian":
        return y.astype(np.float64)
    if family == "binomial":
        return (y + 0.5) / 2
    return y + 0.1


def _deviance(family: Family, y: np.ndarray, mu: np.ndarray) -> float:
    if family == "gaussian":
        return float(np.sum((y - mu) ** 2))
    if family == "binomial":
        return float(
            2 * np.sum(special.xlogy(y, y / mu) + special.xlogy(1 - y, (1 - y) / (1 - mu)))
        )
    return float(2 * np.sum(special.xlogy(y, y / mu) - (y - mu)))


def _log_likelihood(family: Family, y: np.ndarray, mu: np.ndarray) -> float:
    """The log-likelihood (binomial and poisson; gaussian's needs the pooled variance, so
    the coordinator derives it from the deviance)."""
    if family == "binomial":
        return float(np.sum(special.xlogy(y, mu) + special.xlogy(1 - y, 1 - mu)))
    if family == "poisson":
        return float(np.sum(special.xlogy(y, mu) - mu - special.gammaln(y + 1)))
    return 0.0


def check_outcome(family: Family, y: np.ndarray) -> None:
    """A node refuses an outcome its family cannot model, saying so."""
    if family not in FAMILIES:
        raise QueryError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    if family == "binomial" and not np.all((y == 0) | (y == 1)):
        raise QueryError("a binomial outcome is 0 or 1 (or a two-level variable)")
    if family == "poisson" and (np.any(y < 0) or not np.all(np.equal(np.mod(y, 1), 0))):
        raise QueryError("a poisson outcome is a count: whole numbers, 0 or more")


# --------------------------------------------------------------------------------------
# a node's part of one round
# --------------------------------------------------------------------------------------


@dataclass
class GlmPart:
    """One node's statistics for one round, or their sum over the nodes."""

    information: np.ndarray  # XᵀWX, p x p
    working: np.ndarray  # XᵀWz, p
    deviance: float  # at the round's coefficients (at R's start values in round 0)
    log_likelihood: float
    n: float
    sum_y: float
    sum_exp_offset: float  # for the null model of a poisson model with an offset
    null_deviance: float  # at the null model's linear predictor (0 in round 0)

    def vector(self) -> np.ndarray:
        """Everything in one vector, as secure aggregation sums it."""
        scalars = [self.deviance, self.log_likelihood, self.n, self.sum_y,
                   self.sum_exp_offset, self.null_deviance]  # fmt: skip
        return np.concatenate([self.information.ravel(), self.working, scalars])

    @classmethod
    def from_vector(cls, vector: np.ndarray, p: int) -> GlmPart:
        v = np.asarray(vector, dtype=np.float64)
        if v.shape != (p * p + p + 6,):
            raise QueryError(f"a GLM part for {p} coefficients has {p * p + p + 6} values")
        deviance, log_likelihood, n, sum_y, sum_exp_offset, null_deviance = v[p * p + p :]
        return cls(v[: p * p].reshape(p, p), v[p * p : p * p + p], float(deviance),
                   float(log_likelihood), float(n), float(sum_y), float(sum_exp_offset),
                   float(null_deviance))  # fmt: skip

    def __add__(self, other: GlmPart) -> GlmPart:
        p = len(self.working)
        return GlmPart.from_vector(self.vector() + other.vector(), p)


def glm_part(
    x: np.ndarray,
    y: np.ndarray,
    family: Family,
    beta: np.ndarray | None = None,
    *,
    offset: np.ndarray | None = None,
    null_eta: float | None = None,
) -> GlmPart:
    """This node's statistics at ``beta`` (``None``: round 0, at R's start values), and its
    null model's deviance at ``null_eta`` (the null model's linear predictor, less the
    offset) once the coordinator knows it."""
    y = np.asarray(y, dtype=np.float64)
    check_outcome(family, y)
    offset = np.zeros(len(y)) if offset is None else np.asarray(offset, dtype=np.float64)
    if beta is None:
        mu = _start(family, y)
        eta = np.asarray(_link(family, mu))
    else:
        eta = x @ beta + offset
        mu = _mean(family, eta)
    variance = _variance(family, mu)
    weights = variance  # canonical link: (dmu/deta)^2 / var(mu) = var(mu)
    z = (eta - offset) + (y - mu) / variance
    null_deviance = 0.0
    if null_eta is not None:
        null_deviance = _deviance(family, y, _mean(family, null_eta + offset))
    return GlmPart(
        information=(x * weights[:, None]).T @ x,
        working=x.T @ (weights * z),
        deviance=_deviance(family, y, mu),
        log_likelihood=_log_likelihood(family, y, mu),
        n=float(len(y)),
        sum_y=float(y.sum()),
        sum_exp_offset=float(np.exp(offset).sum()),
        null_deviance=null_deviance,
    )


# --------------------------------------------------------------------------------------
# the coordinator
# --------------------------------------------------------------------------------------


@dataclass
class GlmFit:
    """The coordinator's state between rounds (plain values: it persists as JSON)."""

    family: Family
    columns: list[str]
    intercept: bool
    beta: list[float] | None = None  # what the next round is asked at (None: round 0)
    deviances: list[float] = field(default_factory=list)  # deviance at each round's beta
    rounds: int = 0
    converged: bool = False
    failed: str | None = None  # why the fit stopped without converging
    null_eta: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GlmFit:
        return cls(**data)

    @property
    def done(self) -> bool:
        return self.converged or self.failed is not None


def start(family: Family, columns: list[str], *, intercept: bool = True) -> GlmFit:
    if family not in FAMILIES:
        raise QueryError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    return GlmFit(family=family, columns=list(columns), intercept=intercept)


def advance(fit: GlmFit, total: GlmPart) -> GlmFit:
    """The fit after a round whose parts summed to ``total``: converged (the round's
    coefficients are the estimates), or the coefficients for the next round."""
    if fit.done:
        raise QueryError("this fit is finished")
    fit.rounds += 1
    if fit.rounds == 1 and fit.intercept:  # the null model, known from round 0's sums
        if fit.family == "poisson":
            fit.null_eta = math.log(total.sum_y / total.sum_exp_offset)
        else:
            fit.null_eta = float(_link(fit.family, total.sum_y / total.n))
    elif fit.rounds == 1:
        fit.null_eta = 0.0
    if fit.beta is not None:
        previous = fit.deviances[-1]
        fit.deviances.append(total.deviance)
        if abs(total.deviance - previous) / (abs(total.deviance) + 0.1) < EPSILON:
            fit.converged = True
            return fit
    else:
        fit.deviances.append(total.deviance)  # at R's start values
    if fit.rounds > MAX_ITERATIONS:
        fit.failed = f"did not converge in {MAX_ITERATIONS} iterations"
        return fit
    try:
        beta = np.linalg.solve(total.information, total.working)
    except np.linalg.LinAlgError:
        fit.failed = (
            "the information matrix is singular: a covariate is constant or a combination of others"
        )
        return fit
    if not np.all(np.isfinite(beta)):
        fit.failed = "the estimates diverged (perfect separation?)"
        return fit
    fit.beta = beta.tolist()
    return fit


@dataclass
class Coefficient:
    name: str
    estimate: float
    std_error: float
    statistic: float  # t (gaussian) or z
    p_value: float
    ci_low: float
    ci_high: float


@dataclass
class GlmSummary:
    """What R's ``summary(glm)`` shows."""

    family: Family
    coefficients: list[Coefficient]
    statistic: Literal["t", "z"]
    dispersion: float
    null_deviance: float
    null_df: int
    residual_deviance: float
    residual_df: int
    aic: float
    iterations: int
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(fit: GlmFit, total: GlmPart, level: float = 0.95) -> GlmSummary:
    """The summary of a converged fit, from the sums of its last round."""
    if not fit.converged or fit.beta is None:
        raise QueryError(f"the fit has not converged{f': {fit.failed}' if fit.failed else ''}")
    beta = np.asarray(fit.beta)
    p, n = len(beta), int(round(total.n))
    residual_df = n - p
    if residual_df <= 0:
        raise QueryError(f"{n} observations for {p} coefficients: nothing left to estimate")
    covariance = np.linalg.inv(total.information)
    if fit.family == "gaussian":
        dispersion = total.deviance / residual_df
        distribution = stats.t(residual_df)
        aic = n * (math.log(2 * math.pi * total.deviance / n) + 1) + 2 + 2 * p
    else:
        dispersion = 1.0
        distribution = stats.norm()
        aic = -2 * total.log_likelihood + 2 * p
    se = np.sqrt(np.diag(covariance) * dispersion)
    statistic = beta / se
    quantile = distribution.ppf(0.5 + level / 2)
    coefficients = [
        Coefficient(
            name,
            float(b),
            float(s),
            float(t),
            float(2 * distribution.sf(abs(t))),
            float(b - quantile * s),
            float(b + quantile * s),
        )  # fmt: skip
        for name, b, s, t in zip(fit.columns, beta, se, statistic, strict=True)
    ]
    return GlmSummary(
        family=fit.family,
        coefficients=coefficients,
        statistic="t" if fit.family == "gaussian" else "z",
        dispersion=float(dispersion),
        null_deviance=total.null_deviance,
        null_df=n - int(fit.intercept),
        residual_deviance=total.deviance,
        residual_df=residual_df,
        aic=float(aic),
        iterations=fit.rounds - 1,
        n=n,
    )
