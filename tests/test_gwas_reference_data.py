"""A federated GWAS of regenie's example (``../shared/data/regenie_example``: 500 people x
1,000 variants, covariates V1-V3, quantitative Y1 and Y2, binary Y1), its people split
unevenly over three real node processes, against plink2's own results on the pooled
files (``../shared/data/reference_results``) and pooled references computed here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from tests.federation import analyse, federation
from tests.shared_data import SHARED, needs_shared
from tests.test_gwas import _dosages, _pooled_ols
from tests.test_gwas_federation import _file, _node, _serve

EXAMPLE = SHARED / "data" / "regenie_example"
REFERENCE = SHARED / "data" / "reference_results"
SPLIT = {"alpha": (0, 240), "beta": (240, 410), "gamma": (410, 500)}  # 240 / 170 / 90

pytestmark = [
    needs_shared,
    pytest.mark.skipif(shutil.which("bcftools") is None, reason="needs bcftools"),
]


def _table(name: str) -> pd.DataFrame:
    frame = pd.read_csv(EXAMPLE / name, sep=r"\s+")
    return frame.assign(IID=frame["IID"].astype(str)).drop(columns="FID")


def _split(fed, root: Path, vcf: Path, split: dict, clinical: pd.DataFrame,
           traits: pd.DataFrame) -> None:  # fmt: skip
    """Each node's people (rows a:b of ``clinical`` and ``traits``) and their VCF, served."""
    samples = clinical["sample_id"].tolist()
    roots = {}
    for name, (a, b) in split.items():
        part = root / f"{name}.vcf.gz"
        subprocess.run(["bcftools", "view", "-Oz", "-o", str(part), "-s",
                        ",".join(samples[a:b]), str(vcf)], check=True)  # fmt: skip
        roots[name] = _node(fed, name, part, clinical.iloc[a:b], traits.iloc[a:b])
    _serve(fed, roots)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("regenie-example")
    vcf = EXAMPLE / "example_acgt.vcf.gz"
    sites, g, samples = _dosages(vcf)  # no missing genotypes
    ids = [f"{chrom}-{pos}-{ref}-{alt}" for chrom, pos, _, ref, alt in sites]
    traits = _table("covariates.txt").merge(_table("phenotype.txt"), on="IID")
    binary = _table("phenotype_bin.txt").rename(columns={"Y1": "B1", "Y2": "B2"})
    traits = traits.merge(binary, on="IID").set_index("IID").loc[samples].reset_index()
    traits = traits.rename(columns={"IID": "individual_id"})
    clinical = pd.DataFrame({"sample_id": samples, "sex": "female"})  # the .fam: all female
    with federation(root) as fed:
        _split(fed, root, vcf, SPLIT, clinical, traits)
        yield {"fed": fed, "hub": fed.start_hub(), "ids": ids, "g": g, "traits": traits}


def _plink(name: str) -> pd.DataFrame:
    """plink2's rows, named as the nodes name the variants (bim allele 1 is A, 2 is C)."""
    frame = pd.read_csv(REFERENCE / name, sep="\t")
    acgt = {"1": "A", "2": "C"}
    columns = zip(frame["#CHROM"], frame["POS"], frame["REF"], frame["ALT"], strict=True)
    frame["ID"] = [f"{c}-{p}-{acgt[str(r)]}-{acgt[str(a)]}" for c, p, r, a in columns]
    frame["A1"] = frame["A1"].astype(str).map(acgt)
    return frame.set_index("ID")


