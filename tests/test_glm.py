"""The federated GLM (``genofed.analysis.glm`` and ``design``) equals statsmodels' GLM on
the pooled rows: three nodes with uneven splits, gaussian, binomial and poisson models, a
categorical covariate one node lacks a level of, missing values, an offset, and the sums
taken by secure aggregation."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from scipy import stats

from genofed._exceptions import QueryError
from genofed.analysis import secure_sum
from genofed.analysis.design import agree_levels, categorical_levels, design, variables
from genofed.analysis.glm import GlmPart, advance, glm_part, start, summarise
from tests.analysis_data import cohort, split
from tests.shared_data import SHARED, needs_shared

RTOL = 1e-6  # the "exact": relative to the pooled answer


def plain_sum(parts: list[GlmPart]) -> GlmPart:
    return sum(parts[1:], parts[0])


def fit_federated(frames, formula, family, *, offset=None, add=plain_sum):
    """The coordinator's loop, each round's parts computed at each node's own rows."""
    used = variables(formula, offset)
    levels = agree_levels([categorical_levels(f, used) for f in frames])
    designs = [design(formula, f, levels, offset=offset) for f in frames]
    assert len({tuple(d.columns) for d in designs}) == 1  # coded alike everywhere
    fit = start(family, designs[0].columns, intercept=designs[0].intercept)
    while not fit.done:
        beta = None if fit.beta is None else np.asarray(fit.beta)
        parts = [
            glm_part(d.x, d.y, family, beta, offset=d.offset, null_eta=fit.null_eta)
            for d in designs
        ]
        total = add(parts)
        fit = advance(fit, total)
    assert fit.converged, fit.failed
    return summarise(fit, total), designs


def pooled_reference(frames, outcome, family, *, offset=None):
    """statsmodels on the pooled complete rows, coded by hand (no formula library)."""
    pooled = pd.concat(frames)
    pooled = pooled[pooled[["bmi", "age"]].notna().all(axis=1)]
    x = pd.DataFrame({
        "Intercept": 1.0,
        "age": pooled["age"],
        "sex[T.male]": (pooled["sex"] == "male").astype(float),
        "bmi": pooled["bmi"],
        "group[T.b]": (pooled["group"] == "b").astype(float),
        "group[T.c]": (pooled["group"] == "c").astype(float),
    })  # fmt: skip
    families = {"gaussian": sm.families.Gaussian(), "binomial": sm.families.Binomial(),
                "poisson": sm.families.Poisson()}  # fmt: skip
    model = sm.GLM(pooled[outcome], x, family=families[family], offset=offset(pooled) if offset
                   else None)  # fmt: skip
    return model.fit(tol=1e-14, use_t=family == "gaussian"), pooled


def assert_equal_to_pooled(summary, reference) -> None:
    names = [c.name for c in summary.coefficients]
    assert names == list(reference.params.index)
    np.testing.assert_allclose(
        [c.estimate for c in summary.coefficients], reference.params, rtol=RTOL
    )
    np.testing.assert_allclose(
        [c.std_error for c in summary.coefficients], reference.bse, rtol=RTOL
    )
    np.testing.assert_allclose([c.p_value for c in summary.coefficients], reference.pvalues,
                               rtol=RTOL, atol=1e-300)  # fmt: skip
    ci = reference.conf_int()
    np.testing.assert_allclose([c.ci_low for c in summary.coefficients], ci[0], rtol=RTOL)
    np.testing.assert_allclose([c.ci_high for c in summary.coefficients], ci[1], rtol=RTOL)
    np.testing.assert_allclose(summary.residual_deviance, reference.deviance, rtol=RTOL)
    np.testing.assert_allclose(summary.null_deviance, reference.null_deviance, rtol=RTOL)
    assert summary.residual_df == reference.df_resid
    assert summary.n == reference.nobs


def test_gaussian_equals_pooled_ols_with_a_categorical_covariate_a_node_lacks() -> None:
    frames = split(cohort())
    summary, designs = fit_federated(frames, "qt ~ age + sex + bmi + group", "gaussian")
    reference, pooled = pooled_reference(frames, "qt", "gaussian")
    assert_equal_to_pooled(summary, reference)
    assert summary.statistic == "t" and summary.iterations == 2  # as R's glm says
    np.testing.assert_allclose(summary.dispersion, reference.scale, rtol=RTOL)
    # R's AIC: the log-likelihood at sigma^2 = RSS / n, sigma counted as a parameter
    rss, n, p = reference.deviance, reference.nobs, len(reference.params)
    loglik = stats.norm.logpdf(pooled["qt"], reference.fittedvalues, np.sqrt(rss / n)).sum()
    np.testing.assert_allclose(summary.aic, -2 * loglik + 2 * (p + 1), rtol=RTOL)
    # the rows without bmi, counted at each node
    assert [d.n_dropped for d in designs] == [int(f["bmi"].isna().sum()) for f in frames]
    assert sum(d.n_dropped for d in designs) > 0
    assert "group[T.c]" in designs[2].columns and not designs[2].x[:, -1].any()


