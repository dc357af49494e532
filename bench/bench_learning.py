"""Federated learning benchmark (issue #15).

Three node processes of ``--people`` individuals each (a simulated cohort split in three)
and a hub; a logistic model and an MLP trained through the hub, side by side with the
same models trained centrally on the pooled rows in this script:

* seconds per round (from the job's progress, polled) and in all, against the central
  training of as many epochs;
* the bytes each node sends per round, from a training round run by this script's own
  copy of the hub's code with a counting transport (they do not depend on the number of
  people: the payload is the model's weights and fixed-size histograms);
* the federated model against the central one: the held-out AUC from the summed
  histograms, and for the logistic model the largest coefficient difference from
  statsmodels' fit of the pooled training rows.

* Flower's simulation engine (FedAvg, Ray) training the same model on the same rows, in a
  virtual environment of its own (``flwr`` pins older FastAPI, Typer, Rich and Uvicorn
  than genofed's): bench/.cache/flwr-venv, made on the first run.

    python bench/bench_learning.py --out bench/results/learning.json  [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.federation, tests.live_server
sys.path.insert(0, str(Path(__file__).parent))  # bench_gwas, a sibling script

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import statsmodels.api as sm  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from scipy import special, stats  # noqa: E402
from tests.federation import federation  # noqa: E402
from tests.test_gwas import _dosages  # noqa: E402

from bench_gwas import (  # noqa: E402
    SHARES,
    CountingTransport,
    build_group,
    machine_info,
    split_vcf,
)
from genofed.analysis import learning  # noqa: E402
from genofed.config import HubConfig  # noqa: E402
from genofed.hub.analyses import Member, decoded, secure_round  # noqa: E402
from genofed.hub.client import NodeClient  # noqa: E402
from genofed.hub.nodes import Registry  # noqa: E402
from genofed.simulate import simulate_cohort  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 130)
LOGISTIC = {"learner": "logistic", "lr": 2.0}
MLP = {"learner": "mlp", "hidden": 16, "local_optimizer": "adam", "lr": 0.005, "batch_size": 64}


def cohort(people: int, work: Path) -> tuple[pd.DataFrame, dict[str, Path], dict, dict, list]:
    """The pooled rows (age, sex, bmi, five variants, case) and each node's VCF, clinical
    and traits tables."""
    began = time.perf_counter()
    sim = simulate_cohort(work / "sim", n_samples=3 * people, n_sites=200, seed=15, prefix="F")
    console.print(f"simulated {3 * people:,} people in {time.perf_counter() - began:.0f} s")
    sites, g, samples = _dosages(sim.vcf)
    clinical = pd.read_csv(sim.clinical)
    rng = np.random.default_rng(6)
    frequency = g.mean(axis=0) / 2
    chosen: list[int] = []  # five common variants, no two in strong LD
    for i in np.flatnonzero((frequency > 0.1) & (frequency < 0.9)):
        if all(np.corrcoef(g[:, i], g[:, j])[0, 1] ** 2 < 0.5 for j in chosen):
            chosen.append(int(i))
        if len(chosen) == 5:
            break
    variants = [
        f"{c.removeprefix('chr')}-{p}-{r}-{a}" for c, p, _, r, a in (sites[i] for i in chosen)
    ]
    male = (clinical["sex"] == "male").to_numpy(dtype=float)
    age, bmi = clinical["age"].to_numpy(dtype=float), rng.normal(27, 4, len(g))
    effects = np.array([0.5, -0.4, 0.3, 0.3, -0.2])
    eta = (-1 + 0.03 * (age - 50) + 0.4 * male + 0.08 * (bmi - 27)
           + (g[:, chosen] - 2 * frequency[chosen]) @ effects)  # fmt: skip
    case = (rng.random(len(g)) < special.expit(eta)).astype(int)
    pooled = pd.DataFrame({"age": age, "male": male, "bmi": bmi, "case": case}, index=samples)
    for v, i in zip(variants, chosen, strict=True):
        pooled[v] = g[:, i]
    traits = pd.DataFrame({"individual_id": samples, "case": case, "bmi": bmi})
    parts = {name: slice(i * people, (i + 1) * people) for i, name in enumerate(SHARES)}
    vcfs = split_vcf({n: (sim.vcf, samples[s]) for n, s in parts.items()}, work)
    return (pooled, vcfs, {n: clinical.iloc[s] for n, s in parts.items()},
            {n: traits.iloc[s] for n, s in parts.items()}, variants)  # fmt: skip


def train_through_hub(hub: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    """The job, and when each round was done (from its progress, polled)."""
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=hub, headers=headers, timeout=120) as client:
        began = time.perf_counter()
        job = client.post("/hub/analyses", json=body).json()
        done_at: dict[int, float] = {}
        while job["state"] in ("queued", "running"):
            done = (job.get("progress") or {}).get("done")
            if done and done not in done_at:
                done_at[done] = time.perf_counter() - began
            time.sleep(0.02)
            job = client.get(f"/hub/analyses/{job['id']}").json()
        seconds = time.perf_counter() - began
    if job["state"] != "succeeded":
        raise SystemExit(f"training {job['state']}: {job['error']}")
    marks = sorted(done_at.items())
    per_round = [(b - a) / (j - i) for (i, a), (j, b) in zip(marks, marks[1:], strict=False)]
    return {"job": job, "seconds": seconds, "round_seconds": float(np.median(per_round)),
            "before_first_round": marks[0][1] if marks else None}  # fmt: skip


def central(pooled: pd.DataFrame, columns: list[str], card: dict, model: dict, epochs: int) -> dict:
    """The same model trained on the pooled training rows in this process."""
    pooled = pooled.dropna()
    test = learning.held_out(pooled.index.astype(str))
    scaling = learning.Scaling(card["scaling"]["mean"], card["scaling"]["sd"])
    x, y = scaling.apply(pooled[columns].to_numpy()), pooled["case"].to_numpy(dtype=float)
    spec = learning.ModelSpec(model["learner"], len(columns), model.get("hidden", 16))
    training = learning.LocalTraining(epochs, model["lr"], model.get("batch_size", 0),
                                      model.get("local_optimizer", "sgd"))  # fmt: skip
    began = time.perf_counter()
    weights = learning.local_weights(spec, learning.initial_weights(spec, 1), x[~test], y[~test],
                                     training, 0)  # fmt: skip
    seconds = time.perf_counter() - began
    p = learning.scores(spec, weights, x[test])
    u = stats.mannwhitneyu(p[y[test] == 1], p[y[test] == 0]).statistic
    out = {"seconds": seconds, "auc": float(u / ((y[test] == 1).sum() * (y[test] == 0).sum()))}
    if model["learner"] == "logistic":
        began = time.perf_counter()
        fit = sm.Logit(y[~test], sm.add_constant(pooled[columns].to_numpy()[~test])).fit(disp=0)
        out["statsmodels_seconds"] = time.perf_counter() - began
        out["statsmodels"] = fit.params.tolist()
    return out


FLOWER_VENV = ROOT / "bench/.cache/flwr-venv"
FLOWER = ("flwr[simulation]==1.42.0", "torch==2.13.0", "numpy==2.4.6")


def flower(pooled: pd.DataFrame, columns: list[str], people: int, card: dict, model: dict,
           rounds: int, ours: list[float]) -> dict[str, Any]:  # fmt: skip
    """The same training by Flower's simulation engine (FedAvg over the three nodes'
    training rows, in its own virtual environment, bench/.cache/flwr-venv)."""
    python = FLOWER_VENV / "bin/python"
    if not python.exists():
        console.print("installing Flower into bench/.cache/flwr-venv (once) …")
        made = subprocess.run([sys.executable, "-m", "venv", str(FLOWER_VENV)])
        installed = (
            made.returncode == 0
            and subprocess.run(
                [str(FLOWER_VENV / "bin/pip"), "install", "--quiet", *FLOWER]
            ).returncode
            == 0
        )
        if not installed:
            shutil.rmtree(FLOWER_VENV, ignore_errors=True)
            return {"skipped": "flwr[simulation] did not install"}
    scaling = learning.Scaling(card["scaling"]["mean"], card["scaling"]["sd"])
    arrays: dict[str, Any] = {}
    for i in range(3):
        rows = pooled.iloc[i * people : (i + 1) * people].dropna()
        train = ~learning.held_out(rows.index.astype(str))
        arrays[f"x{i}"] = scaling.apply(rows[columns].to_numpy())[train]
        arrays[f"y{i}"] = rows["case"].to_numpy(dtype=float)[train]
    settings = {"kind": model["learner"], "inputs": len(columns),
                "hidden": model.get("hidden", 16), "lr": model["lr"],
                "batch_size": model.get("batch_size", 0), "epochs": 1, "rounds": rounds,
                "optimizer": model.get("local_optimizer", "sgd")}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="genofed-flower-") as tmp:
        given, out = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(given, settings=json.dumps(settings), **arrays)
        began = time.perf_counter()
        script = Path(__file__).parent / "flower_baseline.py"
        done = subprocess.run([str(python), str(script), str(given), str(out)],
                              capture_output=True, text=True, cwd=tmp)  # fmt: skip
        wall = time.perf_counter() - began
        if done.returncode != 0 or not out.exists():
            return {"skipped": f"the Flower simulation failed: {done.stderr[-2000:]}"}
        result = json.loads(out.read_text())
    pooled = pooled.dropna()
    test = learning.held_out(pooled.index.astype(str))
    spec = learning.ModelSpec(model["learner"], len(columns), model.get("hidden", 16))
    x = scaling.apply(pooled[columns].to_numpy())[test]
    y = pooled["case"].to_numpy(dtype=float)[test]
    p = learning.scores(spec, np.asarray(result["weights"]), x)
    u = stats.mannwhitneyu(p[y == 1], p[y == 0]).statistic
    out_: dict[str, Any] = {"seconds": result["seconds"], "wall_seconds": wall,
                            "auc": float(u / ((y == 1).sum() * (y == 0).sum()))}  # fmt: skip
    if model["learner"] == "logistic":  # full-batch steps: the same weights as ours
        out_["max_weight_difference_from_ours"] = float(
            np.max(np.abs(np.asarray(result["weights"]) - np.asarray(ours)))
        )
    return out_


def round_bytes(fed: Any, names: list[str], body: dict[str, Any]) -> dict[str, Any]:
    """One training round through this script's hub code: each node's reply bytes."""
    config = HubConfig(nodes=[fed.hub_node(n) for n in names])
    members = [Member(fed.hub_node(n), n, None) for n in names]

    async def credentials(node: Any, end: float) -> dict[str, str]:
        return {"authorization": f"Bearer {fed.passport(audience=node.passport_audience)}"}

    async def run() -> dict[str, Any]:
        transport = CountingTransport(config, fed.root)
        client = NodeClient(Registry(config), transport, credentials, 600.0)
        try:
            began = time.perf_counter()
            result = await secure_round(client, members, body, f"bench-{secrets.token_hex(8)}",
                                        1, 600.0)  # fmt: skip
            ms = (time.perf_counter() - began) * 1000
            if result.total is None:
                raise SystemExit(f"the round did not complete: {result.statuses}")
            return {"round_ms": ms, "length": int(decoded(result).size),
                    "bytes": {n: sum(transport.received[n].values()) for n in names},
                    "hub_sent": dict(transport.sent)}  # fmt: skip
        finally:
            await transport.close()

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=50_000, help="per node")
    parser.add_argument("--logistic-rounds", type=int, default=100)
    parser.add_argument("--mlp-rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="2,000 per node, 5 and 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.people, args.logistic_rounds, args.mlp_rounds = 2000, 5, 2
    args.out = args.out or ROOT / f"bench/results/learning{'-quick' if args.quick else ''}.json"
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(), "machine": machine_info(),
                              "people_per_node": args.people}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="genofed-bench-learning-") as tmp:
        work = Path(tmp)
        pooled, vcfs, clinical, traits, variants = cohort(args.people, work)
        (work / "logs").mkdir()
        with federation(work / "fed") as fed:
            group = build_group(
                fed, f"3 x {args.people:,}", "", vcfs, clinical, traits, work / "logs"
            )
            token = fed.access_token()
            base = {"kind": "learn", "target": "case", "features": ["age", "sex", "bmi"],
                    "variants": variants, "table": "traits", "round_deadline_s": 1800,
                    "node_deadline_s": 1800}  # fmt: skip
            columns = ["age", "male", "bmi", *variants]
            for label, model, rounds in (("logistic", LOGISTIC, args.logistic_rounds),
                                         ("mlp", MLP, args.mlp_rounds)):  # fmt: skip
                console.print(f"training the {label} model: {rounds} rounds …")
                run = train_through_hub(group.hub, token, {**base, **model, "rounds": rounds})
                result = run["job"]["result"]
                card = result["modelCard"]
                reference = central(pooled, columns, card, model, rounds)
                params = {k: v for k, v in run["job"]["request"].items()
                          if k in ("target", "features", "variants")}  # fmt: skip
                levels = {"sex": sorted(clinical["alpha"]["sex"].dropna().unique().tolist())}
                spec = learning.ModelSpec(model["learner"], len(columns), model.get("hidden", 16))
                body = {"analysis": "learn", "table": "traits", "params": {
                    **params, "step": "round", "levels": levels, "model": model["learner"],
                    "hidden": model.get("hidden", 16), "mean": card["scaling"]["mean"],
                    "sd": card["scaling"]["sd"], "weights": result["weights"],
                    "lr": model["lr"], "batch_size": model.get("batch_size", 0),
                    "optimizer": model.get("local_optimizer", "sgd")}}  # fmt: skip
                measured = round_bytes(fed, group.names, body)
                console.print(f"the {label} model by Flower's simulation engine …")
                flwr = flower(pooled, columns, args.people, card, model, rounds, result["weights"])
                entry = {
                    "rounds": rounds,
                    "parameters": spec.size(),
                    "seconds": run["seconds"],
                    "round_seconds": run["round_seconds"],
                    "before_first_round_seconds": run["before_first_round"],
                    "central_seconds": reference["seconds"],
                    "central_epochs": rounds,
                    "auc_federated": result["evaluation"]["auc"],
                    "auc_central": reference["auc"],
                    "membership_auc": result["evaluation"]["membership_auc"],
                    "bytes_per_node_per_round": measured["bytes"],
                    "payload_values": measured["length"],
                    "hub_sent_per_node": measured["hub_sent"],
                    "flower": flwr,
                }
                if "statsmodels" in reference:
                    ours = list(result["coefficients"].values())
                    entry["max_coefficient_difference"] = float(
                        np.max(np.abs(np.asarray(ours) - np.asarray(reference["statsmodels"])))
                    )
                    entry["statsmodels_seconds"] = reference["statsmodels_seconds"]
                report[label] = entry
    table = Table(title=f"Federated learning, 3 nodes x {args.people:,} people (2 cores)")
    for column in ("model", "rounds", "s / round", "federated s", "central s (same epochs)",
                   "Flower s", "AUC fed / central / Flower", "bytes / node / round"):  # fmt: skip
        table.add_column(column, justify="right")
    for label in ("logistic", "mlp"):
        e = report[label]
        flwr = e["flower"]
        table.add_row(label, str(e["rounds"]), f"{e['round_seconds']:.2f}", f"{e['seconds']:.1f}",
                      f"{e['central_seconds']:.2f}",
                      "skipped" if "skipped" in flwr else f"{flwr['seconds']:.1f}",
                      f"{e['auc_federated']:.4f} / {e['auc_central']:.4f} / "
                      + ("–" if "skipped" in flwr else f"{flwr['auc']:.4f}"),
                      f"{max(e['bytes_per_node_per_round'].values()):,}")  # fmt: skip
    console.print(table)
    if "max_coefficient_difference" in report["logistic"]:
        console.print(f"logistic: largest coefficient difference from statsmodels "
                      f"{report['logistic']['max_coefficient_difference']:.2e} after "
                      f"{report['logistic']['rounds']} rounds")  # fmt: skip
    difference = report["logistic"]["flower"].get("max_weight_difference_from_ours")
    if difference is not None:
        console.print(
            f"logistic: Flower's FedAvg weights and ours differ by at most {difference:.2e}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
