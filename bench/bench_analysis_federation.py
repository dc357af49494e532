"""Federated GLM benchmark through real processes: a binomial GLM fitted by the hub over
three node servers by secure sums, beside statsmodels' GLM on the pooled rows.

Usage::

    .venv/bin/python bench/bench_analysis_federation.py [--individuals 30000] [--covariates 10]
                                        [--repeats 3] [--out PATH] [--quick]

Steps:

1. A development broker (``genofed passport serve``), three nodes built with
   ``tests.federation`` (``alpha``, ``beta``, ``gamma``: 50, 30 and 20 % of
   ``--individuals``, 30 simulated sites each, so ingest is cheap), whose aggregation keys
   pin each other and which let registered researchers analyse their dataset. Each node
   registers a table ``measures`` (tier ``registered``): ``--covariates`` numeric covariates
   ``x1..xK`` and a binary outcome ``y`` drawn from a logistic model (``bench_glm.simulate``:
   ``x1`` age-like, the rest standard normal), one row per individual of the node's
   dataset (whose own ``age`` and ``sex`` are there too, unused by the formula). A second
   table ``measures_tenth`` holds the first tenth of those rows (the rest are missing, so
   dropped), for the bytes at n/10. Then ``genofed node serve`` for each node and
   ``genofed hub serve`` over them, all on 127.0.0.1.
2. ``y ~ x1 + ... + xK`` (binomial) asked of the hub (``POST /hub/analyses``, polled every
   10 ms until finished) once to warm up (the first task at a node imports and opens
   things: reported as ``cold``), then ``--repeats`` times, interleaved with statsmodels'
   ``sm.GLM(y, X, Binomial()).fit()`` on the pooled rows (the three nodes' tables
   concatenated, read back from the DuckDB files the nodes registered; X is built before the
   clock starts, in the hub's column order: Intercept, x1..xK). Medians, and the ratio federated /
   statsmodels.
3. The largest relative difference of the hub's estimates and standard errors from
   statsmodels' (both stop at a relative change of deviance of 1e-8). statsmodels' ``bse``
   comes from its last iteration's weights, the hub's from the information at its final
   estimates (one more round), so the SEs are also compared with those from the pooled
   information at statsmodels' estimates.
4. Per round, from the job's record: how many rounds (levels step + fit rounds) and each
   node's ``ms`` (which is the latency of the hub's last request to the node in that step,
   the poll that found the task finished, not the task's duration). Then the bytes each
   node sends the hub per secure round, measured on the wire: this script runs
   ``genofed.hub.analyses.secure_round`` itself against the node processes (a fit round at
   the start values and one at the final estimates, for each table) through a transport
   that counts every reply's bytes per node: the finished task document (its sealed
   shares), the masked vector, the reveal, plus the 202 of the task's creation and the
   polls while it ran. Reported at n and n/10: they do not depend on the number of people.

Building is cheap: with 30 sites, the three ``build_node`` calls take ~3 s for 6,000
people and ~35 s for 300,000; starting the three node servers takes ~11 s and the hub
~2 s whatever n. The default, the issue's 300,000 individuals, runs in ~70 s in all;
``--quick`` uses 6,000 individuals. Results go to ``--out``
(``bench/results/analysis-federation.json``, or ``analysis-federation-quick.json`` with
``--quick``).

All the processes share this machine's cores (broker, hub, three nodes, and statsmodels in
this process), so the federated wall time measures the protocol and HTTP on one machine,
not a network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.federation, tests.live_server
sys.path.insert(0, str(Path(__file__).parent))  # bench_glm, a sibling script

import duckdb  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import statsmodels.api as sm  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.federation import Federation, federation  # noqa: E402
from tests.live_server import start_node_server  # noqa: E402

from bench_glm import simulate  # noqa: E402 - a sibling script, not a package
from genofed.config import DatasetPolicy, HubConfig, load_config, save_config  # noqa: E402
from genofed.governance.keys import (  # noqa: E402
    load_or_create_aggregation_key,
    public_key_text,
)
from genofed.hub.analyses import Member, secure_round  # noqa: E402
from genofed.hub.client import NodeClient  # noqa: E402
from genofed.hub.nodes import Registry  # noqa: E402
from genofed.hub.transport import AiohttpTransport, Response  # noqa: E402
from genofed.store.node_dir import NodeDir  # noqa: E402
from genofed.store.registered_tables import register_table, registered_tables  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 120)
SHARES = {"alpha": 0.5, "beta": 0.3, "gamma": 0.2}
TABLE, TENTH = "measures", "measures_tenth"
TASKS = "/analysis/v1/tasks"


# --------------------------------------------------------------------------------------
# the federation
# --------------------------------------------------------------------------------------


def split_counts(n: int) -> dict[str, int]:
    counts = {"alpha": n // 2, "beta": 3 * n // 10}
    counts["gamma"] = n - sum(counts.values())
    return counts


def node_rows(node: NodeDir, name: str) -> pd.DataFrame:
    """A node's registered table as the node reads it (the same rows, the same doubles)."""
    path = next(t.path for t in registered_tables(node) if t.name == name)
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT * FROM data").df()
    finally:
        con.close()


