"""Ingest a VCF / VCF.gz / BCF into a dataset version, streamed in blocks of sites.

Multi-allelic sites become one row per ALT allele; AC, AN, AF, het and hom-alt counts are
recomputed from the genotypes (INFO is never trusted); the genotype matrix goes to Zarr.
Memory is bounded by one block of ``SITES_PER_CHUNK`` sites whatever the file size.
"""

from __future__ import annotations

import gc
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import zarr
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from genofed._exceptions import IngestError
from genofed.config import Granularity, Tier
from genofed.store import reference
from genofed.store.annotations import (
    AlleleAnnotation,
    AnnotationFormat,
    detect_format,
    parse_annotations,
)
from genofed.store.dataset_db import (
    SITES_PER_CHUNK,
    BlockCounts,
    GenotypeRangeWriter,
    GenotypeWriter,
    VariantWriter,
    block_allele_counts,
    build_database,
    lean_codecs,
)
from genofed.store.individuals import Individuals, dataset_entries, load_individuals
from genofed.store.node_dir import NodeDir, check_dataset_id
from genofed.store.vcf_index import ContigStart, contig_starts
from genofed.store.vcf_reader import (
    HtslibVcfReader,
    Record,
    RecordBlock,
    TextVcfReader,
    info_value,
    open_vcf,
)

if TYPE_CHECKING:
    from genofed.store.dosages import Compute  # imports dask: only a parallel ingest needs it

_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_BASES = re.compile(r"^[ACGTNacgtn]+$")
_SKIP_ALTS = {"*", ".", "<*>", "<NON_REF>", "<X>"}


@dataclass(frozen=True)
class IngestSummary:
    dataset_id: str
    n_samples: int
    n_sites: int
    n_variants: int
    assembly: str
    seconds: float
    warnings: tuple[str, ...] = ()  # legal, but probably a mistake


@dataclass(frozen=True)
class DatasetSettings:
    """What the operator says about a dataset at ingest."""

    name: str | None = None
    description: str | None = None
    granularity: Granularity = Granularity.COUNT
    test_data: bool = False
    tier: Tier | None = None  # None: served to no one until node.yaml gives it a tier


def ingest_vcf(
    node: NodeDir,
    dataset_id: str,
    vcf_path: Path,
    *,
    assembly: str | None = None,
    individuals: Path | None = None,
    sample_column: str = "sample_id",
    settings: DatasetSettings = DatasetSettings(),
    progress: bool = False,
    workers: int = 1,
    compute: Compute | None = None,
) -> IngestSummary:
    """Replace dataset ``dataset_id`` of ``node`` with the contents of ``vcf_path``.

    With ``workers`` above 1, or a ``dask.distributed`` scheduler in ``compute``, each
    contig of a BGZF-compressed, indexed VCF is ingested as a partition on its own dask
    worker (local processes, or the cluster's workers, which must see the same paths);
    the partitions are then finalised into one dataset version, published only when all
    of them succeeded.
    """
    check_dataset_id(dataset_id)  # before reading anything
    started = time.perf_counter()
    source = str(vcf_path)
    _check_readable(vcf_path)
    parallel = workers > 1 or (compute is not None and compute.scheduler is not None)
    reader = open_vcf(vcf_path)
    try:
        header_lines = reader.header.lines
        assembly = _resolve_assembly(assembly, header_lines, source)
        samples = reader.header.samples
        if len(set(samples)) != len(samples):
            raise IngestError("the #CHROM line names a sample twice", source=source, where="header")
        people = load_individuals(individuals, sample_column=sample_column) if individuals else None
        linked = _link_samples(samples, people, individuals)
        job = _PartitionJob(vcf_path, None, Path(), assembly, detect_format(header_lines))
        if parallel:
            starts = _partition_starts(vcf_path, reader)
            reader.close()
        with _cycle_collector_paused(), node.staging(dataset_id) as stage:
            if parallel:
                jobs = _jobs(job, starts, stage, samples)
                parts = _run_partitions(jobs, workers, compute, progress)
            else:
                parts = [_write_partition(reader, replace(job, folder=stage), progress)]
            n_sites = sum(p.n_sites for p in parts)
            if n_sites == 0:
                raise IngestError("the VCF has no records", source=source)
            if parallel:
                _finish_genotypes(jobs, parts, stage / "genotypes.zarr", samples)
            meta = _meta(dataset_id, assembly, settings, samples, parts, vcf_path)
            build_database(
                stage,
                _offsets(parts),
                samples=[(s, linked[s]["id"]) for s in samples],
                entries=dataset_entries(meta, samples, linked),
                meta=meta,
            )
            for part in parts:
                shutil.rmtree(part.folder if part.folder != stage else part.variant_folder)
    finally:
        reader.close()
    return IngestSummary(
        dataset_id,
        len(samples),
        n_sites,
        sum(p.n_variants for p in parts),
        assembly,
        time.perf_counter() - started,
        _unlinked_warning(samples, people, individuals),
    )


