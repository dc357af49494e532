"""``genofed glm``, ``stats``, ``gwas``, ``pca`` and ``learn``: federated analyses run by
a hub, shown as R and plink2 show them.

The hub is ``--hub`` or ``$GENOFED_HUB``; the token (``--token`` or ``$GENOFED_TOKEN``) is
needed: nodes run analyses for callers they know. Progress (each round, each node) goes
to stderr, the result to stdout (``--json`` for the whole job as JSON).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from genofed._exceptions import GenofedError, HubRequestError
from genofed.cli_output import console, fail
from genofed.cli_query import Datasets, Hub, Token, call_hub, call_hub_bytes

out = Console()

Cohort = Annotated[str | None, typer.Option(help="A saved cohort's id: only its individuals")]
TableName = Annotated[
    str | None, typer.Option("--table", help="A table each node registered, joined by individual")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the whole job as JSON")]
NodeDeadline = Annotated[float, typer.Option(help="Seconds each node has for each step")]


def run_analysis(
    hub: str, token: str | None, body: dict[str, Any], *, show: Console | None = console
) -> dict[str, Any]:
    """Start an analysis at the hub and follow it to its end, printing each step as it
    completes and a progress bar over a GWAS's blocks (to ``show``; None: quietly).
    Returns the finished job."""
    if not token:
        raise HubRequestError(
            "analyses need your token: give --token or set GENOFED_TOKEN (nodes run analyses "
            "for callers they know)"
        )
    job = call_hub(hub, "POST", "/hub/analyses", token, json=body)
    shown = 0
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=show or Console(quiet=True), transient=True,
    )  # fmt: skip
    blocks = None
    with bar:
        status = bar.add_task("starting", total=None)
        while True:
            rounds = job.get("rounds") or []
            for entry in rounds[shown:]:
                if show is not None and entry["step"] not in ("block", "round"):  # the bar's
                    show.print(_round_line(entry))
            shown = len(rounds)
            progress = job.get("progress")
            if progress and blocks is None:
                unit = "training rounds" if body["kind"] == "learn" else "variant blocks"
                blocks = bar.add_task(unit, total=progress["total"])
            if progress and blocks is not None:
                bar.update(blocks, completed=progress["done"])
            if job["state"] not in ("queued", "running"):
                return job
            bar.update(status, description=job.get("message") or job["state"])
            time.sleep(0.2)
            job = call_hub(hub, "GET", f"/hub/analyses/{job['id']}", token)


def _round_line(entry: dict[str, Any]) -> str:
    colours = {"ok": "green", "withheld": "yellow"}
    nodes = " · ".join(
        f"{name} [{colours.get(s.get('status'), 'red')}]{s.get('status')}[/]"
        for name, s in entry["nodes"].items()
    )
    label = entry["step"] if entry.get("round") is None else f"{entry['step']} {entry['round']}"
    return f"  {label}: {nodes}"


def _finished(job: dict[str, Any]) -> dict[str, Any]:
    for name, why in (job.get("excluded") or {}).items():
        console.print(f"[yellow]{name} left out: {why}[/]")
    if job["state"] != "succeeded":
        raise HubRequestError(f"the analysis {job['state']}: {job.get('error') or job['message']}")
    return job["result"]


def _number(value: float) -> str:
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def _p(value: float) -> str:
    return "< 2e-16" if value < 2e-16 else f"{value:.3g}"


def _n_per_node(result: dict[str, Any]) -> str:
    parts = []
    for node, n in (result.get("nPerNode") or {}).items():
        if n:
            precision = "" if n["precision"] == "exact" else f" ({n['precision']})"
            parts.append(f"{node} {n['value']}{precision}")
    return ", ".join(parts)


def print_glm(result: dict[str, Any], show: Console) -> None:
    """The result like R's ``summary(glm)``."""
    summary = result["summary"]
    statistic = summary["statistic"]
    show.print(
        f"\nCall: glm(formula = {result['formula']}, family = {result['family']})"
        f"   [{len(result['contributors'])} nodes: {', '.join(result['contributors'])}]"
    )
    table = Table(title="Coefficients", title_justify="left", box=None,
                  padding=(0, 1), pad_edge=False)  # fmt: skip
    for column in ("", "Estimate", "Std. Error", f"{statistic} value", f"Pr(>|{statistic}|)",
                   "2.5 %", "97.5 %"):  # fmt: skip
        table.add_column(column, justify="left" if not column else "right", no_wrap=True)
    for c in summary["coefficients"]:
        table.add_row(
            c["name"], _number(c["estimate"]), _number(c["std_error"]), f"{c['statistic']:.3f}",
            _p(c["p_value"]), _number(c["ci_low"]), _number(c["ci_high"]),
        )  # fmt: skip
    show.print(table)
    show.print(
        f"(Dispersion parameter for {summary['family']} family taken to be "
        f"{summary['dispersion']:.6g})\n"
        f"    Null deviance: {summary['null_deviance']:.6g}  on {summary['null_df']}  "
        "degrees of freedom\n"
        f"Residual deviance: {summary['residual_deviance']:.6g}  on {summary['residual_df']}  "
        "degrees of freedom\n"
        f"AIC: {summary['aic']:.6g}\n"
        f"Number of Fisher Scoring iterations: {summary['iterations']}\n"
        f"n: {summary['n']} in all; per node: {_n_per_node(result)}"
    )


