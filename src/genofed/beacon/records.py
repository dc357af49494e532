"""Beacon documents for variant rows (entries are stored as documents already)."""

from __future__ import annotations

import json
from typing import Any

from genofed.store import reference

_ZYGOSITY = {
    1: {"id": "GENO:0000458", "label": "simple heterozygous"},
    2: {"id": "GENO:0000136", "label": "homozygous"},
}


def variant_document(
    row: dict[str, Any],
    *,
    assembly: str,
    dataset_id: str,
    carriers: list[tuple[str, str, int]] | None = None,
) -> dict[str, Any]:
    """The ``genomicVariation`` record of one stored variant row."""
    if row.get("doc"):  # imported from Beacon-Friendly-Format: serve it as it came
        doc = json.loads(row["doc"])
    else:
        doc = _from_vcf_row(row, assembly)
    if row["an"]:
        doc["frequencyInPopulations"] = [
            {
                "source": f"genofed dataset {dataset_id}",
                "sourceReference": dataset_id,
                "frequencies": [
                    {
                        "population": dataset_id,
                        "alleleFrequency": round(row["ac"] / row["an"], 8),
                        "alleleCount": row["ac"],
                        "alleleNumber": row["an"],
                        "alleleCountHomozygous": row["n_homalt"],
                        "alleleCountHeterozygous": row["n_het"],
                    }
                ],
            }
        ]
    if carriers is not None:
        doc["caseLevelData"] = [
            {
                "biosampleId": biosample,
                "individualId": individual,
                "zygosity": _ZYGOSITY.get(copies, _ZYGOSITY[1]),
            }
            for biosample, individual, copies in carriers
        ]
    return doc


def _from_vcf_row(row: dict[str, Any], assembly: str) -> dict[str, Any]:
    accession = reference.refseq_accession(assembly, row["chrom"])
    ref, alt = row["ref"], row["alt"]
    doc: dict[str, Any] = {
        "variantInternalId": row["variant_id"],
        "variation": {
            "variantType": row["vtype"],
            "referenceBases": ref,
            "alternateBases": alt if not alt.startswith("<") else "N",
            "location": {
                "type": "SequenceLocation",
                "sequence_id": f"refseq:{accession}",
                "interval": {
                    "type": "SequenceInterval",
                    "start": {"type": "Number", "value": row["start"]},
                    "end": {"type": "Number", "value": row["end"]},
                },
            },
        },
        "identifiers": {"genomicHGVSId": _hgvs(accession, row)},
    }
    if row.get("vcf_id"):
        doc["identifiers"]["variantAlternativeIds"] = [
            {"id": f"dbSNP:{v}" if v.startswith("rs") else v, "label": v}
            for v in row["vcf_id"].split(";")
        ]
    molecular: dict[str, Any] = {}
    if row.get("genes"):
        molecular["geneIds"] = list(row["genes"])
    if row.get("aa_changes"):
        molecular["aminoacidChanges"] = list(row["aa_changes"])
    if molecular:
        doc["molecularAttributes"] = molecular
    if row.get("hgvs"):
        doc["identifiers"]["transcriptHGVSIds"] = list(row["hgvs"])
    return doc


def _hgvs(accession: str, row: dict[str, Any]) -> str:
    pos, ref, alt = row["pos"], row["ref"], row["alt"]
    if row["vtype"] == "SNP":
        return f"{accession}:g.{pos}{ref}>{alt}"
    if row["vtype"] == "DEL" and alt == ref[0]:
        first, last = pos + 1, pos + len(ref) - 1
        span = f"{first}_{last}" if last > first else f"{first}"
        return f"{accession}:g.{span}del"
    if row["vtype"] == "INS" and ref == alt[0]:
        return f"{accession}:g.{pos}_{pos + 1}ins{alt[1:]}"
    return f"{accession}:g.{pos}_{pos + len(ref) - 1}delins{alt}"
