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
from cyvcf2 import VCF
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from genofed._exceptions import IngestError
from genofed.config import Granularity
from genofed.store import reference
from genofed.store.annotations import AnnotationFormat, detect_format, parse_annotations
from genofed.store.dataset_db import (
    SITES_PER_CHUNK,
    GenotypeWriter,
    VariantWriter,
    allele_counts,
    build_database,
)
from genofed.store.individuals import Individuals, dataset_entries, load_individuals
from genofed.store.node_dir import NodeDir

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
    try:
        vcf = VCF(str(vcf_path), gts012=False, lazy=True, threads=2)
    except (OSError, ValueError, RuntimeError) as exc:
        raise IngestError(f"not a readable VCF/BCF ({exc})", source=source) from exc
    header_lines = vcf.raw_header.splitlines()
    assembly = _resolve_assembly(assembly, header_lines, source)
    samples = list(vcf.samples)
    people = load_individuals(individuals, sample_column=sample_column) if individuals else None
    linked = _link_samples(samples, people, individuals)
    annotation = detect_format(header_lines)

    with node.staging(dataset_id) as stage:
        variants = VariantWriter(stage / "variants.parquet")
        genotypes = GenotypeWriter(stage / "genotypes.zarr", samples)
        reader = _SiteReader(vcf, source, assembly, annotation, len(samples))
        with _progress(progress, vcf_path) as bar:
            task = bar.add_task("ingest", total=_record_total(vcf))
            for block, columns in reader.blocks():
                genotypes.append(block)
                variants.write(columns)
                bar.update(task, advance=block.shape[0])
        variants.close()
        if reader.n_sites == 0:
            raise IngestError("the VCF has no records", source=source)
        meta = _meta(dataset_id, assembly, settings, samples, reader, vcf_path)
        build_database(
            stage,
            variants_parquet=stage / "variants.parquet",
            samples=[(s, linked[s]["id"]) for s in samples],
            entries=dataset_entries(meta, samples, linked),
            meta=meta,
        )
    vcf.close()
    return IngestSummary(
        dataset_id, len(samples), reader.n_sites, reader.n_variants, assembly,
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
    for name, length in lengths.items():
        contig = reference.parse_contig(name)
        if contig is None or contig.chrom == "MT":
            continue
        expected = reference.chromosome_length(assembly, contig.chrom)
        if length != expected:
            hint = f" (the file looks like {guessed})" if guessed and guessed != assembly else ""
            raise IngestError(
                f"header ##contig {name} has length {length:,} but {assembly}'s chromosome "
                f"{contig.chrom} is {expected:,} long{hint}; check --assembly",
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


def _record_total(vcf: VCF) -> int | None:
    try:
        total = vcf.num_records
    except (ValueError, AttributeError, OSError):
        return None
    return total or None


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
    reader: _SiteReader,
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


class _SiteReader:
    """Reads records in blocks and turns each block into genotype and variant columns."""

    def __init__(
        self,
        vcf: VCF,
        source: str,
        assembly: str,
        annotation: AnnotationFormat | None,
        n_samples: int,
    ):
        self.vcf = vcf
        self.source = source
        self.assembly = assembly
        self.annotation = annotation
        self.n_samples = n_samples
        self.n_sites = 0
        self.n_variants = 0
        self.contigs: set[str] = set()
        self._contig_cache: dict[str, str] = {}

    def blocks(self):
        block = np.empty((SITES_PER_CHUNK, self.n_samples, 2), dtype=np.int8)
        records: list[tuple[str, int, str, list[str], str | None, int | None, Any]] = []
        last = ("", 0)
        for number, rec in enumerate(self.vcf, start=1):
            where = f"record {number} ({rec.CHROM}:{rec.POS})"
            chrom = self._chrom(rec.CHROM, where)
            pos = rec.POS
            if pos > reference.chromosome_length(self.assembly, chrom):
                raise IngestError(
                    f"position {pos:,} is beyond the end of {self.assembly} chromosome "
                    f"{chrom}; check --assembly",
                    source=self.source, where=where,
                )
            if chrom == last[0] and pos < last[1]:
                raise IngestError("records are not sorted by position", source=self.source,
                                  where=where)
            last = (chrom, pos)
            ref = rec.REF
            if not _BASES.match(ref):
                raise IngestError(f"REF {ref!r} is not a DNA sequence", source=self.source,
                                  where=where)
            if self.n_samples:
                gt = rec.genotype
                if gt is None:
                    raise IngestError("record has no GT field", source=self.source, where=where)
                arr = gt.array()
                ploidy = arr.shape[1] - 1
                if ploidy == 1:
                    block[len(records), :, 0] = arr[:, 0]
                    block[len(records), :, 1] = -2
                elif ploidy == 2:
                    block[len(records)] = arr[:, :2]
                else:
                    raise IngestError(f"ploidy {ploidy} is not supported (1 or 2)",
                                      source=self.source, where=where)
            info_end = rec.INFO.get("END")
            ann = rec.INFO.get(self.annotation.tag) if self.annotation else None
            records.append((chrom, pos, ref, list(rec.ALT), rec.ID, info_end, ann))
            if len(records) == SITES_PER_CHUNK:
                yield self._finish(block, records)
                records = []
        if records:
            yield self._finish(block[: len(records)], records)

    def _chrom(self, name: str, where: str) -> str:
        chrom = self._contig_cache.get(name)
        if chrom is None:
            contig = reference.parse_contig(name)
            if contig is None:
                raise IngestError(
                    f"contig {name!r} is not a primary chromosome of {self.assembly} "
                    "(1-22, X, Y, MT, with or without 'chr'); remove other contigs with "
                    "`bcftools view -t` before ingesting",
                    source=self.source, where=where,
                )
            if contig.assembly and contig.assembly != self.assembly:
                raise IngestError(
                    f"contig {name!r} is a {contig.assembly} accession but the dataset is "
                    f"{self.assembly}; check --assembly", source=self.source, where=where,
                )
            chrom = self._contig_cache[name] = contig.chrom
            self.contigs.add(chrom)
        return chrom

    def _finish(self, block: np.ndarray, records: list) -> tuple[np.ndarray, dict[str, list]]:
        block = block.copy()
        max_alts = max(len(r[3]) for r in records)
        counts = [allele_counts(block, a) for a in range(1, max_alts + 1)] if (
            self.n_samples) else None
        cols: dict[str, list] = {name: [] for name in _COLUMN_NAMES}
        for i, (chrom, pos, ref, alts, vcf_id, info_end, ann) in enumerate(records):
            annotated = (
                parse_annotations(ann, self.annotation, ref, alts)
                if ann and self.annotation else None
            )
            for a, alt in enumerate(alts, start=1):
                if alt in _SKIP_ALTS:
                    continue
                vtype = variant_type(ref, alt)
                start = pos - 1
                end = int(info_end) if alt.startswith("<") and info_end else start + len(ref)
                if counts is not None:
                    c = counts[a - 1]
                    ac, an = int(c["ac"][i]), int(c["an"][i])
                    n_het, n_homalt = int(c["n_het"][i]), int(c["n_homalt"][i])
                else:
                    ac = an = n_het = n_homalt = 0
                note = annotated[a - 1] if annotated else None
                cols["variant_idx"].append(self.n_variants)
                cols["site_idx"].append(self.n_sites + i)
                cols["allele_idx"].append(a)
                cols["variant_id"].append(f"{chrom}-{pos}-{ref}-{alt}")
                cols["chrom"].append(chrom)
                cols["pos"].append(pos)
                cols["start"].append(start)
                cols["end"].append(end)
                cols["ref"].append(ref.upper())
                cols["alt"].append(alt.upper() if not alt.startswith("<") else alt)
                cols["vtype"].append(vtype)
                cols["vcf_id"].append(vcf_id)
                cols["ac"].append(ac)
                cols["an"].append(an)
                cols["af"].append(ac / an if an else None)
                cols["n_het"].append(n_het)
                cols["n_homalt"].append(n_homalt)
                cols["genes"].append(sorted(note.genes) if note else None)
                cols["aa_changes"].append(sorted(note.aa_changes) if note else None)
                cols["hgvs"].append(sorted(note.hgvs) if note else None)
                cols["effects"].append(sorted(note.effects) if note else None)
                cols["doc"].append(None)
                self.n_variants += 1
        self.n_sites += len(records)
        return block, cols


_COLUMN_NAMES = (
    "variant_idx", "site_idx", "allele_idx", "variant_id", "chrom", "pos", "start", "end",
    "ref", "alt", "vtype", "vcf_id", "ac", "an", "af", "n_het", "n_homalt", "genes",
    "aa_changes", "hgvs", "effects", "doc",
)
