"""Ingest a VCF / VCF.gz / BCF into a dataset version, streamed in blocks of sites.

Multi-allelic sites become one row per ALT allele; AC, AN, AF, het and hom-alt counts are
recomputed from the genotypes (INFO is never trusted); the genotype matrix goes to Zarr.
Memory is bounded by one block of ``SITES_PER_CHUNK`` sites whatever the file size.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from genofed._exceptions import IngestError
from genofed.config import Granularity
from genofed.store import reference
from genofed.store.annotations import (
    AlleleAnnotation,
    AnnotationFormat,
    detect_format,
    parse_annotations,
)
from genofed.store.dataset_db import (
    SITES_PER_CHUNK,
    GenotypeWriter,
    VariantWriter,
    block_allele_counts,
    build_database,
)
from genofed.store.individuals import Individuals, dataset_entries, load_individuals
from genofed.store.node_dir import NodeDir
from genofed.store.vcf_reader import Record, RecordBlock, info_value, open_vcf

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


@dataclass(frozen=True)
class DatasetSettings:
    """What the operator says about a dataset at ingest."""

    name: str | None = None
    description: str | None = None
    granularity: Granularity = "count"
    test_data: bool = False


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
) -> IngestSummary:
    """Replace dataset ``dataset_id`` of ``node`` with the contents of ``vcf_path``."""
    started = time.perf_counter()
    source = str(vcf_path)
    _check_readable(vcf_path)
    reader = open_vcf(vcf_path)
    try:
        header_lines = reader.header.lines
        assembly = _resolve_assembly(assembly, header_lines, source)
        samples = reader.header.samples
        if len(set(samples)) != len(samples):
            raise IngestError("the #CHROM line names a sample twice", source=source, where="header")
        people = load_individuals(individuals, sample_column=sample_column) if individuals else None
        linked = _link_samples(samples, people, individuals)
        sites = _SiteConverter(source, assembly, detect_format(header_lines), len(samples))
        with node.staging(dataset_id) as stage:
            variants = VariantWriter(stage / "variants.parquet")
            genotypes = GenotypeWriter(stage / "genotypes.zarr", samples)
            with _progress(progress, vcf_path) as bar:
                task = bar.add_task("ingest", total=None)
                for block in reader.blocks(SITES_PER_CHUNK):
                    columns = sites.convert(block)
                    genotypes.append(block.genotypes)
                    variants.write(columns)
                    bar.update(task, advance=len(block.records))
            variants.close()
            genotypes.close()
            if sites.n_sites == 0:
                raise IngestError("the VCF has no records", source=source)
            meta = _meta(dataset_id, assembly, settings, samples, sites, vcf_path)
            build_database(
                stage,
                variants_parquet=stage / "variants.parquet",
                samples=[(s, linked[s]["id"]) for s in samples],
                entries=dataset_entries(meta, samples, linked),
                meta=meta,
            )
    finally:
        reader.close()
    return IngestSummary(
        dataset_id,
        len(samples),
        sites.n_sites,
        sites.n_variants,
        assembly,
        time.perf_counter() - started,
    )


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


def _resolve_assembly(given: str | None, header: list[str], source: str) -> str:
    lengths: dict[str, int] = {}
    for line in header:
        if line.startswith("##contig=<"):
            name = re.search(r"ID=([^,>]+)", line)
            length = re.search(r"length=(\d+)", line)
            if name and length:
                lengths[name.group(1)] = int(length.group(1))
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


def _progress(enabled: bool, path: Path) -> Progress:
    return Progress(
        TextColumn(f"[bold]{path.name}"),
        BarColumn(),
        TextColumn("{task.completed:,} sites"),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )


def _meta(
    dataset_id: str,
    assembly: str,
    settings: DatasetSettings,
    samples: list[str],
    reader: _SiteConverter,
    vcf_path: Path,
) -> dict[str, Any]:
    return {
        "id": dataset_id,
        "name": settings.name or dataset_id,
        "description": settings.description or f"Variants from {vcf_path.name}",
        "assembly": assembly,
        "granularity": settings.granularity,
        "test_data": settings.test_data,
        "n_samples": len(samples),
        "n_sites": reader.n_sites,
        "n_variants": reader.n_variants,
        "contigs": sorted(reader.contigs),
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
    """Checks records and turns each block into variant-table columns."""

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
        self._contig_cache: dict[str, str] = {}
        self._last: tuple[str, int] = ("", 0)

    def _check(self, rec: Record, n_alleles_seen: int) -> str:
        chrom = self._chrom(rec.chrom, rec.where)
        if rec.pos < 1 or rec.pos > reference.chromosome_length(self.assembly, chrom):
            raise IngestError(
                f"position {rec.pos:,} is outside {self.assembly} chromosome {chrom}; "
                "check --assembly",
                source=self.source,
                where=rec.where,
            )
        if chrom == self._last[0] and rec.pos < self._last[1]:
            raise IngestError(
                "records are not sorted by position (sort with `bcftools sort`)",
                source=self.source,
                where=rec.where,
            )
        self._last = (chrom, rec.pos)
        if not _BASES.match(rec.ref):
            raise IngestError(
                f"REF {rec.ref!r} is not a DNA sequence", source=self.source, where=rec.where
            )
        if n_alleles_seen > len(rec.alts):
            raise IngestError(
                f"a genotype names allele {n_alleles_seen} but ALT has only {len(rec.alts)}",
                source=self.source,
                where=rec.where,
            )
        return chrom

    def _chrom(self, name: str, where: str) -> str:
        chrom = self._contig_cache.get(name)
        if chrom is None:
            contig = reference.parse_contig(name)
            if contig is None:
                raise IngestError(
                    f"contig {name!r} is not a primary chromosome of {self.assembly} "
                    "(1-22, X, Y, MT, with or without 'chr'); remove other contigs with "
                    "`bcftools view -t` before ingesting",
                    source=self.source,
                    where=where,
                )
            if contig.assembly and contig.assembly != self.assembly:
                raise IngestError(
                    f"contig {name!r} is a {contig.assembly} accession but the dataset is "
                    f"{self.assembly}; check --assembly",
                    source=self.source,
                    where=where,
                )
            chrom = self._contig_cache[name] = contig.chrom
            self.contigs.add(chrom)
        return chrom

    def convert(self, block: RecordBlock) -> dict[str, Any]:
        records = block.records
        stats = block.counts or block_allele_counts(
            block.genotypes, max(len(r.alts) for r in records)
        )
        site, allele, ids, chroms, positions, ends = [], [], [], [], [], []
        refs, alts, vtypes, vcf_ids = [], [], [], []
        notes: list[AlleleAnnotation | None] = []
        for i, rec in enumerate(records):
            chrom = self._check(rec, int(stats.max_allele[i]))
            ref, pos = rec.ref.upper(), rec.pos
            annotated = None
            if self.annotation and (ann := info_value(rec.info, self.annotation.tag)):
                annotated = parse_annotations(ann, self.annotation, ref, rec.alts)
            for a, alt in enumerate(rec.alts, start=1):
                if alt in _SKIP_ALTS:
                    continue
                end = pos - 1 + len(ref)
                if alt.startswith("<"):
                    if info_end := info_value(rec.info, "END"):
                        end = int(info_end)
                else:
                    alt = alt.upper()
                site.append(i)
                allele.append(a)
                ids.append(f"{chrom}-{pos}-{ref}-{alt}")
                chroms.append(chrom)
                positions.append(pos)
                ends.append(end)
                refs.append(ref)
                alts.append(alt)
                vtypes.append(variant_type(ref, alt))
                vcf_ids.append(rec.vcf_id)
                notes.append(annotated[a - 1] if annotated else None)
        rows = np.array(site, dtype=np.int64)
        alleles = np.array(allele, dtype=np.int64)
        ac = stats.ac[alleles - 1, rows]
        an = stats.an[rows]
        af = ac / np.maximum(an, 1)
        n = len(rows)
        columns: dict[str, Any] = {
            "variant_idx": np.arange(self.n_variants, self.n_variants + n, dtype=np.int64),
            "site_idx": rows + self.n_sites,
            "allele_idx": alleles.astype(np.int8),
            "variant_id": ids,
            "chrom": chroms,
            "pos": positions,
            "start": np.array(positions, dtype=np.int64) - 1,
            "end": ends,
            "ref": refs,
            "alt": alts,
            "vtype": vtypes,
            "vcf_id": vcf_ids,
            "ac": ac.astype(np.int32),
            "an": an.astype(np.int32),
            "af": pa.array(af, mask=an == 0),
            "n_het": stats.n_het[alleles - 1, rows].astype(np.int32),
            "n_homalt": stats.n_homalt[alleles - 1, rows].astype(np.int32),
            "doc": [None] * n,
        }
        for name in ("genes", "aa_changes", "hgvs", "effects"):
            columns[name] = [sorted(getattr(note, name)) if note else None for note in notes]
        self.n_variants += n
        self.n_sites += len(records)
        return columns
