"""Individual disclosure through discovery: one named person's data from anonymous or
registered Beacon queries (issue 11)."""

from __future__ import annotations

import pytest

from tests.attacks.conftest import Attacked


def named_filter(person: str) -> str:
    return f"id={person}"


@pytest.mark.parametrize("who", ["anonymous", "registered"])
def test_a_filter_on_an_identifier_is_refused_below_record_level(attacked: Attacked, who) -> None:
    """Before: ``filters=id=ALPHA00001,HP:...`` answered whether that person has it, and
    a binary search on age gave their exact age in 7 queries."""
    person = attacked.people()[1]["sample_id"]
    headers = attacked.registered() if who == "registered" else None
    for filters in (
        f"id={person}",
        f"id={person},age>=P40Y",
        f"id={person},HP:0001250",
        "id=ALPHA0%",  # enumeration by prefix
    ):
        response = attacked.beacon(
            "/individuals", headers=headers, filters=filters, requestedGranularity="count"
        )
        assert response.status_code == 403, (filters, response.text)
        assert "identifying fields (id)" in response.json()["error"]["errorMessage"]


def test_an_identifier_through_the_hub_gives_nobody_away(attacked: Attacked) -> None:
    person = attacked.people()[1]["sample_id"]
    answer = attacked.beacon("/individuals", base=attacked.hub, filters=f"id={person}").json()
    assert answer["responseSummary"]["exists"] is False  # no node says yes about them
    assert {n["status"] for n in answer["info"]["nodes"]} == {"unauthorised"}
    assert all("record-level access" in n["detail"] for n in answer["info"]["nodes"])


@pytest.mark.parametrize(
    "path", ["/individuals/{id}", "/individuals/{id}/g_variants", "/individuals/{id}/biosamples"]
)
def test_a_question_about_one_named_person_needs_a_grant(attacked: Attacked, path: str) -> None:
    """Before: ``/individuals/ALPHA00001/g_variants?...`` read that person's genotypes
    anonymously, one site at a time."""
    person = attacked.people()[2]["sample_id"]
    url = path.format(id=person)
    where = {"referenceName": "22", "start": 0, "end": 10**8} if "g_variants" in url else {}
    for headers in (None, attacked.registered()):
        refused = attacked.beacon(url, headers=headers, **where)
        assert refused.status_code == 403, refused.text
        assert "needs record-level access" in refused.json()["error"]["errorMessage"]
    granted = attacked.beacon(
        url, headers=attacked.grant_holder("holder-1"), requestedGranularity="record", **where
    )
    assert granted.status_code == 200 and granted.json()["responseSummary"]["exists"]


def test_a_yes_about_fewer_than_min_count_people_is_withheld(attacked: Attacked) -> None:
    """A boolean yes about fewer than k people discloses them: such answers look exactly
    like a match of nobody, and say so."""
    people = attacked.people()
    rare = {}
    for person in people:
        for term in filter(None, person["phenotypes"].split(";")):
            rare.setdefault(term, []).append(person["sample_id"])
    few = next(t for t, who in sorted(rare.items()) if 0 < len(who) < 5)
    answer = attacked.beacon("/individuals", filters=few).json()
    nobody = attacked.beacon("/individuals", filters="HP:0000118,age>P150Y").json()
    assert answer["responseSummary"] == nobody["responseSummary"] == {"exists": False}
    assert "fewer than 5 match (perhaps none)" in " ".join(answer["info"]["warnings"])
    registered = attacked.beacon(
        "/individuals", headers=attacked.registered(), filters=few, requestedGranularity="count"
    ).json()
    assert "numTotalResults" not in registered["responseSummary"]


def test_floors_are_about_the_people_the_filters_leave(attacked: Attacked) -> None:
    """Before: a common variant with sex and exact-age filters told whether the one person
    of that sex and age carries it; the floors were over the whole dataset."""
    people = attacked.people()
    by_group: dict[tuple[str, str], list[str]] = {}
    for person in people:
        by_group.setdefault((person["sex"], person["age"]), []).append(person["sample_id"])
    (sex, age), members = next((k, v) for k, v in sorted(by_group.items()) if len(v) == 1)
    params = {
        "referenceName": "22",
        "start": 0,
        "end": 10**8,
        "filters": f"sex.label={sex},age={'P' + age + 'Y'}",
    }
    for headers in (None, attacked.registered()):
        answer = attacked.beacon("/g_variants", headers=headers, **params).json()
        assert answer["responseSummary"]["exists"] is False, members  # one person: withheld
        assert "of the people your filters leave" in " ".join(answer["info"]["warnings"])
    everyone = attacked.beacon("/g_variants", referenceName="22", start=0, end=10**8).json()
    assert everyone["responseSummary"]["exists"] is True  # common variants are still shown


def test_a_dataset_is_not_listed_by_one_persons_filter(attacked: Attacked) -> None:
    person = attacked.people()[3]["sample_id"]
    refused = attacked.beacon("/datasets", filters=f"id={person}")
    assert refused.status_code == 403


def test_two_groups_a_few_people_apart_are_not_both_answered(attacked: Attacked) -> None:
    """Before: ``sex=female,age>=P43Y`` and ``sex=female,age>P43Y`` were both answered
    (each group is large), so a variant shown for the first and not the second is carried
    by a woman of 43; for an attacker who knows a person's sex and age, that is
    membership. The people a question is about pass the differencing guard like a count."""
    females = [p for p in attacked.people() if p["sex"] == "female"]
    ages = sorted(int(p["age"]) for p in females)
    age = next(a for a in ages if 0 < ages.count(a) < 5 and sum(x > a for x in ages) >= 20)
    region = {"referenceName": "22", "start": 0, "end": 10**8}
    for headers in (None, attacked.registered("differencer")):
        first = attacked.beacon(
            "/g_variants", headers=headers, filters=f"sex.label=female,age>=P{age}Y", **region
        ).json()
        assert first["responseSummary"]["exists"] is True, first["info"]
        second = attacked.beacon(
            "/g_variants", headers=headers, filters=f"sex.label=female,age>P{age}Y", **region
        ).json()
        assert second["responseSummary"]["exists"] is False
        warnings = " ".join(second["info"]["warnings"])
        assert "differ from an earlier query's by fewer than 5 individuals" in warnings
    # the same question again is the same people: answered
    again = attacked.beacon(
        "/g_variants", filters=f"sex.label=female,age>=P{age}Y", **region
    ).json()
    assert again["responseSummary"]["exists"] is True
    # and a yes from /individuals is guarded the same way (one history per dataset)
    alone = attacked.beacon("/individuals", filters=f"sex.label=female,age>P{age}Y").json()
    assert alone["responseSummary"]["exists"] is False
    assert "differ from an earlier query's" in " ".join(alone["info"]["warnings"])
