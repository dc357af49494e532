"""Federated learning: a model trained where the rows are, from summed updates.

The coordinator holds the global weights w. In a round, each chosen node trains a copy
on its own training rows for a few local epochs (``local_weights``) and sends its update
weighted by its row count, nᵢ(wᵢ - w), and nᵢ (``train_part``); secure aggregation gives
the coordinator only their sums, so it learns the average update Δ = Σ nᵢ(wᵢ - w) / Σ nᵢ
and never one node's. A server optimiser turns Δ into the next weights
(``server_step``): FedAvg adds it (times a server learning rate), FedAdam and FedYogi
treat -Δ as a gradient with adaptive steps (Reddi et al. 2021, "Adaptive Federated
Optimization"). FedProx is FedAvg whose local loss has a proximal term μ/2 ‖wᵢ - w‖².
With one full-batch gradient step per round, FedAvg is gradient descent on the pooled
loss, so its fixed point is the pooled model.

In the same round, each node also evaluates the weights it was sent on its held-out and
training rows (``evaluation_part``): loss sums, histograms of the held-out scores of each
class (the AUC from their sums is exact up to the histogram's bins), calibration bins,
and histograms of every row's loss, members (training) apart from non-members (held
out), for a loss-threshold membership-inference audit.

Features are standardised with the pooled means and standard deviations of the training
rows (``moments_part``, ``Scaling``). Which rows are held out depends only on the
individual's id (``held_out``), so no job ever trains on another job's held-out rows.

Flower and NVIDIA FLARE implement these strategies, but inside their own servers, client
identities and transports; here the rounds are the analysis runtime's secure sums, so the
strategies' few lines of arithmetic are written here.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy import special

from genofed._exceptions import QueryError

HOLDOUT = 0.2  # the share of each node's rows held out for evaluation
SCORE_BINS = 1000  # bins of a predicted probability, for the AUC
CALIBRATION_BINS = 10
# bins of log10 of a row's log-loss, from 1e-7 to 100, for the membership audit: an
# overfitted model's training losses are tiny, and bins of equal width would tie them
LOSS_BINS = 900
LOSS_RANGE = (-7.0, 2.0)

Kind = Literal["logistic", "mlp"]
Strategy = Literal["fedavg", "fedprox", "fedadam", "fedyogi"]


def held_out(ids: Iterable[str]) -> np.ndarray:
    """Whether each individual's row is held out (about ``HOLDOUT`` of them), from a hash
    of the id alone."""
    draws = [
        int.from_bytes(hashlib.blake2b(f"genofed-holdout:{i}".encode(), digest_size=8).digest())
        for i in ids
    ]
    return np.asarray(draws, dtype=np.float64) / 2.0**64 < HOLDOUT


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    kind: Kind
    inputs: int
    hidden: int = 16

    def build(self) -> torch.nn.Module:
        """The model, in double precision (small models: exactness matters more)."""
        if self.kind == "logistic":
            module: torch.nn.Module = torch.nn.Linear(self.inputs, 1)
        else:
            module = torch.nn.Sequential(
                torch.nn.Linear(self.inputs, self.hidden),
                torch.nn.ReLU(),
                torch.nn.Linear(self.hidden, 1),
            )
        return module.double()

    def size(self) -> int:
        return sum(p.numel() for p in self.build().parameters())


def initial_weights(spec: ModelSpec, seed: int) -> np.ndarray:
    """Starting weights: zeros for a logistic model, PyTorch's initialisation (seeded by
    the coordinator) for an MLP."""
    if spec.kind == "logistic":
        return np.zeros(spec.size())
    torch.manual_seed(seed)
    return get_weights(spec.build())


def get_weights(module: torch.nn.Module) -> np.ndarray:
    return torch.nn.utils.parameters_to_vector(module.parameters()).detach().numpy().copy()


def set_weights(module: torch.nn.Module, weights: np.ndarray) -> torch.nn.Module:
    # a copy: the parameters become views of this vector, and training changes them
    vector = torch.tensor(np.asarray(weights, dtype=np.float64))
    torch.nn.utils.vector_to_parameters(vector, module.parameters())
    return module


def with_weights(spec: ModelSpec, weights: np.ndarray) -> torch.nn.Module:
    if len(weights) != spec.size():
        raise QueryError(f"{len(weights)} weights for a model of {spec.size()}")
    return set_weights(spec.build(), weights)


def scores(spec: ModelSpec, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The predicted probability of each row."""
    with torch.no_grad():
        logits = with_weights(spec, weights)(torch.as_tensor(x)).numpy().ravel()
    return special.expit(logits)