def print_stats(result: dict[str, Any], show: Console) -> None:
    if result["kind"] == "table":
        table = Table(title=f"{result['row']} by {result['column'] or 'count'}")
        table.add_column(result["row"])
        for column in result["columns"]:
            table.add_column(str(column), justify="right")
        for row, counts in zip(result["rows"], result["counts"], strict=True):
            table.add_row(str(row), *(str(c) for c in counts))
        show.print(table)
    else:
        stats = result["statistics"]
        table = Table(title=f"{stats['n']} complete observations")
        for column in ("variable", "mean", "variance", "sd"):
            table.add_column(column, justify="left" if column == "variable" else "right")
        for name, mean, variance in zip(stats["names"], stats["means"], stats["variances"],
                                        strict=True):  # fmt: skip
            table.add_row(name, _number(mean), _number(variance), _number(variance**0.5))
        show.print(table)
        if len(stats["names"]) > 1:
            correlation = Table(title="Correlations")
            correlation.add_column("")
            for name in stats["names"]:
                correlation.add_column(name, justify="right")
            for name, row in zip(stats["names"], stats["correlation"], strict=True):
                correlation.add_row(name, *(f"{v:.4f}" for v in row))
            show.print(correlation)
    show.print(f"nodes: {', '.join(result['contributors'])}; per node: {_n_per_node(result)}")


def _report(
    hub: str,
    token: str | None,
    body: dict[str, Any],
    as_json: bool,
    show: Callable[[dict[str, Any], Console], None],
) -> dict[str, Any]:
    """Run the analysis; print its result with ``show`` (or the whole job as JSON)."""
    try:
        job = run_analysis(hub, token, body)
        result = job if as_json else _finished(job)
    except GenofedError as err:
        raise fail(err) from None
    if as_json:
        out.print_json(json.dumps(job))
    else:
        show(result, out)
    return job


def _scope(cohort: str | None, datasets: list[str] | None, table: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"datasets": datasets or []}
    if cohort:
        body["cohort"] = cohort
    if table:
        body["table"] = table
    return body


def glm(
    formula: Annotated[str, typer.Argument(help="R-style: 'case ~ age + sex + bmi'")],
    family: Annotated[str, typer.Option(help="gaussian, binomial or poisson")] = "gaussian",
    offset: Annotated[
        str | None, typer.Option(help="A poisson model's offset, e.g. 'np.log(exposure)'")
    ] = None,
    cohort: Cohort = None,
    datasets: Datasets = None,
    table: TableName = None,
    hub: Hub = "http://127.0.0.1:8700",
    token: Token = None,
    node_deadline: NodeDeadline = 120.0,
    as_json: AsJson = False,
) -> None:
    """Fit a generalised linear model across the hub's nodes, exactly as if their rows were
    pooled, without moving a row: each node sends its statistics into a secure sum, and
    each applies its own disclosure rules first.

    Variables: sex, age, measures under info (bmi...), terms as 0/1 (HP_0001250,
    ICD10_G40), and the columns of --table. Example:

        genofed glm "HP_0001250 ~ age + sex" --family binomial
    """
    body = {"kind": "glm", "formula": formula, "family": family, "node_deadline_s": node_deadline,
            **_scope(cohort, datasets, table)}  # fmt: skip
    if offset:
        body["offset"] = offset
    _report(hub, token, body, as_json, print_glm)


