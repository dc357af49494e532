"""Beacon HTTP benchmark: ``/beacon/v2/g_variants`` latency and throughput versus DuckDB.

Usage::

    .venv/bin/python bench/bench_beacon.py [--variants 1000000] [--samples 100]
                                           [--requests 2000] [--out bench/results/beacon.json]
                                           [--quick]

Steps:

1. Build a node holding at least ``--variants`` variants (one dataset ``bench``, granularity
   ``record``): a VCF of random SNPs (about 1 % tri-allelic) at strictly increasing
   positions on chromosome 22 (GRCh38 ``##contig`` length), ``--samples`` samples, GT only,
   written by :func:`write_vcf` (the coalescent simulator of :mod:`genofed.simulate` cannot
   fit a million sites into chromosome 22 with few samples), then ``genofed node init`` and
   ``genofed node ingest``. The node is cached under ``bench/.cache/`` keyed by size, seed,
   the generator's source and the store's code (which decides the dataset layout); its
   build time is reported separately and is not part of any measurement.
2. Draw a fixed, seeded set of queries from the node's ``dataset.duckdb`` (read-only, before
   any server starts): ``--requests`` sequence queries (``start`` + ``referenceBases`` +
   ``alternateBases``) of which ``--absent-fraction`` ask for an allele that is not there,
   and ``--requests`` range queries over random ``--window`` bp windows.
3. Baseline: the same queries run directly in DuckDB (one read-only connection, the
   ``WHERE`` clause built by the server's own :func:`genofed.store.variant_query.where_clause`,
   ``SELECT count(*) FROM variants WHERE ...``), one untimed warm-up pass, then one timed
   pass; p50/p99 per query. This is the SQL path: when the dataset version has a position
   index (``positions.arrow``, listed under ``node.live_version_files`` in the JSON) the
   server answers these queries from it without SQL, and the HTTP / DuckDB ratio then
   compares the whole server with the SQL it no longer runs.
4. For each ``--workers`` value: start ``genofed node serve`` on a free loopback port, wait
   until its workers list the dataset at ``/beacon/v2/datasets``, check that the HTTP
   answers (``numTotalResults``) equal the DuckDB
   counts for a sample of the queries, then for {sequence, range} x ``--clients``: an
   untimed warm-up, then exactly ``--requests`` requests with that many concurrent
   keep-alive clients (closed loop: each client sends its next request when the previous
   answer has arrived). Reported: p50/p99/mean latency, requests/s, errors, server CPU per
   request (psutil, whole process tree) and load-generator CPU.
5. Print a table with the DuckDB p50, the ratio HTTP p50 / DuckDB p50 and the HTTP
   overhead (HTTP p50 - DuckDB p50, ms), check the goals (sequence p50 <= 5 ms with one
   client, >= 500 sequence requests/s), and write everything as JSON.

Load generator: ``wrk`` when it is on PATH and its LuaJIT has the ``ffi`` module (a
six-request probe decides), else ``httpx`` (one thread and one keep-alive connection per
client). With wrk every client is one wrk thread with one connection; a generated Lua
script cycles through a file of request paths, times each request itself (raw
request-to-response latency, no coordinated-omission correction) and stops after its
share of the requests. ``--load-generator`` forces either. The JSON records which was
used.

Also recorded: the keep-alive latency of ``/-/health`` per server (about 40 ms means the
server's sockets lack ``TCP_NODELAY``: Nagle's algorithm meets the client's delayed ACK),
how busy the CPUs were just before the run and the load average before and after (other
work on the machine distorts the numbers), the wall seconds of each phase, and the git
commit (read from ``.git``).

``--quick`` uses a 50,000-variant node, 200 requests per cell and writes
``bench/results/beacon-quick.json`` unless ``--out`` is given.

Exit status: 0 on success, 1 if a cell had errors or HTTP answers disagreed with DuckDB,
3 for a setup error (node build, server start, no load generator).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import inspect
import itertools
import json
import math
import os
import platform
import queue
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

try:  # psutil is a dev dependency; without it server CPU is not reported
    import psutil
except ImportError:  # pragma: no cover
    psutil = None  # type: ignore[assignment]

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
try:
    import genofed.store as genofed_store
    from genofed.simulate import bgzip_writer
    from genofed.store.dataset_db import FORMAT_VERSION
    from genofed.store.dataset_reader import VARIANT_COLUMNS as READER_VARIANT_COLUMNS
    from genofed.store.variant_query import VariantQuery, where_clause
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT / "src"))
    import genofed.store as genofed_store
    from genofed.simulate import bgzip_writer
    from genofed.store.dataset_db import FORMAT_VERSION
    from genofed.store.dataset_reader import VARIANT_COLUMNS as READER_VARIANT_COLUMNS
    from genofed.store.variant_query import VariantQuery, where_clause

CACHE_VERSION = 1
DATASET_ID = "bench"
CONTIG = "22"
CONTIG_LENGTH = 50_818_468  # GRCh38 chromosome 22
REGION = (16_000_000, 50_800_000)  # 1-based positions are drawn from here
# More sites than chromosome 22 holds (one per 2 bp) go on chromosome 1
LARGE_CONTIG, LARGE_CONTIG_LENGTH, LARGE_REGION = "1", 248_956_422, (1_000_000, 248_900_000)


def _contig_for(n_sites: int) -> tuple[str, int, tuple[int, int]]:
    if n_sites <= (REGION[1] - REGION[0]) // 2:
        return CONTIG, CONTIG_LENGTH, REGION
    return LARGE_CONTIG, LARGE_CONTIG_LENGTH, LARGE_REGION


MULTIALLELIC_FRACTION = 0.01
QUICK_VARIANTS = 50_000
QUICK_REQUESTS = 200
WARMUP_REQUESTS = 300
VALIDATE_QUERIES = 50
HEALTH_PINGS = 20
NAGLE_SUSPECT_MS = 30.0
BUSY_WARN_PERCENT = 25.0
GOAL_SEQUENCE_P50_MS = 5.0
GOAL_SEQUENCE_RPS = 500.0
KINDS = ("sequence", "range", "page")
PAGE_ROWS = 1_000  # records in a page query

# rich falls back to 80 columns when not writing to a terminal, which wraps the tables
console = Console() if sys.stdout.isatty() else Console(width=140)
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=140)


class SetupError(RuntimeError):
    """The benchmark could not be prepared (node build, server start, load generator)."""


# --------------------------------------------------------------------------------------
# the node: a synthetic VCF, ingested once and cached
# --------------------------------------------------------------------------------------


def write_vcf(path: Path, *, n_sites: int, n_samples: int, seed: int) -> dict[str, Any]:
    """Write random SNPs on chromosome 22, or 1 beyond 17.4 M sites (sorted, GT only) to
    ``path``; bgzipped if ``.gz``.

    Positions are distinct and strictly increasing; REF is a random base, ALT another one;
    about 1 % of the sites get a second ALT. Allele frequencies follow a Beta(0.5, 4)
    distribution and every ALT of a bi-allelic site is carried by at least one haplotype.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    contig, contig_length, (first, last) = _contig_for(n_sites)
    if n_sites > (last - first) // 2:
        raise ValueError(f"{n_sites:,} sites do not fit into chromosome {contig}")
    positions = np.empty(0, dtype=np.int64)
    draw = int(n_sites * 1.05) + 100
    for _ in range(10):  # bounded: duplicates are rare, one draw nearly always suffices
        positions = np.unique(rng.integers(first, last, size=draw, dtype=np.int64))
        if len(positions) >= n_sites:
            break
        draw = int(draw * 1.2)
    keep = np.sort(rng.choice(len(positions), size=n_sites, replace=False))
    positions = positions[keep]
    ref_idx = rng.integers(0, 4, n_sites)
    shift = rng.integers(1, 4, n_sites)
    alt_idx = (ref_idx + shift) % 4
    multi = rng.random(n_sites) < MULTIALLELIC_FRACTION
    alt2_idx = (ref_idx + shift % 3 + 1) % 4  # differs from REF and from the first ALT
    bases = (b"A", b"C", b"G", b"T")

    header = "\n".join(
        [
            "##fileformat=VCFv4.2",
            '##FILTER=<ID=PASS,Description="All filters passed">',
            f"##contig=<ID={contig},length={contig_length}>",
            "##source=genofed-bench-beacon",
            '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
            "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"])
            + "\t"
            + "\t".join(f"BEACON{i:05d}" for i in range(n_samples)),
        ]
    )
    n_hap = 2 * n_samples
    chunk = 20_000
    with _vcf_sink(path) as sink:
        sink.write(header.encode() + b"\n")
        for lo in range(0, n_sites, chunk):
            hi = min(n_sites, lo + chunk)
            m = hi - lo
            af = np.clip(rng.beta(0.5, 4.0, m), 1.0 / n_hap, 0.95)
            hap = (rng.random((m, n_hap)) < af[:, None]).astype(np.uint8)
            empty = np.flatnonzero(hap.sum(axis=1) == 0)
            hap[empty, rng.integers(0, n_hap, len(empty))] = 1
            is_multi = multi[lo:hi]
            if is_multi.any():
                second = (rng.random((m, n_hap)) < 0.4) & (hap == 1) & is_multi[:, None]
                hap[second] = 2
            text = np.empty((m, n_samples, 4), dtype=np.uint8)
            text[:, :, 0] = hap[:, 0::2] + ord("0")
            text[:, :, 1] = ord("|")
            text[:, :, 2] = hap[:, 1::2] + ord("0")
            text[:, :, 3] = ord("\t")
            text[:, -1, 3] = ord("\n")
            rows = text.reshape(m, n_samples * 4)
            lines = []
            for i in range(m):
                j = lo + i
                alt = bases[alt_idx[j]]
                if multi[j]:
                    alt += b"," + bases[alt2_idx[j]]
                lines.append(
                    b"%s\t%d\t.\t%s\t%s\t.\tPASS\t.\tGT\t%s"
                    % (contig.encode(), positions[j], bases[ref_idx[j]], alt, rows[i].tobytes())
                )
            sink.write(b"".join(lines))
    return {"n_sites": n_sites, "n_multiallelic": int(multi.sum()), "n_samples": n_samples}


