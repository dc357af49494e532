"""``genofed demo``: a federation of three institutions on this machine.

It simulates one population's cohort and splits its people over three institutions
(different sizes, tiers and clinical coding), builds a node for each, starts a development
broker, the three nodes and a hub as local processes, shows what each kind of caller gets
from one node, then asks the whole federation through the hub (a variant look-up, a
cross-node cohort, a Data Connect aggregate), fits a GLM, runs a GWAS and trains a model
across them by secure sums, runs a workflow at each (WES) whose outputs each node's
custodian releases, and serves the portal until Ctrl-C. Everything comes from embedded defaults
(msprime simulation, synthetic clinical tables): no downloads.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from genofed import devbroker as broker
from genofed._exceptions import GenofedError
from genofed.config import (
    ApprovedWorkflow,
    DacReviewer,
    DatasetPolicy,
    HubConfig,
    HubNode,
    Tier,
    TrustedIssuer,
    default_config,
    load_config,
    save_config,
    save_hub_config,
)
from genofed.governance import keys
from genofed.simulate import SimulatedCohort, simulate_cohort, split_cohort
from genofed.store.node_dir import NodeDir
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf

DEMO_BROKER = "https://broker.demo.genofed.invalid"
DEMO_DATASET = "demo-cohort"
DEMO_REGION = "22:1-2000000"  # the simulated region
WORKFLOW = resources.files("genofed") / "data" / "workflows" / "allele-frequencies.cwl"
FINISHED_RUN = ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED")


@dataclass(frozen=True)
class Institution:
    name: str  # the node's name in the hub
    title: str
    dataset: str
    share: float  # of --samples
    tier: Tier
    icd10: bool  # False: this site codes diseases with HPO only


INSTITUTIONS = (
    Institution("hospital-a", "Hospital A", DEMO_DATASET, 1.0, "public", True),
    Institution("biobank-b", "Biobank B", "biobank-b-cohort", 0.6, "registered", True),
    Institution("national-c", "National programme C", "national-c-cohort", 0.4, "public", False),
)


@dataclass(frozen=True)
class DemoQuery:
    title: str
    path: str
    params: dict[str, Any]


def simulate_institutions(
    workdir: Path, samples: int, console: Console
) -> dict[str, SimulatedCohort]:
    """One population's cohort (msprime), its people split over the institutions in their
    shares of ``samples``: they share its variants, as biobanks sampling one country do."""
    sizes = {site.name: max(20, int(samples * site.share)) for site in INSTITUTIONS}
    began = time.perf_counter()
    cohort = simulate_cohort(workdir / "data" / "population", n_samples=sum(sizes.values()),
                             sequence_length=2_000_000, seed=42, prefix="DEMO")  # fmt: skip
    parts = split_cohort(cohort, sizes, workdir / "data")
    console.print(
        f"    one population: {cohort.n_samples:,} people × {cohort.n_sites:,} sites, split "
        + ", ".join(f"{n} {c.n_samples:,}" for n, c in parts.items())
        + f" ({time.perf_counter() - began:.1f} s)"
    )
    return parts


def build_institution(
    workdir: Path, site: Institution, cohort: SimulatedCohort, console: Console
) -> Path:
    """Ingest one site's part of the cohort into its node; returns the node directory."""
    clinical = cohort.clinical
    if not site.icd10:
        clinical = _without_icd10(cohort.clinical)
    node_dir = workdir / "nodes" / site.name
    node_dir.parent.mkdir(parents=True, exist_ok=True)
    # Secure defaults, plus: trust the demo's development broker, accept Passports addressed
    # to this node only, consent for general research use (the DAC approves applications
    # by itself) and one named reviewer.
    key = keys.load_key(workdir / "broker.json")
    config = default_config(site.title)
    trusted = TrustedIssuer(issuer=DEMO_BROKER, jwks=key.jwks())
    config.trust.brokers, config.trust.visa_issuers = [trusted], [trusted]
    config.trust.audience = audience(site)
    # Registered researchers may run the vetted analyses on the demo's datasets.
    config.datasets[site.dataset] = DatasetPolicy(duo=["DUO:0000042"], analysis="registered")
    config.dac_reviewers = [DacReviewer(sub="demo-reviewer", iss=DEMO_BROKER)]
    # ... and workflows: the allele-frequency workflow genofed ships, approved (as
    # `genofed node workflow approve` does once its operator has read it)
    config.workflows.who = "registered"
    digest = hashlib.sha256(WORKFLOW.read_bytes()).hexdigest()
    config.workflows.approved[digest] = ApprovedWorkflow(
        name=WORKFLOW.name, approved=datetime.now(UTC).isoformat(timespec="seconds"),
        note="the demo's allele frequencies",
    )  # fmt: skip
    NodeDir.create(node_dir, config)
    summary = ingest_vcf(
        NodeDir(node_dir),
        site.dataset,
        cohort.vcf,
        assembly="GRCh38",
        individuals=clinical,
        settings=DatasetSettings(
            name=f"{site.title} cohort (simulated)",
            granularity="record",
            description="msprime-simulated genotypes with a synthetic clinical table "
            f"(sex, age, HPO phenotypes{', ICD-10' if site.icd10 else ''})",
            tier=site.tier,
        ),
    )
    console.print(
        f"    {site.title}: {summary.n_variants:,} variants × {summary.n_samples:,} samples, "
        f"tier {site.tier}{'' if site.icd10 else ', diseases coded in HPO only'} "
        f"({summary.seconds:.1f} s)"
    )
    return node_dir


