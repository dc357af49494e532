"""Count-level Data Connect (issue 11): no exact counts, no one person's value, no data
in error messages."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.attacks.conftest import Attacked

TABLE = '"alpha-cohort.individuals"'


def search(attacked: Attacked, query: str, who: str = "registered") -> httpx.Response:
    headers = attacked.registered() if who == "registered" else None
    return httpx.post(
        f"{attacked.node()}/data-connect/search",
        json={"query": query},
        headers=headers,
        timeout=30,
    )


def rows(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.mark.parametrize(
    "query",
    [
        f"SELECT count(*) + 0 AS n FROM {TABLE}",  # exact where count(*) is rounded
        f"SELECT sum(1) AS n FROM {TABLE}",
        f"SELECT -count(*) AS n FROM {TABLE}",
        f"SELECT count(*) * 1.0 AS n FROM {TABLE}",
        f"SELECT sum(CASE WHEN id = 'ALPHA00001' THEN 1 END) AS n FROM {TABLE}",  # presence
        f"SELECT avg(CASE WHEN id = 'ALPHA00001' THEN len(diseases) END) AS v FROM {TABLE}",
        f"SELECT sex, count(*) AS n FROM {TABLE} GROUP BY sex "
        "HAVING sum(CASE WHEN id = 'ALPHA00001' THEN 1 ELSE 0 END) = 1",
        f"SELECT count(*) AS n FROM {TABLE} WHERE id = 'ALPHA00001'",
        f"SELECT count(*) AS n FROM {TABLE} WHERE doc->>'$.id' LIKE 'ALPHA0%'",
        f"SELECT id = 'ALPHA00001' AS me, count(*) AS n FROM {TABLE} GROUP BY 1",
        f"SELECT sum(len(diseases) + 0) AS n FROM {TABLE}",
        f"SELECT count(DISTINCT id) AS n FROM {TABLE}",
    ],
)
def test_count_level_sql_cannot_undo_rounding_or_select_one_person(attacked, query) -> None:
    """Before: each of these answered (exact counts, presence, one person's value)."""
    refused = search(attacked, query)
    assert refused.status_code == 400, (query, refused.text)
    [error] = refused.json()["errors"]
    assert error["code"] == "bad_request" and "only aggregates" in error["detail"]


def test_allowed_aggregates_still_answer_rounded(attacked) -> None:
    answer = rows(search(attacked, f"SELECT sex, count(*) AS n FROM {TABLE} GROUP BY sex"))
    assert {r["sex"] for r in answer} == {"female", "male"}
    assert all(int(r["n"]) % 5 == 0 for r in answer)
    mean = rows(search(attacked, f"SELECT avg(coalesce(len(diseases), 0)) AS m FROM {TABLE}"))
    assert mean[0]["m"] is not None


def test_engine_errors_carry_no_data_values(attacked) -> None:
    """Before: 'Conversion Error: Could not convert string {<a whole document>} ...'."""
    failed = search(attacked, f"SELECT sum(CAST(doc AS INTEGER)) AS n FROM {TABLE}")
    assert failed.status_code == 400
    detail = failed.json()["errors"][0]["detail"]
    assert "ALPHA0" not in detail and "diseases" not in detail
    assert "Conversion Error" in detail  # still says what went wrong


def test_differencing_across_apis_and_callers_is_withheld(attacked) -> None:
    """Before: the Beacon and Data Connect kept separate histories per caller, so a count
    from one and a count from the other, by two identities, isolated one person."""
    people = attacked.people()
    females = [p for p in people if p["sex"] == "female"]
    ages = [p["age"] for p in females]
    alone = next(a for a in ages if ages.count(a) == 1)  # one woman of this age
    beacon = attacked.beacon(
        "/individuals",
        headers=attacked.registered("first-identity"),
        filters="sex.label=female",
        requestedGranularity="count",
    ).json()
    assert "numTotalResults" in beacon["responseSummary"]
    query = (
        f"SELECT count(*) AS n FROM {TABLE} WHERE sex = 'female' "
        f"AND CAST(info->>'$.age.iso8601duration' AS VARCHAR) <> 'P{alone}Y'"
    )
    second = httpx.post(
        f"{attacked.node()}/data-connect/search",
        json={"query": query},
        headers=attacked.registered("second-identity"),
        timeout=30,
    ).json()
    assert second["data"] == [] and "withheld" in second["errors"][0]["detail"]