@dataclass(frozen=True)
class _PartitionJob:
    """What a worker needs to ingest one partition (pickled to it)."""

    vcf: Path
    start: ContigStart | None  # None: the whole file
    folder: Path  # where its genotypes.zarr and variant parts go
    assembly: str
    annotation: AnnotationFormat | None
    site_offset: int | None = None  # set: write straight into the dataset's genotypes.zarr
    genotypes: Path | None = None  # that genotypes.zarr


@dataclass(frozen=True)
class _Partition:
    """What a partition wrote: its rows are numbered from 0."""

    folder: Path
    variant_folder: Path
    variant_parts: list[Path]
    n_sites: int
    n_variants: int
    contigs: frozenset[str]
    pieces: tuple[tuple[int, Path], ...] = ()  # partial chunks left for the finaliser


def _partition_starts(vcf: Path, reader: TextVcfReader | HtslibVcfReader) -> list[ContigStart]:
    if not isinstance(reader, TextVcfReader) or not vcf.name.lower().endswith(".gz"):
        raise IngestError(
            "a parallel ingest reads BGZF-compressed VCF (.vcf.gz) with its index; ingest "
            "this file with one worker, or convert it with `bcftools view -Oz` and index it",
            source=str(vcf),
        )
    return contig_starts(vcf, [name for name, _ in _header_contigs(reader.header.lines)])


def _ingest_partition(job: _PartitionJob) -> _Partition:
    """One contig of the VCF, on a dask worker."""
    assert job.start is not None
    reader = TextVcfReader(job.vcf)
    try:
        reader.start_at(job.start.offset, job.start.name)
        with _cycle_collector_paused():
            return _write_partition(reader, job, False)
    finally:
        reader.close()


def _write_partition(
    reader: TextVcfReader | HtslibVcfReader, job: _PartitionJob, progress: bool
) -> _Partition:
    """Read every block of ``reader``: variant rows to Parquet parts under ``job.folder``,
    genotypes to its own ``genotypes.zarr``, or straight into the dataset's at the
    partition's offset (the partial chunks at both ends saved beside the parts)."""
    samples = reader.header.samples
    sites = _SiteConverter(str(job.vcf), job.assembly, job.annotation, len(samples))
    job.folder.mkdir(exist_ok=True)
    if job.site_offset is not None and job.genotypes is not None:
        genotypes: GenotypeWriter | GenotypeRangeWriter
        genotypes = GenotypeRangeWriter(job.genotypes, job.site_offset)
    else:
        genotypes = GenotypeWriter(job.folder / "genotypes.zarr", samples)
    with (
        lean_codecs(),
        VariantWriter(job.folder) as variants,
        genotypes,
        _progress(progress, job.vcf) as bar,
    ):
        task = bar.add_task("ingest", total=None)
        for block in reader.blocks(SITES_PER_CHUNK):
            columns = sites.convert(block)
            genotypes.append(block.genotypes)
            variants.write(columns)
            bar.update(task, advance=len(block.records))
        genotypes.flush()
        variants.flush()
    pieces = []
    shared = genotypes.pieces if isinstance(genotypes, GenotypeRangeWriter) else []
    for i, (row, rows) in enumerate(shared):
        np.save(job.folder / f"piece-{i}.npy", rows)
        pieces.append((row, job.folder / f"piece-{i}.npy"))
    return _Partition(
        job.folder,
        variants.folder,
        variants.parts,
        sites.n_sites,
        sites.n_variants,
        frozenset(sites.contigs),
        tuple(pieces),
    )


