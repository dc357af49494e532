"""A federated linear GWAS through real processes: one simulated cohort's samples split
unevenly over three nodes (each ingests its own VCF), a hub, and the pooled references
(numpy OLS on the pooled dosages; plink2 --glm on the pooled VCF)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from genofed.config import DatasetPolicy, TrustedIssuer, default_config, load_config, save_config
from genofed.governance.keys import load_or_create_aggregation_key, public_key_text
from genofed.simulate import simulate_cohort
from genofed.store.node_dir import NodeDir
from genofed.store.registered_tables import register_table
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf
from tests.browser import needs_chromium
from tests.federation import ISSUER, Federation, analyse, federation
from tests.live_server import start_node_server
from tests.test_cli_input import refused, run
from tests.test_gwas import PLINK2, _dosages, _pooled_ols

SPLIT = {"alpha": (0, 300), "beta": (300, 480), "gamma": (480, 600)}
REGION = "22:1-100000000"


def _node(fed: Federation, name: str, vcf: Path, clinical: pd.DataFrame, qt: pd.DataFrame):
    root = fed.root / name
    config = default_config(name)
    trusted = TrustedIssuer(issuer=ISSUER, jwks=fed.key.jwks())
    config.trust.brokers = config.trust.visa_issuers = [trusted]
    config.trust.audience = fed.audience(name)
    config.datasets[f"{name}-cohort"] = DatasetPolicy(analysis="registered")
    node = NodeDir.create(root, config)
    clinical_path = fed.root / f"{name}-clinical.csv"
    clinical.to_csv(clinical_path, index=False)
    ingest_vcf(node, f"{name}-cohort", vcf, assembly="GRCh38", individuals=clinical_path,
               settings=DatasetSettings(granularity="record", tier="public"))  # fmt: skip
    table = fed.root / f"{name}-qt.csv"
    qt.to_csv(table, index=False)
    register_table(node, "traits", table, tier="registered")
    return root


def _serve(fed: Federation, roots: dict[str, Path]) -> None:
    """Pin the nodes' aggregation keys to each other and serve each node."""
    keys = {n: public_key_text(load_or_create_aggregation_key(NodeDir(r).aggregation_key_path))
            for n, r in roots.items()}  # fmt: skip
    for name, node_root in roots.items():
        config = load_config(NodeDir(node_root).config_path)
        config.analysis.peers = {p: k for p, k in keys.items() if p != name}
        save_config(config, NodeDir(node_root).config_path)
        fed.processes[name], fed.nodes[name] = start_node_server(node_root)


@pytest.fixture(scope="module")
def gwas_fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("gwas-federation")
    with federation(root) as fed:
        cohort = simulate_cohort(root / "sim", n_samples=600, n_sites=400, seed=12, prefix="S")
        sites, g, samples = _dosages(cohort.vcf)
        clinical = pd.read_csv(cohort.clinical)
        rng = np.random.default_rng(3)
        common = int(np.argmax((g.mean(axis=0) > 0.3) & (g.mean(axis=0) < 1.7)))
        male = (clinical["sex"] == "male").to_numpy(dtype=float)
        qt = 0.02 * clinical["age"] + 0.3 * male + 0.5 * g[:, common] + rng.normal(0, 1, len(g))
        eta = -2 + 0.02 * clinical["age"] + 0.7 * g[:, common]
        case = (rng.random(len(g)) < 1 / (1 + np.exp(-eta))).astype(int)
        traits = pd.DataFrame({"individual_id": samples, "qt": qt, "qt2": rng.normal(size=len(g)),
                               "case": case})  # fmt: skip
        traits.loc[rng.choice(len(g), 12, replace=False), "qt"] = np.nan  # dropped listwise
        roots = {}
        for name, (a, b) in SPLIT.items():
            part = root / f"{name}.vcf.gz"
            subprocess.run(["bcftools", "view", "-Oz", "-o", str(part), "-s",
                            ",".join(samples[a:b]), str(cohort.vcf)], check=True)  # fmt: skip
            roots[name] = _node(fed, name, part, clinical.iloc[a:b], traits.iloc[a:b])
        _serve(fed, roots)
        yield {"fed": fed, "hub": fed.start_hub(), "sites": sites, "g": g,
               "samples": samples, "clinical": clinical, "traits": traits, "vcf": cohort.vcf,
               "common": common}  # fmt: skip


