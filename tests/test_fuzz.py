"""Property-based tests (Hypothesis) of everything that parses what callers send: bad
input always gets a clear error (a ``GenofedError``, a 4xx), never a crash or a 5xx."""

from __future__ import annotations

import string
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genofed import GenofedError
from genofed.beacon.request import from_body, from_query_string, variant_query
from genofed.dataconnect.federated import plan as federated_plan
from genofed.dataconnect.sql import plan_query, search_body
from genofed.store.filters import parse_filter

BASE = "/beacon/v2"
PATHS = [
    "/g_variants",
    "/individuals",
    "/biosamples",
    "/runs",
    "/analyses",
    "/datasets",
    "/cohorts",
    "/individuals/S1/g_variants",
    "/g_variants/22-16050075-A-G/individuals",
    "/datasets/small/g_variants",
    "/cohorts/small-cohort/individuals",
    "/individuals/S3",
]
VARIANT_KEYS = [
    "referenceName",
    "start",
    "end",
    "referenceBases",
    "alternateBases",
    "variantType",
    "assemblyId",
    "geneId",
    "aminoacidChange",
    "genomicAlleleShortForm",
    "variantMinLength",
    "variantMaxLength",
    "mateName",
]
KEYS = [
    *VARIANT_KEYS,
    "filters",
    "skip",
    "limit",
    "requestedGranularity",
    "includeResultsetResponses",
    "testMode",
    "datasets",
    "datasetIds",
    "requestedSchema",
    "apiVersion",
]
# Values a Beacon sees, plausible and not: they get past the first checks more often
# than random text does.
ATOMS = [
    "", "22", "chr22", "X", "MT", "GRCh38", "hg19", "GCF_000001405.39", "A", "G", "AT",
    "N", "*", "SNP", "DEL", "SO:0001483", "BRAF", "V600E", "NM_004333.6:c.1799T>A",
    "NC_000022.11:g.16050075A>G", "16050074", "-1", "0", "1e9", "nan", "inf", "\u221e",
    "\u00e9", "\x00", "%", "%%", ",", ",,", "<>", "=", "!", ">=", "HP:0001250",
    "ICD10:G40", "age>=P70Y", "sex.label", "'; DROP TABLE variants; --", "{}", "[]",
    "null", "small", "fixtures", "small-test",
]  # fmt: skip
text = st.one_of(
    st.sampled_from(ATOMS),
    st.integers(-(10**12), 10**12).map(str),
    st.text(string.printable + "\u00e9\u2603\x00", max_size=24),
    st.lists(st.sampled_from(ATOMS), min_size=2, max_size=4).map(",".join),
)
json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63),
        st.floats(allow_nan=False, allow_infinity=False),
        text,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def beacon_filters(draw: st.DrawFn, wild: bool = False) -> dict[str, Any]:
    value = json_value if wild else text
    flt: dict[str, Any] = {"id": draw(value)}
    if draw(st.booleans()):
        flt["operator"] = draw(st.sampled_from(["=", "<", ">", "!", ">=", "<=", "~", ""]))
    if draw(st.booleans()):
        flt["value"] = draw(value)
    if draw(st.booleans()):
        flt["scope"] = draw(
            st.sampled_from(["individual", "biosamples", "genomicVariation", "dataset", "planet"])
        )
    if draw(st.booleans()):
        flt["includeDescendantTerms"] = draw(st.booleans())
    return flt


@st.composite
def beacon_bodies(draw: st.DrawFn, wild: bool = False) -> dict[str, Any]:
    """Bodies shaped like beaconRequestBody; with ``wild``, any JSON type anywhere."""
    value = json_value if wild else text
    query: dict[str, Any] = {}
    if draw(st.booleans()):
        parameters = {}
        for key in draw(st.lists(st.sampled_from(VARIANT_KEYS), max_size=4, unique=True)):
            if key in ("start", "end") and not wild:
                parameters[key] = draw(st.lists(st.integers(-5, 10**9), max_size=3))
            else:
                parameters[key] = draw(value)
        query["requestParameters"] = {"g_variant": parameters}
    if draw(st.booleans()):
        query["filters"] = draw(st.lists(beacon_filters(wild), min_size=1, max_size=3))
    if draw(st.booleans()):
        query["pagination"] = {
            "skip": draw(st.integers(-3, 10**12)),
            "limit": draw(st.integers(-3, 10**12)),
        }
    for key, choices in (
        ("requestedGranularity", ["boolean", "count", "record", "RECORD", ""]),
        ("includeResultsetResponses", ["ALL", "HIT", "MISS", "NONE", "hit"]),
        ("testMode", [True, False, "yes"]),
    ):
        if draw(st.booleans()):
            query[key] = draw(st.sampled_from(choices))
    body: dict[str, Any] = {"meta": {"apiVersion": "v2.0.0"}, "query": query}
    if wild and draw(st.booleans()):
        body[draw(st.sampled_from(["meta", "query"]))] = draw(json_value)
    return body


