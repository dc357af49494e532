"""Ingest benchmark: ``genofed node ingest`` versus ``plink2 --make-pgen`` on the same VCF.

Usage::

    .venv/bin/python bench/bench_ingest.py [--samples 2500] [--sites 100000]
                                           [--out bench/results/ingest.json] [--quick]

Steps:

1. Simulate (with :func:`genofed.simulate.simulate_cohort`) a bgzipped VCF of
   ``--samples`` x ``--sites``; cached under ``bench/.cache/`` keyed by the parameters
   and by a hash of the simulator source, so re-runs skip this step.
2. Cut prefixes of that VCF holding 25 %, 50 % and 100 % of the sites (``bcftools view -r``,
   also cached).
3. For each slice, run as child processes and measure wall seconds, CPU seconds and
   peak RSS (``os.wait4`` ``ru_maxrss`` *and* a psutil poll of the summed RSS of the whole
   process tree; the larger one is reported):

   * genofed: ``genofed node init DIR --name bench`` then (measured)
     ``genofed node ingest DIR --dataset bench --vcf FILE --assembly GRCh38``;
   * plink2: ``plink2 --vcf FILE --make-pgen --out DIR/plink --threads N`` (retried with
     ``--max-alleles 2`` if it rejects the file; the JSON records that).

4. Print a rich table, the genofed/plink2 throughput ratio (genotypes/s = samples x sites /
   wall seconds) and the memory-flatness check (genofed peak RSS at 25/50/100 % of sites),
   and write everything as JSON (parameters, per-run numbers, ratios, tool versions,
   timestamp).

``--quick`` uses 200 samples x 5,000 sites (seconds) and writes
``bench/results/ingest-quick.json`` unless ``--out`` is given.

Exit status: 0 if every run succeeded, 1 if a genofed run failed (its stderr is in the JSON
and printed), 2 if plink2 failed, 3 for a setup error (simulation/slicing).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

try:  # psutil is a dev dependency; without it only wait4's ru_maxrss is used
    import psutil
except ImportError:  # pragma: no cover
    psutil = None  # type: ignore[assignment]

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
try:
    from genofed import simulate as gsim
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from genofed import simulate as gsim

CACHE_VERSION = 1
QUICK_SAMPLES = 200
QUICK_SITES = 5_000
FRACTIONS = (0.25, 0.5, 1.0)
TAIL_CHARS = 4_000

# rich falls back to 80 columns when not writing to a terminal, which wraps the tables
console = Console() if sys.stdout.isatty() else Console(width=120)
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=120)


# --------------------------------------------------------------------------------------
# measuring a child process
# --------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One measured child process."""

    tool: str
    fraction: float
    n_samples: int
    n_sites: int
    cmd: list[str]
    returncode: int | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    ru_maxrss_mb: float | None = None
    tree_rss_peak_mb: float | None = None
    peak_rss_mb: float | None = None
    genotypes_per_s: float | None = None
    timed_out: bool = False
    ok: bool = False
    error: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    notes: list[str] = field(default_factory=list)


class _TreeSampler(threading.Thread):
    """Polls the summed RSS of a process and all its descendants; enforces a timeout."""

    def __init__(self, pid: int, interval: float, timeout: float | None) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.timeout = timeout
        self.peak_bytes = 0
        self.timed_out = False
        self._halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        proc = None
        if psutil is not None:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(self.pid)
        while not self._halt.is_set():
            if proc is not None:
                total = 0
                try:
                    members = [proc, *proc.children(recursive=True)]
                except psutil.Error:
                    members = []
                for member in members:
                    with contextlib.suppress(psutil.Error):
                        total += member.memory_info().rss
                self.peak_bytes = max(self.peak_bytes, total)
            if self.timeout is not None and time.monotonic() - start > self.timeout:
                self.timed_out = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)  # the child's own session/group
                return
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-TAIL_CHARS:].decode(errors="replace")


