"""The hub's merging and fan-out over in-memory nodes (``genofed.testing``): every rule of
what the hub releases, and how it treats nodes that are slow, down, refusing or broken.
The hub itself is real; the end-to-end tests with node processes are in test_hub.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from genofed.config import Disclosure
from genofed.testing import FakeNode, FakeRequest, fake_hub_app

COUNT = {"requestedGranularity": "count"}


def safe(n: int, min_count: int = 5, step: int = 5) -> int:
    """The documented rule, written out independently of genofed's code."""
    if n == 0:
        return 0
    if n < min_count:
        return min_count
    return max(min_count, ((n + step // 2) // step) * step)


@pytest.fixture
def hub(tmp_path: Path):
    clients: list[TestClient] = []

    def build(nodes: list[FakeNode], **settings: Any) -> TestClient:
        client = TestClient(fake_hub_app(nodes, tmp_path, **settings))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def individuals(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/beacon/v2/individuals", params={**COUNT, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_exact_counts_are_summed_exactly(hub) -> None:
    client = hub([FakeNode.counting("a", 12), FakeNode.counting("b", 3)])
    summary = individuals(client)["responseSummary"]
    assert summary == {"exists": True, "numTotalResults": 15}


@pytest.mark.parametrize(
    ("counts", "precisions"),
    [
        ([10, 5], ["rounded", "imprecise"]),
        ([15, 15, 10], ["rounded"] * 3),
        ([7, 20], ["exact", "rounded"]),
    ],
)
def test_counts_a_node_made_safe_are_made_safe_again(hub, counts, precisions) -> None:
    nodes = [
        FakeNode.counting(f"n{i}", c, p)
        for i, (c, p) in enumerate(zip(counts, precisions, strict=True))
    ]
    summary = individuals(hub(nodes))["responseSummary"]
    assert summary["numTotalResults"] == safe(sum(counts))
    expected = "imprecise" if "imprecise" in precisions else "rounded"
    assert summary["countPrecision"] == expected


def test_a_total_that_leaves_nodes_out_says_which_and_why(hub) -> None:
    nodes = [
        FakeNode.counting("a", 20, "rounded"),
        FakeNode.counting("b", None, exists=True),  # this caller may only learn yes/no
        FakeNode.counting("c", 40, down=True),
    ]
    document = individuals(hub(nodes))
    summary = document["responseSummary"]
    assert summary["numTotalResults"] == 20 and summary["countPrecision"] == "imprecise"
    [note] = [w for w in document["info"]["warnings"] if "leaves out" in w]
    assert "b (gave no count" in note and "c (skipped" in note
    statuses = {n["node"]: n["status"] for n in document["info"]["nodes"]}
    assert statuses == {"a": "ok", "b": "ok", "c": "skipped"}


def test_no_from_some_nodes_is_not_a_no_from_all(hub) -> None:
    nodes = [FakeNode.counting("a", 0), FakeNode.counting("b", 9, down=True)]
    document = individuals(hub(nodes))
    assert document["responseSummary"]["exists"] is False
    assert any("covers only the nodes that answered" in w for w in document["info"]["warnings"])


def test_the_nodes_warnings_reach_the_caller(hub) -> None:
    nodes = [FakeNode.counting("a", 5, warnings=["count withheld for a reason"])]
    assert individuals(hub(nodes))["info"]["warnings"] == ["a: count withheld for a reason"]


def test_a_slow_node_is_a_timeout_and_the_others_still_answer(hub) -> None:
    nodes = [FakeNode.counting("fast", 10), FakeNode.counting("slow", 10, delay_s=30)]
    document = individuals(hub(nodes), deadline_s=0.5)
    statuses = {n["node"]: n["status"] for n in document["info"]["nodes"]}
    assert statuses == {"fast": "ok", "slow": "timeout"}
    assert document["responseSummary"]["numTotalResults"] == 10


def test_broken_and_refusing_nodes_are_reported_not_raised(hub) -> None:
    nodes = [
        FakeNode.counting("ok", 10),
        FakeNode.counting("garbage", 10, malformed=True),
        FakeNode.counting("refusing", 10, status=403),
    ]
    client = hub(nodes)
    document = individuals(client)
    outcomes = {n["node"]: n for n in document["info"]["nodes"]}
    assert outcomes["garbage"]["status"] == "error"
    assert "malformed JSON" in outcomes["garbage"]["detail"]
    assert outcomes["refusing"]["status"] == "unauthorised"
    assert "refusing refuses" in outcomes["refusing"]["detail"]


def test_a_failing_node_opens_its_breaker_and_a_refusing_one_does_not(hub) -> None:
    nodes = [
        FakeNode.counting("broken", 1, status=500),
        FakeNode.counting("picky", 1, status=400),
    ]
    client = hub(nodes, breaker_failures=2)
    for _ in range(3):
        document = individuals(client)
    statuses = {n["node"]: n["status"] for n in document["info"]["nodes"]}
    assert statuses == {"broken": "skipped", "picky": "error"}
    assert len(nodes[0].requests) == 2 and len(nodes[1].requests) == 3


def test_an_id_naming_a_node_is_asked_of_that_node_only(hub) -> None:
    a, b = FakeNode.counting("a", 1), FakeNode.counting("b", 1)
    client = hub([a, b])
    response = client.get("/beacon/v2/individuals/b:P1", params=COUNT)
    assert response.status_code == 200
    assert [r.path for r in b.requests] == ["/beacon/v2/individuals/P1"] and a.requests == []


def test_the_callers_token_is_never_sent_to_a_node(hub) -> None:
    node = FakeNode.counting("a", 1)
    client = hub([node])
    refused = client.get("/beacon/v2/individuals", headers={"Authorization": "Bearer abc.def.ghi"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_credentials"
    assert node.requests == []  # no token exchange configured: nothing sent at all


# -- cohorts ----------------------------------------------------------------------------


def cohort(client: TestClient, **criteria: Any) -> dict[str, Any]:
    response = client.post("/hub/cohorts/count", json=criteria)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_anonymous_cohort_total_is_not_a_false_zero(hub) -> None:
    nodes = [FakeNode.counting("a", None, exists=True), FakeNode.counting("b", None, exists=False)]
    counts = cohort(hub(nodes), terms=["HP:0001250"])
    assert counts["total"] is None and counts["countPrecision"] is None
    assert counts["exists"] is True and counts["partial"] is True
    withheld = {n["node"]: n.get("withheld") for n in counts["nodes"]}
    assert "only whether anyone matches (yes)" in withheld["a"]
    assert any("leaves out 2 node(s)" in w for w in counts["warnings"])


def test_a_cohort_total_says_which_node_withheld_its_count(hub) -> None:
    nodes = [
        FakeNode.counting("a", 25, "rounded"),
        FakeNode.counting("b", None, exists=True, warnings=["dataset b: count withheld"]),
    ]
    counts = cohort(hub(nodes))
    assert counts["total"] == 25 and counts["partial"] is True
    assert "b: dataset b: count withheld" in counts["warnings"]


def test_a_cohort_of_some_nodes_datasets_asks_only_them(hub) -> None:
    a, b = FakeNode.counting("a", 12), FakeNode.counting("b", 3)
    counts = cohort(hub([a, b]), datasets=["a:a-data"])
    assert counts["total"] == 12 and counts["partial"] is False
    assert b.requests == []


# -- federated Data Connect -------------------------------------------------------------


def search_page(rows: list[dict[str, Any]], precision: str | None) -> dict[str, Any]:
    count_schema: dict[str, Any] = {"type": "string", "format": "bigint"}
    if precision:
        count_schema["x-genofed-countPrecision"] = precision
    return {
        "data_model": {
            "type": "object",
            "properties": {
                "__k0": {"type": "string"},
                "__a1": count_schema,
                "__a2s": {"type": "number"},
                "__a2c": {"type": "string"},
            },
        },
        "data": rows,
        "pagination": {},
    }


def dc_node(name: str, rows: list[dict[str, Any]], precision: str | None) -> FakeNode:
    return FakeNode(
        name,
        tables=[{"name": f"{name}-data.individuals"}],
        data_connect=search_page(rows, precision),
    )


QUERY = 'SELECT sex, count(*) AS n, avg(age) AS mean_age FROM "*.individuals" GROUP BY sex'


@pytest.fixture
def federated(hub):
    def run(nodes: list[FakeNode]) -> dict[str, Any]:
        response = hub(nodes).post("/data-connect/search", json={"query": QUERY})
        assert response.status_code == 200, response.text
        return response.json()

    return run


def test_federated_counts_are_made_safe_again_when_a_node_made_them_safe(federated) -> None:
    nodes = [
        dc_node("a", [{"__k0": "female", "__a1": "10", "__a2s": 400.0, "__a2c": "8"}], "rounded"),
        # a caller entitled to b's records: b counts exactly; the sum must not be exact
        dc_node("b", [{"__k0": "female", "__a1": "7", "__a2s": 500.0, "__a2c": "12"}], None),
        dc_node("c", [{"__k0": "male", "__a1": "7", "__a2s": 70.0, "__a2c": "7"}], None),
    ]
    answer = federated(nodes)
    rows = {r["sex"]: r for r in answer["data"]}
    assert rows["female"]["n"] == str(safe(10 + 7)) == "15"
    assert rows["male"]["n"] == "7"  # one exact part: exact
    assert rows["female"]["mean_age"] == pytest.approx(900 / 20)  # from sums and counts
    assert answer["data_model"]["properties"]["n"]["x-genofed-countPrecision"] == "rounded"


def test_federated_exact_counts_stay_exact(federated) -> None:
    nodes = [
        dc_node("a", [{"__k0": "female", "__a1": "3", "__a2s": 90.0, "__a2c": "3"}], None),
        dc_node("b", [{"__k0": "female", "__a1": "4", "__a2s": 100.0, "__a2c": "4"}], None),
    ]
    answer = federated(nodes)
    assert answer["data"] == [{"sex": "female", "n": "7", "mean_age": pytest.approx(190 / 7)}]
    assert "x-genofed-countPrecision" not in answer["data_model"]["properties"]["n"]


def test_the_node_sql_is_an_aggregate_of_each_table(federated) -> None:
    node = dc_node("a", [], None)
    federated([node])
    [search] = [r for r in node.requests if r.method == "POST"]
    assert (
        search.body["query"].startswith('SELECT sex AS "__k0"')
        or "count(*)" in search.body["query"].lower()
    )
    assert '"a-data.individuals"' in search.body["query"]


def test_a_node_refusing_a_routed_query_gives_its_status(hub) -> None:
    node = FakeNode("a", status=403, tables=[{"name": "x"}])
    response = hub([node]).post("/data-connect/search", json={"query": 'SELECT * FROM "a.x"'})
    assert response.status_code == 403
    [error] = response.json()["errors"]
    assert error["code"] == "node_refused" and "a refuses" in error["detail"]


def test_fake_nodes_record_what_they_are_asked(hub) -> None:
    seen: list[FakeRequest] = []

    def answer(request: FakeRequest) -> dict[str, Any]:
        seen.append(request)
        return FakeNode.counting("a", 5).beacon  # type: ignore[return-value]

    client = hub([FakeNode("a", beacon=answer)], disclosure=Disclosure.off())
    individuals(client, filters="HP:0001250")
    assert [(r.method, r.path) for r in seen] == [("GET", "/beacon/v2/individuals")]
    assert ("filters", "HP:0001250") in seen[0].params


def test_a_node_still_running_its_query_is_polled_through_to_its_last_page(hub) -> None:
    """A node's first page may be empty (not ready within its page wait): the hub polls
    its next page, and the node is an answer, not an error."""
    row = {"__k0": "female", "__a1": "7", "__a2s": 70.0, "__a2c": "7"}

    def answer(request: FakeRequest) -> dict[str, Any]:
        if request.method == "POST":  # not ready: poll the same page
            return {"data": [], "pagination": {"next_page_url": "/data-connect/search/j1/0"}}
        return search_page([row], None)

    node = FakeNode("slowish", tables=[{"name": "d.individuals"}], data_connect=answer)
    response = hub([node]).post("/data-connect/search", json={"query": QUERY})
    assert response.status_code == 200
    assert response.json()["data"] == [{"sex": "female", "n": "7", "mean_age": 10.0}]
    assert [r.path for r in node.requests if r.method == "GET"][-1] == "/data-connect/search/j1/0"


@pytest.mark.parametrize("bad", ["x", "inf", "NaN", "-3", "2.5"])
def test_a_node_answering_nonsense_rows_is_its_own_error(federated, bad) -> None:
    good = dc_node("a", [{"__k0": "female", "__a1": "7", "__a2s": 70.0, "__a2c": "7"}], None)
    broken = dc_node("b", [{"__k0": "female", "__a1": bad, "__a2s": 1.0, "__a2c": "1"}], None)
    answer = federated([good, broken])
    assert answer["data"] == [{"sex": "female", "n": "7", "mean_age": 10.0}]
    [error] = [e for e in answer["errors"] if e["source"] == "b"]
    assert error["code"] == "node_error" and "cannot be merged" in error["detail"]


def test_a_query_naming_one_node_is_exact_about_that_node(hub) -> None:
    client = hub([FakeNode.counting("a", 3), FakeNode.counting("b", 9)])
    response = client.get("/beacon/v2/individuals/a:P1", params=COUNT).json()
    assert response["responseSummary"] == {"exists": True, "numTotalResults": 3}
    assert "warnings" not in response["info"]  # b was not asked: nothing is left out


@pytest.mark.parametrize(
    "document",
    [
        {"meta": ["not", "an", "object"], "responseSummary": {"exists": True}},
        {"meta": {"returnedGranularity": "everything"}, "responseSummary": {"exists": True}},
        {"meta": {}, "responseSummary": {"exists": "yes"}},
        {
            "meta": {"returnedGranularity": "count"},
            "responseSummary": {"exists": True, "numTotalResults": -5},
        },
        {
            "meta": {"returnedGranularity": "count"},
            "responseSummary": {"exists": True, "numTotalResults": 10**15},
        },
        {"meta": {}, "responseSummary": {"exists": True}, "info": {"warnings": [{"x": 1}]}},
        {"meta": {}, "responseSummary": {"exists": True}, "response": {"resultSets": "many"}},
        {
            "meta": {},
            "responseSummary": {"exists": True},
            "response": {"resultSets": [{"info": []}]},
        },
    ],
)
def test_a_node_answering_nonsense_is_that_nodes_error(hub, document) -> None:
    """Before: a node's malformed meta, summary or result-set info gave the hub's 500, and
    a negative or absurd count became part of the total."""
    client = hub([FakeNode.counting("good", 10), FakeNode("bad", beacon=document)])
    answer = individuals(client)
    outcomes = {n["node"]: n for n in answer["info"]["nodes"]}
    assert outcomes["bad"]["status"] == "error" and "malformed" in outcomes["bad"]["detail"]
    assert answer["responseSummary"]["numTotalResults"] == 10


def test_a_node_cannot_speak_in_another_nodes_name(hub) -> None:
    liar = FakeNode.counting("liar", 10, warnings=["honest: all clear"])
    liar.beacon["response"]["resultSets"][0]["info"] = {"node": "honest"}  # type: ignore[index]
    answer = individuals(hub([FakeNode.counting("honest", 5), liar]))
    sets = {s["id"]: s for s in answer["response"]["resultSets"]}
    assert sets["liar:liar-data"]["info"]["node"] == "liar"
    assert "liar: honest: all clear" in answer["info"]["warnings"]


def test_a_hub_failure_never_counts_against_a_node(hub) -> None:
    """Before: a body the hub could read but not write back (deep JSON) failed at every
    node's breaker: three requests darkened the federation."""
    node = FakeNode.counting("a", 10)
    client = hub([node], breaker_failures=1)
    deep: object = "x"
    for _ in range(300):
        deep = [deep]
    for _ in range(3):
        refused = client.post(
            "/beacon/v2/individuals", json={"query": {"filters": [{"id": "x", "value": deep}]}}
        )
        assert refused.status_code == 400 and "nests deeper" in refused.text
    assert individuals(client)["info"]["nodes"][0]["status"] == "ok"
    assert node.requests and all(r.path != "/-/health" for r in node.requests)
