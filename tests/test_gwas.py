"""Federated linear GWAS (``genofed.analysis.gwas``): the nodes' summed sums give the
pooled OLS of every variant (numpy on the pooled rows), and plink2 ``--glm`` on the
pooled VCF."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genofed.analysis.gwas import linear_association, linear_block_part
from genofed.simulate import simulate_cohort

PLINK2 = shutil.which("plink2")


def _pooled_ols(c: np.ndarray, y: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """β and SE of the dosage in y ~ C + g, variant by variant (numpy lstsq)."""
    n, k = c.shape
    beta, se = np.empty(g.shape[1]), np.empty(g.shape[1])
    for j in range(g.shape[1]):
        if np.ptp(g[:, j]) == 0:  # no variation: not testable (NaN, as ours)
            beta[j] = se[j] = np.nan
            continue
        x = np.column_stack([c, g[:, j]])
        coef, _, _, _ = np.linalg.lstsq(x, y, rcond=None)
        resid = y - x @ coef
        sigma2 = resid @ resid / (n - k - 1)
        beta[j] = coef[-1]
        se[j] = np.sqrt(sigma2 * np.linalg.inv(x.T @ x)[-1, -1])
    return beta, se


def test_summed_node_sums_give_the_pooled_ols_with_pooled_mean_imputation() -> None:
    rng = np.random.default_rng(4)
    n, v = 900, 40
    c = np.column_stack([np.ones(n), rng.uniform(20, 80, n), rng.integers(0, 2, n)])
    freq = rng.uniform(0.05, 0.5, v)
    g = rng.binomial(2, freq, (n, v)).astype(float)
    y = np.column_stack([
        c @ [1.0, 0.02, 0.3] + 0.4 * g[:, 3] + rng.normal(0, 1, n),
        c @ [0.0, -0.01, 0.1] + rng.normal(0, 2, n),
    ])  # fmt: skip
    missing = rng.random((n, v)) < 0.03
    observed = np.where(missing, np.nan, g)
    cuts = [0, 450, 720, n]  # three uneven nodes
    parts = [
        linear_block_part(c[a:b], y[a:b], observed[a:b])
        for a, b in zip(cuts, cuts[1:], strict=False)
    ]
    total = parts[0] + parts[1] + parts[2]
    results = linear_association(total)
    imputed = np.where(missing, np.nanmean(observed, axis=0), observed)
    for phenotype in range(2):
        beta, se = _pooled_ols(c, y[:, phenotype], imputed)
        np.testing.assert_allclose(results.beta[:, phenotype], beta, rtol=1e-8)
        np.testing.assert_allclose(results.se[:, phenotype], se, rtol=1e-8)
    assert results.p[3, 0] < 1e-10  # the planted effect
    np.testing.assert_array_equal(results.observed, (~missing).sum(axis=0))
    np.testing.assert_allclose(results.alt_freq, np.nanmean(observed, axis=0) / 2, rtol=1e-12)
    assert results.df == n - 4


def test_a_constant_variant_is_not_tested() -> None:
    rng = np.random.default_rng(5)
    n = 50
    c = np.column_stack([np.ones(n), rng.normal(size=n)])
    g = np.column_stack([np.zeros(n), rng.integers(0, 3, n)]).astype(float)
    results = linear_association(linear_block_part(c, rng.normal(size=(n, 1)), g))
    assert np.isnan(results.beta[0, 0]) and np.isfinite(results.beta[1, 0])


def _dosages(vcf: Path) -> tuple[list[tuple[str, int, str, str, str]], np.ndarray, list[str]]:
    sites, rows = [], []
    with gzip.open(vcf, "rt") as handle:
        for line in handle:
            if line.startswith("#CHROM"):
                samples = line.rstrip("\n").split("\t")[9:]
            elif not line.startswith("#"):
                fields = line.rstrip("\n").split("\t")
                chrom, pos, vid, ref, alts = fields[:5]
                for a, alt in enumerate(alts.split(","), start=1):  # split, as the nodes do
                    sites.append((chrom, int(pos), vid, ref, alt))
                    rows.append([(gt[0] == str(a)) + (gt[2] == str(a)) for gt in fields[9:]])
    return sites, np.array(rows, dtype=float).T, samples


@pytest.mark.skipif(PLINK2 is None, reason="needs Debian's plink2")
def test_the_linear_association_equals_plink2_glm_on_the_pooled_vcf(tmp_path: Path) -> None:
    """plink2 --glm (covariates age and sex) on the pooled VCF; our sums from three
    uneven nodes. plink2's A1 is the minor allele: where it is REF, its BETA is -ours."""
    cohort = simulate_cohort(tmp_path / "sim", n_samples=600, n_sites=300, seed=3, prefix="P")
    sites, g, samples = _dosages(cohort.vcf)
    rng = np.random.default_rng(8)
    n = len(samples)
    age, sex = rng.uniform(20, 80, n), rng.integers(1, 3, n)
    qt = 0.03 * age + 0.5 * g[:, 10] + rng.normal(0, 1, n)
    frame = pd.DataFrame({"#FID": samples, "IID": samples})
    frame.assign(QT=qt).to_csv(tmp_path / "pheno.tsv", sep="\t", index=False)
    frame.assign(AGE=age, SEX=sex).to_csv(tmp_path / "covar.tsv", sep="\t", index=False)
    subprocess.run(
        [PLINK2, "--vcf", str(cohort.vcf), "--double-id", "--pheno", "pheno.tsv",
         "--covar", "covar.tsv", "--glm", "hide-covar", "--covar-variance-standardize",
         "--out", "pooled", "--threads", "1", "--allow-extra-chr"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    plink = pd.read_csv(tmp_path / "pooled.QT.glm.linear", sep="\t")
    plink = plink[plink["TEST"] == "ADD"].set_index(["POS", "REF", "ALT"])

    c = np.column_stack([np.ones(n), age, sex])
    cuts = [0, 300, 480, n]
    parts = [linear_block_part(c[a:b], qt[a:b, None], g[a:b]) for a, b in
             zip(cuts, cuts[1:], strict=False)]  # fmt: skip
    results = linear_association(parts[0] + parts[1] + parts[2])
    checked = 0
    for j, (_, pos, _, ref, alt) in enumerate(sites):
        if (pos, ref, alt) not in plink.index or not np.isfinite(results.beta[j, 0]):
            continue
        row = plink.loc[(pos, ref, alt)]
        sign = 1.0 if row["A1"] == alt else -1.0
        assert row["A1"] in (ref, alt)
        assert sign * results.beta[j, 0] == pytest.approx(row["BETA"], rel=2e-5, abs=1e-6)
        assert results.se[j, 0] == pytest.approx(row["SE"], rel=2e-5)
        assert results.p[j, 0] == pytest.approx(row["P"], rel=2e-4, abs=1e-300)
        checked += 1
    assert checked > 200


def test_summed_score_sums_give_the_pooled_score_test() -> None:
    """The nodes' sums at the pooled null model (statsmodels' logistic fit of the
    covariates) give each variant's pooled score test (numpy on the pooled rows, and
    statsmodels' GLM score_test)."""
    import statsmodels.api as sm

    from genofed.analysis.gwas import score_association, score_block_part

    rng = np.random.default_rng(6)
    n, v = 1200, 25
    c = np.column_stack([np.ones(n), rng.uniform(20, 80, n), rng.integers(0, 2, n)])
    g = rng.binomial(2, rng.uniform(0.05, 0.5, v), (n, v)).astype(float)
    eta = -3 + 0.03 * c[:, 1] + 0.4 * c[:, 2] + 0.5 * g[:, 2]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    missing = rng.random((n, v)) < 0.02
    observed = np.where(missing, np.nan, g)
    null = sm.GLM(y, c, family=sm.families.Binomial()).fit(tol=1e-12)
    fitted = null.fittedvalues
    cuts = [0, 600, 950, n]
    parts = [score_block_part(c[a:b], y[a:b], fitted[a:b], observed[a:b])
             for a, b in zip(cuts, cuts[1:], strict=False)]  # fmt: skip
    results = score_association(parts[0] + parts[1] + parts[2])
    imputed = np.where(missing, np.nanmean(observed, axis=0), observed)
    w = fitted * (1 - fitted)
    r = y - fitted
    for j in range(v):
        gj = imputed[:, j]
        u = gj @ r
        cwg = c.T @ (w * gj)
        var = gj @ (w * gj) - cwg @ np.linalg.solve(c.T @ (c * w[:, None]), cwg)
        assert results.z[j] == pytest.approx(u / np.sqrt(var), rel=1e-9)
    full = sm.GLM(y, np.column_stack([c, imputed[:, 2]]), family=sm.families.Binomial())
    statistic, p_value, _ = full.score_test(np.append(null.params, 0.0), k_constraints=1)
    assert results.z[2] ** 2 == pytest.approx(float(np.squeeze(statistic)), rel=1e-6)
    assert results.p[2] == pytest.approx(float(np.squeeze(p_value)), rel=1e-5)


@pytest.mark.skipif(PLINK2 is None, reason="needs Debian's plink2")
def test_federated_firth_fits_are_the_pooled_firth_fits(tmp_path: Path) -> None:
    """Firth-penalised logistic fits from three nodes' sums solve Firth's penalised score
    equation and equal the fit of the pooled rows; plink2's ``firth`` rows (on a small
    case-control sample, where rare variants make plain logistic estimates unstable) agree
    to ~2e-3 only, so they are a sanity check here."""
    from genofed.analysis.firth import (
        fit_pooled,
        information_part,
        penalised_and_inverse,
        score_part,
    )

    cohort = simulate_cohort(tmp_path / "sim", n_samples=300, n_sites=120, seed=9, prefix="F")
    sites, g, samples = _dosages(cohort.vcf)
    rng = np.random.default_rng(2)
    n = len(samples)
    age = rng.uniform(20, 80, n)
    case = (rng.random(n) < 1 / (1 + np.exp(-(-2 + 0.02 * age + 0.8 * g[:, 5])))).astype(int)
    frame = pd.DataFrame({"#FID": samples, "IID": samples})
    frame.assign(CASE=case + 1).to_csv(tmp_path / "pheno.tsv", sep="\t", index=False)
    frame.assign(AGE=age).to_csv(tmp_path / "covar.tsv", sep="\t", index=False)
    subprocess.run(
        [PLINK2, "--vcf", str(cohort.vcf), "--double-id", "--pheno", "pheno.tsv",
         "--covar", "covar.tsv", "--glm", "firth", "hide-covar", "cols=+a1freq,+beta",
         "--out", "pooled", "--threads", "1"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    plink = pd.read_csv(tmp_path / "pooled.CASE.glm.firth", sep="\t")
    plink = plink[(plink["TEST"] == "ADD") & (plink["ERRCODE"] == ".")]
    plink = plink.set_index(["POS", "REF", "ALT"])
    cuts = [0, 150, 240, n]
    checked = 0
    for j, (_, pos, _, ref, alt) in enumerate(sites):
        mac = min(g[:, j].sum(), 2 * n - g[:, j].sum())
        if (pos, ref, alt) not in plink.index or checked >= 25 or mac < 3:
            continue  # (a GWAS leaves out variants with a MAC below min_mac)
        row = plink.loc[(pos, ref, alt)]
        # plink2 models its A1 (the minor allele): its dosage is 2 - ours where A1 is REF
        dosage = g[:, j] if row["A1"] == alt else 2 - g[:, j]
        x = np.column_stack([np.ones(n), dosage, age])
        parts = [(x[a:b], case[a:b].astype(float)) for a, b in zip(cuts, cuts[1:], strict=False)]
        fit, result = fit_pooled(parts)
        # ours solves the penalised score equation U*(β) = 0 (a Newton step from it is
        # below 1e-6 in every coefficient) ...
        beta = np.asarray(fit.beta)
        total = sum(information_part(x_, y_, beta) for x_, y_ in parts)
        inverse = penalised_and_inverse(total, 3)[1]
        score = sum(score_part(x_, y_, beta, inverse) for x_, y_ in parts)
        assert np.max(np.abs(inverse @ score)) < 1e-6
        # ... and the same fit on the pooled rows in one piece
        _, pooled = fit_pooled([(x, case.astype(float))])
        np.testing.assert_allclose(result.beta, pooled.beta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result.se, pooled.se, rtol=1e-9)
        # plink2 2.00a3.5's firth rows agree only to ~1e-3 (a sanity check, not the proof):
        # it fits Firth in single precision and stops at a score of 1e-4 or, when halving
        # stalls, 0.05 (docs/analysis.md), an approximate root of the same equation
        assert result.beta[1] == pytest.approx(row["BETA"], rel=1e-2, abs=1e-4)
        assert result.se[1] == pytest.approx(row["SE"], rel=1e-2)
        checked += 1
    assert checked == 25