def measure(
    result: RunResult,
    log_dir: Path,
    *,
    cwd: Path | None = None,
    timeout: float | None = None,
    interval: float = 0.02,
) -> RunResult:
    """Run ``result.cmd`` and fill in the timing/memory fields of ``result``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path = log_dir / "stdout.txt"
    err_path = log_dir / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(
                result.cmd,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            result.error = f"could not start {result.cmd[0]}: {exc}"
            return result
        sampler = _TreeSampler(proc.pid, interval, timeout)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not Popen

    result.returncode = proc.returncode
    result.wall_s = wall
    result.cpu_s = usage.ru_utime + usage.ru_stime
    result.ru_maxrss_mb = usage.ru_maxrss / 1024  # KiB on Linux
    result.tree_rss_peak_mb = sampler.peak_bytes / 2**20 if psutil is not None else None
    result.peak_rss_mb = max(result.ru_maxrss_mb, result.tree_rss_peak_mb or 0.0)
    result.timed_out = sampler.timed_out
    result.stdout_tail = _tail(out_path)
    result.stderr_tail = _tail(err_path)
    result.ok = proc.returncode == 0 and not sampler.timed_out
    if result.ok:
        result.genotypes_per_s = result.n_samples * result.n_sites / wall
    elif sampler.timed_out:
        result.error = f"timed out after {timeout:.0f} s"
    else:
        result.error = f"exit status {proc.returncode}"
    return result


# --------------------------------------------------------------------------------------
# input data
# --------------------------------------------------------------------------------------


def _run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def _simulator_hash() -> str:
    source = Path(gsim.__file__).read_bytes()
    return hashlib.sha256(source).hexdigest()[:10]


def prepare_vcf(cache_dir: Path, n_samples: int, n_sites: int, seed: int) -> tuple[Path, bool]:
    """Return (VCF path, was cached), simulating into the cache if needed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    ignore = cache_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    # Chromosome 22 holds about 150,000 simulated sites of 2,500 genomes; larger files go
    # on chromosome 1 so that positions stay inside the real GRCh38 chromosome.
    contig = "22" if n_sites <= 150_000 else "1"
    suffix = "" if contig == "22" else f"-chr{contig}"
    key = f"sim-v{CACHE_VERSION}-n{n_samples}-m{n_sites}-s{seed}{suffix}-{_simulator_hash()}"
    target = cache_dir / key
    marker = target / "done.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        return target / info["vcf"], True
    tmp = Path(tempfile.mkdtemp(prefix=key + ".", dir=cache_dir))
    try:
        t0 = time.perf_counter()
        cohort = gsim.simulate_cohort(
            tmp,
            n_samples=n_samples,
            n_sites=n_sites,
            seed=seed,
            contig=contig,
            prefix="BENCH",
            progress=console.is_terminal,
        )
        seconds = time.perf_counter() - t0
        if cohort.n_sites != n_sites:
            raise RuntimeError(f"simulated {cohort.n_sites} sites, wanted {n_sites}")
        (tmp / "done.json").write_text(
            json.dumps(
                {
                    "vcf": cohort.vcf.name,
                    "n_samples": n_samples,
                    "n_sites": n_sites,
                    "seed": seed,
                    "simulate_seconds": seconds,
                    "planted_variant": cohort.planted_variant,
                },
                indent=2,
            )
        )
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    console.print(f"simulated {n_samples} x {n_sites} in {seconds:.1f} s -> {target}")
    return target / cohort.vcf.name, False


