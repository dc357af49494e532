"""Membership-inference check: the Shringarpure–Bustamante likelihood-ratio attack on a
node's Beacon, plain and with what an attacker knows about a target (sex and age, a name),
each against the node with its defences off, with ``node.yaml`` defaults, and with the
defaults but the one rule that mode tests turned off, side by side.

Usage::

    .venv/bin/python bench/bench_membership.py [--out bench/results/membership.json] [--quick]
        [--modes plain,covariates,identifier,differencing]

1. Simulate genomes with msprime (one population, Ne 10,000, mutation and recombination
   1.25e-8 / 1e-8 per bp, ``--length`` bp): ``--beacon`` individuals go into the node
   (with a sex and an age, 18 to 90, in a clinical table), as many others are held out,
   and a reference panel of the same size gives the attacker allele frequencies. Every
   target's sex and age are known to the attacker, and its name (held-out people have
   names the node has never seen).
2. For each attack mode, build real nodes from the same VCF and table, the dataset
   ``public``: defences off (no floors, no budget, no guards, no identifier rule), the
   defaults (allele floor AC >= 5, the public allele guard, 1,000 queries per caller per
   day, small counts suppressed, the identifier rule, the differencing guard at k = 5),
   and the defaults with the rule the mode is about turned off.
3. For each target (``--targets`` members and as many held-out people) the attacker asks
   whether each allele the target carries exists, rarest (by the reference panel) first,
   up to ``--max-queries`` queries, each charged to its own budget (a fresh address or
   identity per target: the most generous attacker) and answered by the node's own Beacon
   service (the code behind ``/beacon/v2/g_variants``, minus HTTP). The modes:

   * ``plain``: no filters, anonymous (the published attack); also against the public
     guard as it was before (``bench/legacy_guard.py``).
   * ``covariates``: filters ``sex.label=<sex>,age=P<age>Y``, anonymous: the question is
     about the few people of the target's sex and age.
   * ``identifier``: filter ``id=<name>``, anonymous: the question is about the target.
   * ``differencing``: a registered caller asks twice per allele, for the people of the
     target's sex aged ``[a, a + w]`` and aged ``(a, a + w]`` (``w`` chosen so that about
     ``min_count`` carriers are expected), and reads "shown for the first, not the
     second" as a carrier of the target's sex and age.

   A refused question, or an answer withheld with the reason "differs from an earlier
   query's", tells the attacker nothing; every other "no" is taken at face value.
4. The LRT statistic of Shringarpure & Bustamante (2015) after n queries, with
   D_N = (1 - f)^(2N), N the people asked about (the node; the expected number of the
   target's sex and age; one), genotyping error 1e-6; for ``differencing``, minus the
   number of "first, not second" pairs. Members are called when the statistic is below
   the 5th percentile of the held-out targets'. Reported: power at 5 % FPR for n = 10 …
   ``--max-queries`` (goal with defaults: <= 0.1 at 10,000 in every mode; defences off it
   should be high; the registered ``differencing`` mode does not meet it yet, see
   docs/governance.md "What is not yet protected"), and, after each attack, the share of
   common alleles (AC >= 100) a new anonymous caller is still told exist, with no filters
   and with ``sex.label=female`` (below 1: true answers turned false).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msprime
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.legacy_guard import LegacyIndividualGuard  # noqa: E402

from genofed import AccessDeniedError, BudgetExhaustedError  # noqa: E402
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
AGES = np.arange(18, 91)  # the ages people have, uniformly
SEXES = ("female", "male")
DIFFERENCED = "differ from an earlier query's"  # the guard's reason: the attacker knows it

OFF = "defences off"
ON = "defaults on"
# Per mode, the nodes it is run against: defences off, the defaults, and the defaults
# with the rule the mode is about turned off (for plain: the old public guard).
MODES: dict[str, tuple[str, ...]] = {
    "plain": (OFF, ON, "defaults, old guard"),
    "covariates": (OFF, ON),
    "identifier": (OFF, "defaults, no identifier rule", ON),
    "differencing": (OFF, "defaults, no differencing guard", ON),
}


@dataclass(frozen=True)
class Person:
    name: str
    genotype: np.ndarray  # 0..2 per site
    sex: str
    age: int


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


def write_vcf(path: Path, genotypes: np.ndarray, positions: np.ndarray, names: list[str]) -> None:
    calls = {0: "0|0", 1: "0|1", 2: "1|1"}
    with path.open("w") as out:
        out.write("##fileformat=VCFv4.2\n##contig=<ID=22,length=50818468>\n")
        out.write('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
        header = "\t".join(names)
        out.write(f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{header}\n")
        for pos, row in zip(positions, genotypes, strict=True):
            gts = "\t".join(calls[int(g)] for g in row)
            out.write(f"22\t{pos}\t.\tA\tG\t.\tPASS\t.\tGT\t{gts}\n")


def write_people(path: Path, people: list[Person]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["sample_id", "sex", "age"])
        writer.writerows([p.name, p.sex, p.age] for p in people)


def build_node(root: Path, vcf: Path, table: Path, setup: str) -> NodeRuntime:
    config = default_config("membership")
    if setup == OFF:
        config.disclosure = Disclosure.off()
    elif setup == "defaults, no differencing guard":
        config.disclosure = config.disclosure.model_copy(update={"differencing_k": 1})
    ingest_vcf(
        NodeDir.create(root, config),
        "beacon",
        vcf,
        assembly="GRCh38",
        individuals=table,
        settings=DatasetSettings(granularity="record", tier="public"),
    )
    runtime = NodeRuntime(root, clock=lambda: 0.0)  # one day: the guards' window never ends
    release = runtime.gate.release
    if setup == "defaults, old guard":
        release.alleles = LegacyIndividualGuard()  # type: ignore[assignment]
    if setup in (OFF, "defaults, no identifier rule"):
        release.refusal = lambda terms, **_: None  # type: ignore[method-assign]
    return runtime


def _left_out(runtime: NodeRuntime) -> int:
    guard = runtime.gate.release.alleles
    if guard is None:
        return 0
    if isinstance(guard, LegacyIndividualGuard):
        return len(guard.excluded("beacon"))
    return len(guard.left_out("beacon"))


def ask(runtime: NodeRuntime, caller: Caller, position: int, filters: str | None) -> bool | None:
    """The node's yes or no for the allele at ``position``; ``None`` when the answer is
    refused or withheld for a reason that says it tells nothing."""
    params = [
        ("referenceName", "22"),
        ("start", str(position - 1)),
        ("referenceBases", "A"),
        ("alternateBases", "G"),
    ]
    if filters:
        params.append(("filters", filters))
    try:
        doc = runtime.beacon.query(BY_PATH["g_variants"], from_query_string(params), caller)
    except AccessDeniedError:
        return None
    if any(DIFFERENCED in w for w in doc.get("info", {}).get("warnings", [])):
        return None
    return bool(doc["responseSummary"]["exists"])


def common_shown(
    runtime: NodeRuntime,
    beacon: np.ndarray,
    positions: np.ndarray,
    filters: str | None = None,
    how_many: int = 200,
) -> float:
    """After the attack: the share of common alleles (AC >= 100 in the node) an anonymous
    newcomer is still told exist. Anything below 1 is a true answer turned false."""
    common = np.flatnonzero(beacon.sum(axis=1) >= 100)[:how_many]
    caller = Caller(client=f"after-the-attack-{filters}")
    shown = sum(bool(ask(runtime, caller, int(positions[s]), filters)) for s in common)
    return shown / max(len(common), 1)


def lrt_terms(freq: np.ndarray, n_beacon: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-query contributions to log L(H0) - log L(H1) for a yes and for a no."""
    d_n = np.power(1 - freq, 2 * n_beacon)
    d_n1 = np.power(1 - freq, 2 * n_beacon - 2)
    yes = np.log(np.clip(1 - d_n, 1e-300, None)) - np.log(1 - ERROR * d_n1)
    no = np.log(np.clip(d_n, 1e-300, None)) - np.log(np.clip(ERROR * d_n1, 1e-300, None))
    return yes, no


