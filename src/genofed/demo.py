"""``genofed demo``: simulate a cohort, build a node, answer example Beacon queries, serve.

Everything comes from embedded defaults (msprime simulation, synthetic clinical table), so
the demo runs on a fresh clone with no data downloads.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

from genofed._exceptions import GenofedError
from genofed.config import DatasetPolicy, TrustedIssuer, default_config
from genofed.governance import broker
from genofed.node.app import create_app
from genofed.simulate import simulate_cohort
from genofed.store.node_dir import NodeDir
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf

DEMO_BROKER = "https://broker.demo.genofed.invalid"
DEMO_DATASET = "demo-cohort"


@dataclass(frozen=True)
class DemoQuery:
    title: str
    path: str
    params: dict[str, Any]


def _listening_socket(preferred: int) -> socket.socket:
    """A socket bound to ``preferred``, or to any free port if that one is taken.

    The demo binds it itself and hands it to uvicorn, so no other process can take the port
    between choosing it and serving on it.
    """
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", preferred))
    except OSError:
        sock.bind(("127.0.0.1", 0))
    return sock


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the demo's own thread handles Ctrl-C
        pass


def build_demo_node(workdir: Path, *, samples: int, console: Console) -> tuple[Path, str]:
    """Simulate data and ingest it; returns the node directory and the planted variant."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    console.print(f"[bold]1/3[/] Simulating {samples:,} genomes with msprime …")
    cohort = simulate_cohort(
        workdir / "data", n_samples=samples, sequence_length=2_000_000, prefix="DEMO", progress=True
    )
    node_dir = workdir / "node"
    node_dir.mkdir()
    # Secure defaults, plus: trust the demo's own development broker, consent for general
    # research use (so the DAC approves applications by itself) and one named reviewer.
    key = broker.create_key(workdir / "broker.json", DEMO_BROKER)
    config = default_config("genofed demo hospital")
    trusted = TrustedIssuer(issuer=DEMO_BROKER, jwks=key.jwks())
    config.trust.brokers, config.trust.visa_issuers = [trusted], [trusted]
    config.datasets[DEMO_DATASET] = DatasetPolicy(duo=["DUO:0000042"])
    config.dac_reviewers = ["demo-reviewer"]
    NodeDir.create(node_dir, config)
    console.print(f"[bold]2/3[/] Ingesting {cohort.n_sites:,} sites into a node …")
    summary = ingest_vcf(
        NodeDir(node_dir),
        DEMO_DATASET,
        cohort.vcf,
        assembly="GRCh38",
        individuals=cohort.clinical,
        settings=DatasetSettings(
            name="Demo cohort (simulated)",
            granularity="record",
            description="msprime-simulated genotypes with a synthetic "
            "clinical table (sex, age, HPO phenotypes, ICD-10)",
            tier="public",
        ),
        progress=True,
    )
    console.print(
        f"    {summary.n_variants:,} variants × {summary.n_samples:,} samples "
        f"in {summary.seconds:.1f} s"
    )
    return node_dir, cohort.planted_variant or ""


def example_queries(planted: str) -> list[DemoQuery]:
    chrom, pos, ref, alt = planted.split("-") if planted else ("22", "1000", "A", "G")
    start = int(pos) - 1
    return [
        DemoQuery(
            "Does anyone carry the planted variant?",
            "g_variants",
            {
                "referenceName": f"chr{chrom}",
                "start": start,
                "referenceBases": ref,
                "alternateBases": alt,
                "assemblyId": "GRCh38",
                "requestedGranularity": "count",
            },
        ),
        DemoQuery(
            "How many individuals carry it?",
            f"g_variants/{chrom}-{pos}-{ref}-{alt}/individuals",
            {"requestedGranularity": "count"},
        ),
        DemoQuery(
            "… of whom have seizures (HP:0001250 or a descendant term)?",
            f"g_variants/{chrom}-{pos}-{ref}-{alt}/individuals",
            {"filters": "HP:0001250", "requestedGranularity": "count"},
        ),
        DemoQuery(
            "Does anyone with seizures carry it?",
            "g_variants",
            {
                "referenceName": chrom,
                "start": start,
                "alternateBases": alt,
                "filters": "HP:0001250",
                "requestedGranularity": "count",
            },
        ),
        DemoQuery(
            "Variants in a 10 kb window",
            "g_variants",
            {
                "referenceName": chrom,
                "start": start,
                "end": start + 10_000,
                "requestedGranularity": "count",
            },
        ),
        DemoQuery(
            "Deletions of 2+ bases anywhere on chr22",
            "g_variants",
            {
                "referenceName": chrom,
                "start": 0,
                "end": 50_000_000,
                "variantType": "DEL",
                "variantMinLength": 2,
                "requestedGranularity": "count",
            },
        ),
        DemoQuery(
            "Female individuals (NCIT:C16576)",
            "individuals",
            {"filters": "NCIT:C16576", "requestedGranularity": "count"},
        ),
        DemoQuery(
            "Individuals over 70 with a circulatory disease (ICD-10 chapter IX)",
            "individuals",
            {"filters": "ICD10:IX,age>=P70Y", "requestedGranularity": "count"},
        ),
        DemoQuery(
            "Individuals with hypertension (HP:0000822)",
            "individuals",
            {"filters": "HP:0000822", "requestedGranularity": "count"},
        ),
    ]


