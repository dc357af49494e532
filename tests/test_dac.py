"""The Data Access Committee: DUO matching, the application lifecycle over the API, visas
that open the dataset, and revocation that closes it again at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet

from genofed import devbroker as broker
from genofed.config import DacReviewer, load_config, save_config
from genofed.governance.duo import ResearchPurpose, match
from genofed.node.app import create_app
from genofed.store.ontology import OntologyIndex
from tests.governance import BROKER, GovernedNode, build_governed_node

SEIZURE, FOCAL_SEIZURE = "HP:0001250", "HP:0007359"  # focal-onset seizure is_a seizure


def purpose(**kwargs: Any) -> ResearchPurpose:
    return ResearchPurpose(**{"category": "disease", "diseases": [FOCAL_SEIZURE], **kwargs})


@pytest.mark.parametrize(
    ("codes", "diseases", "wanted", "outcome"),
    [
        (["DUO:0000042"], [], purpose(category="general", diseases=[]), "APPROVE"),
        (["DUO:0000006"], [], purpose(), "APPROVE"),
        (["DUO:0000006"], [], purpose(category="ancestry", diseases=[]), "DENY"),
        (["DUO:0000007"], [SEIZURE], purpose(), "APPROVE"),  # a descendant of the consent
        (["DUO:0000007"], [FOCAL_SEIZURE], purpose(diseases=[SEIZURE]), "DENY"),  # broader
        (["DUO:0000007"], [SEIZURE], purpose(diseases=["HP:0001627"]), "DENY"),  # heart
        (["DUO:0000011"], [], purpose(category="ancestry", diseases=[]), "APPROVE"),
        (["DUO:0000042", "DUO:0000046"], [], purpose(commercial=True), "DENY"),
        (["DUO:0000042", "DUO:0000046"], [], purpose(), "APPROVE"),
        (["DUO:0000042", "DUO:0000016"], [], purpose(genetic_study=False), "DENY"),
        (["DUO:0000042", "DUO:0000021"], [], purpose(), "ABSTAIN"),  # ethics approval
        (["DUO:0000042", "DUO:0000044"], [], purpose(ancestry_analysis=True), "DENY"),
        (["DUO:0000042", "DUO:9999999"], [], purpose(), "ABSTAIN"),
        ([], [], purpose(), "ABSTAIN"),
    ],
)
def test_duo_matching(codes, diseases, wanted, outcome, ontology: OntologyIndex) -> None:
    result = match(wanted, codes, diseases, ontology.descendants)
    assert result.outcome == outcome
    assert all(c.explanation for c in result.codes)  # every outcome says why


@pytest.fixture
def gov(tmp_path) -> GovernedNode:
    gov = build_governed_node(tmp_path, differencing_k=1)
    config = load_config(gov.node.config_path)
    config.dac_reviewers = [DacReviewer(sub="reviewer-1", iss=BROKER)]
    save_config(config, gov.node.config_path)
    return gov


@pytest.fixture
def client(gov: GovernedNode, ontology: OntologyIndex) -> Iterator[TestClient]:
    with TestClient(create_app(gov.node.root, ontology=ontology)) as test_client:
        yield test_client


def auth(gov: GovernedNode, sub: str, visas: list[str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {broker.passport(gov.broker, sub, visas or [])}"}


def records(client: TestClient, headers: dict[str, str]) -> int:
    return client.get(
        "/beacon/v2/individuals",
        params={"datasets": "ctrl", "requestedGranularity": "record"},
        headers=headers,
    ).status_code


def consent(gov: GovernedNode, codes: list[str], diseases: list[str]) -> None:
    from genofed.config import DatasetPolicy

    config = load_config(gov.node.config_path)
    config.datasets["ctrl"] = DatasetPolicy(duo=codes, duo_diseases=diseases)
    save_config(config, gov.node.config_path)


def app_body(**wanted: Any) -> dict[str, Any]:
    return {
        "dataset_id": "ctrl",
        "title": "Seizure genetics",
        "purpose": purpose(**wanted).model_dump(),
    }


def apply(client: TestClient, gov: GovernedNode, sub: str, **wanted: Any) -> dict[str, Any]:
    response = client.post("/dac/applications", json=app_body(**wanted), headers=auth(gov, sub))
    assert response.status_code == 201, response.text
    return response.json()


def test_matched_application_is_approved_and_its_visa_opens_the_dataset_until_revoked(
    tmp_path, gov: GovernedNode, ontology: OntologyIndex
) -> None:
    consent(gov, ["DUO:0000007"], [SEIZURE])
    with TestClient(create_app(gov.node.root, ontology=ontology)) as client:
        assert records(client, auth(gov, "alice")) == 403
        app = apply(client, gov, "alice")
        assert app["status"] == "draft"
        submitted = client.post(
            f"/dac/applications/{app['id']}/submit", headers=auth(gov, "alice")
        ).json()
        assert submitted["status"] == "approved"
        assert submitted["match"]["outcome"] == "APPROVE"
        visa = client.get(f"/dac/applications/{app['id']}/visa", headers=auth(gov, "alice")).json()[
            "visa"
        ]
        # The visa verifies against the node's published JWKS.
        keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
        body = jwt.decode(visa, keys, algorithms=["ES256"]).claims["ga4gh_visa_v1"]
        assert body["type"] == "ControlledAccessGrants" and body["by"] == "dac"
        with_visa = auth(gov, "alice", [visa])
        assert records(client, with_visa) == 200
        # Someone else cannot use alice's visa: its sub is hers.
        assert records(client, auth(gov, "mallory", [visa])) == 403
        # Revocation by a reviewer takes effect on the very next request.
        assert (
            client.post(
                f"/dac/applications/{app['id']}/revoke",
                json={"note": "misuse"},
                headers=auth(gov, "alice"),
            ).status_code
            == 403
        )
        revoked = client.post(
            f"/dac/applications/{app['id']}/revoke",
            json={"note": "misuse"},
            headers=auth(gov, "reviewer-1"),
        )
        assert revoked.json()["status"] == "revoked"
        assert records(client, with_visa) == 403
        history = client.get(
            f"/dac/applications/{app['id']}", headers=auth(gov, "reviewer-1")
        ).json()["events"]
        assert [e["action"] for e in history] == ["create", "submit", "approve", "revoke"]
        assert history[2]["actor"] == "duo-matcher"
    assert history[3]["actor"] == f"reviewer-1 ({BROKER})"  # the identity is sub and iss


def test_denied_purpose_is_rejected_with_the_reason(gov: GovernedNode, client: TestClient) -> None:
    consent(gov, ["DUO:0000007"], [SEIZURE])
    with TestClient(create_app(gov.node.root)) as fresh:
        app = apply(fresh, gov, "bob", diseases=["HP:0001627"])
        done = fresh.post(f"/dac/applications/{app['id']}/submit", headers=auth(gov, "bob")).json()
    assert done["status"] == "rejected"
    reasons = done["match"]["codes"]
    assert reasons[0]["code"] == "DUO:0000007" and "HP:0001627" in reasons[0]["explanation"]


def test_abstain_goes_to_reviewers_who_return_then_approve(gov: GovernedNode) -> None:
    consent(gov, ["DUO:0000042", "DUO:0000021"], [])
    with TestClient(create_app(gov.node.root)) as client:
        app = apply(client, gov, "carol")
        app_url = f"/dac/applications/{app['id']}"
        assert (
            client.post(f"{app_url}/submit", headers=auth(gov, "carol")).json()["status"]
            == "in_review"
        )
        # Applicants cannot decide their own application.
        assert (
            client.post(
                f"{app_url}/decision", json={"decision": "approve"}, headers=auth(gov, "carol")
            ).status_code
            == 403
        )
        returned = client.post(
            f"{app_url}/decision",
            json={"decision": "return", "note": "attach ethics approval"},
            headers=auth(gov, "reviewer-1"),
        )
        assert returned.json()["status"] == "returned"
        edited = client.put(
            app_url,
            json={"title": "Seizure genetics (ethics ref 2026/17)"},
            headers=auth(gov, "carol"),
        )
        assert edited.status_code == 200
        assert (
            client.post(f"{app_url}/submit", headers=auth(gov, "carol")).json()["status"]
            == "in_review"
        )
        approved = client.post(
            f"{app_url}/decision", json={"decision": "approve"}, headers=auth(gov, "reviewer-1")
        )
        assert approved.json()["status"] == "approved"
        # A decided application cannot be decided again; other people cannot read it.
        again = client.post(
            f"{app_url}/decision", json={"decision": "reject"}, headers=auth(gov, "reviewer-1")
        )
        assert again.status_code == 409 and "not in review" in again.json()["error"]["errorMessage"]
        assert client.get(app_url, headers=auth(gov, "mallory")).status_code == 403
        anonymous = client.post("/dac/applications", json=app_body())
        assert anonymous.status_code == 401


def test_cli_revocation_reaches_a_running_server(gov: GovernedNode) -> None:
    """The operator revokes from the command line; the server's next answer changes."""
    import subprocess
    import sys
    from pathlib import Path

    consent(gov, ["DUO:0000042"], [])
    with TestClient(create_app(gov.node.root)) as client:
        app = apply(client, gov, "dave")
        client.post(f"/dac/applications/{app['id']}/submit", headers=auth(gov, "dave"))
        visa = client.get(f"/dac/applications/{app['id']}/visa", headers=auth(gov, "dave")).json()[
            "visa"
        ]
        assert records(client, auth(gov, "dave", [visa])) == 200
        genofed = str(Path(sys.executable).with_name("genofed"))
        done = subprocess.run(
            [genofed, "dac", "revoke", str(gov.node.root), app["id"], "--reviewer", "operator"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert records(client, auth(gov, "dave", [visa])) == 403


def test_applying_does_not_tell_which_datasets_exist(client: TestClient, gov: GovernedNode) -> None:
    """Before: 404 for a dataset that does not exist, 201 for a controlled one, while the
    Beacon answers 403 for both. After: both are applications (201), alike in shape."""
    body = app_body()
    real = client.post("/dac/applications", json=body, headers=auth(gov, "prober"))
    made_up = client.post(
        "/dac/applications", json={**body, "dataset_id": "no-such-set"}, headers=auth(gov, "prober")
    )
    assert real.status_code == made_up.status_code == 201, made_up.text
    assert set(real.json()) == set(made_up.json())
    assert made_up.json()["dataset_id"] == "no-such-set" and made_up.json()["status"] == "draft"