def group_size(n_beacon: int) -> float:
    """How many people of one sex and one age the node is expected to hold."""
    return n_beacon / (len(SEXES) * len(AGES))


def age_window(age: int, freq: float, n_beacon: int, min_count: int) -> tuple[int, int]:
    """The ages ``[lo, hi]`` of the first differencing question (the second leaves out
    ``age``): wide enough that about ``min_count`` carriers of the allele are expected."""
    carriers_per_year = group_size(n_beacon) * (1 - (1 - freq) ** 2)
    width = int(np.clip(round((min_count - 0.5) / max(carriers_per_year, 1e-9)), 1, 40))
    if age + width <= AGES[-1]:
        return age, age + width
    return age - width, age


def attack(
    runtime: NodeRuntime,
    mode: str,
    label: str,
    targets: list[Person],
    positions: np.ndarray,
    freq: np.ndarray,
    n_beacon: int,
    max_queries: int,
    progress: Progress,
    answered_counts: list[int],
) -> list[np.ndarray]:
    """Cumulative statistic after each query, per target."""
    budget = runtime.gate.release.budget
    assert budget is not None
    people = {"plain": n_beacon, "identifier": 1}.get(mode, group_size(n_beacon))
    yes, no = lrt_terms(freq, max(people, 1.0))
    rules = runtime.config.disclosure
    # Answers are reused across targets only when the node keeps no state that changes
    # them (the allele guard and the differencing guard do).
    stateless = not rules.public_individual_guard and rules.differencing_k <= 1
    answers: dict[tuple[int, str | None], bool | None] = {}
    curves = []
    task = progress.add_task(f"{mode}: {label}", total=len(targets))
    for t, person in enumerate(targets):
        carried = np.flatnonzero(person.genotype > 0)
        order = carried[np.argsort(freq[carried], kind="stable")]
        if mode == "differencing":
            caller = Caller(
                client=f"{label}-{t}", sub=f"attacker-{t}", iss="bench", registered=True
            )
        else:
            caller = Caller(client=f"attacker-{mode}-{label}-{t}")

        def answer(site: int, filters: str | None, caller: Caller = caller) -> bool | None:
            key = (site, filters)
            if key not in answers or not stateless:
                answers[key] = ask(runtime, caller, int(positions[site]), filters)
            return answers[key]

        contributions: list[float] = []
        for site in map(int, order):
            if len(contributions) >= max_queries:
                break
            questions = _questions(mode, person, freq[site], n_beacon, rules.min_count)
            replies = []
            try:
                for filters in questions:
                    budget.charge(caller.identity)
                    replies.append(answer(site, filters))
            except BudgetExhaustedError:
                break  # refused: the remaining queries tell the attacker nothing
            contributions.extend([0.0] * (len(questions) - 1))
            if mode == "differencing":
                contributions.append(-1.0 if replies == [True, False] else 0.0)
            elif replies[0] is None:
                contributions.append(0.0)
            else:
                contributions.append(yes[site] if replies[0] else no[site])
        curves.append(np.cumsum(contributions[:max_queries]))
        answered_counts.append(len(contributions))
        progress.advance(task)
    return curves