def stats(
    variables: Annotated[
        list[str] | None, typer.Argument(help="Numeric variables: means, variances, correlations")
    ] = None,
    tabulate: Annotated[
        str | None, typer.Option(help="A variable to count by level (a contingency table)")
    ] = None,
    by: Annotated[str | None, typer.Option(help="With --tabulate: the table's columns")] = None,
    cohort: Cohort = None,
    datasets: Datasets = None,
    table: TableName = None,
    hub: Hub = "http://127.0.0.1:8700",
    token: Token = None,
    node_deadline: NodeDeadline = 120.0,
    as_json: AsJson = False,
) -> None:
    """Descriptive statistics across the hub's nodes, pooled exactly: counts, means,
    variances and correlations of numeric variables, or a contingency table.

    Examples:

        genofed stats age

        genofed stats --tabulate sex --by HP_0001250
    """
    if bool(variables) == bool(tabulate):
        raise fail(GenofedError("give numeric variables, or --tabulate VARIABLE (not both)"))
    scope = _scope(cohort, datasets, table) | {"node_deadline_s": node_deadline}
    if tabulate:
        body = {"kind": "table", "row": tabulate, **scope}
        if by:
            body["column"] = by
    else:
        body = {"kind": "describe", "variables": variables, **scope}
    _report(hub, token, body, as_json, print_stats)


def print_gwas(result: dict[str, Any], show: Console) -> None:
    variants = result["variants"]
    show.print(
        f"\n{variants['tested']:,} variants tested in {result['region']} at "
        f"{', '.join(result['contributors'])}; {variants['leftOut']:,} left out (rare at a "
        f"node, below its min_mac, or not in every node's data). {result['imputation']}."
    )
    for phenotype, summary in result["phenotypeSummary"].items():
        inflation = summary["lambdaGC"] or float("nan")
        table = Table(title=f"{phenotype}: top hits (λGC {inflation:.3f})",
                      title_justify="left", box=None, padding=(0, 1), pad_edge=False)  # fmt: skip
        stats = ("U", "V", "Z_STAT") if result["model"] == "logistic" else ("BETA", "SE", "T_STAT")
        for column in ("ID", "A1_FREQ", *stats, "P"):
            table.add_column(column, justify="left" if column == "ID" else "right")
        for row in summary["top"]:
            table.add_row(row["ID"], f"{row['A1_FREQ']:.3f}",
                          *(_number(row[c]) if row[c] is not None else "NA" for c in stats),
                          _p(row["P"] or 1.0))  # fmt: skip
        show.print(table)