@contextlib.contextmanager
def _vcf_sink(path: Path) -> Iterator[Any]:
    """A binary writer for ``path``: BGZF (genofed's own writer) for ``.gz`` names, else plain."""
    if path.suffix == ".gz":
        with bgzip_writer(path) as fh:
            yield fh
        return
    with path.open("wb") as fh:
        yield fh


def genofed_exe() -> Path:
    return Path(sys.executable).with_name("genofed")


def _run_logged(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` with output to ``log``; return wall seconds; raise on failure."""
    t0 = time.perf_counter()
    with log.open("wb") as fh:
        res = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        tail = log.read_bytes()[-3000:].decode(errors="replace")
        raise SetupError(f"{' '.join(cmd)} failed ({res.returncode}):\n{tail}")
    return seconds


def live_database(node_dir: Path) -> Path:
    """The live ``dataset.duckdb`` of the bench dataset, as catalog.json names it."""
    catalog = json.loads((node_dir / "catalog.json").read_text())
    return node_dir / catalog["datasets"][DATASET_ID]["path"] / "dataset.duckdb"


def open_for_bench(node: Path, disclosure: str = "off") -> None:
    """Serve the dataset to anonymous callers up to record granularity, with disclosure
    control ``off`` (HTTP counts then equal the DuckDB counts) or ``on``: the node's
    defaults (small counts withheld, counts rounded, the public individual guard) except
    the daily query budget, which would refuse the one benchmarking client after 1,000
    requests. The audit log stays on (it always is)."""
    from genofed.config import DatasetPolicy, Disclosure, load_config, save_config

    config = load_config(node / "node.yaml")
    config.datasets[DATASET_ID] = DatasetPolicy(tier="public")
    config.tiers["public"].anonymous = "record"
    config.disclosure = Disclosure.off() if disclosure == "off" else Disclosure(query_budget=None)
    save_config(config, node / "node.yaml")


def _cache_key(n_variants: int, n_samples: int, seed: int) -> str:
    """Size, seed, and a hash of the VCF generator and of the store's code.

    The store's code is in the key because the dataset layout it writes (tables, indexes,
    side files) decides what the server can do: a node cached from older ingest code would
    silently benchmark an older layout.
    """
    hasher = hashlib.sha256()
    hasher.update(inspect.getsource(write_vcf).encode())
    hasher.update(repr((_contig_for(n_variants), MULTIALLELIC_FRACTION)).encode())
    for module in sorted(Path(genofed_store.__file__).parent.glob("*.py")):
        hasher.update(module.name.encode() + module.read_bytes())
    size = f"var{n_variants}-n{n_samples}-s{seed}"
    return f"beacon-v{CACHE_VERSION}-f{FORMAT_VERSION}-{size}-{hasher.hexdigest()[:10]}"


def _live_version_files(node_dir: Path) -> list[str]:
    """Names in the live dataset version directory (e.g. whether a position index exists)."""
    return sorted(p.name for p in live_database(node_dir).parent.iterdir())


def build_node(cache_dir: Path, n_variants: int, n_samples: int, seed: int) -> dict[str, Any]:
    """Return facts about the cached node (building it first if needed)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    ignore = cache_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    key = _cache_key(n_variants, n_samples, seed)
    target = cache_dir / key
    marker = target / "done.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        open_for_bench(target / "node")
        info.update(cached=True, node=str(target / "node"))
        info["live_version_files"] = _live_version_files(target / "node")
        return info
    exe = genofed_exe()
    if not exe.is_file():
        raise SetupError(f"genofed console script not found at {exe}; `pip install -e .` first")
    tmp = Path(tempfile.mkdtemp(prefix=key + ".", dir=cache_dir))
    try:
        vcf = tmp / "beacon.vcf.gz" if shutil.which("bgzip") else tmp / "beacon.vcf"
        with console.status(f"writing a VCF of {n_variants:,} sites x {n_samples} samples"):
            t0 = time.perf_counter()
            facts = write_vcf(vcf, n_sites=n_variants, n_samples=n_samples, seed=seed)
            generate_s = time.perf_counter() - t0
        vcf_bytes = vcf.stat().st_size
        node = tmp / "node"
        init_s = _run_logged(
            [str(exe), "node", "init", str(node), "--name", "bench-beacon"], tmp / "init.log"
        )
        with console.status(f"genofed node ingest ({n_variants:,} sites)"):
            ingest_s = _run_logged(
                [
                    str(exe),
                    "node",
                    "ingest",
                    str(node),
                    "--dataset",
                    DATASET_ID,
                    "--vcf",
                    str(vcf),
                    "--assembly",
                    "GRCh38",
                    "--granularity",
                    "record",
                ],
                tmp / "ingest.log",
            )
        vcf.unlink()
        open_for_bench(node)
        db = live_database(node)
        con = duckdb.connect(str(db), read_only=True)
        try:
            row = con.execute("SELECT count(*), count(DISTINCT site_idx) FROM variants").fetchone()
        finally:
            con.close()
        assert row is not None
        info = {
            "key": key,
            "n_variants": int(row[0]),
            "n_sites": int(row[1]),
            "n_samples": n_samples,
            "n_multiallelic_sites": facts["n_multiallelic"],
            "seed": seed,
            "vcf_bytes": vcf_bytes,
            "database_bytes": db.stat().st_size,
            "build_seconds": {
                "generate_vcf": generate_s,
                "node_init": init_s,
                "ingest": ingest_s,
                "total": generate_s + init_s + ingest_s,
            },
        }
        (tmp / "done.json").write_text(json.dumps(info, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    info.update(cached=False, node=str(target / "node"))
    info["live_version_files"] = _live_version_files(target / "node")
    return info


# --------------------------------------------------------------------------------------
# queries and the DuckDB baseline
# --------------------------------------------------------------------------------------


@dataclass
class Query:
    kind: str
    path: str
    sql: str
    params: list[Any]
    absent: bool = False  # a sequence query for an allele chosen not to exist
    expected: int | None = None  # count from the DuckDB baseline
    count_sql: str | None = None  # when ``sql`` fetches rows: the count to validate against


def _sequence_query(chrom: str, start: int, ref: str, alt: str, absent: bool) -> Query:
    vq = VariantQuery(chrom=chrom, start=[start], reference_bases=ref, alternate_bases=alt)
    where, params = where_clause(vq)
    path = (
        f"/beacon/v2/g_variants?referenceName={chrom}&start={start}&alternateBases={alt}"
        f"&referenceBases={ref}&requestedGranularity=count"
    )
    return Query("sequence", path, f"SELECT count(*) FROM variants WHERE {where}", params, absent)


def _range_query(chrom: str, start: int, end: int) -> Query:
    where, params = where_clause(VariantQuery(chrom=chrom, start=[start], end=[end]))
    path = (
        f"/beacon/v2/g_variants?referenceName={chrom}&start={start}&end={end}"
        "&requestedGranularity=count"
    )
    return Query("range", path, f"SELECT count(*) FROM variants WHERE {where}", params)


def _page_query(chrom: str, start: int, end: int) -> Query:
    """A page of ``PAGE_ROWS`` records; its baseline is DuckDB fetching the same rows
    (the server's columns, in ``variant_idx`` order) with the same WHERE clause."""
    where, params = where_clause(VariantQuery(chrom=chrom, start=[start], end=[end]))
    path = (
        f"/beacon/v2/g_variants?referenceName={chrom}&start={start}&end={end}"
        f"&requestedGranularity=record&limit={PAGE_ROWS}"
    )
    sql = (
        f"SELECT {READER_VARIANT_COLUMNS} FROM variants WHERE {where} "
        f"ORDER BY variant_idx LIMIT {PAGE_ROWS}"
    )
    return Query(
        "page", path, sql, params, count_sql=f"SELECT count(*) FROM variants WHERE {where}"
    )


def _absent_alt(ref: str, existing: set[str], rng: np.random.Generator) -> str:
    """An ALT allele for REF that is not among ``existing`` (a SNP if one is left)."""
    snps = [b for b in "ACGT" if b != ref and b not in existing] if len(ref) == 1 else []
    if snps:
        return snps[int(rng.integers(len(snps)))]
    for extra in itertools.product("ACGT", repeat=2):  # bounded: 16 candidates
        alt = ref + "".join(extra)
        if alt not in existing:
            return alt
    raise SetupError(f"could not find an absent ALT for REF {ref}")


def draw_queries(
    db: Path, n: int, *, seed: int, window: int, absent_fraction: float
) -> dict[str, list[Query]]:
    """``n`` sequence and ``n`` range queries drawn (seeded) from the node's variants."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    con = duckdb.connect(str(db), read_only=True)
    try:
        total, lo, hi = con.execute(
            'SELECT count(*), min(start), max("end") FROM variants'
        ).fetchone() or (0, 0, 0)
        chrom_row = con.execute("SELECT any_value(chrom) FROM variants").fetchone()
        chrom = str(chrom_row[0]) if chrom_row else CONTIG
        n_absent = round(n * absent_fraction)
        picks = rng.choice(int(total), size=n, replace=n > total)
        rows = con.execute(
            "SELECT variant_idx, chrom, start, ref, alt FROM variants "
            "WHERE variant_idx IN (SELECT unnest(?))",
            [sorted({int(i) for i in picks})],
        ).fetchall()
        by_idx = {int(r[0]): (str(r[1]), int(r[2]), str(r[3]), str(r[4])) for r in rows}
        chosen = [by_idx[int(i)] for i in picks]
        absent_rows = chosen[:n_absent]
        existing: dict[tuple[str, int, str], set[str]] = {}
        if absent_rows:
            for c, s, r, alts in con.execute(
                "SELECT chrom, start, ref, list(alt) FROM variants "
                "WHERE start IN (SELECT unnest(?)) GROUP BY ALL",
                [sorted({s for _, s, _, _ in absent_rows})],
            ).fetchall():
                existing[(str(c), int(s), str(r))] = set(alts)
    finally:
        con.close()
    sequence = [
        _sequence_query(c, s, r, _absent_alt(r, existing.get((c, s, r), {a}), rng), True)
        for c, s, r, a in absent_rows
    ]
    sequence += [_sequence_query(c, s, r, a, False) for c, s, r, a in chosen[n_absent:]]
    order = rng.permutation(len(sequence))
    sequence = [sequence[i] for i in order]
    top = max(int(lo) + 1, int(hi) - window)
    starts = rng.integers(int(lo), top, size=n)
    ranges = [_range_query(chrom, int(s), int(s) + window) for s in starts]
    # windows holding about 1.5 pages on average, so nearly every page is full
    page_window = int(1.5 * PAGE_ROWS * (int(hi) - int(lo)) / max(int(total), 1))
    top = max(int(lo) + 1, int(hi) - page_window)
    pages = [
        _page_query(chrom, int(s), int(s) + page_window)
        for s in rng.integers(int(lo), top, size=max(n // 10, 1))
    ]
    return {"sequence": sequence, "range": ranges, "page": pages}


def _stats_ms(latencies_s: list[float] | np.ndarray) -> dict[str, float | None]:
    if len(latencies_s) == 0:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    arr = np.asarray(latencies_s, dtype=np.float64) * 1e3
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "mean_ms": float(arr.mean()),
        "max_ms": float(arr.max()),
    }


def run_baseline(db: Path, queries: dict[str, list[Query]]) -> dict[str, dict[str, Any]]:
    """Time every query directly in DuckDB (one read-only connection); fill ``expected``."""
    con = duckdb.connect(str(db), read_only=True)
    out: dict[str, dict[str, Any]] = {}
    try:
        for kind, qs in queries.items():
            for q in qs:  # warm-up pass, untimed
                con.execute(q.sql, q.params).fetchall()
            latencies: list[float] = []
            t_all = time.perf_counter()
            for q in qs:
                t0 = time.perf_counter()
                rows = con.execute(q.sql, q.params).fetchall()
                latencies.append(time.perf_counter() - t0)
                q.expected = int(rows[0][0]) if rows and q.count_sql is None else len(rows)
            wall = time.perf_counter() - t_all
            for q in qs:
                if q.count_sql is not None:  # untimed: what the server's summary must say
                    q.expected = int(con.execute(q.count_sql, q.params).fetchone()[0])
            counts = np.array([q.expected or 0 for q in qs])
            absent_hits = sum(1 for q in qs if q.absent and q.expected)
            out[kind] = {
                "queries": len(qs),
                **_stats_ms(latencies),
                "queries_per_s": len(qs) / wall if wall > 0 else None,
                "hit_fraction": float((counts > 0).mean()) if len(qs) else None,
                "mean_count": float(counts.mean()) if len(qs) else None,
                "absent_queries": sum(1 for q in qs if q.absent),
                "absent_queries_found": absent_hits,
                "sql_example": qs[0].sql if qs else None,
            }
    finally:
        con.close()
    return out


# --------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    workers: int
    log: Path
    disclosure: str = "off"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_bytes()[-chars:].decode(errors="replace")
    except OSError:
        return ""


def start_server(node: Path, workers: int, log_dir: Path, timeout: float = 90.0) -> Server:
    """Start ``genofed node serve`` and wait until ``/-/health`` answers (3 port tries)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for attempt in range(3):
        port = free_port()
        log = log_dir / f"serve-w{workers}-{attempt}.log"
        cmd = [
            str(genofed_exe()),
            "node",
            "serve",
            str(node),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                cmd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, so it can be cleaned up
            )
        server = Server(proc, port, workers, log)
        try:
            wait_healthy(server, timeout)
        except SetupError as exc:
            stop_server(server)
            last_error = str(exc)
            if "address already in use" not in last_error.lower():
                break
            continue
        except BaseException:  # Ctrl-C / SIGTERM while waiting: do not leave it running
            stop_server(server)
            raise
        return server
    raise SetupError(last_error)


def wait_healthy(server: Server, timeout: float) -> None:
    """Poll the dataset listing with fresh connections until enough workers serve the
    bench dataset (``/-/health`` only says a worker is up, not which datasets it has)."""
    deadline = time.monotonic() + timeout
    good = 0
    needed = 4 * server.workers  # fresh connections reach the workers in turn
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SetupError(
                f"server exited with {server.proc.returncode}:\n{_log_tail(server.log)}"
            )
        try:
            r = httpx.get(server.base_url + "/beacon/v2/datasets", timeout=5.0)
            collections = r.json().get("response", {}).get("collections", [])
            if r.status_code == 200 and DATASET_ID in {c.get("id") for c in collections}:
                good += 1
                if good >= needed:
                    return
                continue
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SetupError(f"server not healthy after {timeout:.0f} s:\n{_log_tail(server.log)}")


def stop_server(server: Server) -> None:
    """Terminate the server (SIGTERM, then SIGKILL of its process group) and reap it."""
    proc = server.proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
    # uvicorn's worker processes are in the same (our child's) process group
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, 0)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)


def server_cpu_seconds(server: Server) -> float | None:
    """User + system CPU seconds of the server process and all its descendants."""
    if psutil is None:
        return None
    total = 0.0
    try:
        root = psutil.Process(server.proc.pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    for member in members:
        with contextlib.suppress(psutil.Error):
            t = member.cpu_times()
            total += t.user + t.system
    return total


def validate(server: Server, queries: dict[str, list[Query]], k: int) -> dict[str, Any]:
    """Compare ``numTotalResults`` over HTTP with the DuckDB counts for ``k`` queries/kind."""
    mismatches: list[dict[str, Any]] = []
    checked = 0
    sizes: dict[str, float] = {}
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        for kind, qs in queries.items():
            lengths = []
            for q in qs[:k]:
                r = client.get(q.path)
                checked += 1
                lengths.append(len(r.content))
                got: Any = None
                if r.status_code == 200:
                    got = r.json().get("responseSummary", {}).get("numTotalResults")
                if r.status_code != 200 or got != q.expected:
                    mismatches.append(
                        {
                            "path": q.path,
                            "status": r.status_code,
                            "got": got,
                            "expected": q.expected,
                            "body": r.text[:500],
                        }
                    )
            sizes[kind] = float(np.mean(lengths)) if lengths else 0.0
        health: list[float] = []
        for _ in range(HEALTH_PINGS):  # sequential, one keep-alive connection
            t0 = time.perf_counter()
            client.get("/-/health")
            health.append(time.perf_counter() - t0)
    health_p50 = _stats_ms(health)["p50_ms"]
    return {
        "checked": checked,
        "mismatches": mismatches,
        "mean_response_bytes": sizes,
        "health_keepalive_p50_ms": health_p50,
        # ~40 ms per keep-alive request is Nagle's algorithm meeting the client's delayed
        # ACK: the accepted sockets do not have TCP_NODELAY set
        "nagle_suspected": health_p50 is not None and health_p50 >= NAGLE_SUSPECT_MS,
    }


# --------------------------------------------------------------------------------------
# load generators
# --------------------------------------------------------------------------------------


@dataclass
class LoadRun:
    """One closed-loop run of ``requests`` requests by ``clients`` concurrent clients."""

    generator: str
    clients: int
    requests: int
    latencies_s: list[float] = field(default_factory=list)
    bad_status: int = 0
    socket_errors: int = 0
    wall_s: float | None = None
    loadgen_cpu_s: float | None = None
    error: str | None = None

    @property
    def errors(self) -> int:
        return self.bad_status + self.socket_errors + max(0, self.requests - len(self.latencies_s))


WRK_SCRIPT = r"""
-- Generated by bench/bench_beacon.py. One connection per wrk thread: each thread cycles
-- through BENCH_PATHS from its own offset, times every request itself (LuaJIT ffi,
-- CLOCK_MONOTONIC), stops after BENCH_QUOTA responses and prints a marker line.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec_t;
int clock_gettime(int clk_id, bench_timespec_t *tp);
]]
local ts = ffi.new("bench_timespec_t")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  quota = tonumber(os.getenv("BENCH_QUOTA"))
  idx = (thread_id * quota) % #paths
  lat = {}
  bad = 0
  sent_at = 0
  first_us = -1
  last_us = -1
  finished = false
end

function request()
  local path = paths[idx + 1]
  idx = (idx + 1) % #paths
  sent_at = now_us()
  return wrk.format("GET", path)
end

function response(status, headers, body)
  if finished then return end
  local t = now_us()
  if first_us < 0 then first_us = sent_at end
  lat[#lat + 1] = t - sent_at
  if status ~= 200 then bad = bad + 1 end
  last_us = t
  if #lat >= quota then
    finished = true
    io.write("BENCH-THREAD-DONE\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  for _, t in ipairs(threads) do
    local l = t:get("lat") or {}
    out:write(string.format("thread %d %d %.3f %.3f %d\n", t:get("thread_id"),
      t:get("bad") or 0, t:get("first_us") or -1, t:get("last_us") or -1, #l))
    for i = 1, #l do out:write(string.format("%.3f\n", l[i])) end
  end
  out:write(string.format("errors %d %d %d %d %d\n", summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, summary.errors.status))
  out:close()
end
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    wrk: str, base_url: str, paths: list[str], requests: int, clients: int, work: Path
) -> LoadRun:
    """``requests`` requests (rounded up to a multiple of ``clients``) through wrk."""
    work.mkdir(parents=True, exist_ok=True)
    script = work / "bench.lua"
    if not script.exists():
        script.write_text(WRK_SCRIPT)
    stamp = f"{time.monotonic_ns()}"
    paths_file = work / f"paths-{stamp}.txt"
    out_file = work / f"wrk-{stamp}.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    quota = math.ceil(requests / clients)
    run = LoadRun("wrk", clients, quota * clients)
    bound = int(60 + 0.5 * quota)  # wrk's -d: a generous upper bound, normally never reached
    env = {
        **os.environ,
        "BENCH_PATHS": str(paths_file),
        "BENCH_QUOTA": str(quota),
        "BENCH_OUT": str(out_file),
    }
    cmd = [
        wrk,
        "-t",
        str(clients),
        "-c",
        str(clients),
        "-d",
        f"{bound}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        base_url + "/",
    ]
    cpu0 = _children_cpu()
    with (work / f"wrk-{stamp}.err").open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    finished = 0
    deadline = time.monotonic() + bound + 30
    try:
        while finished < clients and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                break
            if line.startswith("BENCH-THREAD-DONE"):
                finished += 1
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # wakes wrk's main thread: report, call done()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    run.loadgen_cpu_s = _children_cpu() - cpu0
    if finished < clients:
        run.error = f"only {finished} of {clients} wrk threads finished their requests"
    if not out_file.is_file():
        stderr = (work / f"wrk-{stamp}.err").read_text(errors="replace")[-1000:]
        run.error = f"{run.error or ''} wrk wrote no results (exit {proc.returncode}): {stderr}"
        return run
    firsts, lasts = [], []
    for raw in out_file.read_text().splitlines():
        parts = raw.split()
        if not parts:
            continue
        if parts[0] == "thread":
            run.bad_status += int(parts[2])
            if float(parts[3]) >= 0:
                firsts.append(float(parts[3]))
                lasts.append(float(parts[4]))
        elif parts[0] == "errors":
            run.socket_errors = sum(int(x) for x in parts[1:5])
        else:
            run.latencies_s.append(float(parts[0]) / 1e6)
    if firsts:
        run.wall_s = (max(lasts) - min(firsts)) / 1e6
    paths_file.unlink(missing_ok=True)
    out_file.unlink(missing_ok=True)
    return run


def run_httpx(base_url: str, paths: list[str], requests: int, clients: int) -> LoadRun:
    """``requests`` requests from ``clients`` threads, one keep-alive connection each."""
    run = LoadRun("httpx", clients, requests)
    counter = itertools.count()
    per_client: list[list[float]] = [[] for _ in range(clients)]
    bad = [0] * clients
    failures = [0] * clients
    ends = [0.0] * clients
    barrier = threading.Barrier(clients + 1, timeout=60)
    deadline = time.perf_counter() + 120 + 0.5 * requests
    errors: list[str] = []

    def client_loop(k: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        try:
            with httpx.Client(base_url=base_url, timeout=30.0, limits=limits) as client:
                client.get("/-/health")  # open the connection before the clock starts
                barrier.wait()
                while time.perf_counter() < deadline:
                    i = next(counter)
                    if i >= requests:
                        break
                    t0 = time.perf_counter()
                    try:
                        r = client.get(paths[i % len(paths)])
                    except httpx.HTTPError:
                        failures[k] += 1
                        continue
                    per_client[k].append(time.perf_counter() - t0)
                    if r.status_code != 200:
                        bad[k] += 1
                ends[k] = time.perf_counter()
        except (httpx.HTTPError, threading.BrokenBarrierError) as exc:
            errors.append(f"client {k}: {exc!r}")
            barrier.abort()

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=client_loop, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    started = time.perf_counter()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.perf_counter() + 35))
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    run.loadgen_cpu_s = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    run.latencies_s = [x for lat in per_client for x in lat]
    run.bad_status = sum(bad)
    run.socket_errors = sum(failures)
    if any(ends):
        run.wall_s = max(ends) - started
    if errors:
        run.error = "; ".join(errors[:3])
    return run


def probe_wrk(wrk: str | None, base_url: str, work: Path) -> tuple[bool, str]:
    """Can this wrk run the Lua script (LuaJIT ffi) against the server? (True, version)."""
    if wrk is None:
        return False, "wrk not on PATH"
    res = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    text = (res.stdout or res.stderr).strip()
    version = text.splitlines()[0] if text else "wrk"
    run = run_wrk(wrk, base_url, ["/-/health"], 6, 2, work)
    if run.error or len(run.latencies_s) != 6 or run.bad_status:
        return False, f"{version}: probe failed ({run.error or 'wrong answer count'})"
    return True, version


# --------------------------------------------------------------------------------------
# measuring and reporting
# --------------------------------------------------------------------------------------


@dataclass
class Cell:
    workers: int
    disclosure: str
    kind: str
    clients: int
    generator: str
    requests: int
    completed: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None
    requests_per_s: float | None
    wall_s: float | None
    run_s: float
    server_cpu_ms_per_request: float | None
    loadgen_cpu_s: float | None
    duckdb_p50_ms: float | None = None
    p50_over_duckdb_p50: float | None = None
    http_overhead_ms: float | None = None
    error: str | None = None


def measure_cell(
    server: Server,
    kind: str,
    clients: int,
    paths: list[str],
    requests: int,
    generator: str,
    wrk: str | None,
    work: Path,
) -> Cell:
    cpu0 = server_cpu_seconds(server)
    t0 = time.perf_counter()
    if generator == "wrk":
        assert wrk is not None
        run = run_wrk(wrk, server.base_url, paths, requests, clients, work)
    else:
        run = run_httpx(server.base_url, paths, requests, clients)
    run_s = time.perf_counter() - t0
    cpu1 = server_cpu_seconds(server)
    stats = _stats_ms(run.latencies_s)
    done = len(run.latencies_s)
    cpu_per = None
    if cpu0 is not None and cpu1 is not None and done:
        cpu_per = (cpu1 - cpu0) / done * 1e3
    return Cell(
        workers=server.workers,
        disclosure=server.disclosure,
        kind=kind,
        clients=clients,
        generator=generator,
        requests=run.requests,
        completed=done,
        errors=run.errors,
        p50_ms=stats["p50_ms"],
        p99_ms=stats["p99_ms"],
        mean_ms=stats["mean_ms"],
        max_ms=stats["max_ms"],
        requests_per_s=done / run.wall_s if run.wall_s else None,
        wall_s=run.wall_s,
        run_s=run_s,
        server_cpu_ms_per_request=cpu_per,
        loadgen_cpu_s=run.loadgen_cpu_s,
        error=run.error,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(
    cells: list[Cell], baseline: dict[str, dict[str, Any]], node: dict[str, Any], generator: str
) -> None:
    table = Table(
        title=f"Beacon g_variants over HTTP ({node['n_variants']:,} variants, "
        f"load generator: {generator}) vs DuckDB direct"
    )
    for col, justify in [
        ("workers", "right"),
        ("disclosure", "left"),
        ("query", "left"),
        ("clients", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("mean ms", "right"),
        ("req/s", "right"),
        ("DuckDB p50 ms", "right"),
        ("p50 / DuckDB", "right"),
        ("overhead ms", "right"),
        ("server CPU ms/req", "right"),
        ("errors", "right"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for c in cells:
        table.add_row(
            str(c.workers),
            c.disclosure,
            c.kind,
            str(c.clients),
            _fmt(c.p50_ms, ".2f"),
            _fmt(c.p99_ms, ".2f"),
            _fmt(c.mean_ms, ".2f"),
            _fmt(c.requests_per_s, ",.0f"),
            _fmt(c.duckdb_p50_ms, ".3f"),
            _fmt(c.p50_over_duckdb_p50, ".1f"),
            _fmt(c.http_overhead_ms, ".2f"),
            _fmt(c.server_cpu_ms_per_request, ".2f"),
            f"[red]{c.errors}" if c.errors else "0",
        )
    console.print(table)
    base = Table(title="DuckDB baseline (one read-only connection, same WHERE clause)")
    for col in (
        "query",
        "queries",
        "p50 ms",
        "p99 ms",
        "mean ms",
        "queries/s",
        "hits",
        "mean count",
    ):
        base.add_column(col, justify="left" if col == "query" else "right")
    for kind, b in baseline.items():
        base.add_row(
            kind,
            str(b["queries"]),
            _fmt(b["p50_ms"], ".3f"),
            _fmt(b["p99_ms"], ".3f"),
            _fmt(b["mean_ms"], ".3f"),
            _fmt(b["queries_per_s"], ",.0f"),
            _fmt(b["hit_fraction"], ".0%"),
            _fmt(b["mean_count"], ".1f"),
        )
    console.print(base)


def evaluate_goals(cells: list[Cell]) -> dict[str, Any]:
    """Sequence p50 with one client <= 5 ms; sequence throughput (any client count) >= 500/s."""
    seq = [c for c in cells if c.kind == "sequence" and c.completed and not c.errors]
    one = [c for c in seq if c.clients == 1 and c.p50_ms is not None]
    best_p50 = min(one, key=lambda c: c.p50_ms or math.inf, default=None)
    best_rps = max(seq, key=lambda c: c.requests_per_s or 0.0, default=None)
    per_workers: dict[str, dict[str, Any]] = {}
    for w in sorted({c.workers for c in cells}):
        mine = [c for c in seq if c.workers == w]
        p50 = next((c.p50_ms for c in mine if c.clients == 1), None)
        rps = max((c.requests_per_s or 0.0 for c in mine), default=None)
        per_workers[str(w)] = {
            "sequence_p50_ms_1_client": p50,
            "sequence_max_requests_per_s": rps,
            "p50_goal_met": p50 is not None and p50 <= GOAL_SEQUENCE_P50_MS,
            "throughput_goal_met": rps is not None and rps >= GOAL_SEQUENCE_RPS,
        }
    p50_value = best_p50.p50_ms if best_p50 else None
    rps_value = best_rps.requests_per_s if best_rps else None
    return {
        "sequence_p50_ms": {
            "goal": GOAL_SEQUENCE_P50_MS,
            "measured": p50_value,
            "where": f"workers={best_p50.workers}, clients=1" if best_p50 else None,
            "met": p50_value is not None and p50_value <= GOAL_SEQUENCE_P50_MS,
        },
        "sequence_requests_per_s": {
            "goal": GOAL_SEQUENCE_RPS,
            "measured": rps_value,
            "where": f"workers={best_rps.workers}, clients={best_rps.clients}"
            if best_rps
            else None,
            "met": rps_value is not None and rps_value >= GOAL_SEQUENCE_RPS,
        },
        "by_workers": per_workers,
    }


def git_commit(root: Path) -> str | None:
    """The checked-out commit, read from ``.git`` files (no git command is run)."""
    git = root / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: <path>"
            text = git.read_text().strip()
            git = (root / text.removeprefix("gitdir:").strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.removeprefix("ref:").strip()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
        for base in (git, common):
            packed = base / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except OSError:
        return None
    return None


def versions(wrk_version: str | None) -> dict[str, str | None]:
    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "genofed": dist("genofed"),
        "python": platform.python_version(),
        "duckdb": dist("duckdb"),
        "fastapi": dist("fastapi"),
        "uvicorn": dist("uvicorn"),
        "httpx": dist("httpx"),
        "wrk": wrk_version,
    }


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
    }
    with contextlib.suppress(AttributeError, OSError):
        info["cores_available"] = len(os.sched_getaffinity(0))
    if psutil is not None:
        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["ram_total_mb"] = round(psutil.virtual_memory().total / 2**20)
    return info


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "--variants",
        type=int,
        default=None,
        help=f"minimum variants in the node (default 1,000,000; {QUICK_VARIANTS:,} with --quick)",
    )
    p.add_argument("--samples", type=int, default=100, help="samples in the synthetic VCF")
    p.add_argument(
        "--requests",
        type=int,
        default=None,
        help=f"measured requests per cell (default 2,000; {QUICK_REQUESTS} with "
        "--quick); also the number of distinct queries of each kind",
    )
    p.add_argument("--clients", default="1,16", help="concurrent clients, comma-separated")
    p.add_argument("--workers", default="1,2", help="server worker counts, comma-separated")
    p.add_argument("--window", type=int, default=10_000, help="range-query window in bp")
    p.add_argument(
        "--disclosure",
        default="off,on",
        help="disclosure control for the runs: off (answers checked against DuckDB), and "
        "on (the node's defaults without the query budget), comma-separated",
    )
    p.add_argument(
        "--absent-fraction",
        type=float,
        default=0.1,
        help="fraction of sequence queries for alleles that are not there",
    )
    p.add_argument("--load-generator", choices=("auto", "wrk", "httpx"), default="auto")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--quick", action="store_true", help="small node, few requests (seconds)")
    p.add_argument("--cache-dir", type=Path, default=BENCH_DIR / ".cache")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default bench/results/beacon.json, beacon-quick.json with --quick)",
    )
    args = p.parse_args(argv)
    if args.variants is None:
        args.variants = QUICK_VARIANTS if args.quick else 1_000_000
    if args.requests is None:
        args.requests = QUICK_REQUESTS if args.quick else 2_000
    if args.out is None:
        name = "beacon-quick.json" if args.quick else "beacon.json"
        args.out = BENCH_DIR / "results" / name
    args.clients = [int(x) for x in str(args.clients).split(",") if x.strip()]
    args.workers = [int(x) for x in str(args.workers).split(",") if x.strip()]
    args.disclosure = [x.strip() for x in str(args.disclosure).split(",") if x.strip()]
    if not set(args.disclosure) <= {"off", "on"}:
        p.error("--disclosure takes off, on or off,on")
    if (
        args.requests < 1
        or not args.clients
        or not args.workers
        or min(args.clients) < 1
        or min(args.workers) < 1
        or not 0 <= args.absent_fraction <= 1
    ):
        p.error("--requests, --clients and --workers must be positive")
    return args


@contextlib.contextmanager
def _phase(phases: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall seconds of the ``with`` body to ``phases[name]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work on the machine distorts the numbers)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _busy_percent(seconds: float = 1.0) -> float | None:
    """How busy all CPUs are right now (sampled over ``seconds``), before we add load."""
    if psutil is None:
        return None
    return float(psutil.cpu_percent(interval=seconds))


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    t_start = time.perf_counter()
    signal.signal(signal.SIGTERM, _raise_interrupt)  # so the server is stopped on SIGTERM too
    phases: dict[str, float] = {}
    load_start = _load_average()
    busy_start = _busy_percent()
    if busy_start is not None and busy_start > BUSY_WARN_PERCENT:
        err_console.print(
            f"[yellow]the CPUs are {busy_start:.0f} % busy before the benchmark starts: other "
            "work on this machine will distort the numbers"
        )

    try:
        with _phase(phases, "node_build_or_load"):
            node = build_node(args.cache_dir, args.variants, args.samples, args.seed)
    except (SetupError, OSError, ValueError) as exc:
        err_console.print(f"[red]could not build the benchmark node: {exc}")
        return 3
    build = node["build_seconds"]
    console.print(
        f"node: {node['node']} ({'cached' if node['cached'] else 'built'}; "
        f"{node['n_variants']:,} variants at {node['n_sites']:,} sites, "
        f"{node['n_samples']} samples; build took {build['total']:.1f} s: VCF "
        f"{build['generate_vcf']:.1f} s + ingest {build['ingest']:.1f} s)"
    )
    db = live_database(Path(node["node"]))
    console.print(f"live dataset version holds: {', '.join(node['live_version_files'])}")

    with _phase(phases, "draw_queries"):
        queries = draw_queries(
            db,
            args.requests,
            seed=args.seed,
            window=args.window,
            absent_fraction=args.absent_fraction,
        )
    with console.status("DuckDB baseline"), _phase(phases, "duckdb_baseline"):
        baseline = run_baseline(db, queries)
    paths = {kind: [q.path for q in qs] for kind, qs in queries.items()}

    work = Path(tempfile.mkdtemp(prefix="beacon-work-", dir=args.cache_dir))
    wrk = shutil.which("wrk")
    generator: str | None = None
    wrk_version: str | None = None
    wrk_note = ""
    cells: list[Cell] = []
    validations: dict[str, Any] = {}
    server: Server | None = None
    interrupted = False
    try:
        runs = [(w, d) for d in args.disclosure for w in args.workers]
        for workers, disclosure in runs:
            open_for_bench(Path(node["node"]), disclosure)
            label = f"workers={workers} disclosure={disclosure}"
            with (
                console.status(f"starting genofed node serve --workers {workers}"),
                _phase(phases, "server_start"),
            ):
                server = start_server(Path(node["node"]), workers, work)
                server.disclosure = disclosure
            if generator is None:
                if args.load_generator in ("auto", "wrk"):
                    usable, wrk_note = probe_wrk(wrk, server.base_url, work / "probe")
                    wrk_version = wrk_note if usable else None
                    if usable:
                        generator = "wrk"
                    elif args.load_generator == "wrk":
                        raise SetupError(f"--load-generator wrk: {wrk_note}")
                    else:
                        generator = "httpx"
                else:
                    generator = "httpx"
                console.print(
                    f"load generator: {generator}" + (f" ({wrk_note})" if wrk_note else "")
                )
            with _phase(phases, "validate"):
                check = validate(server, queries, VALIDATE_QUERIES)
            if disclosure == "on":  # counts are rounded and small ones withheld on purpose
                check["mismatches_expected"] = check.pop("mismatches")
                check["mismatches"] = []
            validations[label] = check
            if check["nagle_suspected"]:
                err_console.print(
                    f"[yellow]{label}: /-/health takes "
                    f"{check['health_keepalive_p50_ms']:.0f} ms per keep-alive request; "
                    "TCP_NODELAY looks unset on the server's sockets (Nagle + delayed ACK)"
                )
            if check["mismatches"]:
                err_console.print(
                    f"[red]{len(check['mismatches'])} HTTP answers differ from "
                    f"DuckDB; first: {check['mismatches'][0]}"
                )
            for kind in KINDS:
                with (
                    console.status(f"{label} {kind}: warm-up"),
                    _phase(phases, "warmup"),
                ):
                    warm = min(args.requests, WARMUP_REQUESTS)
                    if generator == "wrk":
                        assert wrk is not None
                        run_wrk(wrk, server.base_url, paths[kind], warm, max(args.clients), work)
                    else:
                        run_httpx(server.base_url, paths[kind], warm, max(args.clients))
                for clients in args.clients:
                    with (
                        console.status(f"{label} {kind} x {clients} clients"),
                        _phase(phases, "measured_cells"),
                    ):
                        cell = measure_cell(
                            server, kind, clients, paths[kind], args.requests, generator, wrk, work
                        )
                    b = baseline[kind]
                    cell.duckdb_p50_ms = b["p50_ms"]
                    if cell.p50_ms is not None and b["p50_ms"]:
                        cell.p50_over_duckdb_p50 = cell.p50_ms / b["p50_ms"]
                        cell.http_overhead_ms = cell.p50_ms - b["p50_ms"]
                    cells.append(cell)
                    console.print(
                        f"  {label} {kind:<8} clients={clients:<3} "
                        f"p50 {_fmt(cell.p50_ms, '.2f')} ms  p99 {_fmt(cell.p99_ms, '.2f')} ms"
                        f"  {_fmt(cell.requests_per_s, ',.0f')} req/s  errors {cell.errors}"
                    )
            with _phase(phases, "server_stop"):
                stop_server(server)
            server = None
    except KeyboardInterrupt:
        interrupted = True
        err_console.print("[yellow]interrupted; stopping the server")
    except SetupError as exc:
        err_console.print(f"[red]{exc}")
        return 3
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(work, ignore_errors=True)
    if interrupted:
        return 130

    print_report(cells, baseline, node, generator or "-")
    goals = evaluate_goals(cells)
    for name, g in goals.items():
        if name == "by_workers":
            continue
        mark = "[green]met" if g["met"] else "[red]not met"
        console.print(
            f"goal {name}: {_fmt(g['measured'], '.2f')} (goal {g['goal']:g}, {g['where']}): {mark}"
        )
    ratios = {
        f"w{c.workers}-d{c.disclosure}-{c.kind}-c{c.clients}": {
            "p50_over_duckdb_p50": c.p50_over_duckdb_p50,
            "http_overhead_ms": c.http_overhead_ms,
        }
        for c in cells
    }
    report = {
        "benchmark": "beacon",
        "timestamp": started.isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - t_start,
        "phase_seconds": phases,
        "git_commit": git_commit(REPO_ROOT),
        "parameters": {
            "variants_requested": args.variants,
            "samples": args.samples,
            "requests_per_cell": args.requests,
            "warmup_requests": min(args.requests, WARMUP_REQUESTS),
            "clients": args.clients,
            "workers": args.workers,
            "window_bp": args.window,
            "absent_fraction": args.absent_fraction,
            "seed": args.seed,
            "quick": args.quick,
            "requested_granularity": "count (sequence, range), record (page)",
            "page_rows": PAGE_ROWS,
            "disclosure": args.disclosure,
            "load_generator": generator,
            "load_generator_note": wrk_note,
            "closed_loop": True,
        },
        "node": node,
        "machine": {
            **machine_info(),
            "load_average_start": load_start,
            "load_average_end": _load_average(),
            "cpu_busy_percent_before": busy_start,
        },
        "versions": versions(wrk_version),
        "baseline_duckdb": baseline,
        "cells": [asdict(c) for c in cells],
        "ratios": ratios,
        "validation": validations,
        "goals": goals,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(
        f"results written to {args.out} (bench took {report['duration_s']:.0f} s: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
        + ")"
    )
    bad = any(c.errors or c.error for c in cells) or any(
        v["mismatches"] for v in validations.values()
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
