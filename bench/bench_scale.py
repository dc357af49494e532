"""Biobank-scale ingest: real FORMAT layouts against plink2, memory flat in variants, and
parallel ingest.

Usage::

    .venv/bin/python bench/bench_scale.py [--out bench/results/scale.json] [--quick]
                                          [--only format,memory,parallel]

Three parts, every run a child process measured for wall seconds and peak RSS (the
``measure`` of ``bench_ingest.py``: ``wait4`` and a psutil poll of the process tree):

1. **format** — msprime genotypes (``genofed.simulate``) of 1,000 and 20,000 samples ×
   20,000 sites, GT-only and with the FORMAT fields of a GATK joint call added
   (``gatk_format.py``: ``GT:AD:DP:GQ:PL``, about 25 bytes a sample). ``genofed node
   ingest`` against ``plink2 --vcf FILE --make-pgen --threads 2`` on the same file,
   interleaved, ``--repeats`` times; the ratio is plink2's median wall time over ours
   (above 1: genofed is faster).
2. **memory** — random GT-only SNPs of 100 samples, at 1 M, 5 M and 20 M variants: peak
   RSS of ``genofed node ingest`` at each, and each against the smallest.
3. **parallel** — a four-contig VCF of 2 M random sites × 100 samples (indexed), ingested
   with ``--workers 1`` and ``--workers 2``, interleaved; the two datasets' tables,
   genotypes and position index must be identical (a digest of each is compared).

Inputs are cached under ``bench/.cache/`` (keyed by their parameters and the generators'
source). ``--quick`` shrinks every size, for checking the script, and writes
``bench/results/scale-quick.json`` unless ``--out`` is given.

Exit status: 0 if every run succeeded and the parallel datasets were identical, 1
otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import inspect
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from bench_ingest import RunResult, genofed_exe, measure  # noqa: E402
from gatk_format import add_gatk_format  # noqa: E402
from genofed import simulate  # noqa: E402
from genofed.simulate import bgzip_writer  # noqa: E402

console = Console() if sys.stdout.isatty() else Console(width=140)
CACHE = BENCH_DIR / ".cache" / "scale"
# GRCh38 lengths: random sites are spread over these contigs
CONTIGS = {"1": 248_956_422, "2": 242_193_529, "3": 198_295_559, "4": 190_214_555}


def _source_key(*sources: Any) -> str:
    """A digest of the generators' code (modules or functions), so inputs are remade
    only when the code making them changes."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(inspect.getsource(source).encode())
    return digest.hexdigest()[:10]


def _cached(name: str, build: Any) -> Path:
    """``CACHE/name``, built by ``build(path)`` into a temporary name first."""
    target = CACHE / name
    if target.is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE.parent / ".gitignore").write_text("*\n")
    tmp = target.with_name(f".tmp-{target.name}")
    build(tmp)
    for suffix in (".tbi", ".csi"):
        index = tmp.with_name(tmp.name + suffix)
        if index.is_file():
            index.rename(target.with_name(target.name + suffix))
    tmp.rename(target)
    return target


def simulated_vcf(n_samples: int, n_sites: int, gatk: bool) -> Path:
    """msprime genotypes; with ``gatk`` the joint-call FORMAT fields added."""
    import gatk_format

    key = _source_key(simulate, gatk_format)
    gt_name = f"sim-{n_samples}x{n_sites}-{key}.vcf.gz"

    def build_gt(path: Path) -> None:
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            cohort = simulate.simulate_cohort(
                Path(tmp), n_samples=n_samples, n_sites=n_sites, prefix="S", seed=3
            )
            shutil.move(cohort.vcf, path)
            shutil.move(cohort.vcf.with_name(cohort.vcf.name + ".tbi"), f"{path}.tbi")

    console.print(f"input: {n_samples:,} × {n_sites:,}{' GATK' if gatk else ''}")
    gt = _cached(gt_name, build_gt)
    if not gatk:
        return gt
    return _cached(gt_name.replace("sim-", "gatk-"), lambda p: add_gatk_format(gt, p))


def random_vcf(n_sites: int, n_samples: int, n_contigs: int, gatk: bool = False) -> Path:
    """Random SNPs (allele frequencies from Beta(0.5, 4)) spread over ``n_contigs``
    contigs, GT-only or in the GATK layout; BGZF, indexed."""
    name = (
        f"random-{n_sites}x{n_samples}-c{n_contigs}{'-gatk' if gatk else ''}-{_source_key()}.vcf.gz"
    )

    def build(path: Path) -> None:
        rng = np.random.default_rng(5)
        contigs = list(CONTIGS.items())[:n_contigs]
        header = ["##fileformat=VCFv4.2"] + [f"##contig=<ID={c},length={n}>" for c, n in contigs]
        header.append(
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t"
            + "\t".join(f"R{i:05d}" for i in range(n_samples))
        )
        with bgzip_writer(path) as out:
            out.write(("\n".join(header) + "\n").encode())
            for index, (contig, length) in enumerate(contigs):
                count = n_sites // n_contigs + (index < n_sites % n_contigs)
                step = (length - 1000) // count
                positions = (
                    np.arange(count, dtype=np.int64) * step + 1 + rng.integers(0, step, count)
                )
                for lo in range(0, count, 20_000):
                    out.write(_lines(contig, positions[lo : lo + 20_000], n_samples, gatk, rng))
        subprocess.run(["tabix", "-f", "-p", "vcf", str(path)], check=True)

    console.print(f"input: {n_sites:,} random sites × {n_samples} samples on {n_contigs} contig(s)")
    return _cached(name, build)


