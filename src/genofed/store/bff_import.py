"""Import Beacon-Friendly-Format (BFF) collections, the JSON existing Beacon v2 sites hold.

A BFF folder has ``individuals.json``, ``biosamples.json``, ``runs.json``, ``analyses.json``,
``cohorts.json``, ``datasets.json`` and ``genomicVariations.json`` (any may be missing), and
optionally ``caseLevelData.json`` with each variant's genotypes keyed by the position of the
biosample in ``targets.json``. Genotypes become the same Zarr matrix a VCF ingest writes, so
every query works the same whatever the source.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from genofed._exceptions import IngestError
from genofed.store import reference
from genofed.store.dataset_db import (
    GenotypeWriter,
    VariantWriter,
    allele_counts,
    build_database,
)
from genofed.store.documents import read_json_documents
from genofed.store.individuals import cohort_doc, dataset_doc
from genofed.store.node_dir import NodeDir, check_dataset_id
from genofed.store.vcf_ingest import DatasetSettings, IngestSummary

COLLECTIONS = {
    "individual": "individuals.json",
    "biosample": "biosamples.json",
    "run": "runs.json",
    "analysis": "analyses.json",
    "cohort": "cohorts.json",
    "dataset": "datasets.json",
}
_HGVS = re.compile(r"^(?:HGVSid:|refseq:)?([^:]+):g\.(\d+)(?:_\d+)?([ACGTN]*)(?:>([ACGTN]+))?")
_ZYGOSITY_COPIES = {
    "0/1": 1,
    "1/0": 1,
    "0|1": 1,
    "1|0": 1,
    "1/1": 2,
    "1|1": 2,
    "GENO:GENO_0000458": 1,
    "GENO:0000458": 1,
    "GENO:GENO_0000136": 2,
    "GENO:0000136": 2,
    "GENO:GENO_0000135": 1,
    "GENO:0000135": 1,
}


def _load(folder: Path, name: str) -> list[dict[str, Any]]:
    path = folder / name
    return read_json_documents(path) if path.exists() else []


def _clean(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_") and k != "datasetId"}


def import_bff(
    node: NodeDir,
    dataset_id: str,
    folder: Path,
    *,
    assembly: str | None = None,
    settings: DatasetSettings = DatasetSettings(),
) -> IngestSummary:
    check_dataset_id(dataset_id)  # before reading anything
    started = time.perf_counter()
    if not folder.is_dir():
        raise IngestError("not a folder of BFF JSON files", source=str(folder))
    docs = {entity: _load(folder, name) for entity, name in COLLECTIONS.items()}
    for entity, items in docs.items():
        for index, doc in enumerate(items):
            if "id" not in doc:
                raise IngestError(
                    f"{entity} has no 'id'",
                    source=str(folder / COLLECTIONS[entity]),
                    where=f"item {index}",
                )
    variants = _load(folder, "genomicVariations.json")
    if not variants and not docs["individual"]:
        raise IngestError("no genomicVariations.json or individuals.json found", source=str(folder))
    assembly = _assembly(assembly, variants, folder)
    columns = _matrix_columns(folder, docs)
    case_data = _load(folder, "caseLevelData.json")
    rows = _unique(_variant_row(v, folder, i) for i, v in enumerate(variants))
    rows.sort(key=lambda r: (reference.CHROMOSOMES.index(r["chrom"]), r["start"]))
    genotypes = _genotypes(rows, case_data, columns, variants_by_key(rows))

    with (
        node.staging(dataset_id) as stage,
        VariantWriter(stage) as variant_writer,
        GenotypeWriter(stage / "genotypes.zarr", [c[0] for c in columns]) as writer,
    ):
        if rows:
            writer.append(genotypes)
        variant_writer.write(_columns(rows, genotypes))
        meta = {
            "id": dataset_id,
            "name": settings.name or _dataset_name(docs, dataset_id),
            "description": settings.description or f"Imported from BFF folder {folder.name}",
            "assembly": assembly,
            "granularity": settings.granularity,
            "test_data": settings.test_data,
            "tier": settings.tier,
            "n_samples": len(columns),
            "n_sites": len(rows),
            "n_variants": len(rows),
            "contigs": sorted({r["chrom"] for r in rows}),
            "source": folder.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        variant_writer.flush()
        build_database(
            stage,
            [(variant_writer.parts, 0, 0)],
            samples=columns,
            entries=_entries(docs, meta),
            meta=meta,
        )
        shutil.rmtree(variant_writer.folder)
    return IngestSummary(
        dataset_id, len(columns), len(rows), len(rows), assembly, time.perf_counter() - started
    )


def _dataset_name(docs: dict[str, list[dict[str, Any]]], fallback: str) -> str:
    return str(docs["dataset"][0].get("name", fallback)) if docs["dataset"] else fallback


def _entries(docs: dict[str, list[dict[str, Any]]], meta: dict[str, Any]):
    for entity in ("individual", "biosample", "run", "analysis"):
        for doc in docs[entity]:
            yield entity, _clean(doc)
    if docs["dataset"]:
        yield (
            "dataset",
            {
                **_clean(docs["dataset"][0]),
                "id": meta["id"],
                "info": {"assemblyId": meta["assembly"], "testData": meta["test_data"]},
            },
        )
    else:
        yield "dataset", dataset_doc(meta)
    if docs["cohort"]:
        for doc in docs["cohort"]:
            yield "cohort", _clean(doc)
    else:
        yield "cohort", cohort_doc(meta, len(docs["individual"]))


def _assembly(given: str | None, variants: list[dict[str, Any]], folder: Path) -> str:
    if given:
        assembly = reference.canonical_assembly(given)
        if assembly is None:
            raise IngestError(f"unknown assembly {given!r}", source=str(folder))
        return assembly
    for variant in variants:
        hgvs = (variant.get("identifiers") or {}).get("genomicHGVSId", "")
        contig = reference.parse_contig(hgvs.split(":", 1)[0])
        if contig and contig.assembly:
            return contig.assembly
    raise IngestError(
        "cannot tell the assembly from the variants; pass --assembly", source=str(folder)
    )


def _matrix_columns(folder: Path, docs: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str]]:
    """(biosample_id, individual_id) per genotype column, in ``targets.json`` order."""
    individual_of = {str(b["id"]): str(b.get("individualId", b["id"])) for b in docs["biosample"]}
    targets = _load(folder, "targets.json")
    if targets:
        ids = [str(i) for i in targets[0].get("biosampleIds", [])]
    elif docs["biosample"]:
        ids = [str(b["id"]) for b in docs["biosample"]]
    else:
        ids = [str(i["id"]) for i in docs["individual"]]
    return [(i, individual_of.get(i, i)) for i in ids]


def _variant_row(doc: dict[str, Any], folder: Path, index: int) -> dict[str, Any]:
    where = f"item {index}"
    source = str(folder / "genomicVariations.json")
    variation = doc.get("variation") or {}
    location = variation.get("location") or {}
    interval = location.get("interval") or {}
    try:
        start = int(float(interval["start"]["value"]))
        end = int(float(interval["end"]["value"]))
    except (KeyError, TypeError, ValueError):
        raise IngestError(
            "variation.location.interval start/end are missing", source=source, where=where
        ) from None
    sequence_id = str(location.get("sequence_id", ""))
    hgvs = str((doc.get("identifiers") or {}).get("genomicHGVSId", ""))
    contig = None
    for text in (sequence_id, hgvs):
        match = _HGVS.match(text)
        name = match.group(1) if match else text.removeprefix("refseq:").split(":")[0]
        contig = reference.parse_contig(name) if name else None
        if contig:
            break
    if contig is None:
        raise IngestError(
            f"cannot read the chromosome from {sequence_id or hgvs!r}", source=source, where=where
        )
    ref = str(variation.get("referenceBases", "")).upper()
    alt = str(variation.get("alternateBases", "")).upper()
    molecular = doc.get("molecularAttributes") or {}
    vtype = str(variation.get("variantType") or "SNP").upper()
    if vtype == "INDEL" and ref and alt:
        vtype = "DEL" if len(alt) < len(ref) else "INS" if len(alt) > len(ref) else "INDEL"
    clean = {k: v for k, v in _clean(doc).items() if k not in ("caseLevelData", "length")}
    return {
        "variant_id": str(
            doc.get("variantInternalId") or f"{contig.chrom}-{start + 1}-{ref}-{alt}"
        ),
        "chrom": contig.chrom,
        "pos": start + 1,
        "start": start,
        "end": end,
        "ref": ref,
        "alt": alt,
        "vtype": vtype,
        "vcf_id": None,
        "genes": list(molecular.get("geneIds") or []) or None,
        "aa_changes": list(molecular.get("aminoacidChanges") or []) or None,
        "hgvs": [hgvs] if hgvs else None,
        "effects": [e.get("label", "") for e in molecular.get("molecularEffects", [])] or None,
        "doc": json.dumps(clean, separators=(",", ":")),
        "keys": {str(doc.get("_id", "")), hgvs, str(doc.get("variantInternalId", ""))} - {""},
        "embedded": doc.get("caseLevelData") or [],
    }


def _unique(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeated variant documents (same variantInternalId), as real BFF exports have."""
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row["variant_id"] not in seen:
            seen.add(row["variant_id"])
            unique.append(row)
    return unique