def make_slices(vcf: Path, n_sites: int, fractions: tuple[float, ...]) -> dict[float, Path]:
    """Prefix slices of ``vcf`` (first ``fraction * n_sites`` records), cached beside it."""
    slices: dict[float, Path] = {}
    positions: list[str] | None = None
    for frac in fractions:
        n = max(1, round(n_sites * frac))
        if n >= n_sites:
            slices[frac] = vcf
            continue
        path = vcf.with_name(f"slice-{n}.vcf.gz")
        if not (path.is_file() and path.with_name(path.name + ".tbi").is_file()):
            if positions is None:
                positions = _run(["bcftools", "query", "-f", "%CHROM\t%POS\n", str(vcf)]).split()
            chrom, pos = positions[2 * (n - 1)], positions[2 * (n - 1) + 1]
            tmp = path.with_name(path.name + ".tmp.vcf.gz")
            _run(
                [
                    "bcftools",
                    "view",
                    "--no-version",
                    "-r",
                    f"{chrom}:1-{pos}",
                    "-O",
                    "z",
                    "-l",
                    str(gsim.BGZIP_LEVEL),
                    "-o",
                    str(tmp),
                    str(vcf),
                ]
            )
            _run(["tabix", "-f", "-p", "vcf", str(tmp)])
            tmp.rename(path)
            tmp.with_name(tmp.name + ".tbi").rename(path.with_name(path.name + ".tbi"))
        slices[frac] = path
    return slices


# --------------------------------------------------------------------------------------
# tool runs
# --------------------------------------------------------------------------------------


def genofed_exe() -> Path:
    return Path(sys.executable).with_name("genofed")


def run_genofed(
    vcf: Path, work: Path, frac: float, n_samples: int, n_sites: int, timeout: float | None
) -> RunResult:
    exe = genofed_exe()
    node = work / f"genofed-{n_sites}" / "node"
    ingest = RunResult(
        tool="genofed",
        fraction=frac,
        n_samples=n_samples,
        n_sites=n_sites,
        cmd=[
            str(exe),
            "node",
            "ingest",
            str(node),
            "--dataset",
            "bench",
            "--vcf",
            str(vcf),
            "--assembly",
            "GRCh38",
        ],
    )
    if not exe.is_file():
        ingest.error = (
            f"genofed console script not found at {exe}; install the package into this "
            "environment (`pip install -e .`)"
        )
        return ingest
    node.parent.mkdir(parents=True, exist_ok=True)
    if node.exists():
        shutil.rmtree(node)
    init = RunResult(
        tool="genofed-init",
        fraction=frac,
        n_samples=n_samples,
        n_sites=n_sites,
        cmd=[str(exe), "node", "init", str(node), "--name", "bench"],
    )
    measure(init, node.parent / "logs-init", timeout=timeout)
    ingest.notes.append(f"node init took {init.wall_s or 0:.2f} s (not included)")
    if not init.ok:
        ingest.error = f"`genofed node init` failed ({init.error})"
        ingest.returncode = init.returncode
        ingest.stdout_tail, ingest.stderr_tail = init.stdout_tail, init.stderr_tail
        return ingest
    return measure(ingest, node.parent / "logs-ingest", timeout=timeout)


def run_plink2(
    vcf: Path,
    work: Path,
    frac: float,
    n_samples: int,
    n_sites: int,
    threads: int,
    timeout: float | None,
    extra: list[str],
) -> RunResult:
    out = work / f"plink2-{n_sites}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    base = [
        "plink2",
        "--vcf",
        str(vcf),
        "--make-pgen",
        "--out",
        str(out / "plink"),
        "--threads",
        str(threads),
    ]
    res = measure(
        RunResult(
            tool="plink2", fraction=frac, n_samples=n_samples, n_sites=n_sites, cmd=base + extra
        ),
        out / "logs",
        timeout=timeout,
    )
    if not res.ok and not extra and not res.timed_out and res.error and "start" not in res.error:
        first = res
        res = measure(
            RunResult(
                tool="plink2",
                fraction=frac,
                n_samples=n_samples,
                n_sites=n_sites,
                cmd=[*base, "--max-alleles", "2"],
            ),
            out / "logs-max-alleles",
            timeout=timeout,
        )
        res.notes.append(
            "first attempt failed; retried with --max-alleles 2 (multi-allelic sites dropped). "
            f"First attempt stdout tail: {first.stdout_tail[-500:]!r}"
        )
    return res