def _questions(
    mode: str, person: Person, freq: float, n_beacon: int, min_count: int
) -> list[str | None]:
    """The filters of the question(s) asked about one allele of ``person``."""
    if mode == "plain":
        return [None]
    if mode == "covariates":
        return [f"sex.label={person.sex},age=P{person.age}Y"]
    if mode == "identifier":
        return [f"id={person.name}"]
    lo, hi = age_window(person.age, freq, n_beacon, min_count)
    sex = f"sex.label={person.sex}"
    if lo == person.age:
        return [f"{sex},age>=P{lo}Y,age<=P{hi}Y", f"{sex},age>P{lo}Y,age<=P{hi}Y"]
    return [f"{sex},age>=P{lo}Y,age<=P{hi}Y", f"{sex},age>=P{lo}Y,age<P{hi}Y"]


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
    parser.add_argument(
        "--max-queries-off",
        type=int,
        default=1_000,
        help="queries per target against the undefended node in modes other than plain "
        "(they have no reuse across targets; power is 1 long before)",
    )
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
    if args.quick:
        args.beacon, args.targets, args.length = 100, 6, 3e6
        args.max_queries = args.max_queries_off = 300
    out = args.out or Path(
        "bench/results/membership-quick.json" if args.quick else "bench/results/membership.json"
    )
    started = time.time()
    n = args.beacon
    rng = np.random.default_rng(args.seed)
    with console.status(f"simulating {3 * n} genomes over {args.length / 1e6:.0f} Mb"):
        genotypes, positions = simulate(3 * n, args.length, args.seed)
    sexes = rng.choice(SEXES, size=3 * n)
    ages = rng.choice(AGES, size=3 * n)

    def person(i: int, prefix: str) -> Person:
        return Person(f"{prefix}{i}", genotypes[:, i], str(sexes[i]), int(ages[i]))

    beacon, panel = genotypes[:, :n], genotypes[:, 2 * n :]
    # The attacker's frequencies, from the panel (never zero: a pseudo-count).
    freq = (panel.sum(axis=1) + 0.5) / (2 * panel.shape[1] + 1)
    console.print(f"{len(positions):,} sites; beacon {n}, held out {n}, panel {n}")
    members = [person(i, "B") for i in range(args.targets)]
    others = [person(n + i, "H") for i in range(args.targets)]
    # Members and others alternate, so both meet the same evolving node state.
    mixed = [t for pair in zip(members, others, strict=True) for t in pair]
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        vcf, table = Path(tmp) / "beacon.vcf", Path(tmp) / "people.csv"
        write_vcf(vcf, beacon, positions, names=[f"B{i}" for i in range(n)])
        write_people(table, [person(i, "B") for i in range(n)])
        with Progress(console=console) as progress:
            for mode in modes:
                results[mode] = {}
                for label in MODES[mode]:
                    folder = Path(tmp) / f"{mode}-{label}".replace(" ", "-").replace(",", "")
                    runtime = build_node(folder, vcf, table, label)
                    limit = args.max_queries
                    if label == OFF and mode != "plain":
                        limit = min(limit, args.max_queries_off)
                    answered: list[int] = []
                    curves = attack(
                        runtime, mode, label, mixed, positions, freq, n, limit, progress, answered
                    )
                    member_curves, other_curves = curves[0::2], curves[1::2]
                    results[mode][label] = {
                        "power_at_5pct_fpr": {
                            str(k): power_at(member_curves, other_curves, k)
                            for k in CHECKPOINTS
                            if k <= limit
                        },
                        "queries_per_target": limit,
                        "answered_queries_per_target": int(np.median(answered)),
                        "disclosure": runtime.config.disclosure.model_dump(),
                        "people_left_out": _left_out(runtime),
                        "common_alleles_still_shown": common_shown(runtime, beacon, positions),
                        "common_alleles_still_shown_to_women": common_shown(
                            runtime, beacon, positions, "sex.label=female"
                        ),
                    }
    final = str(max(k for k in CHECKPOINTS if k <= args.max_queries))
    goal = {}
    for mode, by_setup in results.items():
        _print_mode(mode, by_setup)
        on = by_setup[ON]
        goal[mode] = on["power_at_5pct_fpr"][final] <= 0.1
        off = by_setup[OFF]["power_at_5pct_fpr"]
        console.print(
            f"{mode}: after {int(final):,} queries power {on['power_at_5pct_fpr'][final]:.2f} "
            f"with defaults (goal <= 0.1: {'met' if goal[mode] else 'NOT met'}); "
            f"{off[max(off, key=int)]:.2f} with defences off; common alleles still shown "
            f"{on['common_alleles_still_shown']:.2f} (to women: "
            f"{on['common_alleles_still_shown_to_women']:.2f})"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "membership",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "parameters": vars(args) | {"out": str(out), "n_sites": int(len(positions))},
                "results": results,
                "goal": {
                    "defaults_power_at_max_queries_max": 0.1,
                    "max_queries": int(final),
                    "met": goal,
                },
                "seconds": time.time() - started,
            },
            indent=2,
        )
    )
    console.print(f"wrote {out}")
    return 0


def _print_mode(mode: str, by_setup: dict[str, dict]) -> None:
    table = Table("queries", *by_setup, title=f"{mode}: power of the attack at 5 % false positives")
    for k in CHECKPOINTS:
        cells = [by_setup[s]["power_at_5pct_fpr"].get(str(k)) for s in by_setup]
        if any(c is not None for c in cells):
            table.add_row(f"{k:,}", *("—" if c is None else f"{c:.2f}" for c in cells))
    table.add_row(
        "answered per target", *(str(r["answered_queries_per_target"]) for r in by_setup.values())
    )
    table.add_row("people left out", *(str(r["people_left_out"]) for r in by_setup.values()))
    table.add_row(
        "common alleles shown after",
        *(f"{r['common_alleles_still_shown']:.2f}" for r in by_setup.values()),
    )
    table.add_row(
        "... to women",
        *(f"{r['common_alleles_still_shown_to_women']:.2f}" for r in by_setup.values()),
    )
    console.print(table)


if __name__ == "__main__":
    raise SystemExit(main())