def pin_peers(nodes: dict[str, Path]) -> None:
    """Every node pins the others' aggregation keys under their names (what `genofed node
    peer add` does after the operators compare fingerprints), so they can sum securely."""
    configs = {root: load_config(NodeDir(root).config_path) for root in nodes.values()}
    public = {
        configs[root].name: keys.public_key_text(
            keys.load_or_create_aggregation_key(NodeDir(root).aggregation_key_path)
        )
        for root in nodes.values()
    }
    for root, config in configs.items():
        config.analysis.peers = {p: key for p, key in public.items() if p != config.name}
        save_config(config, NodeDir(root).config_path)


def run_glm(hub_url: str, token: str, console: Console) -> dict[str, Any]:
    """A logistic model of seizures (HP:0001250 and its descendants) on age and sex, fitted
    across the three institutions by secure sums: the pooled model, no row moved."""
    from genofed.cli_analyses import print_glm, run_analysis

    body = {"kind": "glm", "formula": "HP_0001250 ~ age + sex", "family": "binomial"}
    console.print(f'    genofed glm "{body["formula"]}" --family binomial --hub {hub_url}')
    job = run_analysis(hub_url, token, body, show=console)
    if job["state"] != "succeeded":
        raise GenofedError(f"the demo's GLM {job['state']}: {job.get('error')}")
    print_glm(job["result"], console)
    return job


def run_gwas(hub_url: str, token: str, planted: str, console: Console) -> dict[str, Any]:
    """A logistic GWAS of seizures on age and sex over the simulated region: the score test
    of every variant common enough at every node, then Firth fits of the hits; the
    planted variant should top it. Its Manhattan plot is in the portal's Analyses panel."""
    from genofed.cli_analyses import print_gwas, run_analysis

    body = {"kind": "gwas", "model": "logistic", "phenotypes": ["HP_0001250"],
            "covariates": ["age", "sex"], "region": DEMO_REGION, "firth_max": 10}  # fmt: skip
    console.print(
        f"    genofed gwas --phenotype HP_0001250 --model logistic --covariates age,sex "
        f"--region {DEMO_REGION} --hub {hub_url} --out gwas/"
    )
    job = run_analysis(hub_url, token, body, show=console)
    if job["state"] != "succeeded":
        raise GenofedError(f"the demo's GWAS {job['state']}: {job.get('error')}")
    print_gwas(job["result"], console)
    top = job["result"]["phenotypeSummary"]["HP_0001250"]["top"]
    where = next((i for i, row in enumerate(top, start=1) if row["ID"] == planted), None)
    console.print(
        f"    the planted variant {planted} is hit {where} of the top {len(top)}"
        if where
        else f"    the planted variant {planted} is not in the top {len(top)}"
    )
    console.print(f"    its Manhattan and QQ plots: {hub_url}/ (Analyses) or the job's files")
    return job