def demo_callers(node_url: str, workdir: Path) -> dict[str, dict[str, str]]:
    """Headers of three callers: anonymous, a registered researcher, and that researcher
    after the node's DAC approved their application (through the real ``/dac`` API)."""
    key = broker.load_key(workdir / "broker.json")
    sub = "demo-researcher"
    bona_fide = broker.bona_fide_visas(key, sub)
    registered = {"Authorization": f"Bearer {broker.passport(key, sub, bona_fide)}"}
    application = {
        "dataset_id": DEMO_DATASET,
        "title": "Genetics of seizures",
        "purpose": {"category": "disease", "diseases": ["HP:0001250"]},
    }
    with httpx.Client(base_url=node_url, headers=registered, timeout=30) as client:
        created = client.post("/dac/applications", json=application)
        created.raise_for_status()
        app_id = created.json()["id"]
        client.post(f"/dac/applications/{app_id}/submit").raise_for_status()
        visa = client.get(f"/dac/applications/{app_id}/visa").json()["visa"]
    controlled = {"Authorization": f"Bearer {broker.passport(key, sub, [*bona_fide, visa])}"}
    return {"anonymous": {}, "registered researcher": registered, "with a DAC grant": controlled}


def compare_callers(
    base_url: str, callers: dict[str, dict[str, str]], queries: list[DemoQuery], console: Console
) -> list[dict]:
    """The same questions, asked by each caller: the node decides what each may see."""
    table = Table(title="Same question, three callers (tiered access, enforced at the node)")
    for column in ("question", "caller", "granularity", "exists", "count", "records"):
        table.add_column(column)
    answers = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for query in queries:
            for name, headers in callers.items():
                params = {**query.params, "requestedGranularity": "record"}
                body = client.get(f"/{query.path}", params=params, headers=headers).json()
                summary = body.get("responseSummary", {})
                shown = sum(
                    len(r["results"]) for r in body.get("response", {}).get("resultSets", [])
                )
                count = summary.get("numTotalResults", "—")
                if summary.get("countPrecision"):
                    count = f"{count} ({summary['countPrecision']})"
                table.add_row(
                    query.title if name == "anonymous" else "",
                    name,
                    body["meta"]["returnedGranularity"],
                    "yes" if summary.get("exists") else "no",
                    str(count),
                    str(shown),
                )
                answers.append(body)
    console.print(table)
    return answers


def run_queries(
    base_url: str, queries: list[DemoQuery], console: Console, headers: dict[str, str]
) -> list[dict]:
    table = Table(title="Example Beacon v2 queries (researcher with a DAC grant)")
    table.add_column("question")
    table.add_column("exists", justify="center")
    table.add_column("count", justify="right")
    table.add_column("ms", justify="right")
    answers = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        for query in queries:
            started = time.perf_counter()
            # Record granularity: this caller may see records, so counts are exact.
            params = {**query.params, "requestedGranularity": "record"}
            response = client.get(f"/{query.path}", params=params)
            elapsed = (time.perf_counter() - started) * 1000
            body = response.json()
            summary = body.get("responseSummary", {})
            answers.append(body)
            table.add_row(
                query.title,
                "yes" if summary.get("exists") else "no",
                f"{summary.get('numTotalResults', '—')}",
                f"{elapsed:.1f}",
            )
    console.print(table)
    return answers


