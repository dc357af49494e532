"""Federated learning's maths (``genofed.analysis.learning``), against references computed
on the pooled rows: gradient descent and statsmodels' fit, the Mann-Whitney AUC, the
strategies' published update rules."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import statsmodels.api as sm
import torch
from scipy import special, stats

from genofed.analysis import learning

CUTS = [0, 260, 410, 500]  # three uneven nodes


def _data(rng: np.random.Generator, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
    eta = -0.4 + x @ np.array([0.8, -0.3, 1.2])
    return x, (rng.random(n) < special.expit(eta)).astype(float)


def _nodes(x: np.ndarray, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x[a:b], y[a:b]) for a, b in zip(CUTS, CUTS[1:], strict=False)]


def exact_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """The AUC of exact scores (Mann-Whitney's U over the pairs)."""
    u = stats.mannwhitneyu(scores[y == 1], scores[y == 0]).statistic
    return float(u / ((y == 1).sum() * (y == 0).sum()))


def _scaling(parts: list[tuple[np.ndarray, np.ndarray]]) -> learning.Scaling:
    total = sum(learning.moments_part(x, y) for x, y in parts)
    return learning.Scaling.from_moments(total, ["a", "b", "c"])


def test_the_held_out_rows_depend_on_the_id_alone() -> None:
    ids = [f"person-{i}" for i in range(20_000)]
    test = learning.held_out(ids)
    assert abs(test.mean() - learning.HOLDOUT) < 0.01
    np.testing.assert_array_equal(learning.held_out(ids[::-1]), test[::-1])


def test_the_pooled_scaling_is_the_pooled_rows_mean_and_sd() -> None:
    x, y = _data(np.random.default_rng(1))
    x[::17, 1] = np.nan  # a missing dosage is left out of its feature's sums
    scaling = _scaling(_nodes(x, y))
    np.testing.assert_allclose(scaling.mean, np.nanmean(x, axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaling.sd, np.nanstd(x, axis=0, ddof=1), rtol=1e-12)


def test_one_full_batch_step_a_round_is_gradient_descent_on_the_pooled_loss() -> None:
    """FedAvg of nodes' single full-batch SGD steps equals a step on the pooled rows, and
    its rounds reach statsmodels' maximum likelihood fit."""
    x, y = _data(np.random.default_rng(2))
    parts = _nodes(x, y)
    scaling = _scaling(parts)
    spec = learning.ModelSpec("logistic", 3)
    training = learning.LocalTraining(lr=2.0)
    state = learning.ServerState(learning.initial_weights(spec, 0).tolist())
    z = scaling.apply(x)
    for _ in range(300):
        w = np.asarray(state.weights)
        total = sum(
            learning.train_part(spec, w, scaling.apply(a), b, training, 0) for a, b in parts
        )
        delta, n = learning.average_update(total, spec.size())
        pooled = learning.local_weights(spec, w, z, y, training, 0) - w
        np.testing.assert_allclose(delta, pooled, rtol=1e-10, atol=1e-13)
        assert n == len(y)
        state = learning.server_step(state, delta, learning.ServerOptimiser("fedavg"))
    reference = sm.Logit(y, sm.add_constant(x)).fit(disp=0).params
    ours = learning.coefficients(np.asarray(state.weights), scaling, ["a", "b", "c"])
    np.testing.assert_allclose(list(ours.values()), reference, atol=1e-8)


def test_fedprox_keeps_the_local_model_near_the_global_one() -> None:
    x, y = _data(np.random.default_rng(3))
    spec = learning.ModelSpec("logistic", 3)
    start = np.zeros(spec.size())
    free = learning.local_weights(spec, start, x, y, learning.LocalTraining(20, 0.5), 0)
    held = learning.local_weights(spec, start, x, y, learning.LocalTraining(20, 0.5, mu=1.0), 0)
    assert np.linalg.norm(held) < 0.5 * np.linalg.norm(free)


@pytest.mark.parametrize("strategy", ["fedadam", "fedyogi"])
def test_the_adaptive_server_steps_follow_reddi_et_al(strategy: str) -> None:
    """Algorithm 2 of "Adaptive Federated Optimization" (Reddi et al., ICLR 2021), written
    out here for two rounds."""
    optimiser = learning.ServerOptimiser(strategy, lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    w0 = np.array([0.5, -1.0, 2.0])
    deltas = [np.array([0.2, -0.1, 0.05]), np.array([-0.3, 0.1, 0.0])]
    state = learning.ServerState(w0.tolist())
    w, m, v = w0.copy(), np.zeros(3), np.full(3, 1e-6)
    for delta in deltas:
        state = learning.server_step(state, delta, optimiser)
        m = 0.9 * m + 0.1 * delta
        if strategy == "fedadam":
            v = 0.99 * v + 0.01 * delta**2
        else:
            v = v - 0.01 * delta**2 * np.sign(v - delta**2)
        w = w + 0.1 * m / (np.sqrt(v) + 1e-3)
        np.testing.assert_allclose(state.weights, w, rtol=1e-14)
    assert state.rounds == 2


def test_the_auc_from_summed_histograms_is_the_mann_whitney_auc_of_the_binned_scores() -> None:
    rng = np.random.default_rng(4)
    p = rng.beta(2, 3, 3000)
    y = (rng.random(3000) < p).astype(float)
    binned = np.minimum((p * learning.SCORE_BINS).astype(int), learning.SCORE_BINS - 1)
    u = stats.mannwhitneyu(binned[y == 1], binned[y == 0]).statistic  # ties count a half
    expected = u / ((y == 1).sum() * (y == 0).sum())
    parts = [(a, b) for a, b in zip(np.array_split(p, 3), np.array_split(y, 3), strict=True)]
    neg = sum(np.bincount(np.minimum((a[b == 0] * 1000).astype(int), 999), minlength=1000)
              for a, b in parts)  # fmt: skip
    pos = sum(np.bincount(np.minimum((a[b == 1] * 1000).astype(int), 999), minlength=1000)
              for a, b in parts)  # fmt: skip
    assert learning.auc_from_histograms(neg, pos) == pytest.approx(expected, rel=1e-12)
    assert abs(learning.auc_from_histograms(neg, pos) - exact_auc(p, y)) < 1e-3


def test_the_summed_evaluation_is_the_pooled_evaluation() -> None:
    """Loss, AUC, calibration and the membership audit from three nodes' sums equal the
    same quantities computed on the pooled rows."""
    rng = np.random.default_rng(5)
    x, y = _data(rng, 900)
    spec = learning.ModelSpec("mlp", 3, hidden=8)
    weights = learning.initial_weights(spec, 3)
    test = rng.random(900) < 0.25
    cuts = [0, 400, 700, 900]
    total = sum(
        learning.evaluation_part(spec, weights, (x[a:b][~test[a:b]], y[a:b][~test[a:b]]),
                                 (x[a:b][test[a:b]], y[a:b][test[a:b]]))
        for a, b in zip(cuts, cuts[1:], strict=False)
    )  # fmt: skip
    assert len(total) == learning.EVALUATION_LENGTH
    evaluation = learning.Evaluation.from_total(total)
    with torch.no_grad():
        module = learning.with_weights(spec, weights)
        p = torch.sigmoid(module(torch.as_tensor(x))).numpy().ravel()
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert evaluation.n_train == (~test).sum() and evaluation.n_test == test.sum()
    assert evaluation.loss_train == pytest.approx(loss[~test].mean(), rel=1e-12)
    assert evaluation.loss_test == pytest.approx(loss[test].mean(), rel=1e-12)
    pt, yt = p[test], y[test]
    exact = stats.mannwhitneyu(pt[yt == 1], pt[yt == 0]).statistic / (
        (yt == 1).sum() * (yt == 0).sum()
    )
    assert abs(evaluation.auc - exact) < 2e-3
    counts = sum(c["n"] for c in evaluation.calibration)
    assert counts == test.sum()
    top = max(evaluation.calibration, key=lambda c: c["n"])
    low = float(top["bin"].split("-")[0])
    inside = (pt >= low) & (pt < low + 0.1)
    assert top["observed"] == pytest.approx(yt[inside].mean(), rel=1e-12)
    assert top["predicted"] == pytest.approx(pt[inside].mean(), rel=1e-12)
    members, others = loss[~test], loss[test]
    u = stats.mannwhitneyu(others, members).statistic / (len(members) * len(others))
    assert abs(evaluation.membership_auc - u) < 5e-3


def test_dp_sgd_trains_and_its_epsilon_is_opacus_own() -> None:
    """DP-SGD at a node still fits a logistic model; the ε a node reports for its rounds
    is what Opacus' PrivacyEngine reports after training as many epochs itself."""
    from opacus import PrivacyEngine

    x, y = _data(np.random.default_rng(7), 2000)
    spec = learning.ModelSpec("logistic", 3)
    training = learning.LocalTraining(epochs=2, lr=0.5, batch_size=100)
    private = learning.DpSgd(noise_multiplier=1.1, max_grad_norm=1.0)
    weights = learning.dp_sgd_weights(spec, np.zeros(spec.size()), x, y, training, private)
    assert exact_auc(learning.scores(spec, weights, x), y) > 0.75

    module = spec.build()
    rows = torch.utils.data.TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    with warnings.catch_warnings():  # Opacus' "secure RNG off" and torch's hook notices
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="rdp")
        model, optimiser, loader = engine.make_private(
            module=module, optimizer=torch.optim.SGD(module.parameters(), lr=0.5),
            data_loader=torch.utils.data.DataLoader(rows, batch_size=100),
            noise_multiplier=1.1, max_grad_norm=1.0, poisson_sampling=True,
        )  # fmt: skip
        for _ in range(3 * training.epochs):  # three rounds of two epochs
            for xb, yb in loader:
                if len(yb):
                    optimiser.zero_grad()
                    torch.nn.BCEWithLogitsLoss()(model(xb).ravel(), yb).backward()
                    optimiser.step()
    ours = learning.dp_sgd_epsilon(private, training, len(y), 3, 1e-5)
    assert ours == pytest.approx(engine.get_epsilon(1e-5), rel=1e-9)
