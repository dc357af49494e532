"""Firth-penalised logistic regression across nodes (plink2's ``firth``), by Newton rounds
on sums.

Firth's penalty (½ log |I(β)|) removes the small-sample bias of the logistic estimate
and keeps it finite under separation, which is why plink2 falls back to it for rare
variants. Its modified score is

    U*(β) = Xᵀ(y − μ + h ∘ (½ − μ)),   h = diag(W½ X I(β)⁻¹ Xᵀ W½),  I(β) = XᵀWX

Each node's hᵢ needs only the pooled I(β)⁻¹, so one Newton iteration is two sums: every
node sends I(β) and its log-likelihood at β (``information_part``); the coordinator sums
and inverts I and sends it back; every node sends its U* (``score_part``); the coordinator
steps β += I⁻¹U*, halving the step while the penalised log-likelihood
ℓ(β) + ½ log|I(β)| falls (``advance``). The standard errors are √diag(I⁻¹) at the
estimate, z = β/SE, as plink2 reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import special, stats

from genofed._exceptions import QueryError

# Largest change of a coefficient between iterations (logistf's xconv is 1e-5): near the
# optimum a smaller step's gain in likelihood is below the likelihood's rounding.
TOLERANCE = 1e-6
# A change in penalised log-likelihood this small is within the sums' rounding (secure
# sums keep 2^-32): no reason to halve a step, and, if the steps stop shrinking too, a
# cycle on a flat ridge (near separation the estimate is undetermined that finely).
NOISE = 1e-9
MAX_ITERATIONS = 200  # near separation the steps shrink only linearly
MAX_HALVINGS = 20


def information_part(x: np.ndarray, y: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``[I(β) (p x p), ℓ(β)]`` of this node's rows, flattened."""
    mu = special.expit(x @ beta)
    w = mu * (1 - mu)
    loglik = float(np.sum(special.xlogy(y, mu) + special.xlogy(1 - y, 1 - mu)))
    return np.concatenate([((x * w[:, None]).T @ x).ravel(), [loglik]])


def score_part(x: np.ndarray, y: np.ndarray, beta: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """This node's modified score U*(β), with the pooled I(β)⁻¹."""
    mu = special.expit(x @ beta)
    w = mu * (1 - mu)
    h = w * np.einsum("ij,jk,ik->i", x, inverse, x)
    return x.T @ (y - mu + h * (0.5 - mu))


@dataclass
class FirthFit:
    """The coordinator's state (plain values). ``trial`` is the β the nodes are asked at
    next; ``beta`` the accepted estimate and ``penalised`` its penalised log-likelihood."""

    beta: list[float]
    trial: list[float] = field(default_factory=list)
    step: list[float] | None = None
    penalised: float | None = None
    gain: float | None = None  # what the last accepted step gained
    halvings: int = 0
    iterations: int = 0
    converged: bool = False
    failed: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def start(p: int) -> FirthFit:
    zero = [0.0] * p
    return FirthFit(beta=zero, trial=zero)


def penalised_and_inverse(total: np.ndarray, p: int) -> tuple[float, np.ndarray]:
    """The penalised log-likelihood and I⁻¹ from the summed ``information_part``."""
    information = np.asarray(total[: p * p]).reshape(p, p)
    sign, logdet = np.linalg.slogdet(information)
    if sign <= 0:
        raise QueryError("the information matrix is singular: a covariate is constant")
    return float(total[p * p]) + 0.5 * logdet, np.linalg.inv(information)


def accept(fit: FirthFit, penalised: float) -> bool:
    """Whether the trial β is taken (the penalised likelihood did not fall); if not, the
    step is halved and ``trial`` moves back towards β."""
    if fit.penalised is None or penalised >= fit.penalised - NOISE or fit.step is None:
        fit.gain = None if fit.penalised is None else penalised - fit.penalised
        fit.beta, fit.penalised, fit.halvings = list(fit.trial), penalised, 0
        return True
    fit.halvings += 1
    if fit.halvings > MAX_HALVINGS:
        fit.failed = "the step could not be shortened enough (no improvement)"
        return False
    fit.step = [s / 2 for s in fit.step]
    fit.trial = [b + s for b, s in zip(fit.beta, fit.step, strict=True)]
    return False


def advance(fit: FirthFit, inverse: np.ndarray, score: np.ndarray) -> FirthFit:
    """After the accepted β's information and modified score: the next trial β."""
    step = inverse @ np.asarray(score)
    fit.iterations += 1
    size = float(np.max(np.abs(step)))
    # a cycle on a flat ridge: the last step gained nothing, and this one is no shorter
    previous = None if fit.step is None else float(np.max(np.abs(fit.step)))
    cycling = (fit.gain is not None and abs(fit.gain) < NOISE and previous is not None
               and size > 0.9 * previous)  # fmt: skip
    if size < TOLERANCE or cycling:
        fit.converged = True
        return fit
    if fit.iterations >= MAX_ITERATIONS:
        fit.failed = f"did not converge in {MAX_ITERATIONS} iterations"
        return fit
    fit.step = step.tolist()
    fit.trial = (np.asarray(fit.beta) + step).tolist()
    return fit


@dataclass
class FirthResult:
    beta: np.ndarray
    se: np.ndarray
    z: np.ndarray
    p: np.ndarray


def summarise(fit: FirthFit, inverse: np.ndarray) -> FirthResult:
    beta = np.asarray(fit.beta)
    se = np.sqrt(np.diag(inverse))
    z = beta / se
    return FirthResult(beta, se, z, 2 * stats.norm.sf(np.abs(z)))


def fit_pooled(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[FirthFit, FirthResult]:
    """The whole coordinator loop over in-process parts ``[(x, y)...]``: the rounds a hub
    runs, for tests and for one process holding several nodes' rows."""
    p = parts[0][0].shape[1]
    fit = start(p)
    while True:
        trial = np.asarray(fit.trial)
        total = sum(information_part(x, y, trial) for x, y in parts)
        penalised, inverse = penalised_and_inverse(total, p)
        if not accept(fit, penalised):
            if fit.failed:
                break
            continue
        score = sum(score_part(x, y, np.asarray(fit.beta), inverse) for x, y in parts)
        fit = advance(fit, inverse, score)
        if fit.converged or fit.failed:
            break
    if fit.failed:
        raise QueryError(f"the Firth fit failed: {fit.failed}")
    return fit, summarise(fit, inverse)