def _lines(contig: str, positions: np.ndarray, n_samples: int, gatk: bool, rng: Any) -> bytes:
    m = len(positions)
    af = np.clip(rng.beta(0.5, 4.0, m), 1 / (2 * n_samples), 0.95)
    hap = (rng.random((m, 2 * n_samples)) < af[:, None]).astype(np.uint8)
    text = np.empty((m, n_samples, 4), dtype=np.uint8)
    text[:, :, 0] = hap[:, 0::2] + ord("0")
    text[:, :, 1] = ord("|")
    text[:, :, 2] = hap[:, 1::2] + ord("0")
    text[:, :, 3] = ord("\t")
    text[:, -1, 3] = ord("\n")
    fmt = b"GT:AD:DP:GQ:PL" if gatk else b"GT"
    lines = []
    for i in range(m):
        calls = text[i].tobytes()
        if gatk:  # the same depths everywhere: the layout is what is measured here
            calls = calls.replace(b"\t", b":20,9:29:99:0,30,300\t").replace(
                b"\n", b":20,9:29:99:0,30,300\n"
            )
        lines.append(
            b"%s\t%d\t.\tA\tG\t.\tPASS\t.\t%s\t%s" % (contig.encode(), positions[i], fmt, calls)
        )
    return b"".join(lines)


def _genofed_run(
    vcf: Path, work: Path, label: str, n_samples: int, n_sites: int, *extra: str
) -> RunResult:
    node = work / f"node-{label}"
    shutil.rmtree(node, ignore_errors=True)
    subprocess.run(
        [str(genofed_exe()), "node", "init", str(node), "--name", "bench"],
        check=True,
        capture_output=True,
    )
    cmd = [
        str(genofed_exe()),
        "node",
        "ingest",
        str(node),
        "--dataset",
        "bench",
        "--vcf",
        str(vcf),
        "--assembly",
        "GRCh38",
        *extra,
    ]
    return measure(RunResult("genofed", 1.0, n_samples, n_sites, cmd), work / f"log-{label}")


def _plink_run(vcf: Path, work: Path, label: str, n_samples: int, n_sites: int) -> RunResult:
    out = work / f"plink-{label}"
    cmd = ["plink2", "--vcf", str(vcf), "--make-pgen", "--out", str(out), "--threads", "2"]
    return measure(RunResult("plink2", 1.0, n_samples, n_sites, cmd), work / f"log-plink-{label}")


def _median(runs: list[RunResult], key: str) -> float | None:
    values = [getattr(r, key) for r in runs if r.ok]
    return statistics.median(values) if values else None


def bench_format(sizes: list[tuple[int, int]], repeats: int, work: Path) -> list[dict[str, Any]]:
    rows = []
    for n_samples, n_sites in sizes:
        for gatk in (False, True):
            vcf = simulated_vcf(n_samples, n_sites, gatk)
            ours, theirs = [], []
            for _ in range(repeats):
                ours.append(_genofed_run(vcf, work, "format", n_samples, n_sites))
                theirs.append(_plink_run(vcf, work, "format", n_samples, n_sites))
            g, p = _median(ours, "wall_s"), _median(theirs, "wall_s")
            rows.append(
                {
                    "samples": n_samples,
                    "sites": n_sites,
                    "layout": "GT:AD:DP:GQ:PL" if gatk else "GT",
                    "file_mb": vcf.stat().st_size / 2**20,
                    "genofed_s": g,
                    "plink2_s": p,
                    "plink2_over_genofed": p / g if g and p else None,
                    "genofed_peak_mb": _median(ours, "peak_rss_mb"),
                    "plink2_peak_mb": _median(theirs, "peak_rss_mb"),
                    "ok": all(r.ok for r in ours + theirs),
                    "errors": [r.stderr_tail for r in ours + theirs if not r.ok],
                }
            )
    return rows


def bench_memory(sizes: list[int], work: Path) -> list[dict[str, Any]]:
    rows = []
    for n_sites in sizes:
        vcf = random_vcf(n_sites, 100, 1)
        run = _genofed_run(vcf, work, "memory", 100, n_sites)
        rows.append(
            {
                "variants": n_sites,
                "samples": 100,
                "wall_s": run.wall_s,
                "peak_mb": run.peak_rss_mb,
                "ok": run.ok,
                "error": None if run.ok else run.stderr_tail,
            }
        )
    smallest = rows[0]["peak_mb"]
    for row in rows:
        row["peak_over_smallest"] = (
            row["peak_mb"] / smallest if smallest and row["peak_mb"] else None
        )
    return rows