def _run_partitions(
    jobs: list[_PartitionJob], workers: int, compute: Compute | None, progress: bool
) -> list[_Partition]:
    """Every partition on dask: local processes (``workers`` of them), or the cluster of
    ``compute.scheduler``. Results come back in the jobs' order."""
    import dask
    from dask.callbacks import Callback

    tasks = [dask.delayed(_ingest_partition, pure=False)(job) for job in jobs]
    with _progress(progress, jobs[0].vcf, "contigs") as bar:
        task = bar.add_task("ingest", total=len(jobs))
        if compute is not None and compute.scheduler is not None:
            from distributed import Client

            with Client(compute.scheduler, set_as_default=False) as client:
                results = []
                for future in client.compute(tasks):
                    results.append(future.result())
                    bar.update(task, advance=1)
                return results
        with Callback(posttask=lambda *_: bar.update(task, advance=1)):
            # chunksize=1: dask's process pool otherwise hands tasks out in batches of up
            # to six, which put every contig of a small file on one worker
            return list(
                dask.compute(*tasks, scheduler="processes", num_workers=workers, chunksize=1)
            )


def _jobs(
    job: _PartitionJob, starts: list[ContigStart], stage: Path, samples: list[str]
) -> list[_PartitionJob]:
    """A job per contig. When the index counts every contig's records, each partition
    knows where its rows go and writes the dataset's genotypes itself."""
    jobs = [replace(job, start=s, folder=stage / f"part-{i:04d}") for i, s in enumerate(starts)]
    counts = [s.records for s in starts]
    if any(c is None for c in counts):
        return jobs
    target = stage / "genotypes.zarr"
    with GenotypeWriter(target, samples) as writer:
        writer.array.resize((sum(c or 0 for c in counts), len(samples), 2))
    offsets = np.cumsum([0, *counts[:-1]]).tolist()
    return [replace(j, site_offset=o, genotypes=target) for j, o in zip(jobs, offsets, strict=True)]


def _finish_genotypes(
    jobs: list[_PartitionJob], parts: list[_Partition], target: Path, samples: list[str]
) -> None:
    """Write what the partitions left: the chunks two of them share, or (an index that
    does not count records) the whole matrix from their own arrays."""
    if jobs[0].site_offset is None:
        _concatenate_genotypes(parts, target, samples)
        return
    for job, part in zip(jobs, parts, strict=True):
        assert job.start is not None
        if part.n_sites != job.start.records:
            raise IngestError(
                f"the index counts {job.start.records:,} records on contig {job.start.name} "
                f"but the file holds {part.n_sites:,}; re-index it with `bcftools index -f`",
                source=str(job.vcf),
            )
    array = zarr.open_group(str(target), mode="r+")["call_genotype"]
    for part in parts:
        for row, path in part.pieces:
            rows = np.load(path)
            if rows.shape[1]:
                array[row : row + len(rows)] = rows


def _concatenate_genotypes(parts: list[_Partition], target: Path, samples: list[str]) -> None:
    """The partitions' genotype matrices, one after the other, as the dataset's: dask
    rechunks the concatenation to the target's chunks and writes them on threads, each
    target chunk once (so no two threads ever write the same chunk)."""
    import dask
    import dask.array as da

    arrays = [
        da.from_zarr(str(p.folder / "genotypes.zarr"), component="call_genotype")
        for p in parts
        if p.n_sites
    ]
    with GenotypeWriter(target, samples) as writer:
        whole = da.concatenate(arrays).rechunk(writer.array.chunks)
        writer.array.resize(whole.shape)
        writer.n_sites = whole.shape[0]
        if whole.shape[1]:
            with dask.config.set(scheduler="threads"):
                da.store(whole, writer.array, lock=False)


def _offsets(parts: list[_Partition]) -> list[tuple[list[Path], int, int]]:
    """Each partition's variant parts with the variant and site numbers its rows start at."""
    out, variants, sites = [], 0, 0
    for part in parts:
        out.append((part.variant_parts, variants, sites))
        variants += part.n_variants
        sites += part.n_sites
    return out