# --------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------


def tool_versions() -> dict[str, str | None]:
    def first_line(cmd: list[str]) -> str | None:
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = (res.stdout or res.stderr).strip()
        return text.splitlines()[0] if text else None

    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "genofed": dist("genofed"),
        "plink2": first_line(["plink2", "--version"]),
        "bcftools": first_line(["bcftools", "--version"]),
        "tabix": first_line(["tabix", "--version"]),
        "python": platform.python_version(),
        "msprime": dist("msprime"),
        "numpy": dist("numpy"),
        "cyvcf2": dist("cyvcf2"),
    }


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if psutil is not None:
        info["ram_total_mb"] = round(psutil.virtual_memory().total / 2**20)
    return info


def _median_run(runs: list[RunResult]) -> RunResult | None:
    ok = [r for r in runs if r.ok and r.wall_s is not None]
    if not ok:
        return None
    med = statistics.median_low([r.wall_s for r in ok if r.wall_s is not None])
    return next(r for r in ok if r.wall_s == med)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summarize(
    runs: dict[tuple[str, float], list[RunResult]],
    fractions: tuple[float, ...],
    flat_tolerance: float,
) -> dict[str, Any]:
    full = max(fractions)
    g = _median_run(runs.get(("genofed", full), []))
    p = _median_run(runs.get(("plink2", full), []))
    ratios: dict[str, float | None] = {
        "genotypes_per_s_genofed_over_plink2": None,
        "wall_genofed_over_plink2": None,
        "peak_rss_genofed_over_plink2": None,
    }
    if g and p and g.genotypes_per_s and p.genotypes_per_s and g.wall_s and p.wall_s:
        ratios["genotypes_per_s_genofed_over_plink2"] = g.genotypes_per_s / p.genotypes_per_s
        ratios["wall_genofed_over_plink2"] = g.wall_s / p.wall_s
        if g.peak_rss_mb and p.peak_rss_mb:
            ratios["peak_rss_genofed_over_plink2"] = g.peak_rss_mb / p.peak_rss_mb

    flatness: dict[str, Any] = {}
    for tool in ("genofed", "plink2"):
        peaks: dict[str, float | None] = {}
        for frac in fractions:
            ok = [r for r in runs.get((tool, frac), []) if r.ok and r.peak_rss_mb is not None]
            peaks[f"{frac:g}"] = max(r.peak_rss_mb for r in ok if r.peak_rss_mb) if ok else None
        values = [v for v in peaks.values() if v is not None]
        growth = None
        first = peaks.get(f"{min(fractions):g}")
        last = peaks.get(f"{full:g}")
        if first and last:
            growth = last / first
        flatness[tool] = {
            "peak_rss_mb_by_fraction": peaks,
            "growth_full_over_smallest": growth,
            "flat": None
            if growth is None or len(values) < len(fractions)
            else growth <= flat_tolerance,
            "tolerance": flat_tolerance,
        }
    return {"ratios": ratios, "memory_flatness": flatness}