query_items = st.lists(st.tuples(st.sampled_from([*KEYS, "foo", "START"]), text), max_size=6)


# -- the parsers themselves: fast, thousands of cases ------------------------------------


def _parse(parse: Any, *args: Any) -> tuple[Any, GenofedError | None]:
    """What ``parse`` gives, or how it refused: any other exception fails the test."""
    try:
        return parse(*args), None
    except GenofedError as exc:
        return None, exc


def _parses_or_refuses(parse: Any, *args: Any) -> Any:
    parsed, refusal = _parse(parse, *args)
    if refusal is not None:
        assert str(refusal)  # every refusal says something
        assert 400 <= refusal.status < 500
    return parsed


@settings(max_examples=400)
@given(query_items)
def test_query_strings_parse_or_are_refused(items) -> None:
    request = _parses_or_refuses(from_query_string, items)
    if request is not None:
        _parses_or_refuses(variant_query, request.parameters)


@settings(max_examples=300)
@given(beacon_bodies(wild=True))
def test_request_bodies_parse_or_are_refused(body) -> None:
    request = _parses_or_refuses(from_body, body)
    if request is not None:
        _parses_or_refuses(variant_query, request.parameters)


@settings(max_examples=300)
@given(st.one_of(text, beacon_filters(wild=True), json_value))
def test_filters_parse_or_are_refused(flt) -> None:
    _parses_or_refuses(parse_filter, flt)


SQL_WORDS = [
    "SELECT", "*", "FROM", '"small.variants"', '"small.individuals"', "WHERE", "chrom",
    "=", "?", "'22'", "pos", "AND", "OR", "GROUP", "BY", "count(*)", "sum(ac)", "avg(af)",
    "ORDER", "LIMIT", "10", "JOIN", "ON", "(", ")", ",", "read_csv('x')", "UNION",
    "DELETE", "sex", "id", "AS", "n", ";", "--", "/*", "'", '"', "__genofed_row",
]  # fmt: skip
sql = st.one_of(
    st.lists(st.sampled_from(SQL_WORDS), min_size=1, max_size=14).map(" ".join),
    st.text(max_size=60),
)


@settings(max_examples=400)
@given(sql)
def test_sql_plans_or_is_refused(query) -> None:
    from genofed.dataconnect.catalog import TableSource

    tables = {
        name: TableSource(
            name=name,
            description="",
            owner="small",
            tier="public",
            ceiling="record",
            person_level=name.endswith("individuals"),
            database=__import__("pathlib").Path("/nonexistent"),
            select="*",
            source="{db}.x",
            dataset="small" if name.endswith("variants") else None,
        )
        for name in ("small.variants", "small.individuals")
    }
    _parses_or_refuses(plan_query, query, tables, frozenset({"small.individuals"}))
    _parses_or_refuses(federated_plan, query.replace('"small.', '"*.'))


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=40), json_value.map(lambda v: __import__("orjson").dumps(v))))
def test_search_bodies_parse_or_are_refused(raw) -> None:
    _parses_or_refuses(search_body, raw)


# -- through the app: never a 5xx ---------------------------------------------------------

API = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def safe_client(small_node) -> TestClient:
    from genofed.node.app import create_app

    with TestClient(create_app(small_node.root), raise_server_exceptions=False) as client:
        yield client


def _never_5xx(response) -> None:
    assert response.status_code < 500, response.text[:300]


@API
@given(st.sampled_from(PATHS), query_items)
def test_get_never_5xx(safe_client, path, items) -> None:
    _never_5xx(safe_client.get(BASE + path, params=items))


@API
@given(st.sampled_from(PATHS), st.text(string.printable[:94], min_size=1, max_size=40))
def test_hand_written_query_strings_never_5xx(safe_client, path, raw) -> None:
    _never_5xx(safe_client.get(f"{BASE}{path}?{quote(raw, safe='=&,;%')}"))


@API
@given(st.sampled_from(PATHS), beacon_bodies(wild=False))
def test_post_never_5xx(safe_client, path, body) -> None:
    _never_5xx(safe_client.post(BASE + path, json=body))


@API
@given(st.sampled_from(PATHS), beacon_bodies(wild=True))
def test_post_of_any_json_types_never_5xx(safe_client, path, body) -> None:
    _never_5xx(safe_client.post(BASE + path, json=body))


@API
@given(st.sampled_from(PATHS), st.binary(max_size=60))
def test_post_of_bytes_never_5xx(safe_client, path, content) -> None:
    headers = {"content-type": "application/json"}
    _never_5xx(safe_client.post(BASE + path, content=content, headers=headers))


@API
@given(sql)
def test_data_connect_search_never_5xx(safe_client, query) -> None:
    _never_5xx(safe_client.post("/data-connect/search", json={"query": query}))