def variants_by_key(rows: list[dict[str, Any]]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, row in enumerate(rows):
        for key in row["keys"]:
            index.setdefault(key, i)
        index.setdefault(
            f"{row['chrom']}:{row['pos']}:{''.join(sorted((row['ref'], row['alt'])))}", i
        )
    return index


def _genotypes(
    rows: list[dict[str, Any]],
    case_data: list[dict[str, Any]],
    columns: list[tuple[str, str]],
    by_key: dict[str, int],
) -> np.ndarray:
    matrix = np.zeros((len(rows), len(columns), 2), dtype=np.int8)
    column_of = {bs: i for i, (bs, _) in enumerate(columns)}
    if case_data:
        # A variant without any case-level entry exists but has no calls: missing (-1),
        # so it is served as a variant with no carriers (an = 0), not as hom-ref everywhere.
        called = np.zeros(len(rows), dtype=bool)
        for entry in case_data:
            row = _find_row(entry, by_key)
            if row is None:
                continue
            called[row] = True
            for key, value in entry.items():
                if key.isdigit() and int(key) < len(columns):
                    calls = [1 if ch == "1" else 0 for ch in str(value)[:2]]
                    matrix[row, int(key), : len(calls)] = calls
                    if len(calls) == 1:
                        matrix[row, int(key), 1] = -2
        matrix[~called] = -1
        return matrix
    for row_index, row in enumerate(rows):
        for call in row["embedded"]:
            column = column_of.get(str(call.get("biosampleId")))
            zygosity = call.get("zygosity") or {}
            copies = _ZYGOSITY_COPIES.get(
                zygosity.get("label"), _ZYGOSITY_COPIES.get(zygosity.get("id"), 1)
            )
            if column is not None:
                matrix[row_index, column] = [1, 1] if copies == 2 else [0, 1]
    return matrix


def _find_row(entry: dict[str, Any], by_key: dict[str, int]) -> int | None:
    for key in (str(entry.get("id", "")), str(entry.get("_id", ""))):
        if key in by_key:
            return by_key[key]
    match = _HGVS.match(str(entry.get("id", "")))
    if match and match.group(4):
        contig = reference.parse_contig(match.group(1))
        if contig:
            alleles = "".join(sorted((match.group(3), match.group(4))))
            return by_key.get(f"{contig.chrom}:{match.group(2)}:{alleles}")
    return None


def _columns(rows: list[dict[str, Any]], genotypes: np.ndarray) -> dict[str, list]:
    counts = allele_counts(genotypes, 1) if len(rows) else None
    out: dict[str, list] = {
        k: []
        for k in (
            "variant_idx",
            "site_idx",
            "allele_idx",
            "variant_id",
            "chrom",
            "pos",
            "start",
            "end",
            "ref",
            "alt",
            "vtype",
            "vcf_id",
            "ac",
            "an",
            "af",
            "n_het",
            "n_homalt",
            "genes",
            "aa_changes",
            "hgvs",
            "effects",
            "doc",
        )
    }
    for i, row in enumerate(rows):
        ac = int(counts["ac"][i]) if counts else 0
        an = int(counts["an"][i]) if counts else 0
        values = {
            **row,
            "variant_idx": i,
            "site_idx": i,
            "allele_idx": 1,
            "ac": ac,
            "an": an,
            "af": ac / an if an else None,
            "n_het": int(counts["n_het"][i]) if counts else 0,
            "n_homalt": int(counts["n_homalt"][i]) if counts else 0,
        }
        for key in out:
            out[key].append(values[key])
    return out