def _dataset_digest(node: Path) -> str:
    """A digest of what a dataset holds: every table (rows in order, creation times left
    out), the genotype matrix and the position index."""
    import duckdb
    import zarr

    version = next((node / "datasets" / "bench").glob("v*"))
    con = duckdb.connect(str(version / "dataset.duckdb"), read_only=True)
    digest = hashlib.sha256()
    for table in ("variants", "samples", "entry_terms"):
        for row in con.execute(f"SELECT * FROM {table}").fetchall():
            digest.update(repr(row).encode())
    for row in con.execute("SELECT * FROM entry_values WHERE path NOT LIKE '%DateTime'").fetchall():
        digest.update(repr(row).encode())
    con.close()
    array = zarr.open_array(str(version / "genotypes.zarr"), path="call_genotype")
    for lo in range(0, array.shape[0], 10_000):
        digest.update(np.asarray(array[lo : lo + 10_000]).tobytes())
    digest.update((version / "positions.arrow").read_bytes())
    return digest.hexdigest()


def bench_parallel(n_sites: int, n_samples: int, repeats: int, work: Path) -> dict[str, Any]:
    # Many variants of few samples: work a process does one record at a time. (A file of
    # many samples already keeps two cores busy in one process: decompressing in one
    # thread, scanning in another.)
    vcf = random_vcf(n_sites, n_samples, 4)
    runs: dict[int, list[RunResult]] = {1: [], 2: []}
    digests = {}
    for _ in range(repeats):
        for workers in (1, 2):
            runs[workers].append(
                _genofed_run(
                    vcf, work, f"w{workers}", n_samples, n_sites, "--workers", str(workers)
                )
            )
            digests[workers] = _dataset_digest(work / f"node-w{workers}")
    one, two = _median(runs[1], "wall_s"), _median(runs[2], "wall_s")
    return {
        "sites": n_sites,
        "samples": n_samples,
        "contigs": 4,
        "workers_1_s": one,
        "workers_2_s": two,
        "speedup": one / two if one and two else None,
        # no peak RSS here: a child forked from this process (which has just read a
        # dataset's genotypes for the digest) starts with its high-water mark
        "identical_datasets": digests[1] == digests[2],
        "ok": all(r.ok for r in runs[1] + runs[2]),
    }


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="small sizes, for checking the script")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="format,memory,parallel")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    if args.quick:
        format_sizes, memory_sizes, parallel_size, repeats = (
            [(200, 2_000)],
            [20_000, 100_000],
            (40_000, 200),
            1,
        )
    else:
        format_sizes = [(1_000, 20_000), (20_000, 20_000)]
        memory_sizes = [1_000_000, 5_000_000, 20_000_000]
        parallel_size, repeats = (2_000_000, 100), args.repeats
    out = args.out or BENCH_DIR / "results" / ("scale-quick.json" if args.quick else "scale.json")
    report: dict[str, Any] = {"timestamp": dt.datetime.now(dt.UTC).isoformat(), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        if "format" in parts:
            report["format"] = bench_format(format_sizes, repeats, work)
            table = Table(title="Ingest by FORMAT layout: genofed vs plink2 --make-pgen (medians)")
            for col in (
                "samples × sites",
                "layout",
                "genofed s",
                "plink2 s",
                "plink2/genofed",
                "genofed MB",
                "plink2 MB",
            ):
                table.add_column(col, justify="right")
            for r in report["format"]:
                table.add_row(
                    f"{r['samples']:,} × {r['sites']:,}",
                    r["layout"],
                    _fmt(r["genofed_s"]),
                    _fmt(r["plink2_s"]),
                    _fmt(r["plink2_over_genofed"]),
                    _fmt(r["genofed_peak_mb"], ".0f"),
                    _fmt(r["plink2_peak_mb"], ".0f"),
                )
            console.print(table)
        if "memory" in parts:
            report["memory"] = bench_memory(memory_sizes, work)
            table = Table(title="Peak RSS of an ingest by number of variants (100 samples)")
            for col in ("variants", "wall s", "peak MB", "vs smallest"):
                table.add_column(col, justify="right")
            for r in report["memory"]:
                table.add_row(
                    f"{r['variants']:,}",
                    _fmt(r["wall_s"]),
                    _fmt(r["peak_mb"], ".0f"),
                    _fmt(r["peak_over_smallest"], ".3f"),
                )
            console.print(table)
        if "parallel" in parts:
            p = report["parallel"] = bench_parallel(*parallel_size, repeats, work)
            console.print(
                f"parallel ingest, {p['sites']:,} sites × {p['samples']:,} samples on 4 contigs: "
                f"1 worker {_fmt(p['workers_1_s'])} s, 2 workers {_fmt(p['workers_2_s'])} s "
                f"(speed-up {_fmt(p['speedup'])}×), identical datasets: {p['identical_datasets']}"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {out}")
    ok = all(r["ok"] for r in report.get("format", []) + report.get("memory", []))
    if "parallel" in report:
        ok = ok and report["parallel"]["ok"] and report["parallel"]["identical_datasets"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