def _file(hub: str, token: str, job: dict[str, Any], name: str) -> httpx.Response:
    return httpx.get(f"{hub}/hub/analyses/{job['id']}/files/{name}",
                     headers={"authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip


def _node_macs(data: dict[str, Any], complete: np.ndarray) -> dict[str, np.ndarray]:
    """Each node's minor allele counts over the rows it analyses."""
    macs = {}
    for name, (a, b) in SPLIT.items():
        g = data["g"][a:b][complete[a:b]]
        alt = g.sum(axis=0)
        macs[name] = np.minimum(alt, 2 * len(g) - alt)
    return macs


def test_a_federated_linear_gwas_equals_the_pooled_ols_and_plink2(gwas_fed, tmp_path) -> None:
    fed, hub = gwas_fed["fed"], gwas_fed["hub"]
    token = fed.access_token()
    body = {"kind": "gwas", "phenotypes": ["qt", "qt2"], "covariates": ["age", "sex"],
            "region": REGION, "table": "traits", "block": 64}  # fmt: skip
    job = analyse(hub, token, body)
    assert job["state"] == "succeeded", (job["error"], str(job["rounds"][-1])[:2000])
    result = job["result"]
    assert sorted(result["contributors"]) == sorted(SPLIT)
    tsv = _file(hub, token, job, "qt.glm.linear")
    assert tsv.status_code == 200
    ours = pd.read_csv(pd.io.common.StringIO(tsv.text), sep="\t").set_index("ID")

    # the pooled reference: the complete rows of every node, dosages from the pooled VCF
    clinical, traits = gwas_fed["clinical"], gwas_fed["traits"]
    complete = traits["qt"].notna() & traits["qt2"].notna()
    c = np.column_stack([np.ones(len(clinical)), clinical["age"],
                         (clinical["sex"] == "male").astype(float)])[complete]  # fmt: skip
    g = gwas_fed["g"][complete.to_numpy()]
    ids = [f"{chrom.removeprefix('chr')}-{pos}-{ref}-{alt}"
           for chrom, pos, _, ref, alt in gwas_fed["sites"]]  # fmt: skip
    macs = _node_macs(gwas_fed, complete.to_numpy())
    vetoed = np.zeros(len(ids), dtype=bool)
    for mac in macs.values():
        vetoed |= (mac > 0) & (mac < 3)
    # rules: a variant rare at any one node never leaves it, and is not in the results
    assert vetoed.any()
    assert not set(np.array(ids)[vetoed]) & set(ours.index)
    tested = [i for i, v in enumerate(ids) if v in ours.index]
    assert len(tested) == len(ids) - vetoed.sum() == result["variants"]["tested"]
    assert 0 < result["variants"]["leftOut"] <= vetoed.sum()  # listed by some nodes only
    beta, se = _pooled_ols(c, traits["qt"].to_numpy()[complete], g[:, tested])
    rows = ours.loc[[ids[i] for i in tested]]
    finite = np.isfinite(rows["BETA"].to_numpy())
    np.testing.assert_array_equal(finite, np.isfinite(beta))
    np.testing.assert_allclose(rows["BETA"].to_numpy()[finite], beta[finite], rtol=1e-8)
    np.testing.assert_allclose(rows["SE"].to_numpy()[finite], se[finite], rtol=1e-8)
    assert rows.loc[ids[gwas_fed["common"]], "P"] < 1e-6  # the planted effect
    assert (rows["OBS_CT"] == complete.sum()).all()

    if PLINK2 is not None:
        pheno = pd.DataFrame({"#FID": gwas_fed["samples"], "IID": gwas_fed["samples"],
                              "QT": traits["qt"], "AGE": clinical["age"],
                              "SEX": (clinical["sex"] == "male").astype(int) + 1})  # fmt: skip
        pheno.to_csv(tmp_path / "p.tsv", sep="\t", index=False, na_rep="NA")
        subprocess.run([PLINK2, "--vcf", str(gwas_fed["vcf"]), "--double-id", "--pheno",
                        "p.tsv", "--pheno-name", "QT", "--covar", "p.tsv", "--covar-name",
                        "AGE", "SEX", "--glm", "hide-covar", "--out", "pooled", "--threads",
                        "1"], cwd=tmp_path, check=True, capture_output=True)  # fmt: skip
        plink = pd.read_csv(tmp_path / "pooled.QT.glm.linear", sep="\t")
        plink["ID"] = [
            f"{c}-{p}-{r}-{a}"
            for c, p, r, a in zip(
                plink["#CHROM"], plink["POS"], plink["REF"], plink["ALT"], strict=True
            )
        ]
        plink = plink.set_index("ID")
        compared = 0
        for vid, row in rows[finite].iterrows():
            if vid in plink.index and np.isfinite(plink.loc[vid, "BETA"]):
                sign = 1.0 if plink.loc[vid, "A1"] == row["ALT"] else -1.0
                assert sign * row["BETA"] == pytest.approx(plink.loc[vid, "BETA"], rel=1e-4,
                                                           abs=1e-6)  # fmt: skip
                assert row["SE"] == pytest.approx(plink.loc[vid, "SE"], rel=1e-4)
                compared += 1
        assert compared > 100

    for name in ("manhattan-qt.png", "manhattan-qt.svg", "qq-qt.png", "qt.parquet"):
        reply = _file(hub, token, job, name)
        assert reply.status_code == 200 and len(reply.content) > 1000, name
    assert _file(hub, token, job, "../hub.yaml").status_code == 404
    summary = result["phenotypeSummary"]["qt"]
    assert summary["top"][0]["ID"] == ids[gwas_fed["common"]]
    everything = ours["P"].dropna().to_numpy()
    expected = np.median(stats.chi2.isf(everything, 1)) / stats.chi2.ppf(0.5, 1)
    assert summary["lambdaGC"] == pytest.approx(expected, rel=1e-12)
    assert "pooled mean" in result["imputation"]
    assert result["variants"]["vetoedPerNode"]["gamma"] >= 1


def test_a_gwas_needs_a_region_and_phenotypes(gwas_fed) -> None:
    fed, hub = gwas_fed["fed"], gwas_fed["hub"]
    headers = {"authorization": f"Bearer {fed.access_token()}"}
    bad = httpx.post(f"{hub}/hub/analyses", headers=headers, timeout=30,
                     json={"kind": "gwas", "phenotypes": ["qt"]})  # fmt: skip
    assert bad.status_code == 400 and "region" in bad.text


pytestmark = pytest.mark.skipif(shutil.which("bcftools") is None, reason="needs bcftools")


def test_the_cli_runs_a_gwas_and_writes_its_tables_and_plots(gwas_fed, tmp_path) -> None:
    fed, hub = gwas_fed["fed"], gwas_fed["hub"]
    env = {"GENOFED_HUB": hub, "GENOFED_TOKEN": fed.access_token()}
    done = run("gwas", "--phenotype", "qt", "--covariates", "age,sex", "--region", REGION,
               "--table", "traits", "--out", str(tmp_path / "gwas"), env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = {p.name for p in (tmp_path / "gwas").iterdir()}
    assert {"qt.glm.linear", "qt.parquet", "manhattan-qt.png", "qq-qt.svg"} <= written
    table = pd.read_parquet(tmp_path / "gwas" / "qt.parquet")
    top = table.nsmallest(1, "P")["ID"].iloc[0]
    assert "top hits" in done.stdout and top in done.stdout
    assert "variants tested" in done.stdout and "pooled mean" in done.stdout
    refused(run("gwas", "--phenotype", "qt", "--region", "nowhere", "--out", str(tmp_path / "x"),
                env=env), "region")  # fmt: skip


def test_a_federated_logistic_gwas_is_the_pooled_score_test(gwas_fed) -> None:
    """The null model (age, sex) fitted across the nodes, then each variant's score test:
    equal to the pooled score test at statsmodels' null fit of the pooled rows."""
    import statsmodels.api as sm

    fed, hub = gwas_fed["fed"], gwas_fed["hub"]
    token = fed.access_token()
    body = {
        "kind": "gwas",
        "model": "logistic",
        "phenotypes": ["case"],
        "covariates": ["age", "sex"],
        "region": REGION,
        "table": "traits",
        "block": 100,
        "firth_max": 5,
    }
    job = analyse(hub, token, body, wait_s=400)  # fmt: skip
    assert job["state"] == "succeeded", (job["error"], str(job["rounds"][-1])[:2000])
    assert any(r["step"] == "null" for r in job["rounds"])
    reply = _file(hub, token, job, "case.glm.logistic.score")
    ours = pd.read_csv(pd.io.common.StringIO(reply.text), sep="\t").set_index("ID")
    clinical, traits = gwas_fed["clinical"], gwas_fed["traits"]
    c = np.column_stack([np.ones(len(clinical)), clinical["age"],
                         (clinical["sex"] == "male").astype(float)])  # fmt: skip
    y = traits["case"].to_numpy(dtype=float)
    null = sm.GLM(y, c, family=sm.families.Binomial()).fit(tol=1e-12)
    np.testing.assert_allclose(
        [x["estimate"] for x in job["result"]["nullModel"]["coefficients"]], null.params,
        rtol=1e-6)  # fmt: skip
    fitted = null.fittedvalues
    w, r = fitted * (1 - fitted), y - fitted
    ids = [f"{chrom.removeprefix('chr')}-{pos}-{ref}-{alt}"
           for chrom, pos, _, ref, alt in gwas_fed["sites"]]  # fmt: skip
    checked = 0
    for j, vid in enumerate(ids):
        if vid not in ours.index or not np.isfinite(ours.loc[vid, "Z_STAT"]):
            continue
        gj = gwas_fed["g"][:, j]
        cwg = c.T @ (w * gj)
        var = gj @ (w * gj) - cwg @ np.linalg.solve(c.T @ (c * w[:, None]), cwg)
        assert ours.loc[vid, "Z_STAT"] == pytest.approx((gj @ r) / np.sqrt(var), rel=1e-5)
        checked += 1
    assert checked > 100
    assert ours.loc[ids[gwas_fed["common"]], "P"] < 1e-4

    # the hits (P < 0.05) also have Firth fits, equal to the pooled Firth fit
    from genofed.analysis import firth
    from genofed.analysis.firth import fit_pooled

    hits = ours[ours["P"] < 0.05].nsmallest(5, "P")  # the 5 smallest (firth_max), in one go
    assert job["result"]["firthFits"] == len(hits) == 5
    assert hits["FIRTH_BETA"].notna().all()
    assert ours["FIRTH_BETA"].notna().sum() == 5
    assert ids[gwas_fed["common"]] in hits.index
    iterations = []
    for vid in hits.index:
        dosage = gwas_fed["g"][:, ids.index(vid)]
        dosage = np.where(np.isnan(dosage), np.nanmean(dosage), dosage)
        fit, pooled = fit_pooled([(np.column_stack([c, dosage]), y)])
        iterations.append(fit.iterations)
        assert ours.loc[vid, "FIRTH_BETA"] == pytest.approx(pooled.beta[-1], rel=1e-6), vid
        assert ours.loc[vid, "FIRTH_SE"] == pytest.approx(pooled.se[-1], rel=1e-6), vid
    # one information round and at most one score round per iteration, for all the hits
    firth_rounds = sum(r["step"] == "firth" for r in job["rounds"])
    assert firth_rounds <= 2 * max(iterations) + firth.MAX_HALVINGS < 2 * sum(iterations)


def test_a_federated_pca_keeps_each_nodes_components_there(gwas_fed) -> None:
    """The PCs span the pooled PCA's subspace of the same variants; each node keeps its
    own people's components (the hub's result has none), and a GWAS uses them by name."""
    from scipy.linalg import subspace_angles

    fed, hub = gwas_fed["fed"], gwas_fed["hub"]
    token = fed.access_token()
    job = analyse(hub, token, {"kind": "pca", "region": REGION, "components": 3})
    assert job["state"] == "succeeded", (job["error"], str(job["rounds"][-1])[:2000])
    result = job["result"]
    assert sorted(result["keptAt"]) == sorted(SPLIT) and "PC1" not in json.dumps(result["keptAt"])
    ids = [f"{chrom.removeprefix('chr')}-{pos}-{ref}-{alt}"
           for chrom, pos, _, ref, alt in gwas_fed["sites"]]  # fmt: skip
    # the candidates: no node's minor allele count in 1-2, a pooled MAF of 0.05 or more
    g_all = gwas_fed["g"]
    macs = _node_macs(gwas_fed, np.ones(len(g_all), dtype=bool))
    shared = np.all([(m == 0) | (m >= 3) for m in macs.values()], axis=0)
    freq = np.nanmean(g_all, axis=0) / 2
    candidates = np.flatnonzero(shared & (np.minimum(freq, 1 - freq) >= 0.05))
    pruning = result["ldPruning"]
    assert pruning["candidates"] == len(candidates) and pruning["window"] == 50
    # kept: no kept candidate before it in its window has r² > 0.2; pruned: one has
    r2 = np.corrcoef(g_all[:, candidates], rowvar=False) ** 2
    chosen = {ids[c] for c in candidates} & set(result["variantIds"])
    assert [ids[c] for c in candidates if ids[c] in chosen] == result["variantIds"]
    assert 10 < len(chosen) == pruning["kept"] < len(candidates) - 10
    for j, c in enumerate(candidates):
        earlier = [i for i in range(max(0, j - 49), j) if ids[candidates[i]] in chosen]
        assert (ids[c] in chosen) == all(r2[i, j] <= 0.2 for i in earlier), ids[c]
    used = [ids.index(v) for v in result["variantIds"]]
    g = gwas_fed["g"][:, used]
    x = (g - g.mean(axis=0)) / g.std(axis=0, ddof=1)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    kept = pd.concat(
        pd.read_parquet(fed.root / name / "state" / "components" / f"{name}-cohort.parquet")
        for name in SPLIT
    )
    assert list(kept.columns) == ["PC1", "PC2", "PC3"]
    kept = kept.loc[gwas_fed["samples"]]
    assert np.max(subspace_angles(kept.to_numpy(), u[:, :3])) < 1e-6
    np.testing.assert_allclose(result["eigenvalues"], s[:3] ** 2, rtol=1e-6)

    job = analyse(
        hub,
        token,
        {
            "kind": "gwas",
            "phenotypes": ["qt"],
            "covariates": ["age", "sex", "PC1", "PC2"],
            "region": REGION,
            "table": "traits",
        },
    )
    assert job["state"] == "succeeded", str(job)[:2000]  # fmt: skip


def test_the_cli_runs_a_pca(gwas_fed) -> None:
    fed, hub = gwas_fed["fed"], gwas_fed["hub"]
    env = {"GENOFED_HUB": hub, "GENOFED_TOKEN": fed.access_token()}
    done = run("pca", "--region", REGION, "--components", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert "PC1" in done.stdout and "PC2" in done.stdout and "kept at" in done.stderr


@needs_chromium
def test_the_portal_runs_a_gwas_and_shows_its_plots_and_hits(gwas_fed, browser: Any) -> None:
    """The analyses panel's GWAS form: each node's progress, the Manhattan and QQ plots
    (the hub's PNGs, fetched with the token), the top hits as the hub's table has them,
    each linked to the Beacon look-up; and the caller's analyses listed to reopen."""
    fed, hub = gwas_fed["fed"], gwas_fed["hub"]
    token = fed.access_token()
    page = browser.new_page()
    page.goto(hub)
    page.fill("#token", token)
    page.dispatch_event("#token", "change")
    page.fill("#gwas-phenotype", "qt")
    page.fill("#gwas-covariates", "age,sex")
    page.select_option("#gwas-model", "linear")
    page.fill("#gwas-region", REGION)
    page.fill("#gwas-table", "traits")
    page.click("#gwas-run")
    page.wait_for_function(
        "document.querySelector('.gwas-top tbody tr') || document.querySelector('#gwas-error')"
        ".textContent", timeout=300_000)  # fmt: skip
    assert not page.inner_text("#gwas-error"), page.inner_text("#gwas-message")
    page.wait_for_function(
        "['#gwas-manhattan', '#gwas-qq'].every(s => document.querySelector(s)?.naturalWidth > 0)",
        timeout=30_000,
    )
    job_id = page.inner_text("#gwas-message").split("·")[-1].strip()
    job = httpx.get(f"{hub}/hub/analyses/{job_id}", headers={"authorization": f"Bearer {token}"},
                    timeout=30).json()  # fmt: skip
    assert job["state"] == "succeeded"
    table = pd.read_csv(pd.io.common.StringIO(_file(hub, token, job, "qt.glm.linear").text),
                        sep="\t")  # fmt: skip
    expected = table.nsmallest(10, "P")
    rows = page.locator(".gwas-top tbody tr").all()
    assert [r.get_attribute("data-id") for r in rows] == expected["ID"].tolist()
    np.testing.assert_allclose([float(r.get_attribute("data-p")) for r in rows], expected["P"],
                               rtol=1e-9)  # fmt: skip
    lam = float(page.locator("#gwas-result h4").first.get_attribute("data-lambda"))
    assert lam == pytest.approx(job["result"]["phenotypeSummary"]["qt"]["lambdaGC"])
    assert "λGC" in page.get_attribute("#gwas-qq", "alt")
    nodes = page.inner_text("#gwas-nodes")
    assert all(name in nodes for name in SPLIT) and "ok" in nodes

    # a hit's variant goes to the Beacon look-up, which finds it
    top = expected.iloc[0]
    link = page.locator(".gwas-top .variant-link").first
    assert f"start={int(top['POS']) - 1}" in link.get_attribute("href")
    link.click()
    page.wait_for_function("document.querySelector('#variant-result').textContent.length > 0",
                           timeout=30_000)  # fmt: skip
    assert page.input_value("#v-pos") == str(int(top["POS"]))
    assert page.inner_text("#variant-result").startswith("found")

    # the caller's analyses, newest first: this GWAS reopens with its plots
    page.reload()
    page.wait_for_selector(f"#analyses-list button[data-id='{job_id}']", timeout=30_000)
    assert "qt ~ age + sex (linear" in page.inner_text("#analyses-list")
    page.click(f"#analyses-list button[data-id='{job_id}']")
    page.wait_for_function("document.querySelector('#gwas-manhattan')?.naturalWidth > 0",
                           timeout=30_000)  # fmt: skip
    assert page.locator(".gwas-top tbody tr").count() == 10
    page.close()