def gwas(
    phenotypes: Annotated[
        list[str], typer.Option("--phenotype", help="A quantitative trait (repeat for more)")
    ],
    region: Annotated[str, typer.Option(help="chrom:start-end, 1-based: 22:16000000-17000000")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where the tables and plots are written")],
    covariates: Annotated[str, typer.Option(help="Comma-separated: age,sex,PC1")] = "",
    model: Annotated[
        str, typer.Option(help="linear (quantitative traits) or logistic (0/1: score test)")
    ] = "linear",
    min_mac: Annotated[int, typer.Option(help="Raises each node's min_mac (never lowers)")] = 3,
    cohort: Cohort = None,
    datasets: Datasets = None,
    table: TableName = None,
    hub: Hub = "http://127.0.0.1:8700",
    token: Token = None,
    node_deadline: NodeDeadline = 600.0,
    as_json: AsJson = False,
) -> None:
    """A genome-wide association across the hub's nodes, exact to the pooled analysis:
    each node sends per-variant sums into secure rounds; a variant rare at any node is
    left out of the whole analysis. Writes plink2-like tables (TSV, Parquet), a Manhattan
    and a QQ plot per phenotype to --out.

    Example:

        genofed gwas --phenotype qt --covariates age,sex --region 22:1-50000000 --out gwas/
    """
    if model not in ("linear", "logistic"):
        raise fail(GenofedError("--model is linear or logistic"))
    body = {"kind": "gwas", "model": model, "phenotypes": phenotypes, "region": region,
            "min_mac": min_mac,
            "covariates": [c.strip() for c in covariates.split(",") if c.strip()],
            "node_deadline_s": node_deadline, **_scope(cohort, datasets, table)}  # fmt: skip
    _run_to_files(hub, token, body, out_dir, as_json, print_gwas)


def _run_to_files(
    hub: str,
    token: str | None,
    body: dict[str, Any],
    out_dir: Path,
    as_json: bool,
    show: Callable[[dict[str, Any], Console], None],
) -> None:
    """Run the analysis, download its files to ``out_dir`` and print its result."""
    try:
        job = run_analysis(hub, token, body)
        result = _finished(job)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in result["files"]:
            content = call_hub_bytes(hub, f"/hub/analyses/{job['id']}/files/{name}", token)
            (out_dir / name).write_bytes(content)
    except (GenofedError, OSError) as err:
        raise fail(err) from None
    if as_json:
        out.print_json(json.dumps(job))
        return
    show(result, out)
    console.print(f"wrote {len(result['files'])} files to {out_dir}")


_VARIANT_ID = re.compile(r"^([0-9XYMT]{1,2}-[0-9]+-[ACGTN]+-[ACGTN*]+|rs[0-9]+)$")


def _pgs_weights(path: Path) -> list[tuple[str, float]]:
    """A polygenic score's weights: a TSV of variant id (chrom-pos-ref-alt or an rsID)
    and weight, with or without a header."""
    try:
        frame = pd.read_csv(path, sep="\t", header=None, comment="#", dtype=str)
    except (OSError, ValueError) as exc:
        raise GenofedError(f"cannot read the PGS weights {path}: {exc}") from None
    if frame.shape[1] < 2:
        raise GenofedError(f"{path}: two tab-separated columns are needed, variant id and weight")
    if not _VARIANT_ID.match(str(frame.iat[0, 0])):
        frame = frame.iloc[1:]  # a header
    weights = []
    for number, (variant, weight) in enumerate(frame.iloc[:, :2].itertuples(index=False), 1):
        try:
            value = float(weight)
        except ValueError:
            value = float("nan")
        if not _VARIANT_ID.match(str(variant)) or not np.isfinite(value):
            raise GenofedError(
                f"{path}, row {number}: expected a variant id like 22-16050075-A-G and a "
                f"number, not {variant!r}, {weight!r}"
            )
        weights.append((str(variant), value))
    if not weights:
        raise GenofedError(f"{path} holds no weights")
    return weights


def print_learning(result: dict[str, Any], show: Console) -> None:
    curve = result["curve"]
    table = Table(title=f"{result['model']} by {result['strategy']}: {result['target']} "
                  f"({len(curve) - 1} rounds with a sum)", title_justify="left", box=None,
                  padding=(0, 1), pad_edge=False)  # fmt: skip
    for column in ("round", "training loss", "held-out loss", "held-out AUC", "nodes"):
        table.add_column(column, justify="left" if column == "nodes" else "right")
    step = max(1, len(curve) // 10)
    for point in [*curve[:-1:step], curve[-1]]:
        table.add_row(str(point["round"]), f"{point['lossTrain']:.4f}",
                      f"{point['lossTest']:.4f}", f"{point['auc']:.4f}",
                      ", ".join(point["nodes"]))  # fmt: skip
    show.print(table)
    evaluation = result["evaluation"]
    show.print(
        f"held out: {evaluation['n_test']:,} rows (trained on {evaluation['n_train']:,}); "
        f"AUC {evaluation['auc']:.4f}; membership-inference AUC "
        f"{evaluation['membership_auc']:.4f} (0.5: training rows not told apart)"
    )
    private = result.get("differentialPrivacy")
    if private:
        show.print(f"differentially private: ε {private['epsilon']:.2f} at δ {private['delta']:g} "
                   f"(noise {private['noiseMultiplier']:.3g} x the clip {private['clip']:g}, "
                   f"over {private['rounds']} rounds)")  # fmt: skip
    dp_sgd = result.get("dpSgd")
    if dp_sgd:
        each = ", ".join(f"{n} {e:.2f}" for n, e in dp_sgd["epsilonPerNode"].items() if e)
        show.print(f"DP-SGD at the nodes (noise {dp_sgd['noiseMultiplier']:g}): ε at δ "
                   f"{dp_sgd['delta']:g} per node: {each}")  # fmt: skip
    if result.get("coefficients"):
        coefficients = Table(title="coefficients", box=None,
                             title_justify="left", padding=(0, 1), pad_edge=False)  # fmt: skip
        coefficients.add_column("term")
        coefficients.add_column("per unit", justify="right")
        for name, value in result["coefficients"].items():
            coefficients.add_row(name, _number(value))
        show.print(coefficients)


def learn(
    target: Annotated[str, typer.Option(help="The binary (0/1) variable to predict")],
    features: Annotated[
        str,
        typer.Option(
            help="Comma-separated: clinical variables, PCs, and variants as "
            "chrom-pos-ref-alt (their ALT dosages): age,sex,PC1,22-16050075-A-G"
        ),
    ],  # fmt: skip
    out_dir: Annotated[Path, typer.Option("--out", help="Where the model and its card go")],
    model: Annotated[str, typer.Option(help="logistic or mlp (one hidden layer)")] = "logistic",
    strategy: Annotated[str, typer.Option(help="fedavg, fedprox, fedadam or fedyogi")] = "fedavg",
    rounds: Annotated[int, typer.Option(help="Training rounds")] = 20,
    local_epochs: Annotated[int, typer.Option(help="Epochs at each node per round")] = 1,
    lr: Annotated[float, typer.Option(help="The nodes' learning rate")] = 0.1,
    batch_size: Annotated[int, typer.Option(help="Rows per local step; 0: all of them")] = 0,
    local_optimizer: Annotated[str, typer.Option(help="sgd or adam, at the nodes")] = "sgd",
    hidden: Annotated[int, typer.Option(help="The MLP's hidden units")] = 16,
    fraction: Annotated[float, typer.Option(help="The share of nodes asked each round")] = 1.0,
    pgs: Annotated[
        Path | None,
        typer.Option(help="A polygenic score as a feature: a TSV of variant id and weight"),
    ] = None,
    dp_epsilon: Annotated[
        float | None,
        typer.Option(help="Differential privacy of the updates at this ε (clipped, noised)"),
    ] = None,
    dp_delta: Annotated[float, typer.Option(help="... and this δ")] = 1e-5,
    dp_clip: Annotated[
        float, typer.Option(help="... each node's update clipped to this norm")
    ] = 1.0,
    dp_sgd_noise: Annotated[
        float | None,
        typer.Option(help="DP-SGD at the nodes (Opacus) with this noise multiplier"),
    ] = None,
    dp_sgd_clip: Annotated[float, typer.Option(help="... each row's gradient norm")] = 1.0,
    cohort: Cohort = None,
    datasets: Datasets = None,
    table: TableName = None,
    hub: Hub = "http://127.0.0.1:8700",
    token: Token = None,
    round_deadline: Annotated[
        float, typer.Option(help="Seconds a node has each round; a later one sits it out")
    ] = 120.0,
    as_json: AsJson = False,
) -> None:
    """Train a model across the hub's nodes without moving a row: each round the nodes
    train the current model on their own rows and send their updates into a secure sum
    (the hub sees only the sum), and evaluate it on their held-out rows (a fifth of each
    node's, by a hash of the individual's id). Writes the model (PyTorch state dict and
    ONNX, on unstandardised features), its card and its training curve to --out.

    Examples:

        genofed learn --target case --features age,sex,bmi --rounds 50 --lr 2 --out model/

        genofed learn --target case --features age,sex,PC1,PC2 --model mlp --strategy fedadam \\
            --local-optimizer adam --lr 0.005 --batch-size 32 --out mlp/
    """
    if model not in ("logistic", "mlp"):
        raise fail(GenofedError("--model is logistic or mlp"))
    names = [f.strip() for f in features.split(",") if f.strip()]
    try:
        weights = _pgs_weights(pgs) if pgs is not None else []
    except GenofedError as err:
        raise fail(err) from None
    body = {"kind": "learn", "target": target, "learner": model, "strategy": strategy,
            "features": [n for n in names if not _VARIANT_ID.match(n)],
            "variants": [n for n in names if _VARIANT_ID.match(n)], "pgs": weights,
            "rounds": rounds, "local_epochs": local_epochs, "lr": lr, "batch_size": batch_size,
            "local_optimizer": local_optimizer, "hidden": hidden, "fraction": fraction,
            "round_deadline_s": round_deadline, **_scope(cohort, datasets, table)}  # fmt: skip
    if dp_epsilon is not None:
        body |= {"dp_epsilon": dp_epsilon, "dp_delta": dp_delta, "dp_clip": dp_clip}
    if dp_sgd_noise is not None:
        body |= {"dp_sgd_noise": dp_sgd_noise, "dp_sgd_clip": dp_sgd_clip, "dp_delta": dp_delta}
    _run_to_files(hub, token, body, out_dir, as_json, print_learning)


def pca_command(
    region: Annotated[str, typer.Option(help="chrom:start-end whose common variants are used")],
    components: Annotated[int, typer.Option(help="How many components")] = 10,
    min_maf: Annotated[float, typer.Option(help="Pooled minimum minor allele frequency")] = 0.05,
    ld_r2: Annotated[
        float, typer.Option(help="Prune variants in LD: keep no pair above this r² (1: no pruning)")
    ] = 0.2,
    ld_window: Annotated[int, typer.Option(help="The pruning window, in variants")] = 50,
    max_variants: Annotated[
        int, typer.Option(help="At most this many after pruning, spread evenly")
    ] = 5000,
    cohort: Cohort = None,
    datasets: Datasets = None,
    hub: Hub = "http://127.0.0.1:8700",
    token: Token = None,
    node_deadline: NodeDeadline = 600.0,
    as_json: AsJson = False,
) -> None:
    """Principal components of the genotypes across the hub's nodes, for ancestry
    covariates: each node keeps its own people's components (no one else sees them), and
    later analyses use them by name (PC1, PC2...).

    The region's common variants (pooled MAF at least --min-maf) are pruned by LD first:
    going along the region, a variant is kept unless a kept one among the --ld-window
    before it has r² above --ld-r2 with it (the pooled r², from secure sums).

    Example:

        genofed pca --region 22:1-50000000 --components 4
        genofed gwas --phenotype qt --covariates age,sex,PC1,PC2 --region 22:1-50000000 --out gwas/
    """
    body = {"kind": "pca", "region": region, "components": components, "min_maf": min_maf,
            "ld_r2": ld_r2, "ld_window": ld_window, "max_variants": max_variants,
            "node_deadline_s": node_deadline, **_scope(cohort, datasets, None)}  # fmt: skip
    _report(hub, token, body, as_json, print_pca)


def print_pca(result: dict[str, Any], show: Console) -> None:
    total = sum(result["eigenvalues"])
    pruning = result["ldPruning"]
    title = (f"{result['variants']:,} variants (of {pruning['candidates']:,} common ones, "
             f"pruned at r² > {pruning['r2']:g} in windows of {pruning['window']}), "
             f"{result['iterations']} iterations")  # fmt: skip
    table = Table(title=title, title_justify="left", box=None, padding=(0, 1), pad_edge=False)
    for column in ("component", "eigenvalue", "share of these"):
        table.add_column(column, justify="left" if column == "component" else "right")
    for name, value in zip(result["components"], result["eigenvalues"], strict=True):
        table.add_row(name, f"{value:.6g}", f"{value / total:.1%}")
    show.print(table)
    console.print(f"kept at {', '.join(result['keptAt'])}: {result['note']}")
