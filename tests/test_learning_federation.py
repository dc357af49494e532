"""Federated learning through real processes: one simulated cohort split unevenly over
three nodes and a hub; the references are trained on the pooled rows in the test
(statsmodels for the logistic model, the same MLP in PyTorch)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from genofed.analysis import learning
from genofed.simulate import simulate_cohort
from tests.federation import analyse, federation
from tests.test_gwas import _dosages
from tests.test_gwas_federation import _node, _serve

SPLIT = {"alpha": (0, 450), "beta": (450, 720), "gamma": (720, 900)}


@pytest.fixture(scope="module")
def learn_fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("learning-federation")
    with federation(root) as fed:
        cohort = simulate_cohort(root / "sim", n_samples=900, n_sites=300, seed=21, prefix="L")
        sites, g, samples = _dosages(cohort.vcf)
        clinical = pd.read_csv(cohort.clinical)
        rng = np.random.default_rng(4)
        common = int(np.argmax((g.mean(axis=0) > 0.4) & (g.mean(axis=0) < 1.6)))
        male = (clinical["sex"] == "male").to_numpy(dtype=float)
        bmi = rng.normal(27, 4, len(g))
        age, dosage = clinical["age"].to_numpy(), g[:, common]
        eta = -1 + 0.04 * (age - 50) + 0.5 * male + 0.1 * (bmi - 27) + 0.8 * (dosage - 1)
        case = (rng.random(len(g)) < 1 / (1 + np.exp(-eta))).astype(int)
        traits = pd.DataFrame({"individual_id": samples, "case": case, "bmi": bmi})
        roots = {}
        for name, (a, b) in SPLIT.items():
            part = root / f"{name}.vcf.gz"
            subprocess.run(["bcftools", "view", "-Oz", "-o", str(part), "-s",
                            ",".join(samples[a:b]), str(cohort.vcf)], check=True)  # fmt: skip
            roots[name] = _node(fed, name, part, clinical.iloc[a:b], traits.iloc[a:b])
        _serve(fed, roots)
        chrom, pos, _, ref, alt = sites[common]
        variant = f"{chrom.removeprefix('chr')}-{pos}-{ref}-{alt}"
        pooled = pd.DataFrame({"age": clinical["age"].to_numpy(), "male": male, "bmi": bmi,
                               variant: g[:, common], "case": case}, index=samples)  # fmt: skip
        yield {"fed": fed, "hub": fed.start_hub(), "pooled": pooled, "variant": variant}


def _body(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {"kind": "learn", "target": "case", "features": ["age", "sex", "bmi"],
            "variants": [data["variant"]], "table": "traits", **changes}  # fmt: skip


def _split(pooled: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    pooled = pooled.dropna()  # the complete rows, as each node takes them
    test = learning.held_out(pooled.index)
    return pooled[~test], pooled[test]


def _exact_auc(scores: np.ndarray, y: np.ndarray) -> float:
    u = stats.mannwhitneyu(scores[y == 1], scores[y == 0]).statistic
    return float(u / ((y == 1).sum() * (y == 0).sum()))


def test_federated_logistic_regression_reaches_the_pooled_model(learn_fed) -> None:
    """FedAvg with one full-batch gradient step a round is gradient descent on the pooled
    loss: its coefficients reach statsmodels' on the pooled training rows, and its
    held-out AUC (from the summed histograms) the pooled model's exact AUC."""
    fed, hub, data = learn_fed["fed"], learn_fed["hub"], learn_fed
    token = fed.access_token()
    job = analyse(hub, token, _body(data, rounds=80, lr=4.0), wait_s=300)
    assert job["state"] == "succeeded", (job["error"], str(job["rounds"][-1])[:2000])
    result = job["result"]
    train, test = _split(data["pooled"])
    columns = ["age", "male", "bmi", data["variant"]]
    reference = sm.Logit(train["case"], sm.add_constant(train[columns])).fit(disp=0)
    ours = result["coefficients"]
    assert list(ours) == ["Intercept", "age", "sex[T.male]", "bmi", data["variant"]]
    for name, ref in zip(ours, reference.params, strict=True):
        assert ours[name] == pytest.approx(ref, abs=1e-3), name
    pooled_auc = _exact_auc(reference.predict(sm.add_constant(test[columns])).to_numpy(),
                            test["case"].to_numpy())  # fmt: skip
    assert abs(result["evaluation"]["auc"] - pooled_auc) < 0.005
    card = result["modelCard"]
    assert card["evaluation"]["n_test"] == len(test) and card["evaluation"]["n_train"] == len(train)
    assert [p["nodes"] for p in card["participation"]] == [sorted(SPLIT)] * 80
    assert len(result["curve"]) == 81 and result["curve"][-1]["round"] == 80
    assert result["curve"][-1]["lossTrain"] < result["curve"][0]["lossTrain"]
    files = set(result["files"])
    assert {"model.pt", "model.onnx", "model-card.json", "curve.tsv", "curve.png"} <= files

    # the ONNX model, on unstandardised features, gives the federated model's scores
    import onnxruntime

    response = httpx.get(f"{hub}/hub/analyses/{job['id']}/files/model.onnx",
                         headers={"authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
    assert response.status_code == 200
    session = onnxruntime.InferenceSession(response.content)
    x = test[columns].to_numpy(dtype=np.float64)
    (logits,) = session.run(None, {"features": x})
    expected = ours["Intercept"] + x @ np.array([ours[c] for c in list(ours)[1:]])
    np.testing.assert_allclose(logits.ravel(), expected, rtol=1e-9, atol=1e-9)