def test_binomial_equals_pooled_logistic_regression() -> None:
    frames = split(cohort())
    summary, _ = fit_federated(frames, "case ~ age + sex + bmi + group", "binomial")
    reference, _ = pooled_reference(frames, "case", "binomial")
    assert_equal_to_pooled(summary, reference)
    np.testing.assert_allclose(summary.aic, reference.aic, rtol=RTOL)
    assert summary.statistic == "z" and 3 <= summary.iterations <= 25


def test_poisson_with_an_offset_equals_pooled_poisson_regression() -> None:
    frames = split(cohort())
    summary, _ = fit_federated(
        frames, "events ~ age + sex + bmi + group", "poisson", offset="np.log(exposure)"
    )
    reference, _ = pooled_reference(
        frames, "events", "poisson", offset=lambda f: np.log(f["exposure"])
    )
    assert_equal_to_pooled(summary, reference)
    np.testing.assert_allclose(summary.aic, reference.aic, rtol=RTOL)


def test_the_sums_taken_by_secure_aggregation_give_the_same_fit() -> None:
    frames = split(cohort())
    keys = {f"node-{i}": X25519PrivateKey.generate() for i in range(3)}
    nodes = {
        name: secure_sum.SecureSumNode(
            name, key, {p: k.public_key() for p, k in keys.items() if p != name}
        )
        for name, key in keys.items()
    }
    names = sorted(nodes)
    rounds = iter(range(100))
    frac_bits = 32

    def secure_add(parts: list[GlmPart]) -> GlmPart:
        context = secure_sum.Context.of("glm-test", next(rounds), names)
        sealed = {name: nodes[name].share(context) for name in names}
        masked = {
            name: nodes[name].mask(
                context,
                secure_sum.encode_wide(part.vector(), frac_bits, len(names)),
                {s: out[name] for s, out in sealed.items() if s != name},
            )
            for name, part in zip(names, parts, strict=True)
        }
        reveals = {name: nodes[name].reveal(context, names) for name in names}
        total = secure_sum.unmask(context, names, masked, reveals)
        return GlmPart.from_vector(secure_sum.decode_wide(total, frac_bits), len(parts[0].working))

    summary, _ = fit_federated(frames, "case ~ age + sex + bmi + group", "binomial",
                               add=secure_add)  # fmt: skip
    reference, _ = pooled_reference(frames, "case", "binomial")
    assert_equal_to_pooled(summary, reference)


@needs_shared
def test_the_shared_simulated_cohort_in_three_uneven_nodes() -> None:
    clinical = pd.read_csv(SHARED / "data" / "sim_cohort" / "clinical.csv")
    frames = [clinical.iloc[:1400], clinical.iloc[1400:2100], clinical.iloc[2100:]]
    summary, _ = fit_federated(frames, "case_status ~ age + sex + bmi", "binomial")
    pooled = pd.concat(frames)
    x = sm.add_constant(pd.DataFrame({
        "age": pooled["age"], "sex[T.M]": (pooled["sex"] == "M").astype(float),
        "bmi": pooled["bmi"]}))  # fmt: skip
    reference = sm.GLM(pooled["case_status"], x, family=sm.families.Binomial()).fit(tol=1e-14)
    np.testing.assert_allclose([c.estimate for c in summary.coefficients], reference.params,
                               rtol=RTOL)  # fmt: skip
    np.testing.assert_allclose([c.std_error for c in summary.coefficients], reference.bse,
                               rtol=RTOL)  # fmt: skip


def test_bad_models_are_refused_saying_why() -> None:
    frame = cohort(200)
    levels = agree_levels([categorical_levels(frame, {"sex", "group"})])
    for formula, needle in (
        ("qt ~ age + height", "unknown variable(s) height"),
        ("~ age", "no outcome"),
        ("qt ~ age +", "does not parse"),
        ("sex ~ age", "one numeric column"),
    ):
        with pytest.raises(QueryError, match=re.escape(needle)):
            design(formula, frame, levels)
    d = design("qt ~ age", frame, levels)
    with pytest.raises(QueryError, match="binomial outcome is 0 or 1"):
        glm_part(d.x, d.y, "binomial")
    with pytest.raises(QueryError, match="family must be one of"):
        start("gamma", d.columns)  # type: ignore[arg-type]
    collinear = frame.assign(age2=frame["age"] * 2)
    d = design("qt ~ age + age2", collinear, levels)
    fit = advance(start("gaussian", d.columns), glm_part(d.x, d.y, "gaussian"))
    assert fit.failed and "singular" in fit.failed