def run_learning(hub_url: str, token: str, planted: str, console: Console) -> dict[str, Any]:
    """A logistic model of seizures on age, sex and the planted variant, trained by FedAvg
    at the three institutions (each round's updates summed securely). Its training curve
    is in the portal's Analyses panel."""
    from genofed.cli_analyses import print_learning, run_analysis

    body = {"kind": "learn", "target": "HP_0001250", "features": ["age", "sex"],
            "variants": [planted] if planted else [], "rounds": 30, "lr": 2.0}  # fmt: skip
    features = ",".join(["age", "sex", *body["variants"]])
    console.print(f"    genofed learn --target HP_0001250 --features {features} --rounds 30 "
                  f"--lr 2 --hub {hub_url} --out model/")  # fmt: skip
    job = run_analysis(hub_url, token, body, show=console)
    if job["state"] != "succeeded":
        raise GenofedError(f"the demo's training {job['state']}: {job.get('error')}")
    print_learning(job["result"], console)
    console.print(f"    its training curve: {hub_url}/ (Analyses) or the job's files")
    return job


def audience(site: Institution) -> str:
    return f"urn:genofed:demo:{site.name}"


def _without_icd10(path: Path) -> Path:
    """The clinical table without its ICD-10 column: a site that codes only phenotypes."""
    target = path.with_name(path.stem + ".hpo-only.csv")
    with path.open(newline="") as source, target.open("w", newline="") as sink:
        reader = csv.DictReader(source)
        fields = [f for f in reader.fieldnames or [] if f != "diseases"]
        writer = csv.DictWriter(sink, fieldnames=fields)
        writer.writeheader()
        for row in reader:
            writer.writerow({k: row[k] for k in fields})
    return target


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
    key = keys.load_key(workdir / "broker.json")
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
                count = _count_text(
                    summary.get("numTotalResults"), summary.get("countPrecision"), query.path
                )
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
                _count_text(
                    summary.get("numTotalResults"), summary.get("countPrecision"), query.path
                ),
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


