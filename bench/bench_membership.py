"""Membership-inference check: the Shringarpure–Bustamante likelihood-ratio attack on a
node's public Beacon, with defences off, with the node's defaults on, and with the
defaults but the public guard as it was before (``bench/legacy_guard.py``), side by side.

Usage::

    .venv/bin/python bench/bench_membership.py [--out bench/results/membership.json] [--quick]

1. Simulate genomes with msprime (out-of-Africa-free single population, Ne 10,000,
   mutation and recombination 1.25e-8 / 1e-8 per bp, ``--length`` bp): ``--beacon``
   individuals go into the node, as many others are held out, and a reference panel of
   the same size gives the attacker allele frequencies.
2. Build three real nodes from the same VCF, all serving the dataset as ``public``: one
   with defences off (no allele floor, no budget), one with ``node.yaml`` defaults
   (allele floor AC >= 5, the public allele guard, 1,000 queries per caller per day,
   small counts suppressed), and one with the defaults but the old guard (which left
   pivotal carriers out of every answer for good).
3. For each target (``--targets`` beacon members and as many held-out individuals) the
   attacker asks the node, as an anonymous caller with its own address, whether each
   allele the target carries exists, rarest (by the reference panel) first, up to
   10,000 queries. Each query is charged to the caller's budget and answered by the node's
   own Beacon service (the code behind ``/beacon/v2/g_variants``, minus HTTP); a refused
   query (budget spent) tells the attacker nothing. Answers for a variant are reused
   across targets when the node's answer cannot differ (the floor is per variant).
4. The LRT statistic of Shringarpure & Bustamante (2015) after n queries, with
   D_N = (1 - f)^(2N) and genotyping error 1e-6; members are called when the statistic
   is below the 5th percentile of the held-out targets'. Reported: power at 5 % FPR for
   n = 10 … 10,000 (goal with defaults: <= 0.1 at 10,000; without defences it should be
   high), JSON plus a table; and, after the attack, the share of common alleles (AC >= 100)
   a new anonymous caller is still told exist (below 1: true answers turned false).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import msprime
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.legacy_guard import LegacyIndividualGuard  # noqa: E402

from genofed import BudgetExhaustedError  # noqa: E402
from genofed.beacon.model import BY_PATH  # noqa: E402
from genofed.beacon.request import from_query_string  # noqa: E402
from genofed.config import Disclosure, default_config  # noqa: E402
from genofed.governance.access import Caller  # noqa: E402
from genofed.node.runtime import NodeRuntime  # noqa: E402
from genofed.store.node_dir import NodeDir  # noqa: E402
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf  # noqa: E402

console = Console()
CHECKPOINTS = (10, 30, 100, 300, 1000, 3000, 10000)
ERROR = 1e-6


def simulate(n_total: int, length: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Haplotype-summed genotypes (sites, individuals) in 0..2 and 1-based positions."""
    ts = msprime.sim_ancestry(
        samples=n_total,
        population_size=10_000,
        sequence_length=length,
        recombination_rate=1e-8,
        random_seed=seed,
    )
    ts = msprime.sim_mutations(
        ts, rate=1.25e-8, random_seed=seed, model=msprime.BinaryMutationModel()
    )
    positions, rows = [], []
    last = -1
    for variant in ts.variants():
        pos = int(variant.site.position) + 1
        if pos <= last or len(variant.alleles) != 2:
            continue
        last = pos
        positions.append(pos)
        rows.append(variant.genotypes.reshape(-1, 2).sum(axis=1).astype(np.int8))
    return np.array(rows), np.array(positions)