# --------------------------------------------------------------------------------------
# standardisation
# --------------------------------------------------------------------------------------


def moments_part(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``[Σx (p), Σx² (p), n, Σy]`` of this node's training rows; a missing value of a
    feature (a dosage) is left out of its sums and counted in ``observed``."""
    observed = ~np.isnan(x)
    x0 = np.where(observed, x, 0.0)
    return np.concatenate([x0.sum(axis=0), (x0 * x0).sum(axis=0), observed.sum(axis=0),
                           [len(y), float(np.sum(y))]])  # fmt: skip


@dataclass
class Scaling:
    mean: list[float]
    sd: list[float]

    @classmethod
    def from_moments(cls, total: np.ndarray, columns: list[str]) -> Scaling:
        p = len(columns)
        sums, squares, observed = (np.asarray(total[i * p : (i + 1) * p]) for i in range(3))
        if np.any(observed < 2):
            raise QueryError("a feature observed fewer than twice cannot be standardised")
        mean = sums / observed
        variance = (squares - observed * mean**2) / (observed - 1)
        flat = [c for c, v in zip(columns, variance, strict=True) if v <= 1e-12 * max(1, abs(v))]
        if flat:
            raise QueryError(f"feature(s) without variation in the training rows: {flat}")
        return cls(mean.tolist(), np.sqrt(variance).tolist())

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Standardised features; a missing value at 0 (the pooled mean)."""
        z = (np.asarray(x, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.sd)
        return np.where(np.isnan(z), 0.0, z)


# --------------------------------------------------------------------------------------
# a node's part of a round
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalTraining:
    epochs: int = 1
    lr: float = 0.1
    batch_size: int = 0  # 0: the whole training set (a full-batch gradient step)
    optimizer: Literal["sgd", "adam"] = "sgd"
    mu: float = 0.0  # FedProx's proximal term


def _optimiser(module: torch.nn.Module, training: LocalTraining) -> torch.optim.Optimizer:
    if training.optimizer == "sgd":
        return torch.optim.SGD(module.parameters(), lr=training.lr)
    return torch.optim.Adam(module.parameters(), lr=training.lr)


def local_weights(
    spec: ModelSpec,
    weights: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    training: LocalTraining,
    seed: int,
) -> np.ndarray:
    """The weights after ``training.epochs`` epochs on these rows from ``weights``,
    minimising the mean binary cross-entropy (+ μ/2 ‖w - weights‖² for FedProx)."""
    module = with_weights(spec, weights)
    start = torch.tensor(np.asarray(weights, dtype=np.float64))
    optimiser = _optimiser(module, training)
    xt, yt = torch.as_tensor(x), torch.as_tensor(np.asarray(y, dtype=np.float64))
    size = training.batch_size or len(y)
    generator = torch.Generator().manual_seed(seed)
    loss_of = torch.nn.BCEWithLogitsLoss()
    for _ in range(training.epochs):
        order = torch.randperm(len(y), generator=generator) if size < len(y) else None
        for a in range(0, len(y), size):
            rows = slice(a, a + size) if order is None else order[a : a + size]
            optimiser.zero_grad()
            loss = loss_of(module(xt[rows]).ravel(), yt[rows])
            if training.mu:
                now = torch.nn.utils.parameters_to_vector(module.parameters())
                loss = loss + training.mu / 2 * torch.sum((now - start) ** 2)
            loss.backward()
            optimiser.step()
    return get_weights(module)


@dataclass(frozen=True)
class DpSgd:
    """DP-SGD at a node (Opacus): each row's gradient clipped to ``max_grad_norm``,
    Gaussian noise of ``noise_multiplier`` times it added to each batch's sum, batches
    drawn by Poisson sampling. The unit of privacy is one row of this node."""

    noise_multiplier: float
    max_grad_norm: float = 1.0


def dp_sgd_weights(
    spec: ModelSpec,
    weights: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    training: LocalTraining,
    privacy: DpSgd,
) -> np.ndarray:
    """``local_weights`` by DP-SGD: Opacus clips and noises each step; no proximal term
    (it is not a sum over rows)."""
    import warnings

    from opacus import PrivacyEngine

    if not training.batch_size:
        raise QueryError("DP-SGD samples batches: give a batch size")
    if training.mu:
        raise QueryError("DP-SGD and FedProx's proximal term do not go together")
    module = with_weights(spec, weights)
    optimiser = _optimiser(module, training)
    xt, yt = torch.as_tensor(x), torch.as_tensor(np.asarray(y, dtype=np.float64))

    # the batches and the noise from the operating system's entropy: torch's own default
    # generator starts from a fixed seed, and the coordinator's seeds are not secrets
    def entropy() -> torch.Generator:
        return torch.Generator().manual_seed(secrets.randbits(63))

    rows = torch.utils.data.TensorDataset(xt, yt)
    loader = torch.utils.data.DataLoader(rows, batch_size=training.batch_size, generator=entropy())
    with warnings.catch_warnings():  # Opacus warns that secure_mode is off (see above)
        warnings.simplefilter("ignore")
        private, optimiser, loader = PrivacyEngine(accountant="rdp").make_private(
            module=module, optimizer=optimiser, data_loader=loader,
            noise_multiplier=privacy.noise_multiplier, max_grad_norm=privacy.max_grad_norm,
            poisson_sampling=True, noise_generator=entropy(),
        )  # fmt: skip
        loss_of = torch.nn.BCEWithLogitsLoss()
        for _ in range(training.epochs):
            for xb, yb in loader:
                if not len(yb):
                    continue
                optimiser.zero_grad()
                loss_of(private(xb).ravel(), yb).backward()
                optimiser.step()
    return get_weights(module)


def dp_sgd_epsilon(privacy: DpSgd, training: LocalTraining, n: int, rounds: int,
                   delta: float) -> float:  # fmt: skip
    """A node's ε after ``rounds`` rounds of DP-SGD on its ``n`` rows (an upper bound if
    it sat some out), by Opacus' RDP accountant."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    rate = min(1.0, training.batch_size / n)
    steps = rounds * training.epochs * math.ceil(n / training.batch_size)
    accountant.history = [(privacy.noise_multiplier, rate, steps)]
    return float(accountant.get_epsilon(delta))


def train_part(
    spec: ModelSpec,
    weights: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    training: LocalTraining,
    seed: int,
    dp_sgd: DpSgd | None = None,
) -> np.ndarray:
    """``[n(wᵢ - w) (P), n]``: this node's update, weighted by its rows (trained by
    DP-SGD when ``dp_sgd`` is given)."""
    trained = (local_weights(spec, weights, x, y, training, seed) if dp_sgd is None
               else dp_sgd_weights(spec, weights, x, y, training, dp_sgd))  # fmt: skip
    update = trained - np.asarray(weights)
    return np.concatenate([len(y) * update, [len(y)]])


def private_train_part(
    spec: ModelSpec,
    weights: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    training: LocalTraining,
    seed: int,
    privacy: NodePrivacy,
) -> np.ndarray:
    """``[clip(wᵢ - w) + noise (P), 1]``: this node's update clipped to norm
    ``privacy.clip`` and its share of the Gaussian noise (drawn from the operating
    system's entropy, never from a seed the coordinator chose), unweighted, so that one
    node changes the sum by at most ``clip`` (DP-FedAvg, McMahan et al. 2018)."""
    update = local_weights(spec, weights, x, y, training, seed) - np.asarray(weights)
    norm = float(np.linalg.norm(update))
    if norm > privacy.clip:
        update = update * (privacy.clip / norm)
    noise = np.random.default_rng().normal(0.0, privacy.noise_sd, update.shape)
    return np.concatenate([update + noise, [1.0]])


@dataclass(frozen=True)
class NodePrivacy:
    clip: float  # the largest norm of a node's update
    noise_sd: float  # the standard deviation of this node's share of the noise


def noise_multiplier(epsilon: float, delta: float, sample_rate: float, rounds: int) -> float:
    """The noise (in units of the clip) that makes ``rounds`` rounds (ε, δ)-private,
    by Opacus' RDP accountant; the unit of privacy is one node's update in a round."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                      sample_rate=sample_rate, steps=rounds,
                                      accountant="rdp"))  # fmt: skip