DATA_CONNECT_QUERIES = [
    (
        "registered researcher",
        "Individuals per ICD-10 chapter (aggregates only: small groups withheld, counts rounded)",
        f"SELECT substring(d, 7, 1) AS icd10_letter, count(*) AS individuals FROM "
        f'"{DEMO_DATASET}.individuals", UNNEST(diseases) AS u(d) WHERE d LIKE ? '
        "GROUP BY 1 ORDER BY 1",
        ["ICD10:%"],
    ),
    (
        "with a DAC grant",
        "The five commonest variants (rows: this caller holds a grant)",
        f'SELECT variant_id, ac, an, round(af, 3) AS af FROM "{DEMO_DATASET}.variants" '
        "WHERE af < ? ORDER BY af DESC, variant_id LIMIT 5",
        [0.5],
    ),
]


def run_data_connect(
    node_url: str, callers: dict[str, dict[str, str]], console: Console
) -> list[dict]:
    """GA4GH Data Connect SQL, as the caller each question suits; the anonymous caller
    sees no table at all (the dataset gives anonymous callers yes/no answers only)."""
    answers = []
    with httpx.Client(base_url=f"{node_url}/data-connect", timeout=60) as client:
        anonymous = client.get("/tables").json()["tables"]
        granted = client.get("/tables", headers=callers["with a DAC grant"]).json()["tables"]
        console.print(
            f"Data Connect tables: anonymous caller sees {len(anonymous)}, the researcher with "
            f"a DAC grant sees {len(granted)} ({', '.join(t['name'] for t in granted)})"
        )
        for caller, title, query, parameters in DATA_CONNECT_QUERIES:
            body = client.post(
                "/search",
                json={"query": query, "parameters": parameters},
                headers=callers[caller],
            ).json()
            answers.append(body)
            rows = body.get("data", [])
            table = Table(title=f"{title}\n[dim]{caller}: POST /data-connect/search[/]")
            for column in rows[0] if rows else {"(no rows)": None}:
                table.add_column(column, justify="right")
            for row in rows:
                table.add_row(*(str(v) for v in row.values()))
            console.print(table)
            for error in body.get("errors", []):
                console.print(f"  [yellow]{error['title']}[/]: {error['detail']}")
    return answers


def run_demo(workdir: Path, *, serve: bool, port: int = 8701, samples: int = 500) -> None:
    console = Console()
    node_dir, planted = build_demo_node(workdir, samples=samples, console=console)
    sock = _listening_socket(port)
    port = int(sock.getsockname()[1])
    server = _Server(
        uvicorn.Config(create_app(node_dir), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise GenofedError(f"the demo node could not start serving on 127.0.0.1:{port}")
        time.sleep(0.05)
    base_url = f"http://127.0.0.1:{port}/beacon/v2"
    try:
        console.print(f"[bold]3/3[/] Asking the node's Beacon at {base_url}")
        callers = demo_callers(f"http://127.0.0.1:{port}", workdir)
        queries = example_queries(planted)
        compare_callers(base_url, callers, [queries[0], queries[-1]], console)
        run_queries(base_url, queries, console, callers["with a DAC grant"])
        run_data_connect(f"http://127.0.0.1:{port}", callers, console)
        if serve:
            # The granted researcher's Passport, for trying the node by hand.
            passport = workdir / "passport.jwt"
            passport.write_text(callers["with a DAC grant"]["Authorization"].split()[1])
            url = f"{base_url}/individuals?filters=HP:0001250&requestedGranularity=count"
            console.print(
                f"\nServing the demo node at [bold]{base_url}[/]. Try, anonymously and then "
                f"as the researcher with a DAC grant:\n  curl '{url}'\n"
                f"  curl -H \"Authorization: Bearer $(cat {passport})\" '{url}'\n"
                "and SQL through GA4GH Data Connect:\n"
                f'  curl -H "Authorization: Bearer $(cat {passport})" '
                f"-H 'Content-Type: application/json' -d "
                f'\'{{"query": "SELECT count(*) AS n FROM \\"{DEMO_DATASET}.variants\\""}}\' '
                f"http://127.0.0.1:{port}/data-connect/search\n"
                "Press Ctrl-C to stop."
            )
            while thread.is_alive():
                thread.join(0.5)
    except KeyboardInterrupt:
        console.print("Stopping.")
    finally:
        server.should_exit = True
        # Waited for in full: a daemon thread still inside native code when the interpreter
        # exits can abort the process.
        thread.join()
        sock.close()