def _unlinked_warning(
    samples: list[str], people: Individuals | None, source: Path | None
) -> tuple[str, ...]:
    """VCF samples the clinical file has no row for: served with unknown sex and no
    phenotypes, which a filter never selects. Legal, but usually the wrong file or column."""
    if people is None:
        return ()
    missing = [s for s in samples if s not in people.by_sample]
    if not missing:
        return ()
    shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
    return (
        f"{len(missing):,} of {len(samples):,} VCF samples have no row in {source}: {shown}; "
        "they are served with unknown sex and no phenotypes",
    )


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Ingest makes millions of short-lived objects, none in reference cycles (records,
    strings, arrays), so the cycle collector only rescans the heap for nothing: pausing it
    cut a 100,000-site ingest from 3.2 s to 2.5 s here. Reference counting still frees
    everything, so memory stays flat."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_readable(path: Path) -> None:
    if not path.is_file():
        raise IngestError("file not found", source=str(path))
    with path.open("rb") as handle:
        magic = handle.read(2)
        if magic == b"\x1f\x8b":
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - len(_BGZF_EOF)))
            if handle.read() != _BGZF_EOF:
                raise IngestError(
                    "the file is truncated or not BGZF-compressed (no BGZF end-of-file "
                    "marker); recompress it with `bgzip` or re-download it",
                    source=str(path),
                )


def _header_contigs(header: list[str]) -> list[tuple[str, int | None]]:
    """``(id, length or None)`` of the header's ``##contig`` lines, in order."""
    contigs = []
    for line in header:
        if line.startswith("##contig=<") and (name := re.search(r"ID=([^,>]+)", line)):
            length = re.search(r"length=(\d+)", line)
            contigs.append((name.group(1), int(length.group(1)) if length else None))
    return contigs


def _resolve_assembly(given: str | None, header: list[str], source: str) -> str:
    lengths = {name: n for name, n in _header_contigs(header) if n is not None}
    guessed = reference.guess_assembly(lengths)
    if given is None:
        if guessed is None:
            raise IngestError(
                "cannot tell the assembly from the header; pass --assembly GRCh37 or GRCh38",
                source=source,
            )
        return guessed
    assembly = reference.canonical_assembly(given)
    if assembly is None:
        raise IngestError(
            f"unknown assembly {given!r}; use one of {', '.join(reference.ASSEMBLIES)}",
            source=source,
        )
    # Tools write ##contig lengths of their own (plink2, simulators), so a length is only
    # evidence of a wrong --assembly when it is another assembly's length or too long.
    for name, length in lengths.items():
        contig = reference.parse_contig(name)
        if contig is None or contig.chrom == "MT":
            continue
        expected = reference.chromosome_length(assembly, contig.chrom)
        others = [
            a
            for a in reference.ASSEMBLIES
            if a != assembly and reference.chromosome_length(a, contig.chrom) == length != expected
        ]
        if others or length > expected:
            looks_like = f" (it is {others[0]}'s length)" if others else ""
            raise IngestError(
                f"header ##contig {name} has length {length:,}{looks_like} but {assembly}'s "
                f"chromosome {contig.chrom} is {expected:,} long; check --assembly",
                source=source,
                where="header",
            )
    return assembly


def _link_samples(
    samples: list[str], people: Individuals | None, source: Path | None
) -> dict[str, dict[str, Any]]:
    """Individual document of each VCF sample; unknown ids in the clinical file are errors."""
    if people is None:
        return {s: {"id": s, "sex": {"id": "NCIT:C17998", "label": "unknown"}} for s in samples}
    known = set(samples)
    unknown = [s for s in people.by_sample if s not in known]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" …" if len(unknown) > 5 else "")
        raise IngestError(
            f"{len(unknown)} sample id(s) are not in the VCF: {shown}. Fix the ids or "
            "name the right column with --sample-column",
            source=str(source),
            where=f"line {people.line_of[unknown[0]]}",
        )
    return {
        s: people.by_sample.get(s, {"id": s, "sex": {"id": "NCIT:C17998", "label": "unknown"}})
        for s in samples
    }


def _progress(enabled: bool, path: Path, unit: str = "sites") -> Progress:
    return Progress(
        TextColumn(f"[bold]{path.name}"),
        BarColumn(),
        TextColumn("{task.completed:,} " + unit),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
        console=Console(stderr=True),  # stdout stays for what a script reads
    )


