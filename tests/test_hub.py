"""The hub against real node processes: merged answers, misbehaving nodes, credentials.

Three nodes (simulated cohorts of different sizes) serve as ``genofed node serve``
processes; a development broker serves token exchange; misbehaving peers (slow, malformed
JSON, a recorder of what it receives) are bare ASGI processes (``tests/stub_peer.py``);
each hub is a ``genofed hub serve`` process.
"""

from __future__ import annotations

import gzip
import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from genofed import devbroker as broker
from genofed.config import (
    HubNode,
)
from genofed.governance.passports import peek
from genofed.store.node_dir import NodeDir
from tests.beacon_schemas import errors as schema_errors
from tests.browser import needs_chromium
from tests.federation import Federation, statuses
from tests.federation import federation as start_federation
from tests.live_server import GENOFED, free_port, start_node_server
from tests.shared_data import needs_shared

pytestmark = pytest.mark.servers  # real processes on 127.0.0.1

ISSUER = "https://broker.genofed.test"
NODES = {"alpha": (11, 40), "beta": (12, 70), "gamma": (13, 110)}  # name: (seed, samples)
RANGE = {"referenceName": "22", "start": "0", "end": "100000000", "requestedGranularity": "record"}


def _hub_tests_config(config) -> None:
    """Anonymous callers get counts (made safe), registered ones records."""
    config.tiers["public"].anonymous = "count"
    config.tiers["public"].registered = "record"
    # The individual guard makes public answers depend on earlier ones (carriers who would
    # decide an answer are left out for the window); the hub's tests compare answers.
    config.disclosure.public_individual_guard = False
    config.data_connect.page_rows = 25  # results of a few pages, read through the hub


def _build_node(fed: Federation, name: str, seed: int, samples: int) -> Path:
    return fed.build_node(name, seed=seed, samples=samples, configure=_hub_tests_config)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with start_federation(tmp_path_factory.mktemp("federation")) as fed:
        for name, (seed, samples) in NODES.items():
            fed.add_node(name, seed=seed, samples=samples, configure=_hub_tests_config)
        yield fed


@pytest.fixture(scope="module")
def hub(federation: Federation) -> str:
    return federation.start_hub([federation.hub_node(n) for n in NODES])


def test_merged_counts_are_the_nodes_counts_summed_then_made_safe(
    federation: Federation, hub: str
) -> None:
    direct = {
        name: httpx.get(f"{url}/beacon/v2/g_variants", params=RANGE).json()
        for name, url in federation.nodes.items()
    }
    merged = httpx.get(f"{hub}/beacon/v2/g_variants", params=RANGE, timeout=10).json()
    assert statuses(merged) == dict.fromkeys(NODES, "ok")
    counts = [d["responseSummary"]["numTotalResults"] for d in direct.values()]
    assert len(set(counts)) > 1  # the nodes differ: a sum, not a copy
    # the nodes rounded their counts (anonymous callers get safe counts): the hub
    # applies the same rules again to the sum
    assert {d["responseSummary"].get("countPrecision") for d in direct.values()} != {None}
    assert merged["responseSummary"]["numTotalResults"] == safe(sum(counts))
    assert merged["responseSummary"]["countPrecision"] in ("rounded", "imprecise")
    assert merged["meta"]["returnedGranularity"] == "count"
    sets = {s["id"]: s for s in merged["response"]["resultSets"]}
    assert set(sets) == {f"{n}:{n}-cohort" for n in NODES}
    for name, document in direct.items():
        [node_set] = document["response"]["resultSets"]
        assert sets[f"{name}:{name}-cohort"]["resultsCount"] == node_set["resultsCount"]
        assert sets[f"{name}:{name}-cohort"]["info"]["node"] == name


def test_the_hubs_dataset_names_ask_those_nodes_for_those_datasets(
    federation: Federation, hub: str
) -> None:
    direct = httpx.get(f"{federation.nodes['alpha']}/beacon/v2/g_variants", params=RANGE).json()
    expected = direct["responseSummary"]["numTotalResults"]
    params = {**RANGE, "datasets": "alpha:alpha-cohort"}
    merged = httpx.get(f"{hub}/beacon/v2/g_variants", params=params, timeout=10).json()
    assert statuses(merged) == {"alpha": "ok", "beta": "skipped", "gamma": "skipped"}
    assert merged["responseSummary"]["numTotalResults"] == safe(expected)
    assert [r["id"] for r in merged["response"]["resultSets"]] == ["alpha:alpha-cohort"]
    body = {
        "meta": {"apiVersion": "2.0"},
        "query": {
            "requestedGranularity": "count",
            "requestParameters": {"datasets": ["beta:beta-cohort", "gamma:gamma-cohort"]},
        },
    }
    posted = httpx.post(f"{hub}/beacon/v2/individuals", json=body, timeout=10).json()
    assert statuses(posted) == {"alpha": "skipped", "beta": "ok", "gamma": "ok"}
    # A dataset no node has is a 403 from the hub (as from a node), not 200 with statuses.
    nowhere = httpx.get(f"{hub}/beacon/v2/individuals", params={"datasets": "nowhere"})
    assert nowhere.status_code == 403
    assert "no node serves" in nowhere.json()["error"]["errorMessage"]
    unknown = httpx.get(f"{hub}/beacon/v2/individuals", params={"datasets": "zeta:cohort"})
    assert unknown.status_code == 400
    assert "names no node of this hub" in unknown.json()["error"]["errorMessage"]