def write_vcf(path: Path, genotypes: np.ndarray, positions: np.ndarray) -> None:
    calls = {0: "0|0", 1: "0|1", 2: "1|1"}
    with path.open("w") as out:
        out.write("##fileformat=VCFv4.2\n##contig=<ID=22,length=50818468>\n")
        out.write('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
        names = "\t".join(f"B{i}" for i in range(genotypes.shape[1]))
        out.write(f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{names}\n")
        for pos, row in zip(positions, genotypes, strict=True):
            gts = "\t".join(calls[int(g)] for g in row)
            out.write(f"22\t{pos}\t.\tA\tG\t.\tPASS\t.\tGT\t{gts}\n")


# The nodes the attack is run against: defences off, the defaults (this release's guard),
# and the defaults with the guard as it was before (bench/legacy_guard.py).
SETUPS = ("defences off", "defaults on", "defaults, old guard")


def build_node(
    root: Path, vcf: Path, setup: str, overrides: dict[str, float | int | None]
) -> NodeRuntime:
    config = default_config("membership")
    if setup == "defences off":
        config.disclosure = Disclosure.off()
    else:
        config.disclosure = config.disclosure.model_copy(update=overrides)
    ingest_vcf(
        NodeDir.create(root, config),
        "beacon",
        vcf,
        assembly="GRCh38",
        settings=DatasetSettings(granularity="record", tier="public"),
    )
    runtime = NodeRuntime(root, clock=lambda: 0.0)  # one day: the guard's window never ends
    if setup == "defaults, old guard":
        runtime.gate.release.alleles = LegacyIndividualGuard()  # type: ignore[assignment]
    return runtime


def _left_out(runtime: NodeRuntime) -> int:
    guard = runtime.gate.release.alleles
    if guard is None:
        return 0
    if isinstance(guard, LegacyIndividualGuard):
        return len(guard.excluded("beacon"))
    return len(guard.left_out("beacon"))


def common_shown(
    runtime: NodeRuntime, beacon: np.ndarray, positions: np.ndarray, how_many: int = 200
) -> float:
    """After the attack: the share of common alleles (AC >= 100 in the node) an anonymous
    newcomer is still told exist. Anything below 1 is a true answer turned false."""
    entry = BY_PATH["g_variants"]
    common = np.flatnonzero(beacon.sum(axis=1) >= 100)[:how_many]
    caller = Caller(client="after-the-attack")
    shown = 0
    for site in common:
        request = from_query_string(
            [
                ("referenceName", "22"),
                ("start", str(int(positions[site]) - 1)),
                ("referenceBases", "A"),
                ("alternateBases", "G"),
            ]
        )
        shown += bool(runtime.beacon.query(entry, request, caller)["responseSummary"]["exists"])
    return shown / max(len(common), 1)


def lrt_terms(freq: np.ndarray, n_beacon: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query contributions to log L(H0) - log L(H1) for a yes and for a no."""
    d_n = np.power(1 - freq, 2 * n_beacon)
    d_n1 = np.power(1 - freq, 2 * n_beacon - 2)
    yes = np.log(np.clip(1 - d_n, 1e-300, None)) - np.log(1 - ERROR * d_n1)
    no = np.log(np.clip(d_n, 1e-300, None)) - np.log(np.clip(ERROR * d_n1, 1e-300, None))
    return yes, no


def attack(
    runtime: NodeRuntime,
    label: str,
    targets: list[np.ndarray],
    positions: np.ndarray,
    freq: np.ndarray,
    n_beacon: int,
    max_queries: int,
    progress: Progress,
    answered_counts: list[int],
) -> list[np.ndarray]:
    """Cumulative LRT after each query, per target."""
    entry = BY_PATH["g_variants"]
    budget = runtime.gate.release.budget
    assert budget is not None
    yes, no = lrt_terms(freq, n_beacon)
    # Answers are reused across targets only when the node keeps no state that changes
    # them (the individual guard does: it excludes carriers as queries come in).
    stateless = not runtime.config.disclosure.public_individual_guard
    answers: dict[int, bool] = {}
    curves = []
    task = progress.add_task(f"attacking ({label})", total=len(targets))
    for t, genotype in enumerate(targets):
        carried = np.flatnonzero(genotype > 0)
        order = carried[np.argsort(freq[carried], kind="stable")][:max_queries]
        caller = Caller(client=f"attacker-{label}-{t}")
        contributions = np.zeros(len(order))
        answered = 0
        for i, site in enumerate(order):
            try:
                budget.charge(caller.identity)
            except BudgetExhaustedError:
                break  # refused: the remaining queries tell the attacker nothing
            answered += 1
            site = int(site)
            if site not in answers or not stateless:
                request = from_query_string(
                    [
                        ("referenceName", "22"),
                        ("start", str(int(positions[site]) - 1)),
                        ("referenceBases", "A"),
                        ("alternateBases", "G"),
                    ]
                )
                answers[site] = bool(
                    runtime.beacon.query(entry, request, caller)["responseSummary"]["exists"]
                )
            contributions[i] = yes[site] if answers[site] else no[site]
        curves.append(np.cumsum(contributions))
        answered_counts.append(answered)
        progress.advance(task)
    return curves


def power_at(
    members: list[np.ndarray], others: list[np.ndarray], n: int, fpr: float = 0.05
) -> float:
    def at(curve: np.ndarray) -> float:
        return float(curve[min(n, len(curve)) - 1]) if len(curve) else 0.0

    null = np.array([at(c) for c in others])
    threshold = np.quantile(null, fpr)
    return float(np.mean([at(c) < threshold for c in members]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beacon", type=int, default=500, help="individuals in the node")
    parser.add_argument(
        "--targets", type=int, default=40, help="members attacked (and as many others)"
    )
    parser.add_argument("--length", type=float, default=40e6, help="simulated bp")
    parser.add_argument("--max-queries", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    parser.add_argument(
        "--min-ac", type=int, help="override public_min_allele_count (defended node)"
    )
    parser.add_argument("--min-af", type=float, help="override public_min_allele_frequency")
    parser.add_argument("--budget", type=int, help="override query_budget")
    args = parser.parse_args()
    overrides = {
        name: value
        for name, value in (
            ("public_min_allele_count", args.min_ac),
            ("public_min_allele_frequency", args.min_af),
            ("query_budget", args.budget),
        )
        if value is not None
    }
    if args.quick:
        args.beacon, args.targets, args.length, args.max_queries = 100, 10, 4e6, 1000
    out = args.out or Path(
        "bench/results/membership-quick.json" if args.quick else "bench/results/membership.json"
    )
    started = time.time()
    n = args.beacon
    with console.status(f"simulating {3 * n} genomes over {args.length / 1e6:.0f} Mb"):
        genotypes, positions = simulate(3 * n, args.length, args.seed)
    beacon, held_out, panel = genotypes[:, :n], genotypes[:, n : 2 * n], genotypes[:, 2 * n :]
    # The attacker's frequencies, from the panel (never zero: a pseudo-count).
    freq = (panel.sum(axis=1) + 0.5) / (2 * panel.shape[1] + 1)
    console.print(f"{len(positions):,} sites; beacon {n}, held out {n}, panel {n}")
    members = [beacon[:, i] for i in range(args.targets)]
    others = [held_out[:, i] for i in range(args.targets)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        vcf = Path(tmp) / "beacon.vcf"
        write_vcf(vcf, beacon, positions)
        with Progress(console=console) as progress:
            for label in SETUPS:
                folder = Path(tmp) / label.replace(" ", "-").replace(",", "")
                runtime = build_node(folder, vcf, label, overrides)
                answered: list[int] = []
                # Members and others alternate, so both meet the same evolving node state.
                mixed = [t for pair in zip(members, others, strict=True) for t in pair]
                curves = attack(
                    runtime,
                    label,
                    mixed,
                    positions,
                    freq,
                    n,
                    args.max_queries,
                    progress,
                    answered,
                )
                member_curves, other_curves = curves[0::2], curves[1::2]
                results[label] = {
                    "power_at_5pct_fpr": {
                        str(k): power_at(member_curves, other_curves, k)
                        for k in CHECKPOINTS
                        if k <= args.max_queries
                    },
                    "answered_queries_per_target": int(np.median(answered)),
                    "disclosure": runtime.config.disclosure.model_dump(),
                    "people_left_out": _left_out(runtime),
                    "common_alleles_still_shown": common_shown(runtime, beacon, positions),
                }
    table = Table("queries", *results)
    for k in CHECKPOINTS:
        if k <= args.max_queries:
            table.add_row(
                f"{k:,}", *(f"{results[r]['power_at_5pct_fpr'][str(k)]:.2f}" for r in results)
            )
    table.add_row("people left out", *(str(results[r]["people_left_out"]) for r in results))
    table.add_row(
        "common alleles shown after",
        *(f"{results[r]['common_alleles_still_shown']:.2f}" for r in results),
    )
    console.print("Power of the attack at 5 % false positives:")
    console.print(table)
    final = str(max(k for k in CHECKPOINTS if k <= args.max_queries))
    goal_met = results["defaults on"]["power_at_5pct_fpr"][final] <= 0.1
    off, on, old = (results[k]["power_at_5pct_fpr"][final] for k in SETUPS)
    console.print(
        f"after {int(final):,} queries: power {on:.2f} with defaults "
        f"(goal <= 0.1: {'met' if goal_met else 'NOT met'}), {old:.2f} with the old guard, "
        f"{off:.2f} with defences off; common alleles still shown: "
        f"{results['defaults on']['common_alleles_still_shown']:.2f} (old guard: "
        f"{results['defaults, old guard']['common_alleles_still_shown']:.2f})"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "membership",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "parameters": vars(args) | {"out": str(out), "n_sites": int(len(positions))},
                "results": results,
                "goal": {"defaults_power_at_10000_max": 0.1, "met": goal_met},
                "seconds": time.time() - started,
            },
            indent=2,
        )
    )
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