def epsilon_spent(multiplier: float, sample_rate: float, rounds: int, delta: float) -> float:
    """The ε of ``rounds`` rounds at this noise, by Opacus' RDP accountant."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    for _ in range(rounds):
        accountant.step(noise_multiplier=multiplier, sample_rate=sample_rate)
    return float(accountant.get_epsilon(delta))


def _log_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _histogram(values: np.ndarray, bins: int, top: float) -> np.ndarray:
    index = np.clip((np.asarray(values) / top * bins).astype(np.int64), 0, bins - 1)
    return np.bincount(index, minlength=bins).astype(np.float64)


def _loss_histogram(loss: np.ndarray) -> np.ndarray:
    low, high = LOSS_RANGE
    scaled = (np.log10(np.maximum(loss, 10.0**low)) - low) / (high - low)
    return _histogram(scaled, LOSS_BINS, 1.0)


def evaluation_part(
    spec: ModelSpec,
    weights: np.ndarray,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """The evaluation of ``weights`` on this node's rows, as sums (``Evaluation``)."""
    (x_train, y_train), (x_test, y_test) = train, test
    p_train, p_test = scores(spec, weights, x_train), scores(spec, weights, x_test)
    loss_train, loss_test = _log_loss(p_train, y_train), _log_loss(p_test, y_test)
    calibration_bin = np.minimum((p_test * CALIBRATION_BINS).astype(np.int64),
                                 CALIBRATION_BINS - 1)  # fmt: skip
    return np.concatenate([
        [len(y_train), loss_train.sum(), len(y_test), loss_test.sum()],
        _histogram(p_test[y_test == 0], SCORE_BINS, 1.0),
        _histogram(p_test[y_test == 1], SCORE_BINS, 1.0),
        np.bincount(calibration_bin, minlength=CALIBRATION_BINS),
        np.bincount(calibration_bin, weights=p_test, minlength=CALIBRATION_BINS),
        np.bincount(calibration_bin, weights=y_test, minlength=CALIBRATION_BINS),
        _loss_histogram(loss_train),
        _loss_histogram(loss_test),
    ])  # fmt: skip