def safe(n: int, min_count: int = 5, step: int = 5) -> int:
    """The hub's rules (hub.yaml leaves them at their defaults), written out independently
    of genofed's code: 1..4 stand as 5, the rest round to the nearest 5."""
    if n == 0:
        return 0
    return min_count if n < min_count else max(min_count, (n + step // 2) // step * step)


@needs_shared
def test_merged_answers_follow_the_official_schemas(hub: str) -> None:
    merged = httpx.get(f"{hub}/beacon/v2/g_variants", params=RANGE, timeout=10).json()
    assert not schema_errors(merged, "framework/json/responses/beaconResultsetsResponse.json")
    info = httpx.get(f"{hub}/beacon/v2/info", timeout=10).json()
    assert not schema_errors(info, "framework/json/responses/beaconInfoResponse.json")
    terms = httpx.get(f"{hub}/beacon/v2/filtering_terms", timeout=10).json()
    assert not schema_errors(terms, "framework/json/responses/beaconFilteringTermsResponse.json")
    beacon_map = httpx.get(f"{hub}/beacon/v2/map", timeout=10).json()
    assert not schema_errors(beacon_map, "framework/json/responses/beaconMapResponse.json")


def test_collections_through_the_hub_answer_the_granularity_asked_for(hub: str) -> None:
    listed = httpx.get(f"{hub}/beacon/v2/datasets", timeout=10).json()
    names = [c["id"] for c in listed["response"]["collections"]]
    assert sorted(names) == sorted(f"{n}:{n}-cohort" for n in NODES)
    assert listed["responseSummary"]["numTotalResults"] == len(NODES)
    for granularity, summary in (
        ("count", {"exists": True, "numTotalResults": len(NODES)}),
        ("boolean", {"exists": True}),
    ):
        params = {"requestedGranularity": granularity}
        doc = httpx.get(f"{hub}/beacon/v2/datasets", params=params, timeout=10).json()
        assert doc["meta"]["returnedGranularity"] == granularity
        assert doc["responseSummary"] == summary and "response" not in doc


def test_framework_documents_are_the_union_of_the_nodes(federation: Federation, hub: str) -> None:
    info = httpx.get(f"{hub}/beacon/v2/info", timeout=10).json()
    members = {m["node"]: m for m in info["response"]["info"]["nodes"]}
    assert {m["beaconId"] for m in members.values()} == {f"org.genofed.{n}" for n in NODES}
    terms = httpx.get(f"{hub}/beacon/v2/filtering_terms", timeout=10).json()
    ids = {t["id"] for t in terms["response"]["filteringTerms"]}
    for url in federation.nodes.values():
        node_terms = httpx.get(f"{url}/beacon/v2/filtering_terms").json()["response"]
        assert {t["id"] for t in node_terms["filteringTerms"]} <= ids
    endpoint_sets = httpx.get(f"{hub}/beacon/v2/map", timeout=10).json()["response"]
    assert endpoint_sets["endpointSets"]["genomicVariantEndpoints"]["rootUrl"].startswith(hub)


def test_a_registered_researcher_gets_records_through_per_node_passports(
    federation: Federation, hub: str
) -> None:
    token = federation.access_token()
    headers = {"Authorization": f"Bearer {token}"}
    merged = httpx.get(
        f"{hub}/beacon/v2/g_variants", params=RANGE, headers=headers, timeout=10
    ).json()
    assert statuses(merged) == dict.fromkeys(NODES, "ok")
    assert merged["meta"]["returnedGranularity"] == "record"
    direct = 0
    for name, url in federation.nodes.items():
        # the same question asked of the node directly, with a Passport minted for it
        exchanged = httpx.post(
            f"{federation.broker_url}/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": token,
                "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "audience": federation.audience(name),
            },
        ).json()["access_token"]
        answer = httpx.get(
            f"{url}/beacon/v2/g_variants",
            params=RANGE,
            headers={"Authorization": f"Bearer {exchanged}"},
        ).json()
        direct += answer["responseSummary"]["numTotalResults"]
    assert merged["responseSummary"]["numTotalResults"] == direct  # exact: no re-rounding
    assert "countPrecision" not in merged["responseSummary"]


def test_the_callers_token_never_reaches_a_node(federation: Federation) -> None:
    recorder, log = federation.start_stub("recorder")
    hub = federation.start_hub(
        [federation.hub_node("alpha"), HubNode(name="spy", url=recorder, audience="urn:spy")],
    )
    token = federation.access_token("researcher-2")
    passport = broker.passport(
        federation.key, "researcher-3", broker.bona_fide_visas(federation.key, "researcher-3")
    )
    for credential in (token, passport):
        headers = {"Authorization": f"Bearer {credential}"}
        httpx.get(f"{hub}/beacon/v2/g_variants", params=RANGE, headers=headers, timeout=10)
        httpx.post(
            f"{hub}/beacon/v2/individuals",
            json={"query": {"filters": []}},
            headers=headers,
            timeout=10,
        )
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    # the hub's own requests (the audit heads it keeps) carry no credential at all
    own = [r for r in seen if r["path"] in ("/-/audit/head", "/.well-known/jwks.json")]
    assert all("authorization" not in r["headers"] for r in own)
    seen = [r for r in seen if r not in own]
    assert len(seen) == 4
    for request in seen:
        text = json.dumps(request)
        assert token not in text and passport not in text
        sent = request["headers"]["authorization"].removeprefix("Bearer ")
        _, claims = peek(sent)
        assert claims["aud"] == "urn:spy"  # a Passport for this node only
    # that Passport is worthless at another node, which wants its own audience
    refused = httpx.get(
        f"{federation.nodes['alpha']}/beacon/v2/g_variants",
        params=RANGE,
        headers={"Authorization": f"Bearer {sent}"},
    )
    assert refused.status_code == 401
    assert "another audience" in refused.json()["error"]["errorMessage"]


def test_a_passport_in_the_body_is_refused_not_forwarded(hub: str) -> None:
    response = httpx.post(f"{hub}/beacon/v2/individuals", json={"passports": ["x.y.z"]}, timeout=10)
    assert response.status_code == 400
    assert "Authorization" in response.json()["error"]["errorMessage"]


def test_misbehaving_nodes_cost_no_more_than_the_deadline(federation: Federation) -> None:
    slow, _ = federation.start_stub("slow")
    garbage, _ = federation.start_stub("garbage")
    doomed_root = _build_node(federation, "delta", 14, 50)
    doomed, doomed_url = start_node_server(doomed_root)
    federation.processes["delta"] = doomed
    nodes = [federation.hub_node(n) for n in NODES] + [
        HubNode(name="slow", url=slow),
        HubNode(name="garbage", url=garbage),
        HubNode(name="delta", url=doomed_url, audience=federation.audience("delta")),
        HubNode(name="nowhere", url=f"http://127.0.0.1:{free_port()}"),
    ]
    hub = federation.start_hub(nodes)
    expected = httpx.get(f"{hub}/beacon/v2/g_variants", params=RANGE, timeout=10).json()
    doomed.kill()  # mid-federation: the hub has not noticed yet
    doomed.wait()
    deadline = 1.0  # the slow peer takes 3 s: the hub must not wait for it
    response = httpx.get(
        f"{hub}/beacon/v2/g_variants",
        params=RANGE,
        headers={"Genofed-Deadline": str(deadline)},
        timeout=10,
    )
    assert response.status_code == 200
    merged = response.json()
    # the slow peer is cut at the deadline (how long that takes: bench_hub.py measures it)
    got = statuses(merged)
    assert {n: got[n] for n in NODES} == dict.fromkeys(NODES, "ok")
    assert got["slow"] == "timeout"
    assert got["garbage"] == "error"
    assert got["delta"] in ("error", "skipped")  # refused connection, or already seen down
    assert got["nowhere"] == "skipped"  # down since the hub started: its breaker is open
    healthy = [
        httpx.get(f"{federation.nodes[n]}/beacon/v2/g_variants", params=RANGE).json() for n in NODES
    ]
    counts = [d["responseSummary"]["numTotalResults"] for d in healthy]
    assert merged["responseSummary"]["numTotalResults"] == safe(sum(counts))
    assert len(merged["response"]["resultSets"]) == len(expected["response"]["resultSets"]) - 1
    # the hub's node status shows what it learnt
    states = {s["name"]: s for s in httpx.get(f"{hub}/hub/nodes").json()["nodes"]}
    assert states["nowhere"]["health"] == "down" and states["nowhere"]["breakerOpen"]
    assert states["alpha"]["health"] == "up"


def test_bad_deadlines_and_requests_are_refused_readably(hub: str) -> None:
    for value in ("0", "-1", "soon", "1000"):
        response = httpx.get(
            f"{hub}/beacon/v2/g_variants", params=RANGE, headers={"Genofed-Deadline": value}
        )
        assert response.status_code == 400
        assert "deadline" in response.json()["error"]["errorMessage"]
    bad = httpx.get(f"{hub}/beacon/v2/g_variants", params={"requestedGranularity": "all"})
    assert bad.status_code == 400
    unusable = httpx.get(f"{hub}/beacon/v2/g_variants", headers={"Authorization": "Basic x"})
    assert unusable.status_code == 401
    # A POST reads its body only: parameters in its query string are refused, not ignored.
    ignored = httpx.post(
        f"{hub}/beacon/v2/individuals", params={"requestedGranularity": "record"}, json={}
    )
    assert ignored.status_code == 400
    assert "requestedGranularity" in ignored.json()["error"]["errorMessage"]
    timed = httpx.post(f"{hub}/beacon/v2/individuals", params={"deadline_s": "5"}, json={})
    assert timed.status_code == 200  # the hub's own deadline parameter is the hub's


# -- Data Connect ----------------------------------------------------------------------


def _bearer(federation: Federation) -> dict[str, str]:
    return {"Authorization": f"Bearer {federation.access_token()}"}


def _follow(base: str, response: httpx.Response, headers: dict[str, str]) -> list[dict]:
    rows = []
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        rows += page["data"]
        url = (page.get("pagination") or {}).get("next_page_url")
        if not url:
            return rows
        assert url.startswith("/data-connect/nodes/")  # the next page comes through the hub
        if not page["data"]:
            time.sleep(float(response.headers.get("retry-after", "1")))
        response = httpx.get(base + url, headers=headers, timeout=30)


def test_the_hub_lists_every_nodes_tables_under_the_node(federation: Federation, hub: str) -> None:
    listed = httpx.get(f"{hub}/data-connect/tables", headers=_bearer(federation), timeout=10)
    names = {t["name"] for t in listed.json()["tables"]}
    for node in NODES:
        assert {f"{node}.{node}-cohort.variants", f"{node}.{node}-cohort.individuals"} <= names
    info = httpx.get(
        f"{hub}/data-connect/table/beta.beta-cohort.individuals/info",
        headers=_bearer(federation),
        timeout=10,
    ).json()
    assert (
        info["name"] == "beta.beta-cohort.individuals" and "sex" in info["data_model"]["properties"]
    )
    missing = httpx.get(f"{hub}/data-connect/table/nowhere.x/info", timeout=10)
    assert missing.status_code == 404 and missing.json()["errors"][0]["detail"]


def test_a_query_of_one_nodes_tables_goes_to_that_node(federation: Federation, hub: str) -> None:
    headers = _bearer(federation)
    query = 'SELECT id, sex FROM "gamma.gamma-cohort.individuals" ORDER BY id'
    through_hub = _follow(
        hub,
        httpx.post(f"{hub}/data-connect/search", json={"query": query}, headers=headers),
        headers,
    )
    assert len(through_hub) == NODES["gamma"][1]  # every individual, over several pages
    refused = httpx.post(
        f"{hub}/data-connect/search",
        json={"query": 'SELECT nope FROM "gamma.gamma-cohort.individuals"'},
        headers=headers,
    )
    assert refused.status_code == 400 and "nope" in refused.json()["errors"][0]["detail"]
    mixed = httpx.post(
        f"{hub}/data-connect/search",
        json={"query": 'SELECT a.id FROM "alpha.x" a JOIN "beta.y" b ON a.id = b.id'},
    )
    assert mixed.status_code == 400 and "one node" in mixed.json()["errors"][0]["detail"]


AGGREGATE = (
    "SELECT sex, count(*) AS n, avg(coalesce(len(phenotypic_features), 0)) AS mean_terms, "
    "max(coalesce(len(phenotypic_features), 0)) AS most_terms, "
    'sum(coalesce(len(phenotypic_features), 0)) AS terms FROM "*.individuals" '
    "GROUP BY sex ORDER BY sex"
)


def test_an_aggregate_over_every_node_equals_the_pooled_computation(
    federation: Federation, hub: str
) -> None:
    response = httpx.post(
        f"{hub}/data-connect/search",
        json={"query": AGGREGATE},
        headers=_bearer(federation),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert "errors" not in page, page.get("errors")
    csvs = [str(federation.root / f"{n}-data" / f"{n.upper()}.clinical.csv") for n in NODES]
    terms = (
        "CASE WHEN coalesce(phenotypes, '') = '' THEN 0 ELSE len(string_split(phenotypes, ';')) END"
    )
    pooled = duckdb.sql(
        f"SELECT sex, count(*), avg({terms}), max({terms}), sum({terms}) "
        "FROM read_csv(?, all_varchar = true) GROUP BY sex ORDER BY sex",
        params=[csvs],
    ).fetchall()
    got = [
        (r["sex"], int(r["n"]), r["mean_terms"], int(r["most_terms"]), int(r["terms"]))
        for r in page["data"]
    ]
    assert [g[:2] for g in got] == [(p[0], p[1]) for p in pooled]
    for mine, theirs in zip(got, pooled, strict=True):
        assert mine[2] == pytest.approx(theirs[2])  # from sums and counts, not averages
        assert (mine[3], mine[4]) == (theirs[3], theirs[4])
    assert page["data_model"]["properties"]["n"]["format"] == "bigint"


def test_federated_aggregates_report_nodes_that_cannot_answer(
    federation: Federation, hub: str
) -> None:
    # anonymous callers may see only aggregates, and min/max are not among them at a node
    response = httpx.post(
        f"{hub}/data-connect/search",
        json={"query": 'SELECT sex, max(len(diseases)) AS most FROM "*.individuals" GROUP BY sex'},
        timeout=30,
    )
    assert response.status_code == 200
    errors = response.json()["errors"]
    assert {e["source"] for e in errors} == set(NODES)
    refused = httpx.post(
        f"{hub}/data-connect/search",
        json={"query": 'SELECT count(DISTINCT sex) AS n FROM "*.individuals"'},
    )
    assert refused.status_code == 400 and "distinct" in refused.json()["errors"][0]["detail"]


# -- virtual cohorts -------------------------------------------------------------------

COHORT = {"terms": ["ICD10:G40"], "sex": "female", "min_age": 50}


def _pooled_cohort(federation: Federation, node: str) -> int:
    csv = federation.root / f"{node}-data" / f"{node.upper()}.clinical.csv"
    [row] = duckdb.sql(
        "SELECT count(*) FROM read_csv(?, all_varchar = true) WHERE sex = 'female' "
        "AND CAST(age AS INTEGER) >= 50 AND list_has_any(list_transform("
        "string_split(coalesce(diseases, ''), ';'), lambda d: d[:9]), ['ICD10:G40'])",
        params=[str(csv)],
    ).fetchall()
    return int(row[0])


def test_a_cohort_is_counted_at_every_node_and_saved(federation: Federation, hub: str) -> None:
    headers = _bearer(federation)  # registered: exact counts
    counted = httpx.post(f"{hub}/hub/cohorts/count", json=COHORT, headers=headers, timeout=30)
    assert counted.status_code == 200, counted.text
    counts = counted.json()
    expected = {n: _pooled_cohort(federation, n) for n in NODES}
    assert sum(expected.values()) > 0
    assert {n["node"]: n["count"] for n in counts["nodes"]} == expected
    assert counts["total"] == sum(expected.values()) and counts["countPrecision"] == "exact"
    for node in NODES:  # nobody's id leaves a node
        assert f"{node.upper()}0" not in counted.text

    saved = httpx.post(
        f"{hub}/hub/cohorts",
        json={"name": "Epileptic women over 50", "criteria": COHORT},
        headers=headers,
        timeout=30,
    )
    assert saved.status_code == 201, saved.text
    cohort_id = saved.json()["id"]
    listed = httpx.get(f"{hub}/hub/cohorts", timeout=10).json()["cohorts"]
    assert cohort_id in {c["id"] for c in listed}
    again = httpx.get(f"{hub}/hub/cohorts/{cohort_id}", headers=headers, timeout=30).json()
    assert again["criteria"]["terms"] == ["ICD10:G40"]
    assert again["counts"]["total"] == counts["total"]

    anonymous = httpx.post(f"{hub}/hub/cohorts/count", json=COHORT, timeout=30).json()
    by_node = {n["node"]: n for n in anonymous["nodes"]}
    for name, n in expected.items():  # small counts are withheld, others made safe
        if n < 5:
            assert "count" not in by_node[name] and by_node[name]["withheld"]
        else:
            assert by_node[name]["count"] == safe(n)
    counted = [n for n in expected.values() if n >= 5]
    assert anonymous["total"] == (safe(sum(counted)) if counted else None)
    assert anonymous["partial"] is any(n < 5 for n in expected.values())
    only_alpha = httpx.post(
        f"{hub}/hub/cohorts/count",
        json={**COHORT, "datasets": ["alpha:alpha-cohort"]},
        headers=headers,
        timeout=30,
    ).json()
    statuses_ = {n["node"]: n["status"] for n in only_alpha["nodes"]}
    assert statuses_ == {"alpha": "ok", "beta": "skipped", "gamma": "skipped"}
    assert only_alpha["total"] == expected["alpha"]


def _pooled_rows(federation: Federation) -> list[tuple[str, int]]:
    """(sex, age) of everyone at every node, read from the clinical files."""
    rows: list[tuple[str, int]] = []
    for node in NODES:
        csv = federation.root / f"{node}-data" / f"{node.upper()}.clinical.csv"
        rows += duckdb.sql(
            "SELECT sex, CAST(age AS INTEGER) FROM read_csv(?, all_varchar = true)",
            params=[str(csv)],
        ).fetchall()
    return rows


def test_a_cohort_breaks_down_by_sex_and_age_band(federation: Federation, hub: str) -> None:
    rows = _pooled_rows(federation)
    registered = httpx.post(
        f"{hub}/hub/cohorts/breakdown", json={}, headers=_bearer(federation), timeout=60
    )
    assert registered.status_code == 200, registered.text
    parts = registered.json()
    sexes = {p["value"]: p["total"] for p in parts["sex"]}
    assert sexes == {s: sum(r[0] == s for r in rows) for s in ("female", "male")}
    bands = {p["value"]: p["total"] for p in parts["age"]}
    edges = {"0–17": (0, 17), "18–39": (18, 39), "40–59": (40, 59), "60–79": (60, 79)}
    expected = {k: sum(lo <= r[1] <= hi for r in rows) for k, (lo, hi) in edges.items()}
    expected["80+"] = sum(r[1] >= 80 for r in rows)
    assert bands == expected and sum(bands.values()) == len(rows)  # the bands cover everyone
    assert all(p["countPrecision"] == "exact" for p in parts["sex"] + parts["age"])

    # within the cohort's own range only, and anonymous: safe counts, never a false 0
    anonymous = httpx.post(
        f"{hub}/hub/cohorts/breakdown", json={"min_age": 45, "sex": "female"}, timeout=60
    ).json()
    assert [p["value"] for p in anonymous["sex"]] == ["female"]
    assert [p["value"] for p in anonymous["age"]] == ["40–59", "60–79", "80+"]
    for part in anonymous["age"]:
        low, high = {"40–59": (45, 59), "60–79": (60, 79), "80+": (80, 200)}[part["value"]]
        pooled = sum(r[0] == "female" and low <= r[1] <= high for r in rows)
        assert part["countPrecision"] != "exact" or part["total"] is None
        if pooled:
            assert part["total"] != 0 and part["exists"]


def test_saved_cohorts_keep_their_count_and_can_be_deleted(
    federation: Federation, hub: str
) -> None:
    headers = _bearer(federation)
    saved = httpx.post(
        f"{hub}/hub/cohorts",
        json={"name": "to delete", "criteria": {**COHORT, "max_age": 70}},
        headers=headers,
        timeout=30,
    ).json()
    pooled = sum(_pooled_cohort(federation, n) for n in NODES)
    assert saved["countAtSave"]["total"] <= pooled  # at most 70, of those 50 and over
    assert saved["countAtSave"]["countPrecision"] == "exact"
    listed = {c["id"]: c for c in httpx.get(f"{hub}/hub/cohorts", timeout=10).json()["cohorts"]}
    assert listed[saved["id"]]["summary"] == "ICD10:G40 · female · aged 50–70"
    assert listed[saved["id"]]["countAtSave"] == saved["countAtSave"]

    deleted = httpx.delete(f"{hub}/hub/cohorts/{saved['id']}", timeout=10)
    assert deleted.status_code == 204 and deleted.content == b""
    assert saved["id"] not in {
        c["id"] for c in httpx.get(f"{hub}/hub/cohorts", timeout=10).json()["cohorts"]
    }
    for method in ("GET", "DELETE"):
        gone = httpx.request(method, f"{hub}/hub/cohorts/{saved['id']}", timeout=10)
        assert gone.status_code == 404 and "no cohort" in gone.text
    prefix = httpx.delete(f"{hub}/hub/cohorts/{saved['id'][:10]}", timeout=10)
    assert prefix.status_code == 404 and "in full" in prefix.text


def test_bad_cohorts_are_refused_readably(hub: str) -> None:
    for criteria, needle in (
        ({"terms": ["epilepsy"]}, "CURIE"),
        ({"min_age": 70, "max_age": 20}, "min_age"),
        ({"sex": "other"}, "sex"),
        ({"datasets": ["alpha-cohort"]}, "<node>:<dataset>"),
    ):
        response = httpx.post(f"{hub}/hub/cohorts/count", json=criteria, timeout=10)
        assert response.status_code == 400, response.text
        assert needle in response.json()["error"]["errorMessage"]
    assert httpx.get(f"{hub}/hub/cohorts/cohort-000000000000", timeout=10).status_code == 404


# -- the command-line client -----------------------------------------------------------


def _cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(Path(GENOFED).parent), "COLUMNS": "200", "HOME": "/tmp"}
    if token:
        env["GENOFED_TOKEN"] = token
    return subprocess.run([GENOFED, *args], capture_output=True, text=True, env=env, timeout=120)


def test_the_cli_asks_the_hub_and_prints_tables(federation: Federation, hub: str) -> None:
    token = federation.access_token()
    beacon = _cli(
        "query",
        "beacon",
        "--hub",
        hub,
        "--chrom",
        "22",
        "--start",
        "0",
        "--end",
        "100000000",
        "--granularity",
        "record",
        token=token,
    )
    assert beacon.returncode == 0, beacon.stderr
    merged = httpx.get(
        f"{hub}/beacon/v2/g_variants", params=RANGE, headers=_bearer(federation), timeout=10
    ).json()
    assert f"total: {merged['responseSummary']['numTotalResults']}" in beacon.stdout
    for node in NODES:
        assert f"{node}:{node}-cohort" in beacon.stdout

    sql = _cli("query", "sql", "--hub", hub, AGGREGATE, token=token)
    assert sql.returncode == 0, sql.stderr
    assert "2 row(s)" in sql.stdout and "female" in sql.stdout and "mean_terms" in sql.stdout

    count = _cli(
        "cohort",
        "count",
        "--hub",
        hub,
        "--term",
        "ICD10:G40",
        "--sex",
        "female",
        "--min-age",
        "50",
        token=token,
    )
    assert count.returncode == 0, count.stderr
    expected = sum(_pooled_cohort(federation, n) for n in NODES)
    assert f"total: {expected}" in count.stdout

    created = _cli(
        "cohort", "create", "--hub", hub, "--name", "cli cohort", "--sex", "male", token=token
    )
    assert created.returncode == 0, created.stderr
    cohort_id = created.stdout.split("saved as ")[1].split()[0]
    assert cohort_id in _cli("cohort", "list", "--hub", hub).stdout

    bad = _cli("cohort", "count", "--hub", hub, "--term", "epilepsy")
    assert bad.returncode == 1 and "CURIE" in bad.stderr
    down = _cli("query", "beacon", "--hub", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "could not reach the hub" in down.stderr


# -- the portal, in a real browser -----------------------------------------------------


def _bars(page: Any, chart: str) -> dict[str, str]:
    """A chart's bars as the page drew them: label -> value ('' for a withheld one)."""
    return {
        bar.get_attribute("data-label"): bar.get_attribute("data-value")
        for bar in page.locator(f"{chart} rect").all()
    }


def _idle(page: Any) -> None:
    page.wait_for_function(
        "document.querySelector('#cohort-counts').getAttribute('aria-busy') === 'false'"
    )


def _common_variant(federation: Federation) -> tuple[str, int, str, str]:
    with duckdb.connect(
        str(NodeDir(federation.root / "alpha").dataset("alpha-cohort").database), read_only=True
    ) as con:
        [(chrom, pos, ref, alt)] = con.execute(
            "SELECT chrom, pos, ref, alt FROM variants ORDER BY ac DESC LIMIT 1"
        ).fetchall()
    return chrom, pos, ref, alt


def _look_up(page: Any, chrom: str, pos: int, ref: str, alt: str) -> None:
    page.fill("#v-chrom", chrom)
    page.fill("#v-pos", str(pos))
    page.fill("#v-ref", ref)
    page.fill("#v-alt", alt)
    page.click("#variant-form button")


@needs_chromium
def test_the_portal_builds_a_cohort_by_clicking(
    federation: Federation, hub: str, browser: Any
) -> None:
    chrom, pos, ref, alt = _common_variant(federation)
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Delete the saved cohort …?"
    page.goto(hub)
    page.wait_for_function("document.querySelectorAll('#nodes tbody tr').length === 3")
    assert page.locator("#nodes .health-up").count() == 3
    page.wait_for_selector("#datasets tbody tr")
    datasets = page.inner_text("#datasets")
    assert all(f"{n}:{n}-cohort" in datasets for n in NODES)

    # variant look-up: the overall answer, then each node's answer and carriers, charted
    _look_up(page, chrom, pos, ref, alt)
    page.wait_for_selector("#variant-chart rect")
    assert page.inner_text("#variant-result").startswith("found")
    variant = {"referenceName": chrom, "start": pos - 1, "referenceBases": ref,
               "alternateBases": alt}  # fmt: skip
    carriers = httpx.post(f"{hub}/hub/cohorts/count", json={"variant": variant}, timeout=30).json()
    rows = {r.get_attribute("data-node"): r.inner_text() for r in page.locator(
        "#variant-nodes tbody tr").all()}  # fmt: skip
    assert set(rows) == set(NODES) and all("ok" in text for text in rows.values())
    drawn = _bars(page, "#variant-chart")
    for node in carriers["nodes"]:
        assert drawn[node["node"]] == ("" if node.get("count") is None else str(node["count"]))
    assert any(value not in ("", "0") for value in drawn.values())  # someone carries it

    # the cohort builder: a term from the autocompletion, sex, an age
    page.fill("#term-input", "G40")
    suggestion = page.locator("#term-suggestions li[data-term^='ICD10:G40']").first
    suggestion.wait_for()
    term = suggestion.get_attribute("data-term")
    suggestion.click()
    page.wait_for_selector(f"#terms .chip[data-term='{term}']")
    page.select_option("#sex", "female")
    with page.expect_response(lambda r: r.url.endswith("/hub/cohorts/count")) as last:
        page.fill("#min-age", "50")
    assert last.value.ok
    _idle(page)
    shown_total = page.inner_text("#cohort-total")
    shown = {
        row.get_attribute("data-node"): row.inner_text()
        for row in page.locator("#cohort-counts tbody tr").all()
    }
    chosen = {"terms": [term], "sex": "female", "min_age": 50}
    expected = httpx.post(f"{hub}/hub/cohorts/count", json=chosen, timeout=30).json()
    if expected["total"] is None:  # no node gave this anonymous caller a count
        assert shown_total == ("some" if expected["exists"] else "none")
    else:
        assert shown_total == str(expected["total"])
    assert set(shown) == set(NODES)
    page.wait_for_selector("#cohort-chart rect")
    drawn = _bars(page, "#cohort-chart")
    for node in expected["nodes"]:
        if node.get("count") is not None:
            assert str(node["count"]) in shown[node["node"]]
            assert drawn[node["node"]] == str(node["count"])
        else:  # withheld: the portal says whether anyone matches, not how many, no bar
            assert shown[node["node"]].endswith(("some", "none"))
            assert drawn[node["node"]] == ""

    # the cohort by sex and age band, as the hub's safe breakdown gives it
    page.click("#breakdown-button")
    page.wait_for_selector("#age-chart rect")
    parts = httpx.post(f"{hub}/hub/cohorts/breakdown", json=chosen, timeout=60).json()
    for chart, axis in (("#sex-chart", "sex"), ("#age-chart", "age")):
        assert _bars(page, chart) == {
            p["value"]: "" if p["total"] is None else str(p["total"]) for p in parts[axis]
        }
    assert list(_bars(page, "#sex-chart")) == ["female"]  # the cohort is women only
    page.fill("#max-age", "80")  # new criteria: the old breakdown is cleared at once
    assert page.locator("#age-chart rect").count() == 0
    page.fill("#max-age", "")
    _idle(page)

    # saved: a readable summary with its count and date, then open and delete
    page.fill("#cohort-name", "clicked cohort")
    page.click("#save-cohort")
    item = page.locator("#saved-cohorts li:has-text('clicked cohort')")
    item.wait_for()
    assert f"{term} · female · aged 50+" in item.inner_text()
    saved = next(
        c
        for c in httpx.get(f"{hub}/hub/cohorts", timeout=10).json()["cohorts"]
        if c["name"] == "clicked cohort"
    )
    assert saved["id"] in item.inner_text() and "when saved" in item.inner_text()
    if saved["countAtSave"]["total"] is not None:
        assert str(saved["countAtSave"]["total"]) in item.inner_text()
    carriers_cohort = httpx.post(
        f"{hub}/hub/cohorts",
        json={"name": "carriers, saved elsewhere", "criteria": {"variant": variant, "sex": "male"}},
        timeout=30,
    ).json()
    page.reload()
    opened = page.locator(f"#saved-cohorts li[data-cohort='{carriers_cohort['id']}']")
    opened.locator("button.open").click()
    page.wait_for_selector("#terms .chip[data-fixed='variant']")
    assert page.input_value("#sex") == "male" and page.input_value("#cohort-name") == (
        "carriers, saved elsewhere"
    )
    _idle(page)
    now = httpx.get(f"{hub}/hub/cohorts/{carriers_cohort['id']}", timeout=30).json()["counts"]
    total = now["total"]
    assert page.inner_text("#cohort-total") == (
        str(total) if total is not None else ("some" if now["exists"] else "none")
    )
    opened.locator("button.delete").click()
    opened.wait_for(state="detached")
    listed = httpx.get(f"{hub}/hub/cohorts", timeout=10).json()["cohorts"]
    assert carriers_cohort["id"] not in {c["id"] for c in listed}
    assert "Fit the model" in page.inner_text("#analysis-section")
    page.close()


@needs_chromium
def test_the_portal_remembers_who_asks_and_clears_what_no_longer_holds(
    federation: Federation, hub: str, browser: Any
) -> None:
    chrom, pos, ref, alt = _common_variant(federation)
    page = browser.new_page()
    page.goto(hub)
    assert page.inner_text("#identity").startswith("Anonymous")
    page.fill("#token", federation.access_token("portal-user"))
    page.dispatch_event("#token", "change")
    identity = page.inner_text("#identity")
    assert "Signed in as portal-user" in identity and "registered researcher" in identity
    assert "until" in identity
    page.reload()  # the token is in session storage: still signed in
    assert page.input_value("#token") and "portal-user" in page.inner_text("#identity")

    # a result is cleared the moment its question changes
    _look_up(page, chrom, pos, ref, alt)
    page.wait_for_selector("#variant-chart rect")
    page.fill("#v-pos", str(pos + 1))
    assert (
        page.inner_text("#variant-result") == ""
        and page.locator("#variant-chart rect").count() == 0
    )
    page.click("#variant-form button")
    page.wait_for_selector("#variant-result p")
    _idle(page)
    assert page.inner_text("#cohort-total") != "–"

    # a bad token: the failures show next to what failed, and nothing stale stays up
    page.fill("#token", "not-a-token")
    page.dispatch_event("#token", "change")
    assert page.inner_text("#variant-result") == ""
    page.wait_for_function("document.querySelector('#cohort-error').textContent !== ''")
    assert page.inner_text("#cohort-total") == "–"
    assert "token" in page.inner_text("#cohort-error").lower()
    page.click("#variant-form button")
    page.wait_for_function("document.querySelector('#variant-error').textContent !== ''")
    assert page.inner_text("#nodes-error") == "" and page.inner_text("#save-error") == ""
    page.fill("#token", "")
    page.dispatch_event("#token", "change")
    assert page.inner_text("#identity").startswith("Anonymous")
    _idle(page)
    page.wait_for_function("document.querySelector('#cohort-error').textContent === ''")

    # term search by name, chosen with the keyboard; "no matches" says so
    page.fill("#term-input", "seizure")
    page.wait_for_selector("#term-suggestions li[data-term='HP:0001250']")
    assert "Seizure (HP:0001250)" in page.inner_text("#term-suggestions")
    options = page.locator("#term-suggestions li[role=option]")
    index = [o.get_attribute("data-term") for o in options.all()].index("HP:0001250")
    for _ in range(index + 1):
        page.press("#term-input", "ArrowDown")
    assert options.nth(index).get_attribute("aria-selected") == "true"
    page.press("#term-input", "Enter")
    page.wait_for_selector("#terms .chip[data-term='HP:0001250']")
    page.fill("#term-input", "epilepsy")
    page.wait_for_selector("#term-suggestions li[data-term^='ICD10:G40']")
    assert "epilepsy" in page.inner_text("#term-suggestions").lower()
    page.press("#term-input", "Escape")
    assert page.locator("#term-suggestions li").count() == 0
    page.fill("#term-input", "zzzqqq")
    page.wait_for_selector("#term-suggestions li.no-matches")

    # a typed but unpicked term stops the save, and says why
    before = len(httpx.get(f"{hub}/hub/cohorts", timeout=10).json()["cohorts"])
    page.fill("#term-input", "epilep")
    page.fill("#cohort-name", "should not be saved")
    page.click("#save-cohort")
    assert "is not one of the cohort's terms" in page.inner_text("#save-error")
    assert len(httpx.get(f"{hub}/hub/cohorts", timeout=10).json()["cohorts"]) == before
    page.close()


@needs_chromium
def test_the_portal_fits_a_phone(federation: Federation, hub: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(hub)
    page.wait_for_function("document.querySelectorAll('#nodes tbody tr').length === 3")
    page.wait_for_selector("#datasets tbody tr")
    page.wait_for_selector("#cohort-chart rect")
    page.click("#breakdown-button")
    page.wait_for_selector("#age-chart rect")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    wide = page.evaluate(
        "[...document.querySelectorAll('section, .chart svg')]"
        ".filter(e => e.getBoundingClientRect().right > 375 + 0.5).map(e => e.id || e.tagName)"
    )
    assert wide == []
    page.close()


def _carriers_in_vcf(federation: Federation, node: str, chrom: str, pos: int, alt: str) -> int:
    """Samples carrying ``alt`` at ``pos``, read from the node's VCF by hand."""
    vcf = federation.root / f"{node}-data" / f"{node.upper()}.vcf.gz"
    with gzip.open(vcf, "rt") as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if fields[0].removeprefix("chr") == chrom and int(fields[1]) == pos:
                index = str(fields[4].split(",").index(alt) + 1)
                genotypes = [g.split(":")[0].replace("|", "/").split("/") for g in fields[9:]]
                return sum(index in g for g in genotypes)
    return 0


def test_one_entry_and_its_links_through_the_hub(federation: Federation, hub: str) -> None:
    headers = _bearer(federation)
    with duckdb.connect(
        str(NodeDir(federation.root / "alpha").dataset("alpha-cohort").database), read_only=True
    ) as con:
        [(variant_id, chrom, pos, ref, alt)] = con.execute(
            "SELECT variant_id, chrom, pos, ref, alt FROM variants WHERE ac > 3 "
            "ORDER BY variant_idx LIMIT 1"
        ).fetchall()
    carriers = _carriers_in_vcf(federation, "alpha", chrom, pos, alt)
    assert carriers > 0
    # a dataset named as the hub names it: only its node is asked
    linked = httpx.get(
        f"{hub}/beacon/v2/datasets/alpha:alpha-cohort/individuals",
        params={"requestedGranularity": "record"},
        headers=headers,
        timeout=10,
    ).json()
    assert statuses(linked) == {"alpha": "ok", "beta": "skipped", "gamma": "skipped"}
    assert linked["responseSummary"]["numTotalResults"] == NODES["alpha"][1]
    # a variant's carriers: every node is asked, each counts its own
    direct = 0
    for url in federation.nodes.values():
        answer = httpx.get(
            f"{url}/beacon/v2/g_variants/{variant_id}/individuals",
            params={"requestedGranularity": "count"},
        ).json()
        direct += answer["responseSummary"].get("numTotalResults", 0)
    merged = httpx.get(
        f"{hub}/beacon/v2/g_variants/{variant_id}/individuals",
        params={"requestedGranularity": "count"},
        timeout=10,
    ).json()
    assert statuses(merged) == dict.fromkeys(NODES, "ok")
    assert merged["responseSummary"]["numTotalResults"] == safe(direct)
    # a cohort of the variant's carriers at that node, counted exactly
    cohort = httpx.post(
        f"{hub}/hub/cohorts/count",
        json={
            "variant": {
                "referenceName": chrom,
                "start": pos - 1,
                "referenceBases": ref,
                "alternateBases": alt,
            },
            "datasets": ["alpha:alpha-cohort"],
        },
        headers=headers,
        timeout=30,
    ).json()
    assert {n["node"]: n["status"] for n in cohort["nodes"]}["alpha"] == "ok", cohort
    assert cohort["total"] == carriers and cohort["countPrecision"] == "exact"
    terms = httpx.get(f"{hub}/beacon/v2/individuals/filtering_terms", timeout=10).json()
    assert terms["response"]["filteringTerms"]


def test_a_data_connect_client_works_against_the_hub(federation: Federation, hub: str) -> None:
    from dnastack.client.data_connect import DataConnectClient
    from dnastack.client.models import ServiceEndpoint

    client = DataConnectClient.make(ServiceEndpoint(url=f"{hub}/data-connect/"))
    names = {t.name for t in client.list_tables()}  # anonymous: aggregate-only tables
    assert "gamma.gamma-cohort.individuals" in names
    got = list(client.query('SELECT sex, count(*) AS n FROM "*.individuals" GROUP BY sex'))
    csvs = [str(federation.root / f"{n}-data" / f"{n.upper()}.clinical.csv") for n in NODES]
    pooled = dict(
        duckdb.sql(
            "SELECT sex, count(*) FROM read_csv(?, all_varchar = true) GROUP BY sex",
            params=[csvs],
        ).fetchall()
    )
    # anonymous callers get each node's rounded counts, summed
    for row in got:
        assert abs(int(row["n"]) - pooled[row["sex"]]) <= 3 * 2  # 3 nodes, rounding to 5


@needs_shared
def test_hub_data_connect_answers_match_the_official_schemas(
    federation: Federation, hub: str
) -> None:
    import jsonschema

    from tests.test_data_connect_clients import _local_spec

    schemas = _local_spec()["components"]["schemas"]

    def check(name: str, body: Any) -> None:
        jsonschema.validate(body, {**schemas[name], "components": {"schemas": schemas}})

    headers = _bearer(federation)
    with httpx.Client(base_url=f"{hub}/data-connect", headers=headers, timeout=30) as http:
        check("ListTablesResponse", http.get("/tables").json())
        check("Table", http.get("/table/alpha.alpha-cohort.individuals/info").json())
        check("TableData", http.post("/search", json={"query": AGGREGATE}).json())
        routed = 'SELECT id FROM "beta.beta-cohort.individuals"'
        check("TableData", http.post("/search", json={"query": routed}).json())
        check("ErrorResponse", http.post("/search", json={"query": "DROP TABLE x"}).json())
    beacon = httpx.get(f"{hub}/beacon/v2/datasets", timeout=10).json()
    assert not schema_errors(beacon, "framework/json/responses/beaconCollectionsResponse.json")


def test_the_hub_trusts_a_node_only_through_its_ca(federation: Federation) -> None:
    import trustme

    authority, stranger = trustme.CA(), trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    root = federation.root
    certificate.private_key_and_cert_chain_pem.write_to_path(str(root / "node-tls.pem"))
    certificate.private_key_pem.write_to_path(str(root / "node-tls.key"))
    authority.cert_pem.write_to_path(str(root / "node-ca.pem"))
    stranger.cert_pem.write_to_path(str(root / "stranger-ca.pem"))
    node_root = _build_node(federation, "secure", 21, 30)
    port = free_port()
    node = subprocess.Popen(
        [
            GENOFED,
            "node",
            "serve",
            str(node_root),
            "--port",
            str(port),
            "--tls-cert",
            str(root / "node-tls.pem"),
            "--tls-key",
            str(root / "node-tls.key"),
        ],
    )
    federation.processes["secure"] = node
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    trusted = ssl.create_default_context(cafile=str(root / "node-ca.pem"))
    while True:  # up, over TLS, with a certificate our CA signed
        try:
            if httpx.get(f"{url}/-/health", verify=trusted).status_code == 200:
                break
        except httpx.TransportError:
            assert time.monotonic() < deadline and node.poll() is None
            time.sleep(0.1)

    def outcome(ca_file: str | None) -> dict[str, Any]:
        secure = HubNode(
            name="secure", url=url, audience=federation.audience("secure"), ca_file=ca_file
        )
        hub = federation.start_hub([federation.hub_node("alpha"), secure])
        merged = httpx.get(f"{hub}/beacon/v2/g_variants", params=RANGE, timeout=10).json()
        return {n["node"]: n for n in merged["info"]["nodes"]}

    assert outcome("node-ca.pem")["secure"]["status"] == "ok"
    for ca_file in (None, "stranger-ca.pem"):  # the system's CAs, or another CA: refused
        refused = outcome(ca_file)
        assert refused["secure"]["status"] == "skipped", refused
        assert "health check failed" in refused["secure"]["detail"]
        assert refused["alpha"]["status"] == "ok"


def test_the_portal_and_api_docs_load_nothing_from_the_internet(
    federation: Federation, hub: str
) -> None:
    """Before: /docs loaded Swagger UI from a CDN (blank on an offline hospital network)."""
    for base in (hub, *federation.nodes.values()):
        assert httpx.get(f"{base}/docs", timeout=10).status_code == 404
        assert httpx.get(f"{base}/openapi.json", timeout=10).status_code == 200
    page = httpx.get(hub, timeout=10).text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), page
    assert 'rel="icon"' in page
    icon = httpx.get(f"{hub}/portal/favicon.svg", timeout=10)
    assert icon.status_code == 200 and "<svg" in icon.text