def test_a_linear_gwas_equals_plink2s_reference_and_the_pooled_ols(example) -> None:
    fed, hub, traits = example["fed"], example["hub"], example["traits"]
    token = fed.access_token()
    body = {"kind": "gwas", "phenotypes": ["Y1", "Y2"], "covariates": ["V1", "V2", "V3"],
            "region": "1:1-100000", "table": "traits", "block": 300}  # fmt: skip
    job = analyse(hub, token, body)
    assert job["state"] == "succeeded", (job["error"], str(job["rounds"][-1])[:2000])
    assert sorted(job["result"]["contributors"]) == sorted(SPLIT)
    c = np.column_stack([np.ones(len(traits)), traits[["V1", "V2", "V3"]].to_numpy()])
    for phenotype in ("Y1", "Y2"):
        reply = _file(hub, token, job, f"{phenotype}.glm.linear")
        ours = pd.read_csv(pd.io.common.StringIO(reply.text), sep="\t").set_index("ID")
        plink = _plink(f"regenie_example_qt.{phenotype}.glm.linear")
        both = ours.index.intersection(plink.index)
        assert len(both) >= 990  # all but the few variants rare at a node
        mine, theirs = ours.loc[both], plink.loc[both]
        sign = np.where(theirs["A1"] == mine["ALT"], 1.0, -1.0)
        # plink2 prints six significant digits
        np.testing.assert_allclose(sign * mine["BETA"], theirs["BETA"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(mine["SE"], theirs["SE"], rtol=1e-5)
        np.testing.assert_allclose(mine["P"], theirs["P"], rtol=1e-4)
        assert (mine["OBS_CT"] == theirs["OBS_CT"]).all()
        # and a pooled numpy OLS to 1e-8, relative to the larger of |β| and its SE: a β
        # near 0 (1e-5) is a difference of sums, and the secure sums' fixed point (2^-32)
        # moves it by ~1e-12 (measured: 4e-12, 1e-10 of its SE)
        columns = [example["ids"].index(v) for v in both]
        beta, se = _pooled_ols(c, traits[phenotype].to_numpy(), example["g"][:, columns])
        scale = np.maximum(np.abs(beta), se)
        assert np.max(np.abs(mine["BETA"].to_numpy() - beta) / scale) <= 1e-8
        np.testing.assert_allclose(mine["SE"], se, rtol=1e-8)


def test_a_logistic_gwas_equals_the_pooled_score_test(example) -> None:
    """The score statistics of binary Y1 equal the pooled score test at the pooled null
    model (statsmodels), variant by variant; and agree in sign and size with plink2's
    Wald test (a different test: the same to about 1 %)."""
    fed, hub, traits = example["fed"], example["hub"], example["traits"]
    token = fed.access_token()
    body = {"kind": "gwas", "model": "logistic", "phenotypes": ["B1"],
            "covariates": ["V1", "V2", "V3"], "region": "1:1-100000", "table": "traits",
            "firth_p": 0}  # fmt: skip
    job = analyse(hub, token, body)
    assert job["state"] == "succeeded", (job["error"], str(job["rounds"][-1])[:2000])
    reply = _file(hub, token, job, "B1.glm.logistic.score")
    ours = pd.read_csv(pd.io.common.StringIO(reply.text), sep="\t").set_index("ID")
    x = np.column_stack([np.ones(len(traits)), traits[["V1", "V2", "V3"]].to_numpy()])
    y = traits["B1"].to_numpy(dtype=float)
    null = sm.GLM(y, x, family=sm.families.Binomial()).fit(tol=1e-12)
    mu = null.fittedvalues
    w = mu * (1 - mu)
    columns = [example["ids"].index(v) for v in ours.index]
    g = example["g"][:, columns]
    u = g.T @ (y - mu)
    xtwg = x.T @ (w[:, None] * g)
    v = (w[:, None] * g * g).sum(axis=0) - np.einsum(
        "kv,kv->v", xtwg, np.linalg.solve(x.T @ (w[:, None] * x), xtwg)
    )
    np.testing.assert_allclose(ours["U"], u, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours["V"], v, rtol=1e-7)
    np.testing.assert_allclose(ours["Z_STAT"], u / np.sqrt(v), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours["P"], 2 * stats.norm.sf(np.abs(u / np.sqrt(v))), rtol=1e-6)
    plink = _plink("regenie_example_bin.Y1.glm.logistic.hybrid")
    both = ours.index.intersection(plink.index)
    sign = np.where(plink.loc[both, "A1"] == ours.loc[both, "ALT"], 1.0, -1.0)
    wald = plink.loc[both, "Z_STAT"].to_numpy(dtype=float) * sign
    assert np.corrcoef(ours.loc[both, "Z_STAT"], wald)[0, 1] > 0.99


SIM = SHARED / "data" / "sim_cohort"


@pytest.fixture(scope="module")
def sim_cohort(tmp_path_factory: pytest.TempPathFactory):
    """``../shared/data/sim_cohort`` (2,504 people x 46,289 sites) over three nodes."""
    root = tmp_path_factory.mktemp("sim-cohort")
    vcf = SIM / "sim_chr22.vcf.gz"
    covariates = pd.read_csv(SIM / "covariates.tsv", sep="\t")
    phenotypes = pd.read_csv(SIM / "phenotypes.tsv", sep="\t")
    traits = covariates.merge(phenotypes[["IID", "QT"]], on="IID").drop(columns="#FID")
    traits = traits.rename(columns={"IID": "individual_id"})
    sex = pd.read_csv(SIM / "clinical.csv")[["sample_id", "sex"]]
    clinical = sex.assign(sex=sex["sex"].map({"M": "male", "F": "female"}))
    samples = clinical["sample_id"].tolist()
    assert traits["individual_id"].tolist() == samples
    split = {"alpha": (0, 1300), "beta": (1300, 2000), "gamma": (2000, len(samples))}
    with federation(root) as fed:
        _split(fed, root, vcf, split, clinical, traits)
        yield {"fed": fed, "hub": fed.start_hub()}


def test_the_simulated_cohorts_linear_gwas_equals_plink2s_reference(sim_cohort) -> None:
    """QT ~ SEX + AGE + PC1 against plink2 on the pooled VCF (bi-allelic sites; plink2
    standardised the covariates, which moves no variant's β or SE)."""
    fed, hub = sim_cohort["fed"], sim_cohort["hub"]
    token = fed.access_token()
    body = {"kind": "gwas", "phenotypes": ["QT"], "covariates": ["SEX", "AGE", "PC1"],
            "region": "22:1-100000000", "table": "traits"}  # fmt: skip
    job = analyse(hub, token, body, wait_s=600)
    assert job["state"] == "succeeded", (job["error"], str(job["rounds"][-1])[:2000])
    ours = pd.read_csv(pd.io.common.StringIO(_file(hub, token, job, "QT.glm.linear").text),
                       sep="\t").set_index("ID")  # fmt: skip
    plink = pd.read_csv(REFERENCE / "sim_chr22.QT.glm.linear.gz", sep="\t")
    plink.index = [i.replace(":", "-") for i in plink["ID"]]
    both = ours.index.intersection(plink.index[np.isfinite(plink["BETA"])])
    assert len(both) > 20_000
    mine, theirs = ours.loc[both], plink.loc[both]
    sign = np.where(theirs["A1"] == mine["ALT"], 1.0, -1.0)
    assert (sign < 0).any()  # plink2's A1 is the minor allele: REF at some sites
    np.testing.assert_allclose(sign * mine["BETA"], theirs["BETA"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(mine["SE"], theirs["SE"], rtol=1e-5)
    np.testing.assert_allclose(mine["P"], theirs["P"], rtol=1e-4)
    assert (mine["OBS_CT"] == theirs["OBS_CT"]).all()
