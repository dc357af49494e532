"""Federated GWAS benchmark through real processes: a linear GWAS and a logistic score
test run by the hub over three node servers by secure sums, beside plink2 ``--glm`` on the
pooled VCF, in the same run.

Usage::

    .venv/bin/python bench/bench_gwas.py [--samples 15000] [--sites 100000] [--block 4000]
                                         [--out PATH] [--quick] [--sweep 500,1000,...]

Steps:

1. One cohort simulated with msprime (``genofed.simulate.simulate_cohort``: ``--samples``
   people, ``--sites`` sites of chromosome 22, ~1 % multi-allelic and ~2 % indels), its
   people split 50 / 30 / 20 % (in order) over three nodes (``alpha``, ``beta``,
   ``gamma``) with ``bcftools view -S`` (three at once), each node built as
   ``tests/test_gwas_federation.py`` builds its nodes: trusting the test broker, its dataset
   analysable by registered researchers, the node's VCF ingested with the node's rows of
   the clinical CSV (``age``, ``sex``), and a registered table ``traits`` with two
   phenotypes: ``qt`` = 0.03 age + 0.25 male + five planted variant effects (common SNPs
   spread over the region, effects 0.25 ... -0.1 per ALT allele) + N(0, 1), 0.5 % of it
   missing; ``case`` ~ Bernoulli(logistic(-1.3 + 0.02 (age - mean) + 0.2 male + 1.2 x the
   same variant effects)). The aggregation keys are pinned between the nodes (their
   defaults otherwise: a hub job counts once in a node's daily analysis budget, whatever
   its rounds), then ``genofed node serve`` for each and ``genofed hub serve`` over them,
   all on 127.0.0.1.
2. A warm-up GWAS of each model on ``22:1-50000`` (the first task at a node imports and
   opens things), then the linear GWAS ``qt ~ age + sex`` over the whole region
   (``POST /hub/analyses`` ``{"kind": "gwas", "model": "linear", "phenotypes": ["qt"],
   "covariates": ["age", "sex"], "region": "22:1-999999999", "table": "traits", "block":
   B}``, polled every 200 ms until finished: wall seconds from the POST), then the logistic
   one (``"model": "logistic", "phenotypes": ["case"]``: the null model by GLM rounds, the
   score test of every variant, then whatever the hub's defaults add, e.g. Firth fits of
   the hits). The poll timeline splits each into: until the variants are listed, the
   block rounds, and the tail after the last block (Firth fits, the tables and the plots).
3. plink2 (``--threads 2``) on the pooled VCF with the same phenotypes and covariates
   (``SEX`` as 1/2, ``CASE`` as 1 = control / 2 = case): ``--glm hide-covar`` and ``--glm
   firth-fallback hide-covar`` straight from the VCF (with its import), and the same from a
   pgen made first (``--make-pgen``, timed on its own). Ratios federated / plink2 from the
   VCF and from the pgen (the nodes' ingest is their ``--make-pgen``).
4. Exactness of the linear GWAS on the variants both report (plink2's bi-allelic records;
   plink2 tests one ALT allele jointly with the others at a multi-allelic site, genofed
   each split allele on its own): the largest and median relative difference of BETA and
   SE from plink2's after aligning A1 (genofed's A1 is the ALT allele; the sign flips where
   plink2's A1 is REF): plink2 prints 6 significant digits, so ~1e-6 is exact. For the
   logistic model only the correlation of genofed's Z_STAT (a score test) with plink2's
   (Wald, Firth where it falls back): different tests, close but not equal.
5. The bytes each node sends the hub per secure round, measured on the wire: this script
   runs ``genofed.hub.analyses.secure_round`` itself against the node processes (linear
   blocks of B/4 and B variants, a logistic block of B) through a transport counting each
   node's reply bytes (the finished task document with its sealed shares, the masked
   vector, the reveal; also the polls, and what the hub sent). Once more on a second
   federation of a third of the people (each node's first third of its people, the same
   sites), where the two GWASs are timed again: the bytes depend on the block size, not on
   the number of people. The plain ``variants`` step (each node's list of the variants it
   can take part in) is counted too: it grows with the variants, once per GWAS.
6. Peak RSS of each node process (and the hub's, and plink2's), sampled with psutil every
   50 ms, per stage, at both cohort sizes.

``--sweep 500,1000,2000,5000`` times the linear GWAS at each block size too (after the
rest; ``sweep_seconds`` in the JSON). Bigger blocks mean fewer rounds and more memory per
node (a block's sums are taken a Zarr chunk of people at a time, so that stays small).

Sizes: msprime simulates 15,000 people x 100,000 sites in ~70 s here, so the default is the
issue's size; splitting the VCF takes ~90 s (bcftools parses 15,000 samples per record) and
the three ingests ~15 s. The whole default run takes ~12 minutes; ``--quick`` (2,000 x
5,000) about a minute. Results go to ``--out`` (``bench/results/gwas.json``, or
``gwas-quick.json`` with ``--quick``).

All the processes share this machine's cores (broker, hub, three nodes, plink2), so the
federated wall time measures the protocol, the nodes' work and HTTP on one machine, not a
network; plink2 runs while the nodes idle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.federation, tests.live_server

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.federation import ISSUER, Federation, federation  # noqa: E402
from tests.live_server import start_node_server  # noqa: E402

from genofed.analysis import design  # noqa: E402
from genofed.config import (  # noqa: E402
    DatasetPolicy,
    HubConfig,
    TrustedIssuer,
    default_config,
    load_config,
    save_config,
)
from genofed.governance.keys import (  # noqa: E402
    load_or_create_aggregation_key,
    public_key_text,
)
from genofed.hub.analyses import (  # noqa: E402
    AnalysisRequest,
    Member,
    plain_step,
    secure_round,
)
from genofed.hub.client import NodeClient  # noqa: E402
from genofed.hub.nodes import Registry  # noqa: E402
from genofed.hub.transport import AiohttpTransport, Response  # noqa: E402
from genofed.simulate import MUTATION_RATE, POPULATION_SIZE, simulate_cohort  # noqa: E402
from genofed.store.node_dir import NodeDir  # noqa: E402
from genofed.store.registered_tables import register_table  # noqa: E402
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 130)
SHARES = {"alpha": 0.5, "beta": 0.3, "gamma": 0.2}
REGION = "22:1-999999999"  # the whole simulated region
WARM_REGION = "22:1-50000"
EFFECTS = (0.25, -0.2, 0.15, 0.12, -0.1)  # per ALT allele, on qt (x 1.2 on case's log odds)
PLINK2 = shutil.which("plink2")
BCFTOOLS = shutil.which("bcftools")
TASKS = "/analysis/v1/tasks"


# --------------------------------------------------------------------------------------
# peak RSS, sampled
# --------------------------------------------------------------------------------------


class RssSampler:
    """Samples the RSS of watched processes (each with its children) every ``interval``
    seconds in a thread; keeps each one's peak per stage (``stage`` is set by the caller)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.stage = "start"
        self.watched: dict[str, psutil.Process] = {}
        self.peaks: dict[str, dict[str, float]] = defaultdict(dict)  # stage -> name -> MB
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def watch(self, name: str, pid: int) -> None:
        with self._lock:
            self.watched[name] = psutil.Process(pid)

    def unwatch(self, name: str) -> None:
        with self._lock:
            self.watched.pop(name, None)

    def sample(self) -> None:
        with self._lock:
            watched = dict(self.watched)
            stage = self.stage
        for name, process in watched.items():
            try:
                rss = process.memory_info().rss
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss += child.memory_info().rss
            except psutil.Error:
                continue
            mb = rss / 2**20
            peaks = self.peaks[stage]
            if mb > peaks.get(name, 0.0):
                peaks[name] = mb

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