def _meta(
    dataset_id: str,
    assembly: str,
    settings: DatasetSettings,
    samples: list[str],
    parts: list[_Partition],
    vcf_path: Path,
) -> dict[str, Any]:
    return {
        "id": dataset_id,
        "name": settings.name or dataset_id,
        "description": settings.description or f"Variants from {vcf_path.name}",
        "assembly": assembly,
        "granularity": settings.granularity,
        "test_data": settings.test_data,
        "tier": settings.tier,
        "n_samples": len(samples),
        "n_sites": sum(p.n_sites for p in parts),
        "n_variants": sum(p.n_variants for p in parts),
        "contigs": sorted(set().union(*(p.contigs for p in parts))),
        "source": vcf_path.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def variant_type(ref: str, alt: str) -> str:
    if alt.startswith("<"):
        kind = alt[1:-1].split(":")[0].upper()
        return kind if kind in {"DEL", "DUP", "INS", "INV", "CNV"} else "SV"
    if "[" in alt or "]" in alt:
        return "BND"
    if len(ref) == len(alt):
        return "SNP" if len(ref) == 1 else "MNP"
    return "DEL" if len(alt) < len(ref) else "INS"


class _SiteConverter:
    """Checks records and turns each block into variant-table columns.

    The checks and columns are computed for a whole block at once (NumPy over positions,
    list comprehensions over strings); records are looked at one by one only to report
    the first bad one.
    """

    def __init__(
        self,
        source: str,
        assembly: str,
        annotation: AnnotationFormat | None,
        n_samples: int,
    ):
        self.source = source
        self.assembly = assembly
        self.annotation = annotation
        self.n_samples = n_samples
        self.n_sites = 0
        self.n_variants = 0
        self.contigs: set[str] = set()
        self._contig_cache: dict[str, tuple[str, int]] = {}
        self._last: tuple[str, int] = ("", 0)

    def _fail(self, rec: Record, message: str) -> NoReturn:
        raise IngestError(message, source=self.source, where=rec.where)

    def _contig(self, rec: Record) -> tuple[str, int]:
        """Canonical chromosome and its length, for a record's CHROM."""
        known = self._contig_cache.get(rec.chrom)
        if known is not None:
            return known
        contig = reference.parse_contig(rec.chrom)
        if contig is None:
            self._fail(
                rec,
                f"contig {rec.chrom!r} is not a primary chromosome of {self.assembly} "
                "(1-22, X, Y, MT, with or without 'chr'); remove other contigs with "
                "`bcftools view -t` before ingesting",
            )
        if contig.assembly and contig.assembly != self.assembly:
            self._fail(
                rec,
                f"contig {rec.chrom!r} is a {contig.assembly} accession but the dataset is "
                f"{self.assembly}; check --assembly",
            )
        self.contigs.add(contig.chrom)
        known = (contig.chrom, reference.chromosome_length(self.assembly, contig.chrom))
        self._contig_cache[rec.chrom] = known
        return known

    def _check(self, records: list[Record], stats: BlockCounts) -> tuple[list[str], np.ndarray]:
        contigs = [self._contig(r) for r in records]
        chroms = [c for c, _ in contigs]
        pos = np.fromiter((r.pos for r in records), dtype=np.int64, count=len(records))
        lengths = np.fromiter((n for _, n in contigs), dtype=np.int64, count=len(records))
        bad = np.flatnonzero((pos < 1) | (pos > lengths))
        if len(bad):
            rec = records[bad[0]]
            self._fail(
                rec,
                f"position {rec.pos:,} is outside {self.assembly} chromosome "
                f"{chroms[bad[0]]}; check --assembly",
            )
        previous = np.r_[self._last[1], pos[:-1]]
        same_contig = np.array(
            [a == b for a, b in zip([self._last[0], *chroms[:-1]], chroms, strict=True)]
        )
        unsorted = np.flatnonzero(same_contig & (pos < previous))
        if len(unsorted):
            self._fail(
                records[unsorted[0]],
                "records are not sorted by position (sort with `bcftools sort`)",
            )
        self._last = (chroms[-1], int(pos[-1]))
        refs = "".join(r.ref for r in records)
        if not _BASES.match(refs):
            rec = next(r for r in records if not _BASES.match(r.ref))
            self._fail(rec, f"REF {rec.ref!r} is not a DNA sequence")
        n_alts = np.fromiter((len(r.alts) for r in records), dtype=np.int64, count=len(records))
        beyond = np.flatnonzero(stats.max_allele > n_alts)
        if len(beyond):
            rec = records[beyond[0]]
            self._fail(
                rec,
                f"a genotype names allele {int(stats.max_allele[beyond[0]])} but "
                f"ALT has only {len(rec.alts)}",
            )
        return chroms, pos

    def convert(self, block: RecordBlock) -> dict[str, Any]:
        records = block.records
        stats = block.counts or block_allele_counts(
            block.genotypes, max(len(r.alts) for r in records)
        )
        chroms, pos = self._check(records, stats)
        refs = _upper([r.ref for r in records])
        if all(len(r.alts) == 1 and r.alts[0] not in _SKIP_ALTS for r in records):
            site = list(range(len(records)))
            allele = [1] * len(records)
            alts = [r.alts[0] for r in records]
        else:
            pairs = [
                (i, a, alt)
                for i, r in enumerate(records)
                for a, alt in enumerate(r.alts, start=1)
                if alt not in _SKIP_ALTS
            ]
            site = [p[0] for p in pairs]
            allele = [p[1] for p in pairs]
            alts = [p[2] for p in pairs]
        joined = "".join(alts)
        alts = (
            _upper(alts)
            if "<" not in joined
            else [a if a.startswith("<") else a.upper() for a in alts]
        )
        rows = np.array(site, dtype=np.int64)
        alleles = np.array(allele, dtype=np.int64)
        ref = [refs[i] for i in site]
        chrom = [chroms[i] for i in site]
        positions = pos[rows]
        starts = positions - 1
        ref_len = np.fromiter(map(len, ref), dtype=np.int64, count=len(ref))
        ends = starts + ref_len
        vtypes = _variant_types(ref, alts, ref_len)
        symbolic = [i for i, a in enumerate(alts) if a.startswith("<")] if "<" in joined else []
        for i in symbolic:
            if info_end := info_value(records[site[i]].info, "END"):
                ends[i] = int(info_end)
        notes: list[AlleleAnnotation | None] = [None] * len(site)
        if self.annotation:
            annotated: dict[int, list[AlleleAnnotation]] = {}
            for j, i in enumerate(site):
                rec = records[i]
                if i not in annotated and (ann := info_value(rec.info, self.annotation.tag)):
                    annotated[i] = parse_annotations(ann, self.annotation, refs[i], rec.alts)
                if i in annotated:
                    notes[j] = annotated[i][allele[j] - 1]
        ac = stats.ac[alleles - 1, rows]
        an = stats.an[rows]
        n = len(rows)
        columns: dict[str, Any] = {
            "variant_idx": np.arange(self.n_variants, self.n_variants + n, dtype=np.int64),
            "site_idx": rows + self.n_sites,
            "allele_idx": alleles.astype(np.int8),
            "variant_id": [
                f"{c}-{p}-{r}-{a}"
                for c, p, r, a in zip(chrom, positions.tolist(), ref, alts, strict=True)
            ],
            "chrom": chrom,
            "pos": positions,
            "start": starts,
            "end": ends,
            "ref": ref,
            "alt": alts,
            "vtype": vtypes,
            "vcf_id": [records[i].vcf_id for i in site],
            "ac": ac.astype(np.int32),
            "an": an.astype(np.int32),
            "af": np.where(an == 0, np.nan, ac / np.maximum(an, 1)),  # NaN is stored as NULL
            "n_het": stats.n_het[alleles - 1, rows].astype(np.int32),
            "n_homalt": stats.n_homalt[alleles - 1, rows].astype(np.int32),
        }
        if self.annotation:  # without, these columns stay NULL
            for name in ("genes", "aa_changes", "hgvs", "effects"):
                columns[name] = [sorted(getattr(note, name)) if note else None for note in notes]
        self.n_variants += n
        self.n_sites += len(records)
        return columns


def _variant_types(refs: list[str], alts: list[str], ref_len: np.ndarray) -> list[str]:
    """``variant_type`` for a block: by allele lengths, symbolic alleles one by one."""
    alt_len = np.fromiter(map(len, alts), dtype=np.int64, count=len(alts))
    kinds = np.where(
        ref_len == alt_len,
        np.where(ref_len == 1, "SNP", "MNP"),
        np.where(alt_len < ref_len, "DEL", "INS"),
    ).tolist()
    joined = "".join(alts)
    if "<" in joined or "[" in joined or "]" in joined:  # rare: look at each
        for i, alt in enumerate(alts):
            if alt.startswith("<") or "[" in alt or "]" in alt:
                kinds[i] = variant_type(refs[i], alt)
    return kinds


def _upper(alleles: list[str]) -> list[str]:
    """Alleles in upper case; most already are, which one test over the block tells."""
    return alleles if "".join(alleles).isupper() else [a.upper() for a in alleles]
