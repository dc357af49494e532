"""Record pages: DuckDB writes each ``genomicVariation`` record's JSON (beacon/records.py).

The reference here is the Python builder the node used before, kept as an independent
implementation of the same mapping: every variant of every test dataset (SNPs, indels,
symbolic and multi-allelic alleles, dbSNP ids, SnpEff annotations, rows imported from
Beacon-Friendly-Format with their own documents) must give the same record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from genofed.beacon import records
from genofed.store import reference
from genofed.store.dataset_reader import DatasetReader
from genofed.store.node_dir import NodeDir
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf
from tests.conftest import make_node


def reference_record(row: dict[str, Any], assembly: str, dataset_id: str) -> dict[str, Any]:
    if row.get("doc"):
        doc = json.loads(row["doc"])
    else:
        accession = reference.refseq_accession(assembly, row["chrom"])
        ref, alt = row["ref"], row["alt"]
        doc = {
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
        molecular = {}
        if row.get("genes"):
            molecular["geneIds"] = list(row["genes"])
        if row.get("aa_changes"):
            molecular["aminoacidChanges"] = list(row["aa_changes"])
        if molecular:
            doc["molecularAttributes"] = molecular
        if row.get("hgvs"):
            doc["identifiers"]["transcriptHGVSIds"] = list(row["hgvs"])
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


VARIED_VCF = """##fileformat=VCFv4.2
##contig=<ID=7,length=159345973>
##contig=<ID=MT,length=16569>
##INFO=<ID=END,Number=1,Type=Integer,Description="End">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB
7\t1000\trs1;rs2\tA\tG,T\t.\t.\t.\tGT\t0/1\t2/2
7\t2000\t.\tACGT\tA\t.\t.\t.\tGT\t0/1\t0/0
7\t2100\t.\tAC\tA\t.\t.\t.\tGT\t0/1\t0/0
7\t3000\tesv1\tC\tCTTG\t.\t.\t.\tGT\t1/1\t0/0
7\t4000\t.\tGA\tTC\t.\t.\t.\tGT\t0/1\t./.
7\t5000\t.\tG\t<DEL>\t.\t.\tEND=9000\tGT\t0/1\t0/0
7\t6000\t.\tT\tC\t.\t.\t.\tGT\t./.\t./.
MT\t100\t.\tA\tG\t.\t.\t.\tGT\t1\t0
"""


def test_every_record_equals_the_reference(small_node: NodeDir, tmp_path: Path) -> None:
    varied = tmp_path / "varied.vcf"
    varied.write_text(VARIED_VCF)
    node = make_node(tmp_path / "node")
    ingest_vcf(node, "varied", varied, assembly="GRCh38", settings=DatasetSettings(tier="public"))
    readers = [DatasetReader(small_node.dataset(d)) for d in ("small", "fixtures")]
    readers.append(DatasetReader(node.dataset("varied")))
    checked = 0
    for reader in readers:
        n = reader.cursor().execute("SELECT count(*) FROM variants").fetchone()[0]
        rows = reader.variants_by_index(list(range(n)))
        got = records.variant_records(reader, list(range(n)))
        assert [(s, a) for s, a, _ in got] == [(r["site_idx"], r["allele_idx"]) for r in rows]
        for row, (_, _, text) in zip(rows, got, strict=True):
            assert json.loads(text) == reference_record(row, reader.assembly, reader.dataset_id)
            checked += 1
        reader.close()
    assert checked > 40


@pytest.mark.parametrize("order", [[2, 0, 1], [1]])
def test_records_come_in_variant_order(small_node: NodeDir, order: list[int]) -> None:
    reader = DatasetReader(small_node.dataset("small"))
    got = records.variant_records(reader, order)
    ids = [json.loads(text)["variantInternalId"] for _, _, text in got]
    rows = reader.variants_by_index(sorted(order))
    assert ids == [r["variant_id"] for r in rows]
    reader.close()


def test_case_level_data_is_added_to_the_record() -> None:
    text = records.with_case_level_data('{"a":1}', [("B1", "I1", 2), ("B2", "I2", 1)])
    assert json.loads(text)["caseLevelData"] == [
        {"biosampleId": "B1", "individualId": "I1", "zygosity": records.ZYGOSITY[2]},
        {"biosampleId": "B2", "individualId": "I2", "zygosity": records.ZYGOSITY[1]},
    ]