def build(fed: Federation, n: int, k: int, logs: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """Three nodes pinning each other's keys, each with its tables; returns the pooled
    rows (read back from the tables the nodes registered) and the seconds each stage took."""
    x, y = simulate(n, k)
    names = [f"x{i}" for i in range(1, k + 1)]
    frames, roots = [], {}
    start, seconds = 0, {"build_nodes": 0.0, "register_tables": 0.0, "start_nodes": 0.0}
    for seed, (name, count) in enumerate(split_counts(n).items()):

        def configure(config: Any, name: str = name) -> None:
            config.datasets[f"{name}-cohort"] = DatasetPolicy(analysis="registered")

        began = time.perf_counter()
        root = fed.build_node(name, seed=seed + 3, samples=count, sites=30, configure=configure)
        seconds["build_nodes"] += time.perf_counter() - began
        roots[name] = root
        began = time.perf_counter()
        ids = pd.read_csv(fed.cohorts[name].clinical)["sample_id"].astype(str).to_numpy()
        assert len(ids) == count, (name, len(ids), count)
        rows = slice(start, start + count)
        start += count
        table = pd.DataFrame(x[rows, 1:], columns=names)
        table.insert(0, "individual_id", ids)
        table["y"] = y[rows].astype(int)
        path = fed.root / f"{name}-{TABLE}.csv"
        table.to_csv(path, index=False)
        register_table(NodeDir(root), TABLE, path, tier="registered")
        tenth = fed.root / f"{name}-{TENTH}.csv"
        table.iloc[: count // 10].to_csv(tenth, index=False)
        register_table(NodeDir(root), TENTH, tenth, tier="registered")
        frames.append(node_rows(NodeDir(root), TABLE))
        seconds["register_tables"] += time.perf_counter() - began
    keys = {
        name: public_key_text(load_or_create_aggregation_key(NodeDir(root).aggregation_key_path))
        for name, root in roots.items()
    }
    began = time.perf_counter()
    for name, root in roots.items():
        config = load_config(NodeDir(root).config_path)
        config.analysis.peers = {peer: key for peer, key in keys.items() if peer != name}
        save_config(config, NodeDir(root).config_path)
        log = (logs / f"{name}.log").open("wb")
        process, base = start_node_server(root, stdout=log, stderr=subprocess.STDOUT)
        fed.processes[name], fed.nodes[name] = process, base
    seconds["start_nodes"] = time.perf_counter() - began
    return pd.concat(frames, ignore_index=True), seconds


# --------------------------------------------------------------------------------------
# the federated fit, through the hub
# --------------------------------------------------------------------------------------


def fit_through_hub(client: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Wall seconds from the POST to the finished job, and the job."""
    began = time.perf_counter()
    started = client.post("/hub/analyses", json=body)
    if started.status_code != 202:
        raise SystemExit(f"the hub refused the analysis: {started.status_code} {started.text}")
    job = started.json()
    deadline = time.monotonic() + 600
    while job["state"] in ("queued", "running"):
        if time.monotonic() > deadline:
            raise SystemExit(f"the analysis did not finish in 10 minutes: {job}")
        time.sleep(0.01)
        job = client.get(f"/hub/analyses/{job['id']}").json()
    seconds = time.perf_counter() - began
    if job["state"] != "succeeded":
        raise SystemExit(f"the analysis {job['state']}: {json.dumps(job, indent=1)[:3000]}")
    return seconds, job


def round_costs(job: dict[str, Any]) -> dict[str, Any]:
    """The job's rounds: how many, and each node's ms (median over the fit rounds)."""
    fits = [r for r in job["rounds"] if r["step"] == "fit"]
    nodes = sorted({name for r in fits for name in r["nodes"]})
    return {
        "steps": len(job["rounds"]),
        "fit_rounds": len(fits),
        "iterations": job["result"]["summary"]["iterations"],
        "statuses": sorted({s["status"] for r in fits for s in r["nodes"].values()}),
        "node_ms_median": {
            name: statistics.median(r["nodes"][name].get("ms", float("nan")) for r in fits)
            for name in nodes
        },
        "node_ms_by_round": {
            name: [r["nodes"][name].get("ms") for r in job["rounds"]] for name in nodes
        },
    }


# --------------------------------------------------------------------------------------
# bytes per node per round, on the wire
# --------------------------------------------------------------------------------------


def phase_of(method: str, path: str) -> str:
    if path.endswith("/mask"):
        return "mask"
    if path.endswith("/reveal"):
        return "reveal"
    return "create" if method == "POST" else "poll"


class CountingTransport(AiohttpTransport):
    """The hub's HTTP transport, counting each node's reply bytes (and the hub's request
    bytes) by step of the secure round."""

    def __init__(self, config: HubConfig, directory: Path):
        super().__init__(config, directory)
        self.reset()

    def reset(self) -> None:
        self.received: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.sent: dict[str, int] = defaultdict(int)
        self.polls: dict[str, int] = defaultdict(int)
        self.last_document: dict[str, int] = {}  # the task document the hub acted on
        self.began: dict[str, float] = {}  # when the task was created
        self.ms: dict[str, dict[str, float]] = defaultdict(dict)  # node -> step -> ms

    async def request(self, node: Any, method: str, path: str, **kwargs: Any) -> Response:
        began = time.perf_counter()
        response = await super().request(node, method, path, **kwargs)
        phase = phase_of(method, path)
        if phase == "create":
            self.began[node.name] = began
        if phase in ("create", "poll"):  # until the hub saw the task finished
            self.ms[node.name]["task"] = (time.perf_counter() - self.began[node.name]) * 1000
        else:
            self.ms[node.name][phase] = (time.perf_counter() - began) * 1000
        self.received[node.name][phase] += len(response.content)
        self.sent[node.name] += len(kwargs.get("body") or b"")
        if phase in ("create", "poll"):
            self.last_document[node.name] = len(response.content)
            self.polls[node.name] += phase == "poll"
        return response


def measure_bytes(
    fed: Federation, rounds: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Run each (table, params) as one secure round of this script's own against the node
    processes; per round, each node's reply bytes."""
    config = HubConfig(nodes=[fed.hub_node(n) for n in SHARES])
    members = [Member(fed.hub_node(n), n, None) for n in SHARES]

    async def credentials(node: Any, end: float) -> dict[str, str]:
        return {"authorization": f"Bearer {fed.passport(audience=node.passport_audience)}"}

    async def run() -> list[dict[str, Any]]:
        transport = CountingTransport(config, fed.root)
        client = NodeClient(Registry(config), transport, credentials, 60.0)
        out = []
        try:
            for table, params in rounds:
                transport.reset()
                body = {"analysis": "glm", "table": table, "params": params}
                task = f"bench-bytes-{secrets.token_hex(8)}"
                began = time.perf_counter()
                result = await secure_round(client, members, body, task, 0, 60.0)
                ms = (time.perf_counter() - began) * 1000
                if result.total is None or result.contributors != list(SHARES):
                    raise SystemExit(f"the secure round did not complete: {result.statuses}")
                per_node = {}
                for name in SHARES:
                    phases = dict(transport.received[name])
                    essential = transport.last_document[name] + phases["mask"] + phases["reveal"]
                    per_node[name] = {
                        "essential": essential,  # finished task document + masked + reveal
                        "all_replies": sum(phases.values()),
                        "by_step": phases,
                        "polls": transport.polls[name],
                        "ms": dict(transport.ms[name]),
                        "hub_sent": transport.sent[name],
                        "n": result.results[name]["n"]["value"],
                    }
                out.append(
                    {
                        "table": table,
                        "at": "start" if "beta" not in params else "estimates",
                        "round_ms": ms,
                        "vector_length": result.results["alpha"]["secure"]["length"],
                        "nodes": per_node,
                    }
                )
        finally:
            await transport.close()
        return out

    return asyncio.run(run())


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
    }
    with contextlib.suppress(AttributeError, OSError):
        info["cores_available"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    return info


def information_se(x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Binomial standard errors from the pooled information matrix at ``beta``."""
    mu = 1 / (1 + np.exp(-(x @ beta)))
    information = (x * (mu * (1 - mu))[:, None]).T @ x
    return np.sqrt(np.diag(np.linalg.inv(information)))


def worst(values: list[float], against: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(values) - against) / np.abs(against)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--individuals", type=int, default=300_000)
    parser.add_argument("--covariates", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="6,000 individuals")
    args = parser.parse_args()
    n, k = (6_000 if args.quick else args.individuals), args.covariates
    out = args.out or ROOT / "bench" / "results" / (
        "analysis-federation-quick.json" if args.quick else "analysis-federation.json"
    )
    names = [f"x{i}" for i in range(1, k + 1)]
    formula = "y ~ " + " + ".join(names)
    body = {"kind": "glm", "formula": formula, "family": "binomial", "table": TABLE}
    with (
        tempfile.TemporaryDirectory(prefix="bench-analysis-") as work,
        federation(Path(work)) as fed,
    ):
        logs = Path(work) / "logs"
        logs.mkdir()
        console.print(f"building 3 nodes of {split_counts(n)} people, {k} covariates ...")
        began = time.perf_counter()
        pooled, setup = build(fed, n, k, logs)
        began_hub = time.perf_counter()
        hub = fed.start_hub()
        setup["start_hub"] = time.perf_counter() - began_hub
        setup["total"] = time.perf_counter() - began
        console.print("built in " + ", ".join(f"{stage} {s:.1f} s" for stage, s in setup.items()))
        assert len(pooled) == n
        x = np.column_stack([np.ones(n), pooled[names].to_numpy(dtype=np.float64)])
        y = pooled["y"].to_numpy(dtype=np.float64)
        headers = {"authorization": f"Bearer {fed.access_token()}"}
        times: dict[str, list[float]] = {"statsmodels": [], "federated": []}
        with httpx.Client(base_url=hub, headers=headers, timeout=60) as client:
            began = time.perf_counter()
            sm.GLM(y, x, family=sm.families.Binomial()).fit()  # its first call warms up too
            cold = {"statsmodels": time.perf_counter() - began}
            cold["federated"], job = fit_through_hub(client, body)
            for _ in range(args.repeats):  # interleaved: a busy moment hits both alike
                began = time.perf_counter()
                reference = sm.GLM(y, x, family=sm.families.Binomial()).fit()
                times["statsmodels"].append(time.perf_counter() - began)
                seconds, job = fit_through_hub(client, body)
                times["federated"].append(seconds)
        summary = job["result"]["summary"]
        coefficients = summary["coefficients"]
        columns = [c["name"] for c in coefficients]
        assert columns == ["Intercept", *names], columns
        assert summary["n"] == n, summary["n"]
        accuracy = {
            "beta": worst([c["estimate"] for c in coefficients], reference.params),
            "se": worst([c["std_error"] for c in coefficients], reference.bse),
            "deviance": abs(summary["residual_deviance"] - reference.deviance) / reference.deviance,
            # statsmodels' bse comes from its last iteration's weights, not from the
            # information at its final estimates (the hub's): this is the SE that the hub's is
            "se_vs_information_at_estimates": worst(
                [c["std_error"] for c in coefficients], information_se(x, reference.params)
            ),
        }
        costs = round_costs(job)
        beta = [c["estimate"] for c in coefficients]
        fit = {"formula": formula, "family": "binomial", "step": "fit", "levels": {}}
        console.print("measuring bytes per round with the hub's secure_round ...")
        wire = measure_bytes(
            fed,
            [
                (TABLE, fit),
                (TABLE, {**fit, "beta": beta}),
                (TENTH, fit),
                (TENTH, {**fit, "beta": beta}),
            ],
        )
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["federated"] / medians["statsmodels"]

    def essential(table: str) -> dict[str, float]:
        return {
            name: statistics.median(
                r["nodes"][name]["essential"] for r in wire if r["table"] == table
            )
            for name in SHARES
        }

    bytes_per_round = {"n": essential(TABLE), "n_over_10": essential(TENTH)}

    table = Table(title=f"Binomial GLM, {k} covariates, {n:,} people on 3 node processes")
    for column in ("", "median s", "× statsmodels", "runs (s)"):
        table.add_column(column, justify="right")
    for name, seconds in medians.items():
        table.add_row(
            name,
            f"{seconds:.3f}",
            f"{seconds / medians['statsmodels']:.2f}",
            " ".join(f"{s:.3f}" for s in times[name]),
        )
    for name, seconds in cold.items():
        table.add_row(f"{name}, cold (first run)", f"{seconds:.3f}", "", "")
    console.print(table)
    console.print(
        f"rounds: {costs['steps']} steps (levels + {costs['fit_rounds']} fit rounds, "
        f"{costs['iterations']} iterations); ~{1000 * medians['federated'] / costs['steps']:.0f} "
        "ms of wall time per step"
    )
    console.print(
        f"largest relative difference from statsmodels: estimates {accuracy['beta']:.1e}, "
        f"standard errors {accuracy['se']:.1e}, deviance {accuracy['deviance']:.1e} "
        f"({'within' if max(accuracy.values()) <= 1e-6 else 'NOT within'} 1e-6); standard "
        "errors from the pooled information at statsmodels' estimates "
        f"{accuracy['se_vs_information_at_estimates']:.1e}"
    )
    nodes = Table(title="Per node, per secure round")
    for column in (
        "node",
        "people",
        "job ms",
        "task ms",
        "mask ms",
        "reveal ms",
        "bytes sent, n",
        f"bytes sent, n/10 ({n // 10:,})",
        "all replies, n",
        "polls, n",
    ):
        nodes.add_column(column, justify="right")
    full = [r for r in wire if r["table"] == TABLE]
    for name, count in split_counts(n).items():
        nodes.add_row(
            name,
            f"{count:,}",
            f"{costs['node_ms_median'][name]:.1f}",
            " / ".join(f"{r['nodes'][name]['ms']['task']:.0f}" for r in full),
            " / ".join(f"{r['nodes'][name]['ms']['mask']:.0f}" for r in full),
            " / ".join(f"{r['nodes'][name]['ms']['reveal']:.0f}" for r in full),
            f"{bytes_per_round['n'][name]:,.0f}",
            f"{bytes_per_round['n_over_10'][name]:,.0f}",
            " / ".join(f"{r['nodes'][name]['all_replies']:,}" for r in full),
            " / ".join(str(r["nodes"][name]["polls"]) for r in full),
        )
    console.print(nodes)
    console.print(
        "bytes sent = the finished task document (sealed shares) + the masked vector + the "
        f"reveal, of a {wire[0]['vector_length']}-value round; 'all replies' adds the task's "
        "202 and the polls, at the start values / at the estimates. job ms is the latency of "
        "the hub's last poll of the node in each fit round, as the job records it (median); "
        "task ms: from creating the task to the answer that found it finished (the hub "
        "long-polls: the node answers when the task is done); mask/reveal ms: one request "
        "each (this script's secure_round, start / estimates)."
    )
    console.print(
        "secure_round wall ms (start, estimates; n then n/10): "
        + ", ".join(f"{r['round_ms']:.0f}" for r in wire)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine_info(),
                "individuals": n,
                "per_node": split_counts(n),
                "covariates": k,
                "formula": formula,
                "repeats": args.repeats,
                "setup_seconds": setup,
                "rounds": costs,
                "seconds": times,
                "cold_seconds": cold,
                "median_seconds": medians,
                "ratio_to_statsmodels": {
                    name: value / medians["statsmodels"] for name, value in medians.items()
                },
                "federated_over_statsmodels": ratio,
                "relative_difference": accuracy,
                "bytes_per_node_per_round": bytes_per_round,
                "secure_rounds_measured": wire,
            },
            indent=2,
        )
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