EVALUATION_LENGTH = 4 + 2 * SCORE_BINS + 3 * CALIBRATION_BINS + 2 * LOSS_BINS


def auc_from_histograms(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(a positive scores above a negative), a tie (the same bin) counting one half."""
    negatives, positives = np.asarray(negatives), np.asarray(positives)
    pairs = negatives.sum() * positives.sum()
    if pairs == 0:
        return float("nan")
    below = np.cumsum(negatives) - negatives  # negatives in lower bins
    return float((positives * (below + negatives / 2)).sum() / pairs)


@dataclass
class Evaluation:
    """A model's pooled evaluation from the nodes' summed ``evaluation_part``s."""

    n_train: int
    n_test: int
    loss_train: float
    loss_test: float
    auc: float
    membership_auc: float  # a loss threshold telling training rows from held-out ones
    calibration: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def from_total(cls, total: np.ndarray) -> Evaluation:
        t = np.asarray(total, dtype=np.float64)
        n_train, loss_train, n_test, loss_test = t[:4]
        at = 4
        negatives, positives = t[at : at + SCORE_BINS], t[at + SCORE_BINS : at + 2 * SCORE_BINS]
        at += 2 * SCORE_BINS
        count, predicted, observed = t[at : at + 3 * CALIBRATION_BINS].reshape(3, -1)
        at += 3 * CALIBRATION_BINS
        members, others = t[at : at + LOSS_BINS], t[at + LOSS_BINS : at + 2 * LOSS_BINS]
        calibration = [
            {"bin": f"{i / CALIBRATION_BINS:.1f}-{(i + 1) / CALIBRATION_BINS:.1f}",
             "n": float(c), "predicted": float(p / c), "observed": float(o / c)}
            for i, (c, p, o) in enumerate(zip(count, predicted, observed, strict=True)) if c
        ]  # fmt: skip
        return cls(
            n_train=round(n_train),
            n_test=round(n_test),
            loss_train=float(loss_train / n_train) if n_train else float("nan"),
            loss_test=float(loss_test / n_test) if n_test else float("nan"),
            auc=auc_from_histograms(negatives, positives),
            # the attack calls a row a member when its loss is low: its AUC is the chance
            # that a held-out row's loss is above a training row's
            membership_auc=auc_from_histograms(members, others),
            calibration=calibration,
        )

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------
# the coordinator's step
# --------------------------------------------------------------------------------------


@dataclass
class ServerState:
    """The global weights and the server optimiser's moments (plain values: JSON)."""

    weights: list[float]
    m: list[float] | None = None
    v: list[float] | None = None
    rounds: int = 0


@dataclass(frozen=True)
class ServerOptimiser:
    strategy: Strategy = "fedavg"
    lr: float = 1.0  # FedAvg: 1 adds the average update as it is
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3  # adaptivity: larger is closer to FedAvg with momentum


def server_step(state: ServerState, delta: np.ndarray, optimiser: ServerOptimiser) -> ServerState:
    """The next global weights from the average update ``delta``."""
    w = np.asarray(state.weights)
    if optimiser.strategy in ("fedavg", "fedprox"):
        return ServerState((w + optimiser.lr * delta).tolist(), rounds=state.rounds + 1)
    m = np.zeros_like(w) if state.m is None else np.asarray(state.m)
    v = np.full_like(w, optimiser.tau**2) if state.v is None else np.asarray(state.v)
    m = optimiser.beta1 * m + (1 - optimiser.beta1) * delta
    square = delta * delta
    if optimiser.strategy == "fedadam":
        v = optimiser.beta2 * v + (1 - optimiser.beta2) * square
    else:  # fedyogi: v moves towards Δ² by a step no larger than (1 - β2)Δ²
        v = v - (1 - optimiser.beta2) * square * np.sign(v - square)
    w = w + optimiser.lr * m / (np.sqrt(v) + optimiser.tau)
    return ServerState(w.tolist(), m.tolist(), v.tolist(), state.rounds + 1)


def average_update(total: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Δ and Σnᵢ from the summed ``train_part``s (or, with privacy, the mean clipped
    update and the number of nodes)."""
    total = np.asarray(total, dtype=np.float64)
    n = float(total[size])
    if n <= 0:
        raise QueryError("no training rows took part in the round")
    return total[:size] / n, n


# --------------------------------------------------------------------------------------
# the released model
# --------------------------------------------------------------------------------------


class _Standardise(torch.nn.Module):
    def __init__(self, scaling: Scaling):
        super().__init__()
        self.register_buffer("mean", torch.tensor(scaling.mean, dtype=torch.float64))
        self.register_buffer("sd", torch.tensor(scaling.sd, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.sd


def released(spec: ModelSpec, weights: np.ndarray, scaling: Scaling) -> torch.nn.Module:
    """The model on unstandardised features (the pooled scaling built in): its output is
    the logit of the predicted probability."""
    return torch.nn.Sequential(_Standardise(scaling), with_weights(spec, weights)).eval()


def coefficients(weights: np.ndarray, scaling: Scaling, columns: list[str]) -> dict[str, float]:
    """A logistic model's intercept and coefficients per unit of each feature (as
    statsmodels reports them), from its weights on the standardised features."""
    w, bias = np.asarray(weights[:-1]), float(weights[-1])
    mean, sd = np.asarray(scaling.mean), np.asarray(scaling.sd)
    per_unit = w / sd
    return {"Intercept": bias - float(per_unit @ mean),
            **{c: float(b) for c, b in zip(columns, per_unit, strict=True)}}  # fmt: skip
