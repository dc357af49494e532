"""The ``genofed`` command line: thin wrappers around the store and the node app."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated

import typer

from genofed._exceptions import GenofedError
from genofed.cli_analyses import glm, gwas, learn, pca_command, stats
from genofed.cli_analysis import own_key_text, peer_app
from genofed.cli_governance import audit_app, dac_app, guard_app, node_trust, passport_app
from genofed.cli_output import console, fail, warn
from genofed.cli_query import cohort_app, query_app
from genofed.cli_workflows import airlock_app, workflow_app
from genofed.config import Granularity, Tier, default_config, load_config
from genofed.governance.keys import fingerprint
from genofed.store.node_dir import NodeDir

app = typer.Typer(
    help="genofed: keep genomic data where it is and answer GA4GH questions across sites.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_debug = False  # --debug: let unexpected errors show their traceback


def _print_version(value: bool) -> None:
    if value:
        from genofed import __version__

        typer.echo(f"genofed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit", callback=_print_version, is_eager=True
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the Python traceback of an unexpected error")
    ] = False,
) -> None:
    global _debug
    _debug = debug


node_app = typer.Typer(
    help="Create, fill and serve a node (one institution).", no_args_is_help=True
)
app.add_typer(node_app, name="node")
hub_app = typer.Typer(
    help="Serve a hub: one Beacon over every node of a federation.", no_args_is_help=True
)
app.add_typer(hub_app, name="hub")
app.add_typer(query_app, name="query")
app.add_typer(cohort_app, name="cohort")
app.command("glm")(glm)
app.command("stats")(stats)
app.command("gwas")(gwas)
app.command("pca")(pca_command)
app.command("learn")(learn)
app.add_typer(passport_app, name="passport")
app.add_typer(audit_app, name="audit")
app.add_typer(dac_app, name="dac")
node_app.command("trust")(node_trust)
node_app.add_typer(guard_app, name="guard")
node_app.add_typer(peer_app, name="peer")
node_app.add_typer(workflow_app, name="workflow")
app.add_typer(airlock_app, name="airlock")

NodePath = Annotated[Path, typer.Argument(help="The node directory")]
TierOption = Annotated[
    Tier | None,
    typer.Option(
        help="Who may see the dataset: public, registered or controlled. Without a tier "
        "(here or in node.yaml) the dataset is served to no one"
    ),
]


@node_app.command("init")
def node_init(
    directory: NodePath,
    name: Annotated[str, typer.Option(help="Name of the node, e.g. the institution")],
) -> None:
    """Create a node directory with a node.yaml you can edit."""
    node = NodeDir(directory)
    if node.config_path.exists():
        raise fail(GenofedError(f"{node.config_path} already exists; not overwriting it"))
    created = NodeDir.create(directory, default_config(name))
    key = own_key_text(created)
    console.print(
        f"Created node [bold]{name}[/] in {directory}\n"
        f"Its aggregation key (give it to the federation's other nodes: genofed node peer add): "
        f"{key}\n  fingerprint {fingerprint(key)}"
    )


@node_app.command("ingest")
def node_ingest(
    directory: NodePath,
    dataset: Annotated[str, typer.Option(help="Dataset id; re-ingesting an id replaces it")],
    vcf: Annotated[Path, typer.Option(help="VCF, VCF.gz or BCF file with genotypes")],
    assembly: Annotated[
        str | None, typer.Option(help="GRCh37 or GRCh38; guessed from ##contig lengths if unset")
    ] = None,
    individuals: Annotated[
        Path | None,
        typer.Option(help="Clinical CSV/TSV (one row per sample) or BFF individuals.json"),
    ] = None,
    sample_column: Annotated[
        str, typer.Option(help="Column of --individuals that holds VCF sample ids")
    ] = "sample_id",
    granularity: Annotated[
        Granularity, typer.Option(help="Most detail the Beacon may return for this dataset")
    ] = "count",
    name: Annotated[str | None, typer.Option(help="Human-readable dataset name")] = None,
    description: Annotated[str | None, typer.Option(help="Dataset description")] = None,
    test_data: Annotated[
        bool, typer.Option("--test-data", help="Flag as test data (answers testMode queries)")
    ] = False,
    tier: TierOption = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Ingest the contigs of an indexed .vcf.gz in parallel on this many local "
            "processes (with compute.dask_scheduler in node.yaml: on that cluster, whose "
            "workers must see the same paths)",
        ),
    ] = 1,
) -> None:
    """Ingest genotypes (and optional clinical data) as dataset DATASET, atomically."""
    from genofed.store.dosages import Compute
    from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf

    settings = DatasetSettings(
        name=name,
        description=description,
        granularity=granularity,
        test_data=test_data,
        tier=tier,
    )
    try:
        compute = Compute.of(load_config(NodeDir(directory).config_path).compute)
        summary = ingest_vcf(
            NodeDir(directory),
            dataset,
            vcf,
            assembly=assembly,
            individuals=individuals,
            sample_column=sample_column,
            settings=settings,
            progress=True,
            workers=workers,
            compute=compute,
        )
    except GenofedError as err:
        raise fail(err) from None
    rate = summary.n_samples * summary.n_sites / max(summary.seconds, 1e-9)
    console.print(
        f"Dataset [bold]{summary.dataset_id}[/] ({summary.assembly}): "
        f"{summary.n_sites:,} sites, {summary.n_variants:,} variants, "
        f"{summary.n_samples:,} samples in {summary.seconds:.1f} s ({rate:,.0f} genotypes/s)"
    )
    for text in summary.warnings:
        warn(text)
    _warn_without_tier(NodeDir(directory), dataset, tier)


def _warn_without_tier(node: NodeDir, dataset: str, tier: str | None) -> None:
    """A dataset without a tier is served to no one: legal (closed by default), but
    rarely what the operator meant, so say how to open it."""
    if tier is not None:
        return
    policy = load_config(node.config_path).datasets.get(dataset)
    if policy is None or policy.tier is None:
        warn(
            f"dataset {dataset} has no tier, so it is served to no one; give it one with "
            f"--tier public|registered|controlled, or set datasets.{dataset}.tier in "
            f"{node.config_path}"
        )


@node_app.command("import-bff")
def node_import_bff(
    directory: NodePath,
    folder: Annotated[Path, typer.Argument(help="Folder of Beacon-Friendly-Format JSON files")],
    dataset: Annotated[str, typer.Option(help="Dataset id; re-importing an id replaces it")],
    assembly: Annotated[
        str | None, typer.Option(help="GRCh37 or GRCh38; read from RefSeq ids if unset")
    ] = None,
    granularity: Annotated[
        Granularity, typer.Option(help="Most detail the Beacon may return for this dataset")
    ] = "count",
    test_data: Annotated[bool, typer.Option("--test-data", help="Flag as test data")] = False,
    tier: TierOption = None,
) -> None:
    """Import BFF collections (individuals, biosamples, runs, analyses, cohorts, datasets,
    genomicVariations + caseLevelData) as dataset DATASET, atomically."""
    from genofed.store.bff_import import import_bff
    from genofed.store.vcf_ingest import DatasetSettings

    try:
        summary = import_bff(
            NodeDir(directory),
            dataset,
            folder,
            assembly=assembly,
            settings=DatasetSettings(granularity=granularity, test_data=test_data, tier=tier),
        )
    except GenofedError as err:
        raise fail(err) from None
    console.print(
        f"Dataset [bold]{summary.dataset_id}[/] ({summary.assembly}): "
        f"{summary.n_variants:,} variants, {summary.n_samples:,} biosamples with genotypes"
    )
    _warn_without_tier(NodeDir(directory), dataset, tier)


@node_app.command("table")
def node_table(
    directory: NodePath,
    name: Annotated[
        str, typer.Option(help="Table name for Data Connect, e.g. cohort.visits (. and : allowed)")
    ],
    file: Annotated[Path, typer.Option(help="CSV, TSV (optionally .gz) or Parquet file")],
    description: Annotated[str | None, typer.Option(help="What the table holds")] = None,
    describe: Annotated[
        list[str] | None,
        typer.Option(help="COLUMN=TEXT: a column's description (repeat for several)"),
    ] = None,
    tier: TierOption = None,
) -> None:
    """Register a CSV or Parquet file as a Data Connect table (copied into the node).

    Registering a name again replaces that table. Rows count as records of people: callers
    who may see only aggregates get counts, sums and means under the disclosure rules.

    Example: genofed node table ./node --name cohort.visits --file visits.csv
    --describe "visit_date=Date of the clinic visit" --tier registered
    """
    from genofed.store.registered_tables import register_table

    columns: dict[str, str] = {}
    for item in describe or []:
        column, sep, text = item.partition("=")
        if not sep or not column.strip():
            raise fail(GenofedError(f"--describe {item!r}: write COLUMN=TEXT"))
        columns[column.strip()] = text.strip()
    try:
        table = register_table(
            NodeDir(directory), name, file, description=description, tier=tier, columns=columns
        )
    except GenofedError as err:
        raise fail(err) from None
    shown = f"tier {tier}" if tier else "no tier yet: served to no one until node.yaml gives one"
    console.print(f"Table [bold]{table.name}[/] registered ({shown})")


@node_app.command("genes")
def node_genes(
    directory: NodePath,
    file: Annotated[
        Path, typer.Argument(help="Gene coordinates: BED (chrom start end name) or GTF")
    ],
    assembly: Annotated[str, typer.Option(help="Assembly of the coordinates")] = "GRCh38",
) -> None:
    """Load gene coordinates so that geneId queries find variants by position."""
    from genofed.store import reference
    from genofed.store.genes import read_gene_file, save_genes

    node = NodeDir(directory)
    canonical = reference.canonical_assembly(assembly)
    try:
        node.check()
        if canonical is None:
            raise GenofedError(f"unknown assembly {assembly!r}; use GRCh37 or GRCh38")
        genes = read_gene_file(file)
    except GenofedError as err:
        raise fail(err) from None
    save_genes(genes, node.genes_dir / f"{canonical}.parquet")
    console.print(f"Loaded {len(genes):,} gene regions for {canonical}")


@node_app.command("check")
def node_check(directory: NodePath) -> None:
    """Check that every dataset in the catalogue can be served: name each damaged or
    missing file and what to do (a running node leaves such datasets out)."""
    from genofed.store.live import DatasetCatalog
    from genofed.store.ontology import OntologyIndex

    node = NodeDir(directory)
    try:
        node.check()
    except GenofedError as err:
        raise fail(err) from None
    live = DatasetCatalog(node, OntologyIndex()).live()  # terms are not needed here
    for dataset_id, reader in sorted(live.readers.items()):
        console.print(f"[green]ok[/] {dataset_id} ({reader.version.version})")
    for problem in live.problems:
        console.print(f"[bold red]not served:[/] {problem}")
    if live.problems:
        raise typer.Exit(code=1)
    console.print(f"All {len(live.readers)} datasets can be served")


@node_app.command("datasets")
def node_datasets(directory: NodePath) -> None:
    """List every dataset version on disk: which one is live, which ones a running
    server still reads, and their size. ``genofed node prune`` removes the rest."""
    from rich.table import Table

    node = NodeDir(directory)
    try:
        node.check()
        versions = node.stored_versions()
    except GenofedError as err:
        raise fail(err) from None
    if not versions:
        console.print(f"No datasets in {directory}; add one with: genofed node ingest")
        return
    table = Table("dataset", "version", "state", "size")
    for v in versions:
        state = "live" if v.live else ("old, in use" if v.in_use else "old, unused")
        table.add_row(v.dataset_id, v.version, state, _size_text(v.bytes))
    console.print(table)
    unused = [v for v in versions if not v.live and not v.in_use]
    if unused:
        freed = _size_text(sum(v.bytes for v in unused))
        console.print(
            f"{len(unused)} unused old versions ({freed}): genofed node prune {directory}"
        )


@node_app.command("prune")
def node_prune(
    directory: NodePath,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed, remove nothing")
    ] = False,
) -> None:
    """Remove old dataset versions that no running server reads. The live version of
    each dataset is never removed; a version a server still holds is kept and named."""
    node = NodeDir(directory)
    try:
        result = node.prune(dry_run=dry_run)
    except GenofedError as err:
        raise fail(err) from None
    verb = "Would remove" if dry_run else "Removed"
    for v in result.removed:
        console.print(f"{verb} {v.dataset_id} {v.version} ({_size_text(v.bytes)})")
    for v in result.kept_in_use:
        console.print(f"Kept {v.dataset_id} {v.version}: a running server still reads it")
    console.print(f"{verb} {len(result.removed)} old versions, {_size_text(result.freed_bytes)}")


def _size_text(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@node_app.command("serve")
def node_serve(
    directory: NodePath,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8701,
    workers: Annotated[int, typer.Option(help="Worker processes (one per core is typical)")] = 1,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Serve HTTPS with this certificate (PEM, with its chain)")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="The certificate's private key (PEM)")
    ] = None,
) -> None:
    """Serve the node's GA4GH APIs (Beacon v2 at /beacon/v2) until Ctrl-C."""
    from genofed.node.app import create_app
    from genofed.node.serve import serve_node

    if (tls_cert is None) != (tls_key is None):
        raise fail(GenofedError("give both --tls-cert and --tls-key, or neither"))
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise fail(GenofedError(f"{path} does not exist"))
    try:
        NodeDir(directory).check()
        app = create_app(directory)  # fail here, readably, if the node cannot be opened
    except GenofedError as err:
        raise fail(err) from None
    tls = (tls_cert, tls_key) if tls_cert and tls_key else None
    scheme = "https" if tls else "http"
    console.print(f"Serving node at [bold]{scheme}://{host}:{port}/beacon/v2[/] (Ctrl-C to stop)")
    proxies = load_config(NodeDir(directory).config_path).trust.proxies
    serve_node(directory, app, host=host, port=port, workers=workers, tls=tls, proxies=proxies)


