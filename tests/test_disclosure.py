"""Disclosure control with the node's defaults: safe counts, the public allele floor,
query budgets and the differencing guard, through the real app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from genofed.config import Disclosure, load_config, save_config
from genofed.governance.disclosure import DifferencingGuard, safe_count
from genofed.node.app import create_app
from tests.governance import GovernedNode, build_governed_node

FEMALE = "NCIT:C16576"


@pytest.mark.parametrize(
    ("n", "value", "precision"),
    [
        (0, 0, "exact"),
        (1, 5, "imprecise"),
        (4, 5, "imprecise"),
        (5, 5, "rounded"),
        (7, 5, "rounded"),
        (8, 10, "rounded"),
        (12, 10, "rounded"),
        (13, 15, "rounded"),
    ],
)
def test_safe_counts(n: int, value: int, precision: str) -> None:
    count = safe_count(n, Disclosure())
    assert (count.value, count.precision) == (value, precision)


def test_differencing_guard_on_sets(tmp_path) -> None:
    guard = DifferencingGuard(tmp_path / "differencing.sqlite", k=3)
    everyone = [f"P{i}" for i in range(20)]
    assert guard.allows("eve", "d", everyone, 20)
    assert not guard.allows("eve", "d", everyone[:-1], 20)  # complement of one person
    assert guard.allows("eve", "d", everyone[:10], 20)
    assert not guard.allows("eve", "d", everyone[:12], 20)  # differs from [:10] by two
    assert guard.allows("eve", "d", everyone[:13], 20)  # three apart from [:10]: allowed
    assert not guard.allows("bob", "d", everyone[:12], 20)  # the people's history, anyone's
    assert guard.allows("bob", "other", everyone[:12], 20)  # another set of people
    # A second worker process on the same node shares the history.
    other_worker = DifferencingGuard(tmp_path / "differencing.sqlite", k=3)
    assert not other_worker.allows("eve", "d", everyone[:11], 20)
    # The same people again are answered, and remembered once, as the latest answer.
    remembered = sum(n for _, d, n in guard.status() if d == "d")
    assert guard.allows("mallory", "d", list(reversed(everyone[:10])), 20)
    assert sum(n for _, d, n in guard.status() if d == "d") == remembered
    assert ("mallory", "d", 1) in guard.status()
    assert not guard.allows("eve", "d", everyone[:9], 20)  # still one apart from [:10]


def passport_header(gov: GovernedNode, sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {gov.passport(sub, bona_fide=True)}"}


def individuals(client: TestClient, headers: dict[str, str], filters: list[Any]) -> dict[str, Any]:
    body = {
        "query": {
            "requestedGranularity": "count",
            "filters": filters,
            "requestParameters": {"datasets": {"datasetIds": ["open"]}},
        }
    }
    response = client.post("/beacon/v2/individuals", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def gov(tmp_path) -> GovernedNode:
    return build_governed_node(tmp_path, differencing_k=2)


@pytest.fixture
def client(gov: GovernedNode) -> Iterator[TestClient]:
    with TestClient(create_app(gov.node.root)) as test_client:
        yield test_client


def test_an_answer_about_fewer_than_min_count_people_is_withheld(gov, client) -> None:
    headers = passport_header(gov, "reg-1")
    seizure = [{"id": "HP:0001250"}]  # exactly one person (S3)
    nobody = [{"id": "HP:0001250"}, {"id": "age", "operator": ">", "value": "P150Y"}]
    first = individuals(client, headers, seizure)
    assert first["meta"]["returnedGranularity"] == "boolean"
    assert first["responseSummary"] == {"exists": False}  # one, or none: not told apart
    assert "fewer than 5 match (perhaps none)" in " ".join(first["info"]["warnings"])
    assert individuals(client, headers, nobody)["responseSummary"] == first["responseSummary"]
    everyone = individuals(client, headers, [])  # six people: a rounded count
    assert everyone["responseSummary"]["numTotalResults"] == 5
    assert everyone["responseSummary"]["countPrecision"] == "rounded"
    for _ in range(3):
        assert individuals(client, headers, [])["responseSummary"] == everyone["responseSummary"]


@pytest.fixture
def small_groups(tmp_path) -> Iterator[tuple[GovernedNode, TestClient]]:
    """Groups of two count (min_count 2), so that the differencing guard is what stops
    subtracting one answer from another in a six-person dataset."""
    gov = build_governed_node(tmp_path, differencing_k=2)
    config = load_config(gov.node.config_path)
    config.disclosure.min_count = 2
    save_config(config, gov.node.config_path)
    with TestClient(create_app(gov.node.root)) as test_client:
        yield gov, test_client


def test_differencing_with_overlapping_filters_is_refused(small_groups) -> None:
    gov, client = small_groups
    headers = passport_header(gov, "reg-2")
    female = individuals(client, headers, [{"id": FEMALE}])  # S1 S3 S5
    assert "numTotalResults" in female["responseSummary"]
    older = [{"id": FEMALE}, {"id": "age", "operator": ">=", "value": "P70Y"}]  # S1 S5
    withheld = individuals(client, headers, older)
    assert withheld["meta"]["returnedGranularity"] == "boolean"
    assert "numTotalResults" not in withheld["responseSummary"]
    assert "count withheld" in " ".join(withheld["info"]["warnings"])
    # The complement route: everyone but one person.
    over_40 = individuals(client, headers, [{"id": "age", "operator": ">", "value": "P40Y"}])
    assert "numTotalResults" not in over_40["responseSummary"]  # 5 of 6: complement is S4
    # Another researcher gains nothing: the history is the dataset's people's, not a caller's.
    other = individuals(client, passport_header(gov, "reg-3"), older)
    assert "numTotalResults" not in other["responseSummary"]


def test_public_allele_queries_hide_rare_alleles(gov, client) -> None:
    params = {"referenceName": "22", "start": 16050074, "alternateBases": "G", "datasets": "open"}
    anonymous = client.get("/beacon/v2/g_variants", params=params).json()
    assert anonymous["responseSummary"]["exists"] is False  # AC 4 < the floor of 5
    registered = client.get(
        "/beacon/v2/g_variants", params=params, headers=passport_header(gov, "reg-4")
    ).json()
    assert registered["responseSummary"]["exists"] is True
    config = load_config(gov.node.config_path)
    config.disclosure.public_min_allele_count = 1
    save_config(config, gov.node.config_path)
    with TestClient(create_app(gov.node.root)) as relaxed:
        assert relaxed.get("/beacon/v2/g_variants", params=params).json()["responseSummary"][
            "exists"
        ]


def test_budget_runs_out_per_caller(tmp_path) -> None:
    gov = build_governed_node(tmp_path, budget=3)
    with TestClient(create_app(gov.node.root)) as client:
        codes = [client.get("/beacon/v2/individuals").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = client.get("/beacon/v2/individuals")
        assert int(refused.headers["Retry-After"]) > 0
        assert "budget of 3 queries" in refused.json()["error"]["errorMessage"]
        headers = passport_header(gov, "someone-else")
        assert client.get("/beacon/v2/individuals", headers=headers).status_code == 200
    # The ledger is on disk: a restarted node (or another worker) keeps counting.
    with TestClient(create_app(gov.node.root)) as restarted:
        assert restarted.get("/beacon/v2/individuals").status_code == 429


def test_no_single_carrier_decides_a_public_allele_answer(gov, client) -> None:
    """chr22:16050075 A>G: S1 0|1, S3 1|1, S6 0|1 (AC 4). With a floor of 3, S3 alone
    lifts it over (without S3: AC 2), so S3 is left out and the allele is not shown."""
    config = load_config(gov.node.config_path)
    config.disclosure.public_min_allele_count = 3
    save_config(config, gov.node.config_path)
    params = {"referenceName": "22", "start": 16050074, "alternateBases": "G", "datasets": "open"}
    with TestClient(create_app(gov.node.root)) as guarded:
        assert (
            guarded.get("/beacon/v2/g_variants", params=params).json()["responseSummary"]["exists"]
            is False
        )
        guard = guarded.app.state.runtime.gate.release.alleles  # type: ignore[attr-defined]
        assert guard.left_out("open") == {"S3"}
        # Researchers who may see counts are not affected.
        registered = guarded.get(
            "/beacon/v2/g_variants", params=params, headers=passport_header(gov, "reg-5")
        ).json()
        assert registered["responseSummary"]["exists"] is True
    config.disclosure.public_min_allele_count = 2  # without S3: AC 2, no one else pivotal
    save_config(config, gov.node.config_path)
    with TestClient(create_app(gov.node.root)) as relaxed:
        assert (
            relaxed.get("/beacon/v2/g_variants", params=params).json()["responseSummary"]["exists"]
            is False
        )  # S1 and S6 each hold it at 2: each is pivotal in turn


def test_a_differencing_file_of_an_earlier_release_is_upgraded_in_place(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "differencing.sqlite"
    old = sqlite3.connect(path)  # the table as releases before 0.1 wrote it: no day
    old.executescript(
        "CREATE TABLE answered (seq INTEGER PRIMARY KEY AUTOINCREMENT, caller TEXT, "
        "dataset TEXT, ids BLOB);"
    )
    everyone = [f"P{i}" for i in range(20)]
    earlier = DifferencingGuard._ids(everyone[:5]).tobytes()  # an answer it gave then
    old.execute("INSERT INTO answered (caller, dataset, ids) VALUES ('eve', 'd', ?)", [earlier])
    old.commit()
    old.close()
    guard = DifferencingGuard(path, k=3)
    assert not guard.allows("eve", "d", everyone[:6], 20)  # one apart from the old answer
    assert guard.allows("eve", "d", everyone[:10], 20)
    assert not guard.allows("eve", "d", everyone[:12], 20)  # still compared with the earlier
    assert guard.status() == [("eve", "d", 2)]
