"""Beacon v2 filters through the API: ontology (with and without descendants), ICD-10
hierarchy, NCIT sex, alphanumeric operators (numbers, ISO 8601 durations, text with %),
custom terms, scopes across entities, and warnings for what a beacon cannot know.

Expected sets are computed from small_clinical.csv and small.vcf (see test_beacon_api.py);
ontology hierarchies come from the session OntologyIndex, with hand-checked anchors.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import pytest

from tests.test_beacon_api import (
    PEOPLE,
    PRESENT,
    ROW,
    bff,
    count,
    get,
    ids,
    ok,
    post,
    request_body,
    result_sets,
    warnings_of,
)

FEMALE, MALE = "NCIT:C16576", "NCIT:C20197"


def individuals(client, filters: list[Any], **extra: Any) -> dict[str, Any]:
    body = request_body(
        requestedGranularity="record",
        filters=filters,
        pagination={"skip": 0, "limit": 100},
        **extra,
    )
    return ok(post(client, "/individuals", body))


def individuals_get(client, filters: str, **extra: Any) -> dict[str, Any]:
    return ok(
        get(
            client,
            "/individuals",
            requestedGranularity="record",
            limit=100,
            filters=filters,
            **extra,
        )
    )


def people(predicate: Callable[[Any], bool]) -> list[str]:
    return [p.id for p in PEOPLE if predicate(p)]


def carried_by(wanted: list[str]) -> list[str]:
    return [r.variant_id for r in PRESENT if set(r.carriers) & set(wanted)]


def with_term(ontology, term: str, descendants: bool = True) -> list[str]:
    terms = (ontology.descendants(term) | {term}) if descendants else {term}
    return people(lambda p: bool(p.terms & terms))


# -- ontology filters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "anchor"),
    [
        ("HP:0001250", ["S1", "S3"]),  # Seizure; S1 has HP:0002069, a descendant
        ("HP:0000118", ["S1", "S2", "S3", "S5", "S6"]),  # Phenotypic abnormality: all with terms
        ("HP:0000822", ["S2", "S5"]),  # Hypertension
        ("HP:0001627", []),  # Abnormal heart morphology: a real term nobody here has
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_ontology_filter_with_descendants(client, ontology, method, term, anchor):
    expected = with_term(ontology, term)
    assert expected == anchor  # the hierarchy behaves as hand-checked
    doc = (
        individuals_get(client, term)
        if method == "GET"
        else individuals(client, [{"id": term, "includeDescendantTerms": True}])
    )
    assert ids(doc) == expected
    assert "warnings" not in doc.get("info", {})  # known terms: a zero here is a true zero


def test_descendant_of_seizure_is_what_s1_has(ontology):
    assert "HP:0002069" in ontology.descendants("HP:0001250")
    assert "HP:0002069" in next(p for p in PEOPLE if p.id == "S1").terms


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("HP:0001250", ["S3"]),  # only S3 is annotated with Seizure itself
        ("HP:0002069", ["S1"]),
        ("HP:0000118", []),
    ],
)
def test_ontology_filter_without_descendants(client, ontology, term, expected):
    assert with_term(ontology, term, descendants=False) == expected
    doc = individuals(client, [{"id": term, "includeDescendantTerms": False}])
    assert ids(doc) == expected


@pytest.mark.parametrize(
    ("term", "anchor"),
    [
        ("ICD10:I10-I15", ["S1", "S5"]),  # block: hypertensive diseases
        ("ICD10:IX", ["S1", "S3", "S5"]),  # chapter: circulatory system (I10, I42.0)
        ("ICD10:I10", ["S1", "S5"]),
        ("ICD10:I42", ["S3"]),  # category above I42.0
        ("ICD10:E11.9", ["S2"]),
        ("ICD10:IV", ["S2", "S5"]),  # chapter: endocrine (E11.9, E78.0)
    ],
)
def test_icd10_hierarchy(client, ontology, term, anchor):
    assert with_term(ontology, term) == anchor
    assert ids(individuals_get(client, term)) == anchor


@pytest.mark.parametrize(("term", "sex"), [(FEMALE, "female"), (MALE, "male")])
def test_ncit_sex_terms(client, term, sex):
    doc = ok(get(client, "/individuals", requestedGranularity="record", filters=term, limit=100))
    assert ids(doc) == people(lambda p: p.sex == sex)
    # The fixtures dataset is count-only: compare its count with its individuals.json.
    in_fixtures = sum(1 for i in bff("individuals.json") if i["sex"]["id"] == term)
    assert count(doc, "fixtures") == in_fixtures
    assert doc["responseSummary"]["numTotalResults"] == len(ids(doc)) + in_fixtures


def test_filters_are_and_ed(client):
    doc = individuals_get(client, f"HP:0000822,{FEMALE}")
    assert ids(doc) == people(lambda p: "HP:0000822" in p.terms and p.sex == "female") == ["S5"]
    doc = individuals(client, [{"id": "HP:0000822"}, {"id": MALE}])
    assert ids(doc) == ["S2"]


# -- alphanumeric filters ----------------------------------------------------------------------

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
    "!": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
}
NUMERIC = [
    # (field, operator, value sent, value compared, attribute of Person)
    ("age", op, text, number, "age")
    for op in _OPS
    for text, number in (("P70Y", 70), ("P45Y", 45), ("61", 61))
] + [
    ("age", "<", "P60Y6M", 60.5, "age"),
    ("bmi", ">", "30", 30.0, "bmi"),
    ("bmi", "<", "25", 25.0, "bmi"),
    ("bmi", ">=", "28.5", 28.5, "bmi"),
    ("bmi", "<=", "24", 24.0, "bmi"),
    ("bmi", "=", "22.1", 22.1, "bmi"),
    ("bmi", "!", "24", 24.0, "bmi"),
]


def _numeric_expected(op: str, number: float, attribute: str) -> list[str]:
    # A person without the field (S6 has no bmi) matches no comparison, "!" included.
    return people(
        lambda p: getattr(p, attribute) is not None and _OPS[op](getattr(p, attribute), number)
    )


@pytest.mark.parametrize(
    ("field", "op", "text", "number", "attribute"),
    NUMERIC,
    ids=[f"{f}{o}{t}" for f, o, t, _, _ in NUMERIC],
)
def test_numeric_and_duration_operators_get(client, field, op, text, number, attribute):
    doc = individuals_get(client, f"{field}{op}{text}", datasets="small")
    assert ids(doc) == _numeric_expected(op, number, attribute)


@pytest.mark.parametrize(
    ("field", "op", "text", "number", "attribute"),
    NUMERIC,
    ids=[f"{f}{o}{t}" for f, o, t, _, _ in NUMERIC],
)
def test_numeric_and_duration_operators_post(client, field, op, text, number, attribute):
    doc = individuals(client, [{"id": field, "operator": op, "value": text}])
    assert ids(doc) == _numeric_expected(op, number, attribute)


def test_age_at_least_70_by_hand(client):
    assert ids(individuals_get(client, "age>=P70Y")) == ["S1", "S5"]  # 72 and 80


TEXT = [
    ("smoker=yes", lambda p: p.smoker == "yes"),
    ("smoker!yes", lambda p: p.smoker != "yes"),
    ("smoker=YES", lambda p: p.smoker == "yes"),  # text matches ignore case
    ("smoker=y%", lambda p: p.smoker.startswith("y")),
    ("smoker=%e%", lambda p: "e" in p.smoker),
    ("smoker=%o", lambda p: p.smoker.endswith("o")),
    ("smoker!n%", lambda p: not p.smoker.startswith("n")),
    ("sex.label=fem%", lambda p: p.sex.startswith("fem")),
    ("sex.label=%male", lambda p: p.sex.endswith("male")),
    ("info.smoker=no", lambda p: p.smoker == "no"),
    # "sex" holds an ontology id and a label per person: "!" and patterns are decided over
    # both, so a woman (NCIT:C16576, "female") does not match "sex!female" by her id.
    ("sex!female", lambda p: p.sex != "female"),
    ("sex!%fem%", lambda p: "fem" not in p.sex),
    ("sex!NCIT:C20197", lambda p: p.sex != "male"),
    ("sex!%male", lambda p: not p.sex.endswith("male")),
]


@pytest.mark.parametrize(("flt", "predicate"), TEXT, ids=[t[0] for t in TEXT])
def test_text_filters_with_wildcards(client, flt, predicate):
    assert ids(individuals_get(client, flt)) == people(predicate)


def test_text_filter_in_post(client):
    doc = individuals(client, [{"id": "sex.label", "operator": "=", "value": "fem%"}])
    assert ids(doc) == people(lambda p: p.sex == "female")


# -- custom filters ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", sorted({p.smoker for p in PEOPLE}))
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_custom_filter(client, method, value):
    term = f"smoker:{value}"
    doc = individuals_get(client, term) if method == "GET" else individuals(client, [{"id": term}])
    assert ids(doc) == people(lambda p: p.smoker == value)
    assert "warnings" not in doc.get("info", {})


# -- scope: filters on one entity selecting another --------------------------------------------


def _variants(client, filters: list[dict[str, Any]]) -> list[str]:
    body = request_body(
        requestedGranularity="record", filters=filters, pagination={"skip": 0, "limit": 100}
    )
    return ids(ok(post(client, "/g_variants", body)))


SCOPED = [
    ({"id": "HP:0001250", "scope": "individual"}, lambda o: with_term(o, "HP:0001250")),
    ({"id": "HP:0000822", "scope": "individuals"}, lambda o: with_term(o, "HP:0000822")),
    ({"id": "ICD10:I10", "scope": "individual"}, lambda o: with_term(o, "ICD10:I10")),
    (
        {"id": "age", "operator": ">=", "value": "P70Y", "scope": "individual"},
        lambda o: people(lambda p: p.age >= 70),
    ),
    ({"id": "smoker:yes", "scope": "individual"}, lambda o: people(lambda p: p.smoker == "yes")),
    ({"id": MALE}, lambda o: people(lambda p: p.sex == "male")),
]


@pytest.mark.parametrize(("flt", "wanted"), SCOPED, ids=[str(s[0]["id"]) for s in SCOPED])
def test_variants_filtered_by_individuals(client, ontology, flt, wanted):
    assert _variants(client, [flt]) == carried_by(wanted(ontology))


def test_variants_of_seizure_patients_by_hand(client):
    # S1 and S3: everything but the deletion at 16050200 (S2) and the insertion (S4, S5).
    expected = [
        v for v in ROW if v not in ("22-16050200-ACT-A", "22-16050300-C-CTTA", "22-16052000-C-T")
    ]
    assert _variants(client, [{"id": "HP:0001250", "scope": "individual"}]) == expected


def test_variant_filter_combines_with_a_region(client):
    body = request_body(
        requestedGranularity="record",
        filters=[{"id": "smoker:yes", "scope": "individual"}],
        requestParameters={
            "g_variant": {"referenceName": "22", "start": [16050000], "end": [16050350]}
        },
    )
    smokers = set(people(lambda p: p.smoker == "yes"))
    expected = [r.variant_id for r in PRESENT if smokers & set(r.carriers) and r.start < 16050350]
    assert ids(ok(post(client, "/g_variants", body))) == expected


@pytest.mark.parametrize("flt", ["HP:0001250", "age>=P70Y", "smoker:no"])
def test_biosamples_filtered_by_individuals(client, ontology, flt):
    doc = ok(get(client, "/biosamples", requestedGranularity="record", filters=flt))
    direct = ids(individuals_get(client, flt))
    assert ids(doc) == direct
    assert direct


def test_variants_filtered_on_their_own_fields(client):
    expected = [r.variant_id for r in PRESENT if "BRAF" in r.genes]
    flt = {
        "id": "molecularAttributes.geneIds",
        "operator": "=",
        "value": "BRAF",
        "scope": "genomicVariation",
    }
    assert _variants(client, [flt]) == expected


BRAF = {
    "id": "molecularAttributes.geneIds",
    "operator": "=",
    "value": "BRAF",
    "scope": "genomicVariation",
}


@pytest.mark.parametrize("path", ["/individuals", "/biosamples"])
def test_variant_filters_select_the_carriers(client, path):
    # A filter scoped genomicVariation on people: those who carry a matching variant.
    expected = sorted({s for r in PRESENT if "BRAF" in r.genes for s in r.carriers})
    assert expected  # the fixture has BRAF carriers, and not everyone is one
    assert len(expected) < len(PEOPLE)
    body = request_body(
        requestedGranularity="record", filters=[BRAF], pagination={"skip": 0, "limit": 100}
    )
    assert sorted(ids(ok(post(client, path, body)))) == expected


def test_variant_filters_combine_with_person_filters(client):
    braf = {s for r in PRESENT if "BRAF" in r.genes for s in r.carriers}
    expected = people(lambda p: p.sex == "female" and p.id in braf)
    assert ids(individuals(client, [BRAF, {"id": FEMALE}])) == expected


def test_datasets_filtered_by_a_variant_filter(client):
    doc = ok(get(client, "/datasets"))
    assert doc["response"]["collections"]
    body = request_body(filters=[BRAF])
    names = [c["id"] for c in ok(post(client, "/datasets", body))["response"]["collections"]]
    assert names == ["small"]  # the only dataset with BRAF carriers


def test_matching_variant_filter_has_no_warning(client):
    flt = {
        "id": "molecularAttributes.geneIds",
        "operator": "=",
        "value": "BRAF",
        "scope": "genomicVariation",
    }
    doc = ok(post(client, "/g_variants", request_body(requestedGranularity="count", filters=[flt])))
    assert doc["responseSummary"]["exists"] is True
    assert "warnings" not in doc.get("info", {}), doc["info"]


@pytest.mark.parametrize(("path", "expected"), [("datasets", "small"), ("cohorts", "small-cohort")])
@pytest.mark.parametrize("flt", ["HP:0001250", "smoker:yes"])
def test_collections_filtered_by_their_individuals(client, path, expected, flt):
    assert ids(individuals_get(client, flt))  # the filter does select individuals of small
    doc = ok(get(client, f"/{path}", filters=flt))
    assert [c["id"] for c in doc["response"]["collections"]] == [expected]


# -- what a beacon cannot know must be said, never a silent zero --------------------------------

UNKNOWN = [
    ("unknown-ontology-term", "FOO:123", {"id": "FOO:123"}),
    ("unknown-hpo-id", "HP:9999999", {"id": "HP:9999999"}),
    ("unknown-custom-term", "nosuch:yes", {"id": "nosuch:yes"}),
    (
        "unknown-alphanumeric-field",
        "nosuchfield=3",
        {"id": "nosuchfield", "operator": "=", "value": "3"},
    ),
    ("unknown-numeric-field", "weight>70", {"id": "weight", "operator": ">", "value": "70"}),
]
ENTRY_PATHS = [
    pytest.param(p, id=p) for p in ("individuals", "biosamples", "runs", "analyses", "g_variants")
]


@pytest.mark.parametrize("path", ENTRY_PATHS)
@pytest.mark.parametrize(
    ("text", "obj"), [(t, o) for _, t, o in UNKNOWN], ids=[u[0] for u in UNKNOWN]
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_filters_warn(client, method, path, text, obj):
    if method == "GET":
        doc = ok(get(client, f"/{path}", requestedGranularity="count", filters=text))
    else:
        doc = ok(
            post(client, f"/{path}", request_body(requestedGranularity="count", filters=[obj]))
        )
    assert doc["responseSummary"] == {"exists": False, "numTotalResults": 0}
    assert obj["id"] in warnings_of(doc)


@pytest.mark.parametrize("path", ["datasets", "cohorts"])
@pytest.mark.parametrize(
    ("text", "obj"), [(t, o) for _, t, o in UNKNOWN[:2]], ids=[u[0] for u in UNKNOWN[:2]]
)
def test_unknown_filters_warn_on_collections(client, path, text, obj):
    doc = ok(get(client, f"/{path}", filters=text))
    assert doc["responseSummary"] == {"exists": False, "numTotalResults": 0}
    assert obj["id"] in warnings_of(doc)


def test_unknown_filter_warns_even_when_others_match(client):
    doc = individuals_get(client, "HP:0001250,FOO:123")
    assert ids(doc) == []
    assert "FOO:123" in warnings_of(doc)


def test_known_term_nobody_has_is_a_true_zero_on_variants(client):
    # HP:0001627 is a real HPO term no record here carries: a plain zero, like /individuals.
    doc = ok(get(client, "/g_variants", requestedGranularity="count", filters="HP:0001627"))
    assert doc["responseSummary"] == {"exists": False, "numTotalResults": 0}


def test_zero_without_warning_only_for_known_terms(client):
    doc = individuals_get(client, "HP:0001627")
    assert ids(doc) == []
    assert "warnings" not in doc.get("info", {})
    assert result_sets(doc) == {}