@hub_app.command("serve")
def hub_serve(
    config: Annotated[
        Path, typer.Option(help="hub.yaml: the nodes (name, url, audience) and fan-out settings")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8700,
) -> None:
    """Serve the federated Beacon at /beacon/v2 and node status at /hub/nodes until Ctrl-C.

    Each request is asked of every node at once and answered within the deadline
    (hub.yaml's deadline_s, or the request's Genofed-Deadline header), whatever the nodes
    do; every answer says how each node fared.
    """
    import uvicorn

    from genofed.config import load_hub_config
    from genofed.hub.app import create_hub_app
    from genofed.node.serve import one_blas_thread, server_options

    try:
        settings = load_hub_config(config)
        app_ = create_hub_app(settings, config.parent)
    except GenofedError as err:
        raise fail(err) from None
    console.print(f"Serving hub at [bold]http://{host}:{port}/beacon/v2[/] (Ctrl-C to stop)")
    one_blas_thread()
    uvicorn.run(
        app_,
        host=host,
        port=port,
        log_level="warning",
        **server_options([]),  # the hub believes no forwarded headers
    )


@app.command("demo")
def demo(
    serve: Annotated[bool, typer.Option(help="Keep serving after the showcase")] = True,
    workdir: Annotated[Path, typer.Option(help="Where the demo data and nodes go")] = Path(".demo"),
    port: Annotated[
        int,
        typer.Option(help="The hub's port; nodes take the next ones (free ones if taken)"),
    ] = 8700,
    samples: Annotated[
        int, typer.Option(help="Genomes of the largest institution (the others have fewer)")
    ] = 500,
) -> None:
    """A federation on this machine: three simulated institutions, a development broker,
    three nodes and a hub (local processes); shows one node's tiered answers and then the
    whole federation through the hub (variant look-up, cohort, Data Connect aggregate),
    then serves the portal until Ctrl-C."""
    from genofed.demo import run_demo

    try:
        run_demo(workdir, serve=serve, port=port, samples=samples)
    except GenofedError as err:
        raise fail(err) from None


@app.command("example")
def example(
    directory: Annotated[Path, typer.Argument(help="Where to write the files")] = Path("."),
    samples: Annotated[int, typer.Option(help="Simulated genomes")] = 400,
    seed: Annotated[int, typer.Option(help="The same seed writes the same files")] = 7,
) -> None:
    """Write the files the README's "Running a node" steps use: cohort1.vcf.gz (simulated
    genomes on chromosome 22), clinical.csv, genes.bed and visits.csv. Nothing is
    downloaded; the default seed gives the files the README's answers come from."""
    from genofed.simulate import write_example

    if samples < 20:
        raise fail(GenofedError("--samples must be at least 20"))
    files = write_example(directory, n_samples=samples, seed=seed)
    console.print(
        f"Wrote {files.vcf} ({files.n_sites:,} variants × {files.n_samples} samples), "
        f"{files.clinical}, {files.genes} and {files.visits}"
    )
    if files.planted_variant:
        console.print(f"Variant linked to seizures (HP:0001250): {files.planted_variant}")
    console.print('Next: genofed node init mynode --name "Example Hospital"')


def main() -> None:
    try:
        app()  # usage errors and Ctrl-C are click's to report
    except Exception as err:
        # One readable line, never a traceback (unless asked for): what went wrong and
        # how to see more. GenofedErrors are printed by the commands themselves.
        if _debug:
            raise
        console.print(f"[bold red]error:[/] {_readable(err)}")
        if not isinstance(err, GenofedError):  # ours say what to do; others may need more
            console.print("[dim]run again with --debug to see the traceback[/]")
        raise SystemExit(1) from None
    finally:
        # The process is about to exit: a last cycle collection over the heap that
        # numba, zarr and DuckDB leave behind only delays it (by ~0.4 s after an ingest).
        gc.freeze()


def _readable(err: Exception) -> str:
    if isinstance(err, FileNotFoundError) and err.filename:
        return f"{err.filename}: no such file or directory"
    if isinstance(err, PermissionError) and err.filename:
        return f"{err.filename}: permission denied"
    if isinstance(err, IsADirectoryError) and err.filename:
        return f"{err.filename} is a directory; give a file"
    return str(err) or type(err).__name__