class Processes:
    """The demo's servers, each a ``genofed`` process logging to ``logs/``."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self._files: list[Any] = []

    def start(self, name: str, args: list[str], ready_url: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("wb")
        self._files.append(log)
        command = [sys.executable, "-c", "from genofed.cli import main; main()", *args]
        # Their own process group: a Ctrl-C reaches the demo, which stops them in order.
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.running[name] = process
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise GenofedError(f"{name} stopped while starting; see {self.logs / name}.log")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise GenofedError(f"{name} did not start within a minute; see {self.logs}")

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.running.values())

    def stop(self) -> None:
        for process in reversed(self.running.values()):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for file in self._files:
            file.close()


def _port(preferred: int) -> int:
    """``preferred`` if it is free, else any free port. Probed as the servers bind (with
    ``SO_REUSEADDR``, as uvicorn does), so that connections of an earlier run still in
    TIME-WAIT do not move the nodes to other ports."""
    for candidate in (preferred, 0):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise GenofedError("no free port on 127.0.0.1")


def start_federation(
    workdir: Path, nodes: dict[str, Path], processes: Processes, *, port: int
) -> tuple[dict[str, str], str, str]:
    """Broker, nodes and hub as processes; returns the node URLs, the hub and broker URLs."""
    broker_url = f"http://127.0.0.1:{_port(8780)}"
    processes.start(
        "broker",
        ["passport", "serve", str(workdir / "broker.json"), "--port", broker_url.rsplit(":", 1)[1]],
        f"{broker_url}/.well-known/jwks.json",
    )
    urls = {}
    for offset, (name, node_dir) in enumerate(nodes.items()):
        node_port = _port(port + 1 + offset)
        urls[name] = f"http://127.0.0.1:{node_port}"
        processes.start(
            name,
            ["node", "serve", str(node_dir), "--port", str(node_port)],
            f"{urls[name]}/-/health",
        )
    sites = {s.name: s for s in INSTITUTIONS}
    hub_config = HubConfig(
        name="genofed demo federation",
        beacon_id="org.genofed.demo.hub",
        nodes=[
            HubNode(name=name, url=url, audience=audience(sites[name]))
            for name, url in urls.items()
        ],
        token_exchange_url=f"{broker_url}/token",
        health_interval_s=5,
    )
    save_hub_config(hub_config, workdir / "hub.yaml")
    hub_url = f"http://127.0.0.1:{_port(port)}"
    processes.start(
        "hub",
        [
            "hub",
            "serve",
            "--config",
            str(workdir / "hub.yaml"),
            "--port",
            hub_url.rsplit(":", 1)[1],
        ],
        f"{hub_url}/-/health",
    )
    return urls, hub_url, broker_url


def _outcomes(body: dict[str, Any]) -> str:
    return ", ".join(f"{n['node']} {n['status']}" for n in body["info"]["nodes"])


def run_federation(hub_url: str, token: str, planted: str, console: Console) -> dict[str, Any]:
    """The same questions asked of every institution at once, through the hub."""
    chrom, pos, ref, alt = planted.split("-") if planted else ("22", "1000", "A", "G")
    researcher = {"Authorization": f"Bearer {token}"}
    shown: dict[str, Any] = {}
    with httpx.Client(base_url=hub_url, timeout=60) as client:
        params = {
            "referenceName": chrom,
            "start": int(pos) - 1,
            "referenceBases": ref,
            "alternateBases": alt,
            "requestedGranularity": "count",
        }
        table = Table(title=f"Federated variant look-up {planted} (hub → 3 nodes)")
        for column in ("caller", "result set", "exists", "count"):
            table.add_column(column)
        for caller, headers in (("anonymous", {}), ("registered researcher", researcher)):
            body = client.get("/beacon/v2/g_variants", params=params, headers=headers).json()
            shown[f"variant {caller}"] = body
            for result_set in (body.get("response") or {}).get("resultSets") or []:
                count = result_set.get("resultsCount")
                table.add_row(
                    caller,
                    result_set["id"],
                    str(result_set.get("exists")),
                    _count_text(count, result_set.get("countPrecision"), "g_variants"),
                )
            summary = body["responseSummary"]
            table.add_row(
                caller,
                "[bold]all nodes[/]",
                str(summary.get("exists")),
                _count_text(
                    summary.get("numTotalResults"), summary.get("countPrecision"), "g_variants"
                ),
            )
        console.print(table)
        console.print(f"    nodes: {_outcomes(shown['variant registered researcher'])}")

        criteria = {"terms": ["HP:0001250"], "min_age": 40}
        counts = client.post("/hub/cohorts/count", json=criteria, headers=researcher).json()
        shown["cohort"] = counts
        table = Table(title="Cross-node cohort: seizures (HP:0001250 and descendants), age 40+")
        for column in ("node", "status", "count"):
            table.add_column(column)
        for node in counts["nodes"]:
            precision = node.get("countPrecision")
            count = node.get("count")
            table.add_row(
                node["node"],
                node["status"],
                _count_text(count, precision, "individuals"),
            )
        table.add_row(
            "[bold]total[/]",
            "",
            _count_text(counts["total"], counts["countPrecision"], "individuals"),
        )
        console.print(table)
        saved = client.post(
            "/hub/cohorts",
            json={"name": "Seizures, 40 and over", "criteria": criteria},
            headers=researcher,
        ).json()
        console.print(f"    saved as {saved['id']}: later analyses can target it")

        query = (
            "SELECT sex, count(*) AS individuals, "
            "avg(coalesce(len(phenotypic_features), 0)) AS mean_phenotypes "
            'FROM "*.individuals" GROUP BY sex ORDER BY sex'
        )
        body = client.post("/data-connect/search", json={"query": query}, headers=researcher).json()
        shown["data connect"] = body
        table = Table(
            title="Federated Data Connect: every node's individuals, by sex\n"
            '[dim]SELECT sex, count(*), avg(...) FROM "*.individuals" GROUP BY sex[/]'
        )
        for column in ("sex", "individuals", "mean_phenotypes"):
            table.add_column(column, justify="right")
        for row in body.get("data", []):
            mean = row.get("mean_phenotypes")
            table.add_row(
                str(row.get("sex")),
                str(row.get("individuals")),
                "" if mean is None else f"{mean:.2f}",
            )
        console.print(table)
        for error in body.get("errors", []):
            console.print(
                f"  [yellow]{error.get('source')}: {error['title']}[/]: {error['detail']}"
            )
    return shown


_UNITS = {"g_variants": "variants", "individuals": "people", "biosamples": "biosamples"}


def _count_text(count: int | None, precision: str | None, path: str) -> str:
    """A count with what it counts, so that "5 variants (imprecise)" is not read as five
    people; "imprecise" is a floor standing for any count from 1 up to it."""
    if count is None:
        return "—"
    unit = _UNITS.get(path.split("/")[-1], "records")
    if precision in (None, "exact"):
        return f"{count} {unit}"
    return f"{count} {unit} ({precision})"


def _stop(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def run_workflow(hub_url: str, token: str, nodes: dict[str, Path], console: Console) -> None:
    """The allele frequencies of the demo's region, computed by a CWL workflow at each
    institution (WES, in each node's sandbox), checked in each node's airlock, released by
    each custodian, and shown side by side."""
    from genofed.wes.airlock import Airlock
    from genofed.wes.sandbox import BWRAP

    if shutil.which(BWRAP) is None:
        console.print("    skipped: workflows run in bubblewrap's sandbox, which is not "
                      "installed here (apt-get install bubblewrap)")  # fmt: skip
        return
    chrom, span = DEMO_REGION.split(":")
    start, end = (int(x) for x in span.split("-"))
    params = {"database": "/data/{dataset}/dataset.duckdb", "chrom": chrom, "start": start,
              "end": end, "min_count": 10}  # fmt: skip
    data = {"workflow_type": "CWL", "workflow_type_version": "v1.2",
            "workflow_url": WORKFLOW.name, "workflow_params": json.dumps(params),
            "datasets": ",".join(f"{s.name}:{s.dataset}" for s in INSTITUTIONS)}  # fmt: skip
    console.print(f"    POST {hub_url}/hub/workflows  ({WORKFLOW.name}, min_count 10)")
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=hub_url, headers=headers, timeout=120) as client:
        files = {"workflow_attachment": (WORKFLOW.name, WORKFLOW.read_bytes())}
        started = client.post("/hub/workflows", data=data, files=files)
        if started.status_code != 200:
            raise GenofedError(f"the demo's workflow was refused: {started.text[:300]}")
        run_id = started.json()["id"]
        deadline = time.monotonic() + 300
        while True:
            shown = client.get(f"/hub/workflows/{run_id}").json()["nodes"]
            if all(n.get("state") in FINISHED_RUN or "run_id" not in n for n in shown.values()):
                break
            if time.monotonic() > deadline:
                raise GenofedError("the demo's workflow runs did not finish in 5 minutes")
            time.sleep(0.3)
        tables: dict[str, dict[tuple[str, str, str], str]] = {}
        for site in INSTITUTIONS:
            node = shown[site.name]
            if node.get("state") != "COMPLETE":
                console.print(f"    {site.title}: {node.get('state') or node.get('detail')}")
                continue
            # the custodian's side: the node's airlock, with what its checks found
            airlock = Airlock.of_node(nodes[site.name])
            output = next(o for o in airlock.outputs(node["run_id"])
                          if o.name == "allele-frequencies.tsv")  # fmt: skip
            airlock.decide(node["run_id"], "allele-frequencies.tsv", "released",
                           f"custodian of {site.title} (demo)",
                           "allele frequencies of common variants")  # fmt: skip
            console.print(f"    {site.title}: {node['state']}, automatic checks "
                          f"{output.automatic}; released by its custodian (genofed airlock "
                          f"release {nodes[site.name]} {node['run_id']} allele-frequencies.tsv "
                          "--reason 'allele frequencies of common variants')")  # fmt: skip
            got = client.get(f"/hub/workflows/{run_id}/nodes/{site.name}/outputs/"
                             "allele-frequencies.tsv")  # fmt: skip
            rows = [line.split("\t") for line in got.text.splitlines()[1:]]
            tables[site.name] = {(r[1], r[2], r[3]): r[6] for r in rows}
    common = sorted(set.intersection(*(set(t) for t in tables.values())) if tables else set(),
                    key=lambda v: int(v[0]))  # fmt: skip
    shown_at = [s for s in INSTITUTIONS if s.name in tables]
    table = Table("position", "ref>alt", *(s.title for s in shown_at),
                  title=f"Allele frequencies, side by side ({len(common)} variants at every "
                  f"institution; the first 8)")  # fmt: skip
    for variant in common[:8]:
        table.add_row(variant[0], f"{variant[1]}>{variant[2]}",
                      *(tables[s.name][variant] for s in shown_at))  # fmt: skip
    console.print(table)
    console.print(f"    in the portal: {hub_url}/ (Workflows)")


def run_demo(workdir: Path, *, serve: bool, port: int = 8700, samples: int = 500) -> None:
    console = Console(soft_wrap=True)  # commands must paste as printed
    # Ctrl-C, and a plain `kill`, stop the servers too: they run in sessions of their own.
    # (A shell starting the demo in the background would otherwise have it ignore SIGINT.)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    keys.create_key(workdir / "broker.json", DEMO_BROKER)
    console.print("[bold]1/8[/] Simulating and ingesting three institutions (msprime) …")
    parts = simulate_institutions(workdir, samples, console)
    nodes = {site.name: build_institution(workdir, site, parts[site.name], console)
             for site in INSTITUTIONS}  # fmt: skip
    planted = parts[INSTITUTIONS[0].name].planted_variant or ""
    pin_peers(nodes)
    processes = Processes(workdir / "logs")
    try:
        console.print("[bold]2/8[/] Starting the broker, three nodes and the hub …")
        urls, hub_url, _ = start_federation(workdir, nodes, processes, port=port)
        first = urls[INSTITUTIONS[0].name]
        base_url = f"{first}/beacon/v2"
        console.print(f"[bold]3/8[/] One node, three callers: {INSTITUTIONS[0].title} at {first}")
        callers = demo_callers(first, workdir)
        queries = example_queries(planted)
        compare_callers(base_url, callers, [queries[0], queries[-1]], console)
        run_queries(base_url, queries, console, callers["with a DAC grant"])
        run_data_connect(first, callers, console)
        console.print(f"[bold]4/8[/] The whole federation, through the hub at {hub_url}")
        key = keys.load_key(workdir / "broker.json")
        token = broker.access_token(
            key,
            "demo-researcher",
            broker.bona_fide_visas(key, "demo-researcher", hours=12),
            hours=12,
        )
        (workdir / "token.jwt").write_text(token)
        run_federation(hub_url, token, planted, console)
        console.print("[bold]5/8[/] A federated GLM across the three institutions (secure sums)")
        run_glm(hub_url, token, console)
        console.print("[bold]6/8[/] A federated GWAS of seizures across the three institutions")
        run_gwas(hub_url, token, planted, console)
        console.print("[bold]7/8[/] A model of seizures trained across the three institutions")
        run_learning(hub_url, token, planted, console)
        console.print("[bold]8/8[/] A workflow at the three institutions (WES), its outputs "
                      "released by each custodian")  # fmt: skip
        run_workflow(hub_url, token, nodes, console)
        if serve:
            passport = workdir / "passport.jwt"
            passport.write_text(callers["with a DAC grant"]["Authorization"].split()[1])
            console.print(
                f"\nThe portal: [bold]{hub_url}/[/] (paste the token from {workdir / 'token.jwt'} "
                "to ask as a registered researcher)\n"
                f"The hub's Beacon: {hub_url}/beacon/v2 · nodes: "
                + ", ".join(f"{n} {u}" for n, u in urls.items())
                + "\nTry (genofed is in .venv: run `. .venv/bin/activate` first, or call "
                ".venv/bin/genofed):\n"
                f"  genofed query beacon --hub {hub_url} --chrom 22 --start 0 --end 2000000\n"
                f"  GENOFED_TOKEN=$(cat {workdir / 'token.jwt'}) genofed query sql --hub {hub_url} "
                "'SELECT sex, count(*) AS n FROM \"*.individuals\" GROUP BY sex'\n"
                f"  GENOFED_TOKEN=$(cat {workdir / 'token.jwt'}) genofed glm --hub {hub_url} "
                "'HP_0001250 ~ age + sex' --family binomial\n"
                f"  GENOFED_TOKEN=$(cat {workdir / 'token.jwt'}) genofed gwas --hub {hub_url} "
                "--phenotype HP_0001250 --model logistic --covariates age,sex "
                f"--region {DEMO_REGION} --out gwas/\n"
                f"  GENOFED_TOKEN=$(cat {workdir / 'token.jwt'}) genofed learn --hub {hub_url} "
                f"--target HP_0001250 --features age,sex{',' + planted if planted else ''} "
                "--rounds 30 --lr 2 --out model/\n"
                f'  curl -H "Authorization: Bearer $(cat {passport})" '
                f"'{base_url}/individuals?filters=HP:0001250&requestedGranularity=record'\n"
                "Press Ctrl-C to stop everything."
            )
            while processes.alive():
                time.sleep(0.5)
            raise GenofedError(f"a demo server stopped; see {workdir / 'logs'}")
    except KeyboardInterrupt:
        console.print("Stopping.")
    finally:
        processes.stop()
