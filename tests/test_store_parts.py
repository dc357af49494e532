"""Smaller store parts: contig names, annotations, gene tables, operator ontologies."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from genofed import IngestError
from genofed.node.app import create_app
from genofed.store import reference
from genofed.store.annotations import detect_format, parse_annotations, protein_change_1letter
from genofed.store.genes import read_gene_file
from genofed.store.node_dir import NodeDir
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf
from tests.conftest import SMALL_CLINICAL, SMALL_VCF


@pytest.mark.parametrize(
    ("name", "chrom", "assembly"),
    [
        ("22", "22", None),
        ("chr22", "22", None),
        ("CHR22", "22", None),
        ("NC_000022.11", "22", "GRCh38"),
        ("NC_000022.10", "22", "GRCh37"),
        ("refseq:NC_000022.11", "22", "GRCh38"),
        ("NC_000022", "22", None),
        ("chrX", "X", None),
        ("23", None, None),
        ("NC_000023.11", "X", "GRCh38"),
        ("chrM", "MT", None),
        ("MT", "MT", None),
        ("NC_012920.1", "MT", None),
        ("chr1_KI270706v1_random", None, None),
        ("scaffold_1", None, None),
    ],
)
def test_contig_synonyms(name: str, chrom: str | None, assembly: str | None) -> None:
    parsed = reference.parse_contig(name)
    if chrom is None:
        assert parsed is None
    else:
        assert parsed == reference.ContigName(chrom, assembly)


def test_refseq_accessions_round_trip() -> None:
    for assembly in reference.ASSEMBLIES:
        for chrom in reference.CHROMOSOMES[:24]:
            accession = reference.refseq_accession(assembly, chrom)
            assert reference.parse_contig(accession) == reference.ContigName(chrom, assembly)


def test_assembly_guess_from_header_lengths() -> None:
    assert reference.guess_assembly({"chr1": 248956422, "chr22": 50818468}) == "GRCh38"
    assert reference.guess_assembly({"1": 249250621}) == "GRCh37"
    assert reference.guess_assembly({"1": 1000}) is None


CSQ_HEADER = (
    '##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl '
    "VEP. Format: Allele|Consequence|IMPACT|SYMBOL|Gene|Feature_type|Feature|BIOTYPE|EXON|"
    'INTRON|HGVSc|HGVSp">'
)


def test_vep_csq_annotations_per_allele() -> None:
    fmt = detect_format([CSQ_HEADER])
    assert fmt is not None and fmt.tag == "CSQ"
    value = (
        "T|missense_variant|MODERATE|KRAS|ENSG00000133703|Transcript|ENST00000256078|"
        "protein_coding|2/6||ENST00000256078.10:c.35G>T|ENSP00000256078.5:p.Gly12Val,"
        "-|frameshift_variant|HIGH|TP53|ENSG00000141510|Transcript|ENST00000269305|"
        "protein_coding|||ENST00000269305.9:c.215del|ENSP00000269305.4:p.Pro72fs"
    )
    snv, deletion = parse_annotations(value, fmt, "GC", ["TC", "G"])
    assert snv.genes == set() and deletion.genes == {"TP53"}  # VEP trims the shared base
    only = parse_annotations(value, fmt, "G", ["T"])[0]
    assert only.genes == {"KRAS"} and only.aa_changes == {"G12V"}
    assert only.hgvs == {"ENST00000256078.10:c.35G>T"}


@pytest.mark.parametrize(
    ("hgvs_p", "expected"),
    [
        ("p.Val600Glu", "V600E"),
        ("ENSP1:p.(Gly12Asp)", "G12D"),
        ("p.Arg213Ter", "R213*"),
        ("p.Pro72=", "P72P"),
        ("p.Pro72fs", None),
        ("nonsense", None),
    ],
)
def test_protein_changes_to_one_letter(hgvs_p: str, expected: str | None) -> None:
    assert protein_change_1letter(hgvs_p) == expected


def test_gene_files(tmp_path: Path) -> None:
    gtf = tmp_path / "genes.gtf"
    gtf.write_text(
        "#!genome-build GRCh38\n"
        'chr22\tHAVANA\tgene\t100\t200\t.\t+\t.\tgene_id "ENSG1"; gene_name "ABC";\n'
        'chr22\tHAVANA\texon\t100\t150\t.\t+\t.\tgene_id "ENSG1"; gene_name "ABC";\n'
        'chrUn_x\tHAVANA\tgene\t1\t5\t.\t+\t.\tgene_id "ENSG2"; gene_name "DEF";\n'
    )
    assert read_gene_file(gtf) == [("ABC", "22", 99, 200)]
    bed = tmp_path / "genes.bed"
    bed.write_text("chr1\t10\t20\tX1\nchr1\t30\toops\tX2\n")
    with pytest.raises(IngestError, match="line 2"):
        read_gene_file(bed)


def test_gene_table_and_operator_ontology(empty_node: NodeDir, tmp_path: Path) -> None:
    """geneId finds variants by position; an operator OBO term finds its descendants."""
    from genofed.store.genes import save_genes

    clinical = tmp_path / "clinical.csv"
    clinical.write_text("sample_id,sex,phenotypes\nS1,female,LOCAL:0002\nS2,male,LOCAL:0003\n")
    ingest_vcf(
        empty_node,
        "d",
        SMALL_VCF,
        assembly="GRCh38",
        individuals=clinical,
        settings=DatasetSettings(granularity="record", tier="public"),
    )
    save_genes([("MYGENE", "22", 16050000, 16050250)], empty_node.genes_dir / "GRCh38.parquet")
    (empty_node.ontologies_dir / "local.obo").write_text(
        "format-version: 1.2\nontology: local\n\n"
        "[Term]\nid: LOCAL:0001\nname: root\n\n"
        "[Term]\nid: LOCAL:0002\nname: child\nis_a: LOCAL:0001\n\n"
        "[Term]\nid: LOCAL:0003\nname: grandchild\nis_a: LOCAL:0002\n"
    )
    client = TestClient(create_app(empty_node.root))
    genes = client.get(
        "/beacon/v2/g_variants", params={"geneId": "MYGENE", "requestedGranularity": "record"}
    ).json()
    ids = {r["variantInternalId"] for rs in genes["response"]["resultSets"] for r in rs["results"]}
    assert ids == {"22-16050075-A-G", "22-16050115-G-A", "22-16050115-G-T", "22-16050200-ACT-A"}

    def count(term: str) -> int:
        body = client.get(
            "/beacon/v2/individuals", params={"filters": term, "requestedGranularity": "count"}
        ).json()
        return body["responseSummary"]["numTotalResults"]

    assert count("LOCAL:0001") == 2
    assert count("LOCAL:0002") == 2
    assert count("LOCAL:0003") == 1


def test_clinical_csv_errors(empty_node: NodeDir, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,sex,phenotypes\nS1,female,seizures\n")
    with pytest.raises(IngestError, match=r"line 2.*not an ontology CURIE"):
        ingest_vcf(empty_node, "d", SMALL_VCF, assembly="GRCh38", individuals=bad)
    duplicate = tmp_path / "dup.csv"
    duplicate.write_text(SMALL_CLINICAL.read_text() + "S1,female,40,,,,\n")
    with pytest.raises(IngestError, match=r"line 8.*S1.*twice"):
        ingest_vcf(empty_node, "d", SMALL_VCF, assembly="GRCh38", individuals=duplicate)
    assert empty_node.datasets() == []