def print_report(
    runs: dict[tuple[str, float], list[RunResult]],
    summary: dict[str, Any],
    fractions: tuple[float, ...],
) -> None:
    table = Table(title="Ingest benchmark (median wall of repeats; peak RSS = max)")
    for col, justify in [
        ("tool", "left"),
        ("sites", "right"),
        ("samples", "right"),
        ("wall s", "right"),
        ("CPU s", "right"),
        ("Mgenotypes/s", "right"),
        ("peak RSS MB", "right"),
        ("status", "left"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for tool in ("genofed", "plink2"):
        for frac in fractions:
            rs = runs.get((tool, frac), [])
            if not rs:
                continue
            r = _median_run(rs) or rs[-1]
            peak = max((x.peak_rss_mb for x in rs if x.peak_rss_mb), default=None)
            status = "[green]ok" if r.ok else f"[red]{r.error or 'failed'}"
            gps = r.genotypes_per_s / 1e6 if r.genotypes_per_s else None
            table.add_row(
                tool,
                f"{r.n_sites:,}",
                f"{r.n_samples:,}",
                _fmt(r.wall_s, ".2f"),
                _fmt(r.cpu_s, ".2f"),
                _fmt(gps, ".2f"),
                _fmt(peak, ".0f"),
                status,
            )
    console.print(table)

    ratios = summary["ratios"]
    rt = Table(title="genofed / plink2 at 100 % of sites")
    rt.add_column("metric")
    rt.add_column("ratio", justify="right")
    rt.add_row(
        "genotypes/s  (>1: genofed faster)",
        _fmt(ratios["genotypes_per_s_genofed_over_plink2"], ".3f"),
    )
    rt.add_row("wall seconds (<1: genofed faster)", _fmt(ratios["wall_genofed_over_plink2"], ".3f"))
    rt.add_row(
        "peak RSS     (<1: genofed leaner)", _fmt(ratios["peak_rss_genofed_over_plink2"], ".3f")
    )
    console.print(rt)

    ft = Table(title="Memory flatness: peak RSS (MB) by fraction of sites")
    ft.add_column("tool")
    for frac in fractions:
        ft.add_column(f"{frac:.0%}", justify="right")
    ft.add_column("100%/smallest", justify="right")
    ft.add_column("flat?")
    for tool, info in summary["memory_flatness"].items():
        peaks = info["peak_rss_mb_by_fraction"]
        flat = info["flat"]
        ft.add_row(
            tool,
            *[_fmt(peaks[f"{f:g}"], ".0f") for f in fractions],
            _fmt(info["growth_full_over_smallest"], ".2f"),
            "-" if flat is None else ("[green]yes" if flat else "[red]no"),
        )
    console.print(ft)


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--samples", type=int, default=2_500, help="diploid samples [2500]")
    ap.add_argument("--sites", type=int, default=100_000, help="variant sites [100000]")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output [bench/results/ingest.json; ingest-quick.json with --quick]",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_SAMPLES} samples x {QUICK_SITES} sites, for checking the script",
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeats", type=int, default=1, help="runs per tool and slice [1]")
    ap.add_argument("--threads", type=int, default=2, help="plink2 --threads [2]")
    ap.add_argument("--timeout", type=float, default=3_600, help="per-run timeout in s [3600]")
    ap.add_argument(
        "--flat-tolerance",
        type=float,
        default=1.5,
        help="peak RSS at 100%% / at 25%% of sites counted as flat [1.5]",
    )
    ap.add_argument("--cache-dir", type=Path, default=BENCH_DIR / ".cache")
    ap.add_argument(
        "--keep-work",
        action="store_true",
        help="keep the genofed node / plink2 outputs (printed path)",
    )
    ap.add_argument("--skip-genofed", action="store_true", help="only run plink2")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.sites = QUICK_SAMPLES, QUICK_SITES
    if args.out is None:
        args.out = BENCH_DIR / "results" / ("ingest-quick.json" if args.quick else "ingest.json")
    if args.samples < 1 or args.sites < 4 or args.repeats < 1:
        ap.error("--samples >= 1, --sites >= 4 and --repeats >= 1 are required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fractions = FRACTIONS
    started = dt.datetime.now(dt.UTC)

    missing = [t for t in ("plink2", "bcftools", "tabix", "bgzip") if shutil.which(t) is None]
    if missing:
        err_console.print(f"[red]missing tools on PATH: {', '.join(missing)}")
        return 3

    try:
        vcf, cached = prepare_vcf(args.cache_dir, args.samples, args.sites, args.seed)
        slices = make_slices(vcf, args.sites, fractions)
    except Exception as exc:  # report any setup failure clearly
        err_console.print(f"[red]could not prepare the benchmark VCF: {exc}")
        return 3
    console.print(
        f"VCF: {vcf} ({'cached' if cached else 'new'}), "
        f"{args.samples:,} samples x {args.sites:,} sites"
    )

    work = Path(tempfile.mkdtemp(prefix="work-", dir=args.cache_dir))
    runs: dict[tuple[str, float], list[RunResult]] = {}
    genofed_broken: RunResult | None = None
    plink_extra: list[str] = []
    try:
        for frac in fractions:
            n = max(1, round(args.sites * frac)) if frac < 1 else args.sites
            for rep in range(args.repeats):
                if not args.skip_genofed:
                    if genofed_broken is None:
                        with console.status(f"genofed ingest {n:,} sites (run {rep + 1})"):
                            g = run_genofed(
                                slices[frac], work / f"r{rep}", frac, args.samples, n, args.timeout
                            )
                        if not g.ok:
                            genofed_broken = g
                    else:
                        g = RunResult(
                            tool="genofed",
                            fraction=frac,
                            n_samples=args.samples,
                            n_sites=n,
                            cmd=[],
                            error="skipped: earlier genofed run failed",
                        )
                    runs.setdefault(("genofed", frac), []).append(g)
                with console.status(f"plink2 --make-pgen {n:,} sites (run {rep + 1})"):
                    p = run_plink2(
                        slices[frac],
                        work / f"r{rep}",
                        frac,
                        args.samples,
                        n,
                        args.threads,
                        args.timeout,
                        plink_extra,
                    )
                if p.ok and "--max-alleles" in p.cmd:
                    plink_extra = ["--max-alleles", "2"]
                runs.setdefault(("plink2", frac), []).append(p)
    finally:
        if args.keep_work:
            console.print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    summary = summarize(runs, fractions, args.flat_tolerance)
    print_report(runs, summary, fractions)

    genofed_ok = not args.skip_genofed and genofed_broken is None
    plink_ok = all(r.ok for (tool, _), rs in runs.items() if tool == "plink2" for r in rs)
    report = {
        "benchmark": "ingest",
        "timestamp": started.isoformat(timespec="seconds"),
        "duration_s": (dt.datetime.now(dt.UTC) - started).total_seconds(),
        "parameters": {
            "n_samples": args.samples,
            "n_sites": args.sites,
            "seed": args.seed,
            "quick": args.quick,
            "repeats": args.repeats,
            "plink2_threads": args.threads,
            "fractions": list(fractions),
            "timeout_s": args.timeout,
            "vcf": str(vcf),
            "vcf_bytes": vcf.stat().st_size,
            "vcf_cached": cached,
            "slices": {f"{f:g}": str(p) for f, p in slices.items()},
            "plink2_max_alleles_2": bool(plink_extra)
            or any(
                "--max-alleles" in r.cmd for (t, _), rs in runs.items() if t == "plink2" for r in rs
            ),
            "skip_genofed": args.skip_genofed,
        },
        "versions": tool_versions(),
        "machine": machine_info(),
        "runs": [asdict(r) for rs in runs.values() for r in rs],
        **summary,
        "status": {"genofed_ok": genofed_ok, "plink2_ok": plink_ok},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"results written to {args.out}")

    if genofed_broken is not None:
        err_console.print(
            f"[red bold]genofed ingest failed[/] ({genofed_broken.error}); command:\n  "
            + " ".join(genofed_broken.cmd)
        )
        if genofed_broken.stderr_tail.strip():
            err_console.print("[red]stderr (tail):[/]")
            err_console.print(
                genofed_broken.stderr_tail.strip()[-2_000:], markup=False, highlight=False
            )
        return 1
    if not plink_ok:
        err_console.print("[red bold]plink2 failed; see the JSON for its output")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