# --------------------------------------------------------------------------------------
# the cohort and its phenotypes
# --------------------------------------------------------------------------------------


def split_counts(n: int) -> dict[str, int]:
    counts = {"alpha": n // 2, "beta": 3 * n // 10}
    counts["gamma"] = n - sum(counts.values())
    return counts


def causal_variants(vcf: Path, n: int, sites: int, count: int) -> list[tuple[str, np.ndarray]]:
    """``count`` common bi-allelic SNPs spread over the simulated region, with their ALT
    dosages (read with cyvcf2 from a few tabix regions near where they should be)."""
    import cyvcf2

    # where the sites lie: simulate_cohort's own expectation (Watterson) of their density
    a_n = sum(1.0 / i for i in range(1, 2 * n))
    span = sites / (4 * POPULATION_SIZE * MUTATION_RATE * a_n)
    picked: list[tuple[str, np.ndarray]] = []
    reader = cyvcf2.VCF(str(vcf), gts012=True, lazy=True)
    try:
        for fraction in np.linspace(0.05, 0.75, count):
            start = int(fraction * span)
            for i, record in enumerate(reader(f"22:{start + 1}-{start + 400_000}")):
                if i > 500:
                    break
                if len(record.REF) != 1 or len(record.ALT) != 1 or len(record.ALT[0]) != 1:
                    continue
                dosage = record.gt_types.astype(np.float64)  # 0, 1, 2 ALT alleles (3: no call)
                if (dosage == 3).any():
                    continue
                freq = dosage.mean() / 2
                if 0.1 <= min(freq, 1 - freq):
                    picked.append((f"22-{record.POS}-{record.REF}-{record.ALT[0]}", dosage))
                    break
    finally:
        reader.close()
    return picked


def phenotypes(
    clinical: pd.DataFrame, causal: list[tuple[str, np.ndarray]], seed: int = 7
) -> pd.DataFrame:
    """The ``traits`` rows of the whole cohort: individual_id, qt, case."""
    rng = np.random.default_rng(seed)
    n = len(clinical)
    age = clinical["age"].to_numpy(dtype=np.float64)
    male = (clinical["sex"] == "male").to_numpy(dtype=np.float64)
    genetic = np.zeros(n)
    for effect, (_, dosage) in zip(EFFECTS, causal, strict=False):
        genetic += effect * (dosage - dosage.mean())
    qt = 0.03 * age + 0.25 * male + genetic + rng.normal(0, 1, n)
    qt[rng.choice(n, max(1, n // 200), replace=False)] = np.nan  # dropped listwise
    eta = -1.3 + 0.02 * (age - age.mean()) + 0.2 * male + 1.2 * genetic
    case = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"individual_id": clinical["sample_id"].astype(str), "qt": qt,
                         "case": case})  # fmt: skip


def split_vcf(jobs: dict[str, tuple[Path, list[str]]], out: Path) -> dict[str, Path]:
    """``bcftools view -S`` of each (VCF, samples), all at once; the paths written."""
    assert BCFTOOLS is not None
    paths, running = {}, []
    for name, (vcf, samples) in jobs.items():
        listing = out / f"{name}.samples"
        listing.write_text("\n".join(samples) + "\n")
        paths[name] = out / f"{name}.vcf.gz"
        command = [BCFTOOLS, "view", "--no-version", "-Oz", "-l", "1", "-S", str(listing),
                   "-o", str(paths[name]), str(vcf)]  # fmt: skip
        running.append(subprocess.Popen(command))
    for process in running:
        if process.wait() != 0:
            raise SystemExit(f"bcftools failed: {process.args}")
    return paths


# --------------------------------------------------------------------------------------
# the federation
# --------------------------------------------------------------------------------------


@dataclass
class Group:
    """Three nodes (and their hub) of one cohort size."""

    label: str
    names: list[str]
    counts: dict[str, int]
    hub: str = ""
    seconds: dict[str, Any] = field(default_factory=dict)


def build_node(
    fed: Federation, name: str, vcf: Path, clinical: pd.DataFrame, traits: pd.DataFrame
) -> tuple[Path, float, float]:
    """A node as tests/test_gwas_federation.py builds it; its root and the seconds its
    ingest and its table's registration took."""
    root = fed.root / name
    config = default_config(name)
    trusted = TrustedIssuer(issuer=ISSUER, jwks=fed.key.jwks())
    config.trust.brokers = config.trust.visa_issuers = [trusted]
    config.trust.audience = fed.audience(name)
    config.datasets[f"{name}-cohort"] = DatasetPolicy(analysis="registered")
    node = NodeDir.create(root, config)
    clinical_path = fed.root / f"{name}-clinical.csv"
    clinical.to_csv(clinical_path, index=False)
    began = time.perf_counter()
    ingest_vcf(node, f"{name}-cohort", vcf, assembly="GRCh38", individuals=clinical_path,
               settings=DatasetSettings(granularity="record", tier="public"))  # fmt: skip
    ingest = time.perf_counter() - began
    table = fed.root / f"{name}-traits.csv"
    traits.to_csv(table, index=False)
    began = time.perf_counter()
    register_table(node, "traits", table, tier="registered")
    return root, ingest, time.perf_counter() - began


def serve(fed: Federation, group: Group, roots: dict[str, Path], logs: Path) -> None:
    """Pin the nodes' aggregation keys to each other, serve them, and a hub over them."""
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
    group.seconds["start_nodes"] = time.perf_counter() - began
    began = time.perf_counter()
    group.hub = fed.start_hub([fed.hub_node(name) for name in group.names])
    group.seconds["start_hub"] = time.perf_counter() - began


def build_group(
    fed: Federation,
    label: str,
    suffix: str,
    vcfs: dict[str, Path],
    clinical: dict[str, pd.DataFrame],
    traits: dict[str, pd.DataFrame],
    logs: Path,
) -> Group:
    names = [f"{base}{suffix}" for base in SHARES]
    group = Group(label, names, {f"{b}{suffix}": len(clinical[b]) for b in SHARES})
    roots: dict[str, Path] = {}
    group.seconds |= {"ingest": {}, "register_table": {}}
    for base, name in zip(SHARES, names, strict=True):
        roots[name], ingest, register = build_node(
            fed, name, vcfs[base], clinical[base], traits[base]
        )
        group.seconds["ingest"][name] = ingest
        group.seconds["register_table"][name] = register
        console.print(f"  {name}: {len(clinical[base]):,} people ingested in {ingest:.1f} s")
    serve(fed, group, roots, logs)
    return group


def stop_group(fed: Federation, group: Group, sampler: RssSampler) -> None:
    """Stop a group's nodes and hub (still in fed.processes: stopping again is harmless)."""
    hub_port = group.hub.rsplit(":", 1)[1]
    for name, process in fed.processes.items():
        if name in group.names or (
            name.startswith("hub-") and f"--port {hub_port}" in " ".join(map(str, process.args))
        ):
            sampler.unwatch(name)
            process.kill()
            process.wait()
    sampler.unwatch("hub")
    for name in group.names:
        fed.nodes.pop(name, None)


def hub_process(fed: Federation, group: Group) -> subprocess.Popen:
    port = group.hub.rsplit(":", 1)[1]
    return next(
        p
        for n, p in fed.processes.items()
        if n.startswith("hub-") and f"--port {port}" in " ".join(map(str, p.args))
    )


# --------------------------------------------------------------------------------------
# the GWAS through the hub
# --------------------------------------------------------------------------------------


def run_gwas(hub: str, token: str, body: dict[str, Any]) -> tuple[float, dict[str, Any], dict]:
    """Wall seconds from the POST to the finished job, the job, and its timeline (when
    the variants were listed, when the last block was summed)."""
    headers = {"authorization": f"Bearer {token}"}
    timeline: dict[str, float] = {"load_average_1min_at_start": os.getloadavg()[0]}
    with httpx.Client(base_url=hub, headers=headers, timeout=300) as client:
        began = time.perf_counter()
        started = client.post("/hub/analyses", json=body)
        if started.status_code != 202:
            raise SystemExit(f"the hub refused the analysis: {started.status_code} {started.text}")
        job = started.json()
        deadline = time.monotonic() + 3600
        while job["state"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise SystemExit(f"the analysis did not finish in an hour: {str(job)[:2000]}")
            time.sleep(0.2)  # as a client would; each poll is the whole job document
            job = client.get(f"/hub/analyses/{job['id']}").json()
            now = time.perf_counter() - began
            progress = job.get("progress") or {}
            if progress and "variants_listed" not in timeline:
                timeline["variants_listed"] = now
            if progress and progress.get("done") == progress.get("total"):
                timeline.setdefault("last_block", now)
            if str(job.get("message") or "").startswith("Firth fit"):
                timeline.setdefault("first_firth_fit", now)
                timeline["last_firth_fit"] = now
        seconds = time.perf_counter() - began
    if job["state"] != "succeeded":
        raise SystemExit(f"the analysis {job['state']}: {json.dumps(job, indent=1)[:3000]}")
    timeline["finished"] = seconds
    timeline["load_average_1min_at_end"] = os.getloadavg()[0]  # other work on the machine
    return seconds, job, timeline


def result_table(hub: str, token: str, job: dict[str, Any], suffix: str) -> pd.DataFrame:
    name = next(f for f in job["result"]["files"] if f.endswith(suffix))
    reply = httpx.get(f"{hub}/hub/analyses/{job['id']}/files/{name}",
                      headers={"authorization": f"Bearer {token}"}, timeout=300)  # fmt: skip
    reply.raise_for_status()
    return pd.read_csv(StringIO(reply.text), sep="\t")


def result_tables(group: Group, runs: dict[str, dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """Each model's result table (TSV), as the hub serves it."""
    suffix = {"linear": ".glm.linear", "logistic": ".glm.logistic.score"}
    return {
        model: result_table(group.hub, run["token"], run["job"], suffix[model])
        for model, run in runs.items()
    }


def null_beta(runs: dict[str, dict[str, Any]]) -> list[float]:
    """The logistic GWAS's null model coefficients, in the nodes' column order."""
    return [c["estimate"] for c in runs["logistic"]["job"]["result"]["nullModel"]["coefficients"]]


def job_summary(job: dict[str, Any], seconds: float, timeline: dict[str, float]) -> dict:
    """Rounds of the job and the nodes' latencies in its block rounds."""
    rounds = job["rounds"]
    blocks = [r for r in rounds if r["step"] == "block"]
    nodes = sorted({name for r in blocks for name in r["nodes"]})
    listed = timeline.get("variants_listed", float("nan"))
    last = timeline.get("last_block", float("nan"))
    result = job["result"]
    return {
        "seconds": seconds,
        "until_variants_listed": listed,
        "block_rounds_seconds": last - listed,
        "after_last_block_seconds": seconds - last,
        # Firth fits of the hits (if the hub makes them): from the last block to the last fit
        "firth_seconds": timeline.get("last_firth_fit", last) - last,
        "timeline": timeline,
        "steps": {
            step: sum(r["step"] == step for r in rounds)
            for step in dict.fromkeys(r["step"] for r in rounds)
        },  # fmt: skip
        "block_rounds": len(blocks),
        "seconds_per_block_round": (last - listed) / max(len(blocks), 1),
        "node_ms_median_block": {
            name: statistics.median(
                r["nodes"][name].get("ms", float("nan")) for r in blocks if name in r["nodes"]
            )
            for name in nodes
        },
        "variants": result["variants"],
        "firth_fits": result.get("firthFits"),
        "contributors": result["contributors"],
    }


# --------------------------------------------------------------------------------------
# plink2 on the pooled data
# --------------------------------------------------------------------------------------


def plink_inputs(clinical: pd.DataFrame, traits: pd.DataFrame, path: Path) -> None:
    frame = pd.DataFrame(
        {
            "#FID": clinical["sample_id"],
            "IID": clinical["sample_id"],
            "QT": traits["qt"].to_numpy(),
            "CASE": traits["case"].to_numpy() + 1,  # 1 control, 2 case
            "AGE": clinical["age"],
            "SEX": (clinical["sex"] == "male").astype(int) + 1,
        }
    )
    frame.to_csv(path, sep="\t", index=False, na_rep="NA")


def run_plink(args: list[str], cwd: Path, sampler: RssSampler, stage: str) -> float:
    """Wall seconds of one plink2 run (its RSS sampled under ``stage``)."""
    assert PLINK2 is not None
    sampler.stage = stage
    began = time.perf_counter()
    process = subprocess.Popen([PLINK2, *args, "--threads", "2"], cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    sampler.watch("plink2", process.pid)
    _, err = process.communicate()
    seconds = time.perf_counter() - began
    sampler.unwatch("plink2")
    if process.returncode != 0:
        raise SystemExit(f"plink2 {' '.join(args)} failed: {err.decode()[-2000:]}")
    return seconds


def plink_table(path: Path) -> pd.DataFrame:
    """plink2's rows keyed as genofed names variants (chrom-pos-ref-alt), bi-allelic only."""
    frame = pd.read_csv(path, sep="\t")
    frame = frame[~frame["ALT"].astype(str).str.contains(",")]
    frame = frame.assign(
        VID=frame["#CHROM"].astype(str).str.removeprefix("chr")
        + "-" + frame["POS"].astype(str) + "-" + frame["REF"] + "-" + frame["ALT"]
    )  # fmt: skip
    return frame.set_index("VID")


def relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) / np.abs(b)


def linear_exactness(ours: pd.DataFrame, plink: pd.DataFrame) -> dict[str, Any]:
    """BETA and SE of the variants both tested, A1 aligned."""
    ours = ours.set_index("ID")
    both = ours.index.intersection(plink.index)
    o, p = ours.loc[both], plink.loc[both]
    usable = np.isfinite(o["BETA"].to_numpy(float)) & np.isfinite(p["BETA"].to_numpy(float))
    o, p = o[usable], p[usable]
    sign = np.where(p["A1"].to_numpy() == o["ALT"].to_numpy(), 1.0, -1.0)
    beta = relative(sign * o["BETA"].to_numpy(float), p["BETA"].to_numpy(float))
    se = relative(o["SE"].to_numpy(float), p["SE"].to_numpy(float))
    t = relative(sign * o["T_STAT"].to_numpy(float), p["T_STAT"].to_numpy(float))
    worst = int(np.argmax(beta))
    return {
        "ours": len(ours),
        "plink2_biallelic": len(plink),
        "compared": int(usable.sum()),
        "a1_is_ref": int((sign < 0).sum()),
        "obs_ct_equal": bool((o["OBS_CT"].to_numpy() == p["OBS_CT"].to_numpy()).all()),
        "beta_max_rel": float(beta.max()),
        "beta_median_rel": float(np.median(beta)),
        "se_max_rel": float(se.max()),
        "se_median_rel": float(np.median(se)),
        "t_max_rel": float(t.max()),
        "worst_beta": {
            "id": str(o.index[worst]),
            "ours": float(sign[worst] * o["BETA"].iloc[worst]),
            "plink2": float(p["BETA"].iloc[worst]),
        },  # fmt: skip
    }


def logistic_agreement(ours: pd.DataFrame, plink: pd.DataFrame) -> dict[str, Any]:
    """Our score Z against plink2's Wald (or Firth) Z, A1 aligned."""
    ours = ours.set_index("ID")
    both = ours.index.intersection(plink.index)
    o, p = ours.loc[both], plink.loc[both]
    z_ours, z_plink = o["Z_STAT"].to_numpy(float), p["Z_STAT"].to_numpy(float)
    usable = np.isfinite(z_ours) & np.isfinite(z_plink)
    sign = np.where(p["A1"].to_numpy() == o["ALT"].to_numpy(), 1.0, -1.0)[usable]
    a, b = sign * z_ours[usable], z_plink[usable]
    pa, pb = o["P"].to_numpy(float)[usable], p["P"].to_numpy(float)[usable]
    out = {
        "compared": int(usable.sum()),
        "z_correlation": float(np.corrcoef(a, b)[0, 1]),
        "z_abs_diff_median": float(np.median(np.abs(a - b))),
        "z_abs_diff_max": float(np.max(np.abs(a - b))),
        "log10p_correlation": float(np.corrcoef(np.log10(pa), np.log10(pb))[0, 1]),
        "plink2_firth_rows": int((p.get("FIRTH?", pd.Series(dtype=str)) == "Y").sum()),
    }
    if "FIRTH_BETA" in o.columns:  # the hub's Firth fits of its hits, if it made any
        fitted = o[np.isfinite(o["FIRTH_BETA"].to_numpy(float))]
        common = fitted.index.intersection(p.index)
        if len(common):
            flip = np.where(p.loc[common, "A1"] == fitted.loc[common, "ALT"], 1.0, -1.0)
            log_or = np.log(p.loc[common, "OR"].to_numpy(float))
            ours_beta = flip * fitted.loc[common, "FIRTH_BETA"].to_numpy(float)
            out["firth_fitted"] = len(fitted)
            out["firth_beta_vs_plink2_log_or_max_rel"] = float(relative(ours_beta, log_or).max())
    return out


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
    """The hub's HTTP transport, counting each node's reply bytes by step of the round
    (and the bytes the hub sent each node)."""

    def __init__(self, config: HubConfig, directory: Path):
        super().__init__(config, directory)
        self.reset()

    def reset(self) -> None:
        self.received: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.sent: dict[str, int] = defaultdict(int)
        self.polls: dict[str, int] = defaultdict(int)
        self.last_document: dict[str, int] = {}  # the finished task document

    async def request(self, node: Any, method: str, path: str, **kwargs: Any) -> Response:
        response = await super().request(node, method, path, **kwargs)
        phase = phase_of(method, path)
        self.received[node.name][phase] += len(response.content)
        self.sent[node.name] += len(kwargs.get("body") or b"")
        if phase in ("create", "poll"):
            self.last_document[node.name] = len(response.content)
            self.polls[node.name] += phase == "poll"
        return response


def measure_bytes(
    fed: Federation, group: Group, ids: dict[str, list[str]], null_beta: list[float], block: int
) -> dict[str, Any]:
    """The plain variants step and a few block rounds run by this script against the
    group's node processes (``ids``: each model's tested variants, in order); each node's
    bytes per round."""
    config = HubConfig(nodes=[fed.hub_node(n) for n in group.names])
    members = [Member(fed.hub_node(n), n, None) for n in group.names]
    linear = {"phenotypes": ["qt"], "covariates": ["age", "sex"], "min_mac": 3, "model": "linear"}
    logistic = {**linear, "phenotypes": ["case"], "model": "logistic", "beta": null_beta}

    async def credentials(node: Any, end: float) -> dict[str, str]:
        return {"authorization": f"Bearer {fed.passport(audience=node.passport_audience)}"}

    def body(params: dict[str, Any]) -> dict[str, Any]:
        return {"analysis": "gwas", "table": "traits", "params": params}

    async def run() -> dict[str, Any]:
        transport = CountingTransport(config, fed.root)
        client = NodeClient(Registry(config), transport, credentials, 600.0)
        out: dict[str, Any] = {"rounds": []}
        try:
            results, _ = await plain_step(client, members, body({**linear, "step": "levels"}), 600)
            levels = design.agree_levels([r["plain"]["levels"] for r in results.values()])
            transport.reset()
            began = time.perf_counter()
            results, statuses = await plain_step(
                client, members, body({**linear, "step": "variants", "region": REGION}), 600
            )
            if len(results) != len(members):
                raise SystemExit(f"the variants step failed: {statuses}")
            out["variants_step"] = {
                "seconds": time.perf_counter() - began,
                "bytes": {n: sum(transport.received[n].values()) for n in group.names},
                "listed": {n: len(results[n]["plain"]["variants"]) for n in group.names},
            }
            sizes = sorted({max(10, block // 4), block})
            plan = [("linear", linear, size) for size in sizes] + [("logistic", logistic, block)]
            for model_name, model, size in plan:
                transport.reset()
                params = {
                    **model,
                    "step": "block",
                    "variants": ids[model_name][:size],
                    "levels": levels,
                }
                task = f"bench-bytes-{secrets.token_hex(8)}"
                began = time.perf_counter()
                result = await secure_round(client, members, body(params), task, 0, 600.0)
                ms = (time.perf_counter() - began) * 1000
                if result.total is None:
                    raise SystemExit(f"the secure round did not complete: {result.statuses}")
                per_node = {}
                for name in group.names:
                    phases = dict(transport.received[name])
                    per_node[name] = {
                        "essential": transport.last_document[name]
                        + phases.get("mask", 0)
                        + phases.get("reveal", 0),
                        "all_replies": sum(phases.values()),
                        "by_step": phases,
                        "polls": transport.polls[name],
                        "hub_sent": transport.sent[name],
                        "n": result.results[name]["n"]["value"],
                    }
                out["rounds"].append({
                    "model": model_name,
                    "block": size,
                    "round_ms": ms,
                    "vector_length": result.results[group.names[0]]["secure"]["length"],
                    "nodes": per_node,
                })  # fmt: skip
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
        "ram_mb": psutil.virtual_memory().total // 2**20,
    }
    with contextlib.suppress(AttributeError, OSError):
        info["cores_available"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    for tool, path in (("plink2", PLINK2), ("bcftools", BCFTOOLS)):
        if path:
            done = subprocess.run([path, "--version"], capture_output=True, text=True)
            info[tool] = (done.stdout or done.stderr).splitlines()[0]
    return info


def gwas_body(model: str, block: int, region: str = REGION) -> dict[str, Any]:
    phenotype = "qt" if model == "linear" else "case"
    return {"kind": "gwas", "model": model, "phenotypes": [phenotype], "covariates": ["age", "sex"],
            "region": region, "table": "traits", "block": block,
            "node_deadline_s": 1800}  # fmt: skip


def time_group(
    fed: Federation, group: Group, sampler: RssSampler, block: int
) -> dict[str, dict[str, Any]]:
    """The warm-ups, then the linear and the logistic GWAS of a group, timed."""
    out: dict[str, dict[str, Any]] = {}
    for model in ("linear", "logistic"):
        sampler.stage = f"{group.label}: warm-up"
        warm = gwas_body(model, 100, WARM_REGION)
        if "firth_p" in AnalysisRequest.model_fields:  # imports only, not the hits' Firth fits
            warm["firth_p"] = 0
        seconds, _, _ = run_gwas(group.hub, fed.access_token(), warm)
        console.print(f"  warm-up {model} ({WARM_REGION}): {seconds:.1f} s")
        sampler.stage = f"{group.label}: {model}"
        token = fed.access_token()
        seconds, job, timeline = run_gwas(group.hub, token, gwas_body(model, block))
        out[model] = {"job": job, "token": token, "summary": job_summary(job, seconds, timeline)}
        s = out[model]["summary"]
        console.print(
            f"  {model} GWAS: {seconds:.1f} s ({s['variants']['tested']:,} variants, "
            f"{s['block_rounds']} block rounds of {s['seconds_per_block_round']:.2f} s; "
            f"variants listed after {s['until_variants_listed']:.1f} s, "
            f"{s['after_last_block_seconds']:.1f} s after the last block)"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15_000)
    parser.add_argument("--sites", type=int, default=100_000)
    parser.add_argument("--block", type=int, default=4000, help="variants per secure round")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="2,000 samples x 5,000 sites")
    parser.add_argument("--sweep", default="", help="block sizes to time the linear GWAS at")
    args = parser.parse_args()
    if PLINK2 is None or BCFTOOLS is None:
        raise SystemExit("needs plink2 and bcftools (apt-get install plink2 bcftools)")
    n, m = (2_000, 5_000) if args.quick else (args.samples, args.sites)
    block = args.block
    out = args.out or ROOT / "bench" / "results" / (
        "gwas-quick.json" if args.quick else "gwas.json"
    )
    sweep = [int(b) for b in args.sweep.split(",") if b.strip()]
    began_all = time.perf_counter()
    setup: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-gwas-") as work,
        federation(Path(work)) as fed,
        RssSampler() as sampler,
    ):
        work_dir, logs = Path(work), Path(work) / "logs"
        logs.mkdir()
        console.print(f"simulating {n:,} people x {m:,} sites ...")
        began = time.perf_counter()
        cohort = simulate_cohort(work_dir / "sim", n_samples=n, n_sites=m, seed=2024, prefix="S")
        setup["simulate"] = time.perf_counter() - began
        clinical = pd.read_csv(cohort.clinical)
        causal = causal_variants(cohort.vcf, n, m, len(EFFECTS))
        traits = phenotypes(clinical, causal)
        console.print(
            f"  {setup['simulate']:.1f} s ({cohort.vcf.stat().st_size / 2**20:.0f} MB VCF); "
            f"planted: {', '.join(v for v, _ in causal)}; "
            f"{int(traits['case'].sum()):,} cases"
        )

        # the full federation
        counts = split_counts(n)
        parts, start = {}, 0
        for name, count in counts.items():
            parts[name] = slice(start, start + count)
            start += count
        samples = clinical["sample_id"].astype(str).tolist()
        began = time.perf_counter()
        vcfs = split_vcf({k: (cohort.vcf, samples[s]) for k, s in parts.items()}, work_dir)
        setup["split_vcf"] = time.perf_counter() - began
        console.print(f"split over the nodes {counts} in {setup['split_vcf']:.1f} s")
        began = time.perf_counter()
        full = build_group(
            fed, "n", "", vcfs, {k: clinical.iloc[s] for k, s in parts.items()},
            {k: traits.iloc[s] for k, s in parts.items()}, logs,
        )  # fmt: skip
        full.seconds["total"] = time.perf_counter() - began
        for name in full.names:
            sampler.watch(name, fed.processes[name].pid)
        sampler.watch("hub", hub_process(fed, full).pid)
        sampler.stage = "n: idle"
        time.sleep(1)
        console.print(f"federation of {n:,} people up ({full.seconds['total']:.1f} s)")
        runs = time_group(fed, full, sampler, block)

        # plink2 on the pooled VCF
        console.print("plink2 on the pooled data ...")
        plink_dir = work_dir / "plink2"
        plink_dir.mkdir()
        plink_inputs(clinical, traits, plink_dir / "pheno.tsv")
        covar = ["--pheno", "pheno.tsv", "--covar", "pheno.tsv", "--covar-name", "AGE", "SEX"]
        glm = {
            "linear": ["--pheno-name", "QT", "--glm", "hide-covar"],
            "logistic": ["--pheno-name", "CASE", "--glm", "firth-fallback", "hide-covar"],
        }
        vcf_in = ["--vcf", str(cohort.vcf), "--double-id"]
        plink_s: dict[str, float] = {}
        for model in ("linear", "logistic"):
            plink_s[f"{model}_from_vcf"] = run_plink(
                [*vcf_in, *covar, *glm[model], "--out", f"vcf-{model}"], plink_dir, sampler,
                f"plink2 {model} from vcf",
            )  # fmt: skip
        plink_s["make_pgen"] = run_plink(
            [*vcf_in, "--make-pgen", "--out", "pooled"], plink_dir, sampler, "plink2 make-pgen"
        )
        for model in ("linear", "logistic"):
            plink_s[f"{model}_from_pgen"] = run_plink(
                ["--pfile", "pooled", *covar, *glm[model], "--out", f"pgen-{model}"], plink_dir,
                sampler, f"plink2 {model} from pgen",
            )  # fmt: skip
        console.print("  " + ", ".join(f"{k} {v:.1f} s" for k, v in plink_s.items()))
        plink_linear = plink_table(plink_dir / "pgen-linear.QT.glm.linear")
        plink_logistic = plink_table(next(plink_dir.glob("pgen-logistic.CASE.glm.logistic*")))
        tables = result_tables(full, runs)
        ours_linear, ours_logistic = tables["linear"], tables["logistic"]
        exact = linear_exactness(ours_linear, plink_linear)
        agreement = logistic_agreement(ours_logistic, plink_logistic)
        planted = {}
        for vid, _ in causal:
            rows = ours_linear[ours_linear["ID"] == vid]
            planted[vid] = float(rows["P"].iloc[0]) if len(rows) else None

        console.print("measuring bytes per round with the hub's secure_round ...")
        sampler.stage = "n: bytes"
        ids = {model: table["ID"].tolist() for model, table in tables.items()}
        wire = {"n": measure_bytes(fed, full, ids, null_beta(runs), block)}

        sweep_s: dict[int, float] = {}
        for size in sweep:
            sampler.stage = f"n: sweep {size}"
            sweep_s[size], job, timeline = run_gwas(
                full.hub, fed.access_token(), gwas_body("linear", size)
            )
            console.print(f"  sweep: block {size}: {sweep_s[size]:.1f} s")
        stop_group(fed, full, sampler)

        # a third of the people: each node's first third, the same sites
        third_parts = {
            k: slice(s.start, s.start + (s.stop - s.start) // 3) for k, s in parts.items()
        }
        began = time.perf_counter()
        small_dir = work_dir / "third"
        small_dir.mkdir()
        jobs = {k: (vcfs[k], samples[s]) for k, s in third_parts.items()}
        small_vcfs = split_vcf(jobs, small_dir)
        setup["split_vcf_third"] = time.perf_counter() - began
        n3 = sum(s.stop - s.start for s in third_parts.values())
        console.print(f"a third: {n3:,} people (split in {setup['split_vcf_third']:.1f} s)")
        began = time.perf_counter()
        third = build_group(
            fed, "n/3", "3", small_vcfs, {k: clinical.iloc[s] for k, s in third_parts.items()},
            {k: traits.iloc[s] for k, s in third_parts.items()}, logs,
        )  # fmt: skip
        third.seconds["total"] = time.perf_counter() - began
        for name in third.names:
            sampler.watch(name, fed.processes[name].pid)
        sampler.watch("hub", hub_process(fed, third).pid)
        sampler.stage = "n/3: idle"
        time.sleep(1)
        runs3 = time_group(fed, third, sampler, block)
        ids = {model: table["ID"].tolist() for model, table in result_tables(third, runs3).items()}
        sampler.stage = "n/3: bytes"
        wire["n/3"] = measure_bytes(fed, third, ids, null_beta(runs3), block)
        stop_group(fed, third, sampler)
        rss = {stage: dict(peaks) for stage, peaks in sampler.peaks.items()}
    total_seconds = time.perf_counter() - began_all

    fed_s = {model: runs[model]["summary"]["seconds"] for model in runs}
    ratios = {
        f"{model}_{source}": fed_s[model] / plink_s[f"{model}_from_{source}"]
        for model in fed_s
        for source in ("vcf", "pgen")
    }
    bytes_table = {
        label: {
            f"{r['model']} block {r['block']}": {
                name: node["essential"] for name, node in r["nodes"].items()
            }
            for r in measured["rounds"]
        }
        for label, measured in wire.items()
    }

    # ---- report
    table = Table(title=f"GWAS of {n:,} people x {m:,} sites: 3 node processes vs plink2")
    for column in ("", "federated s", "plink2 from VCF s", "× VCF", "plink2 from pgen s", "× pgen"):
        table.add_column(column, justify="right")
    for model in ("linear", "logistic"):
        table.add_row(
            f"{model} ({'qt' if model == 'linear' else 'case'} ~ age + sex)",
            f"{fed_s[model]:.1f}",
            f"{plink_s[f'{model}_from_vcf']:.1f}",
            f"{ratios[f'{model}_vcf']:.1f}",
            f"{plink_s[f'{model}_from_pgen']:.1f}",
            f"{ratios[f'{model}_pgen']:.1f}",
        )
    console.print(table)
    console.print(
        f"plink2 --make-pgen: {plink_s['make_pgen']:.1f} s; the nodes' ingest: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in full.seconds["ingest"].items())
    )
    for label, group_runs in (("n", runs), ("n/3", runs3)):
        for model, run in group_runs.items():
            s = run["summary"]
            console.print(
                f"{label} {model}: {s['seconds']:.1f} s = {s['until_variants_listed']:.1f} s "
                f"to list the variants + {s['block_rounds_seconds']:.1f} s of "
                f"{s['block_rounds']} block rounds ({s['seconds_per_block_round']:.2f} s each; "
                f"node ms median {s['node_ms_median_block']}) + "
                f"{s['after_last_block_seconds']:.1f} s after (of which Firth fits of "
                f"{s['firth_fits']} hits {s['firth_seconds']:.1f} s); steps {s['steps']}"
            )
    console.print(
        f"linear vs plink2 on {exact['compared']:,} variants (A1 = REF at "
        f"{exact['a1_is_ref']:,}): BETA max rel. diff {exact['beta_max_rel']:.1e} (median "
        f"{exact['beta_median_rel']:.1e}), SE {exact['se_max_rel']:.1e} (median "
        f"{exact['se_median_rel']:.1e}); OBS_CT equal: {exact['obs_ct_equal']}"
    )
    console.print(
        f"logistic: our score Z vs plink2's Z on {agreement['compared']:,} variants: "
        f"correlation {agreement['z_correlation']:.5f}, median |ΔZ| "
        f"{agreement['z_abs_diff_median']:.3f}, max {agreement['z_abs_diff_max']:.2f}; "
        f"log10 P correlation {agreement['log10p_correlation']:.5f}"
    )
    bytes_view = Table(title="Bytes each node sends the hub per secure round")
    bytes_view.add_column("round", justify="left")
    for label in wire:
        for base in SHARES:
            bytes_view.add_column(f"{base}, {label}", justify="right")
    first = wire["n"]["rounds"]
    for i, r in enumerate(first):
        cells = []
        for measured in wire.values():
            other = measured["rounds"][i]
            cells += [f"{v['essential']:,}" for v in other["nodes"].values()]
        bytes_view.add_row(f"{r['model']} block {r['block']} ({r['vector_length']:,} values)",
                           *cells)  # fmt: skip
    cells = []
    for measured in wire.values():
        cells += [f"{v:,}" for v in measured["variants_step"]["bytes"].values()]
    bytes_view.add_row("plain variants step (all replies)", *cells)
    console.print(bytes_view)
    console.print(
        "a round's bytes = the finished task document (sealed shares) + the masked vector + "
        "the reveal; the hub sends each node the block's variant ids: "
        + ", ".join(f"{r['block']} ids {r['nodes'][full.names[0]]['hub_sent']:,} B" for r in first)
    )
    rss_view = Table(title="Peak RSS (MB), sampled every 50 ms")
    names = ["alpha", "beta", "gamma", "hub", "plink2"]
    rss_view.add_column("stage", justify="left")
    for name in names:
        rss_view.add_column(name, justify="right")
    for stage, peaks in rss.items():
        if stage == "start":
            continue
        shown = ["plink2"] if stage.startswith("plink2") else names  # the nodes idle then
        cells = [
            next((f"{v:.0f}" for k, v in peaks.items() if k.rstrip("3") == name), "")
            if name in shown
            else ""
            for name in names
        ]
        rss_view.add_row(stage, *cells)
    console.print(rss_view)
    console.print(f"planted variants' linear P: {planted}")

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine_info(),
                "samples": n,
                "sites": m,
                "block": block,
                "per_node": split_counts(n),
                "per_node_third": third.counts,
                "region": REGION,
                "planted": {vid: eff for (vid, _), eff in zip(causal, EFFECTS, strict=False)},
                "planted_linear_p": planted,
                "cases": int(traits["case"].sum()),
                "qt_missing": int(traits["qt"].isna().sum()),
                "setup_seconds": {**setup, "n": full.seconds, "n/3": third.seconds},
                "total_seconds": total_seconds,
                "federated_seconds": fed_s,
                "federated": {model: run["summary"] for model, run in runs.items()},
                "federated_third": {model: run["summary"] for model, run in runs3.items()},
                "plink2_seconds": plink_s,
                "ratio_federated_over_plink2": ratios,
                "linear_vs_plink2": exact,
                "logistic_vs_plink2": agreement,
                "bytes_per_node_per_round": bytes_table,
                "bytes_measured": wire,
                "peak_rss_mb": rss,
                "sweep_seconds": sweep_s,
            },
            indent=2,
            default=float,
        )
    )
    console.print(f"wrote {out} ({total_seconds:.0f} s in all)")


if __name__ == "__main__":
    main()
