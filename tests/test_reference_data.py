"""Answers on real and simulated data from ../shared, checked against independent results.

- bcftools allele counts (``reference_results/*.bcftools_counts.tsv.gz``, made with
  ``bcftools norm -m- | +fill-tags``) for every variant of three files;
- the 44 expected Beacon look-ups in ``beacon_queries_expected.json``, asked over HTTP;
- the real 1000 Genomes slices, counted by bcftools in the test (or by plain Python);
- the CINECA UK1 Beacon-Friendly-Format cohort, counted straight from its JSON.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from genofed.node.app import create_app
from genofed.store.bff_import import import_bff
from genofed.store.node_dir import NodeDir
from genofed.store.ontology import OntologyIndex
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf
from tests.conftest import make_node
from tests.shared_data import SHARED, needs_shared
from tests.test_vcf_ingest import independent_counts, variant_rows

pytestmark = needs_shared
DATA = SHARED / "data"
REFERENCE = DATA / "reference_results"
# dataset name in beacon_queries_expected.json -> (VCF, assembly, bcftools counts file)
SOURCES = {
    "sim_chr22": (
        DATA / "sim_cohort" / "sim_chr22.vcf.gz",
        "GRCh37",
        REFERENCE / "sim_chr22.bcftools_counts.tsv.gz",
    ),
    "1kg_nygc_chr22_100x100": (
        DATA / "bio2zarr_1kg" / "chr22.vcf.gz",
        "GRCh38",
        REFERENCE / "chr22.bcftools_counts.tsv.gz",
    ),
    "regenie_example_acgt": (
        DATA / "regenie_example" / "example_acgt.vcf.gz",
        "GRCh37",
        REFERENCE / "example_acgt.bcftools_counts.tsv.gz",
    ),
}


@pytest.fixture(scope="module")
def reference_node(tmp_path_factory: pytest.TempPathFactory) -> NodeDir:
    node = make_node(tmp_path_factory.mktemp("reference") / "node")
    for name, (vcf, assembly, _counts) in SOURCES.items():
        ingest_vcf(
            node,
            name,
            vcf,
            assembly=assembly,
            settings=DatasetSettings(granularity="record", tier="public"),
        )
    return node


@pytest.fixture(scope="module")
def reference_client(reference_node: NodeDir, ontology: OntologyIndex):
    with TestClient(create_app(reference_node.root, ontology=ontology)) as client:
        yield client


def read_bcftools_counts(path: Path) -> dict[tuple[str, int, str, str], tuple[int, int, int, int]]:
    out = {}
    with gzip.open(path, "rt") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if row[0].startswith("#"):
                continue
            chrom, pos, ref, alt, ac, an = row[:6]
            het, hom_alleles = row[-2], row[-1]
            # bcftools AC_Hom counts alleles: two per hom-alt sample.
            out[(chrom.removeprefix("chr"), int(pos), ref, alt)] = (
                int(ac),
                int(an),
                int(het),
                int(hom_alleles) // 2,
            )
    return out


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_variant_matches_bcftools(reference_node: NodeDir, name: str) -> None:
    expected = read_bcftools_counts(SOURCES[name][2])
    # '*' (spanning deletion) is not an allele anyone carries at this site: not stored.
    expected = {k: v for k, v in expected.items() if k[3] != "*"}
    got = {
        (r["chrom"], r["pos"], r["ref"], r["alt"]): (r["ac"], r["an"], r["n_het"], r["n_homalt"])
        for r in variant_rows(reference_node, name)
    }
    assert set(got) == set(expected)
    mismatches = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not mismatches, list(mismatches.items())[:5]


def _expected_lookups() -> list[dict]:
    path = REFERENCE / "beacon_queries_expected.json"
    return json.loads(path.read_text()) if path.exists() else []


@pytest.mark.parametrize(
    "lookup",
    [q for q in _expected_lookups() if q["dataset"] in SOURCES],
    ids=lambda q: f"{q['dataset']}:{q['chrom']}:{q['pos']}{q['ref']}>{q['alt'][:5]}",
)
def test_expected_beacon_lookups(reference_client: TestClient, lookup: dict) -> None:
    response = reference_client.get(
        "/beacon/v2/g_variants",
        params={
            "referenceName": lookup["chrom"],
            "start": lookup["pos"] - 1,
            "referenceBases": lookup["ref"],
            "alternateBases": lookup["alt"],
            "datasets": lookup["dataset"],
            "requestedGranularity": "record",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["responseSummary"]["exists"] is lookup["exists"]
    if not lookup["exists"]:
        return
    record = body["response"]["resultSets"][0]["results"][0]
    frequency = record["frequencyInPopulations"][0]["frequencies"][0]
    assert frequency["alleleCount"] == lookup["ac"]
    assert frequency["alleleNumber"] == lookup["an"]
    assert frequency["alleleCountHeterozygous"] == lookup["n_het"]
    assert frequency["alleleCountHomozygous"] == lookup["n_homalt"]


def test_carriers_endpoint_matches_genotypes(reference_client: TestClient) -> None:
    """``/g_variants/{id}/individuals`` lists exactly the samples with an ALT allele."""
    vcf = SOURCES["regenie_example_acgt"][0]
    with gzip.open(vcf, "rt") as handle:
        lines = [line for line in handle if not line.startswith("##")]
    samples = lines[0].rstrip("\n").split("\t")[9:]
    fields = lines[5].rstrip("\n").split("\t")
    carriers = sorted(s for s, gt in zip(samples, fields[9:], strict=True) if "1" in gt)
    variant_id = f"{fields[0]}-{fields[1]}-{fields[3]}-{fields[4]}"
    body = reference_client.get(
        f"/beacon/v2/g_variants/{variant_id}/individuals",
        params={"requestedGranularity": "record", "limit": 1000},
    ).json()
    ids = sorted(r["id"] for rs in body["response"]["resultSets"] for r in rs["results"])
    assert ids == carriers
    assert body["responseSummary"]["numTotalResults"] == len(carriers)


VCF_1000G = {
    "GRCh37": DATA / "vcf" / "1000G_GRCh37_chr1_10k-200k.vcf.gz",
    "GRCh38": DATA / "vcf" / "1000G_GRCh38_chr22_slice.vcf.gz",
}


def bcftools_counts(vcf: Path) -> dict[tuple[str, int, str, str], tuple[int, int, int, int]]:
    norm = subprocess.Popen(
        ["bcftools", "norm", "-m-", "-Ou", str(vcf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    tags = subprocess.Popen(
        ["bcftools", "+fill-tags", "-Ou", "-", "--", "-t", "AC,AN,AC_Het,AC_Hom"],
        stdin=norm.stdout,
        stdout=subprocess.PIPE,
    )
    query = subprocess.run(
        ["bcftools", "query", "-f", "%CHROM\t%POS\t%REF\t%ALT\t%AC\t%AN\t%AC_Het\t%AC_Hom\n"],
        stdin=tags.stdout,
        capture_output=True,
        text=True,
        check=True,
    )
    for process in (norm, tags):
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
    out = {}
    for line in query.stdout.splitlines():
        chrom, pos, ref, alt, ac, an, het, hom = line.split("\t")
        out[(chrom.removeprefix("chr"), int(pos), ref, alt)] = (
            int(ac),
            int(an),
            int(het),
            int(hom) // 2,
        )
    return out


@pytest.mark.parametrize("assembly", sorted(VCF_1000G))
def test_1000_genomes_slices(empty_node: NodeDir, assembly: str) -> None:
    vcf = VCF_1000G[assembly]
    summary = ingest_vcf(empty_node, "kg", vcf, assembly=assembly)
    got = {
        (r["chrom"], r["pos"], r["ref"], r["alt"]): (r["ac"], r["an"], r["n_het"], r["n_homalt"])
        for r in variant_rows(empty_node, "kg")
    }
    with gzip.open(vcf, "rt") as handle:
        direct = independent_counts(handle.read())
    assert got == direct
    assert summary.n_samples >= 2500
    if shutil.which("bcftools"):
        assert got == bcftools_counts(vcf)


def test_cineca_bff_import_matches_its_json(empty_node: NodeDir, ontology: OntologyIndex) -> None:
    folder = DATA / "cineca-uk1"
    import_bff(
        empty_node,
        "uk1",
        folder,
        assembly="GRCh38",
        settings=DatasetSettings(granularity="record", tier="public"),
    )
    individuals = json.loads((folder / "individuals.json").read_text())
    case_level = json.loads((folder / "caseLevelData.json").read_text())
    con = duckdb.connect(str(empty_node.dataset("uk1").database), read_only=True)
    counts = dict(con.execute("SELECT variant_id, ac FROM variants").fetchall())
    by_hgvs = {}
    for entry in case_level:
        copies = sum(str(v).count("1") for k, v in entry.items() if k.isdigit())
        by_hgvs[entry["id"]] = copies
    # variantInternalId chr22_POS_A_B pairs with caseLevelData NC_000022.11:g.POSA>B
    matched = 0
    for variant_id, ac in counts.items():
        chrom, pos, first, second = variant_id.split("_")
        hgvs = f"NC_000022.11:g.{pos}{first}>{second}"
        if hgvs in by_hgvs:
            assert ac == by_hgvs[hgvs], variant_id
            matched += 1
    assert matched >= 900

    with TestClient(create_app(empty_node.root, ontology=ontology)) as client:

        def count(**params: str) -> int:
            body = client.get(
                "/beacon/v2/individuals", params={"requestedGranularity": "count", **params}
            ).json()
            return body["responseSummary"]["numTotalResults"]

        assert count() == len(individuals)
        females = sum(i["sex"]["id"] == "NCIT:C16576" for i in individuals)
        assert count(filters="NCIT:C16576") == females
        i42 = sum(
            any(d["diseaseCode"]["id"].startswith("ICD10:I42") for d in i.get("diseases", []))
            for i in individuals
        )
        assert count(filters="ICD10:I42") == i42
        chapter_ix = sum(
            any(d["diseaseCode"]["id"][6] == "I" for d in i.get("diseases", []))
            for i in individuals
        )
        assert count(filters="ICD10:IX") == chapter_ix
        assert count(filters="ICD10:I42", **{"datasets": "uk1"}) == i42
