"""GLM benchmark: the federated binomial GLM's maths and secure sums, beside statsmodels on
the pooled rows, in one process.

Usage::

    .venv/bin/python bench/bench_glm.py [--individuals 300000] [--covariates 10]
                                        [--out bench/results/glm.json] [--quick]

Steps:

1. Simulate ``--individuals`` people with ``--covariates`` covariates and a binary outcome,
   split 50/30/20 % over three nodes.
2. statsmodels' GLM (binomial, IRLS) on the pooled rows, and the federated fit
   (``genofed.analysis.glm``: every node's part each round, summed) with plain sums and
   with secure sums (``genofed.analysis.secure_sum``, 32 fractional bits in three limbs), three
   interleaved repeats each; medians, and the ratios to statsmodels.
3. The largest relative difference of the estimates and standard errors from
   statsmodels', and the bytes one node sends per round (masked vector plus sealed shares)
   at the full size and at a tenth of it: they do not depend on the number of people.

This is the maths and the protocol in one process; the HTTP rounds between real node and
hub processes come with the analysis API. ``--quick`` uses 30,000 individuals.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import statsmodels.api as sm
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from rich.console import Console
from rich.table import Table

from genofed.analysis import secure_sum
from genofed.analysis.glm import GlmPart, advance, glm_part, start, summarise

FRAC_BITS = 32  # in three 32-bit limbs (encode_wide): no overflow at biobank scale
console = Console()


def simulate(n: int, k: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(n), rng.normal(0, 1, (n, k))])
    x[:, 1] = rng.uniform(20, 80, n)  # an age-like covariate: large values in the sums
    beta = np.concatenate([[-3.0, 0.03], rng.normal(0, 0.3, k - 1)])
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ beta)))).astype(float)
    return x, y


def split(x: np.ndarray, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    n = len(y)
    cuts = [0, n // 2, n // 2 + 3 * n // 10, n]
    return [(x[a:b], y[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]


class SecureAdder:
    """Three nodes' secure sum of one round's parts; counts what one node sends."""

    def __init__(self) -> None:
        keys = {f"node-{i}": X25519PrivateKey.generate() for i in range(3)}
        self.nodes = {
            name: secure_sum.SecureSumNode(
                name, key, {p: k.public_key() for p, k in keys.items() if p != name}
            )
            for name, key in keys.items()
        }
        self.names = sorted(self.nodes)
        self.round = 0
        self.bytes_sent: list[int] = []

    def __call__(self, parts: list[GlmPart]) -> GlmPart:
        context = secure_sum.Context.of("bench", self.round, self.names)
        self.round += 1
        sealed = {name: self.nodes[name].share(context) for name in self.names}
        masked = {
            name: self.nodes[name].mask(
                context,
                secure_sum.encode_wide(part.vector(), FRAC_BITS, 3),
                {s: out[name] for s, out in sealed.items() if s != name},
            )
            for name, part in zip(self.names, parts, strict=True)
        }
        reveals = {name: self.nodes[name].reveal(context, self.names) for name in self.names}
        first = self.names[0]
        self.bytes_sent.append(
            sum(len(v) for v in sealed[first].values())
            + masked[first].nbytes
            + len(json.dumps(reveals[first]))
        )
        total = secure_sum.unmask(context, self.names, masked, reveals)
        return GlmPart.from_vector(secure_sum.decode_wide(total, FRAC_BITS), len(parts[0].working))


def federated(nodes, add) -> tuple[object, int]:
    columns = [f"x{i}" for i in range(nodes[0][0].shape[1])]
    fit = start("binomial", columns)
    while not fit.done:
        beta = None if fit.beta is None else np.asarray(fit.beta)
        parts = [glm_part(x, y, "binomial", beta, null_eta=fit.null_eta) for x, y in nodes]
        total = add(parts)
        fit = advance(fit, total)
    return summarise(fit, total), fit.rounds


def plain(parts: list[GlmPart]) -> GlmPart:
    return sum(parts[1:], parts[0])


def timed(fn) -> tuple[float, object]:
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--individuals", type=int, default=300_000)
    parser.add_argument("--covariates", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 30_000 if args.quick else args.individuals
    x, y = simulate(n, args.covariates)
    nodes = split(x, y)
    times: dict[str, list[float]] = {"statsmodels": [], "federated": [], "federated_secure": []}
    for _ in range(args.repeats):  # interleaved, so a busy moment hits all three alike
        seconds, reference = timed(
            lambda: sm.GLM(y, x, family=sm.families.Binomial()).fit(tol=1e-8)
        )
        times["statsmodels"].append(seconds)
        seconds, (summary, rounds) = timed(lambda: federated(nodes, plain))
        times["federated"].append(seconds)
        adder = SecureAdder()
        seconds, (secure, _) = timed(lambda adder=adder: federated(nodes, adder))
        times["federated_secure"].append(seconds)
    medians = {k: statistics.median(v) for k, v in times.items()}

    def worst(values, against) -> float:
        return float(np.max(np.abs(np.asarray(values) - against) / np.abs(against)))

    accuracy = {
        "plain_beta": worst([c.estimate for c in summary.coefficients], reference.params),
        "plain_se": worst([c.std_error for c in summary.coefficients], reference.bse),
        "secure_beta": worst([c.estimate for c in secure.coefficients], reference.params),
        "secure_se": worst([c.std_error for c in secure.coefficients], reference.bse),
    }
    small = SecureAdder()
    federated(split(*simulate(n // 10, args.covariates)), small)
    bytes_per_round = {
        "n": statistics.median(adder.bytes_sent),
        "n_over_10": statistics.median(small.bytes_sent),
    }
    table = Table(title=f"Binomial GLM, {args.covariates} covariates, {n:,} people on 3 nodes")
    for column in ("", "median s", "× statsmodels"):
        table.add_column(column, justify="right")
    for name, seconds in medians.items():
        table.add_row(name, f"{seconds:.3f}", f"{seconds / medians['statsmodels']:.2f}")
    console.print(table)
    console.print(
        f"rounds {rounds}; largest relative difference from statsmodels: "
        + ", ".join(f"{k} {v:.1e}" for k, v in accuracy.items())
    )
    console.print(
        f"bytes one node sends per round: {bytes_per_round['n']:,.0f} at {n:,} people, "
        f"{bytes_per_round['n_over_10']:,.0f} at {n // 10:,}"
    )
    goal = medians["federated_secure"] <= 3 * medians["statsmodels"]
    console.print(f"goal ≤ 3× statsmodels (secure, in process): {'met' if goal else 'NOT met'}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "when": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": {"python": sys.version.split()[0], "cpu": platform.processor()},
                    "individuals": n,
                    "covariates": args.covariates,
                    "rounds": rounds,
                    "seconds": times,
                    "median_seconds": medians,
                    "ratio_to_statsmodels": {
                        k: v / medians["statsmodels"] for k, v in medians.items()
                    },
                    "relative_difference": accuracy,
                    "bytes_per_node_per_round": bytes_per_round,
                    "frac_bits": FRAC_BITS,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
