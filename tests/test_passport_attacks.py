"""A corpus of forged, stale, misdirected and malformed credentials. Each one asks for the
records of the controlled dataset; each must be refused with 401 or 403 and leak nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from genofed.config import DatasetPolicy, load_config, save_config
from genofed.governance import keys
from genofed.governance.keys import SigningKey
from genofed.node.app import create_app
from tests.governance import BROKER, GovernedNode, build_governed_node

SECRETS = ('"S1"', '"S2"', "HP:0", "ICD10:", "16050075")  # what a leak of the records would show


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory) -> GovernedNode:
    return build_governed_node(tmp_path_factory.mktemp("attacks"), differencing_k=1)


@pytest.fixture(scope="module")
def client(gov: GovernedNode) -> Iterator[TestClient]:
    with TestClient(create_app(gov.node.root)) as test_client:
        yield test_client


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def signed(key: SigningKey, payload: dict[str, Any], **header: Any) -> str:
    from joserfc import jwt

    return jwt.encode({"alg": "ES256", "kid": key.kid, **header}, payload, key.key)


def passport_claims(gov: GovernedNode, visas: list[str], **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    payload = {
        "iss": BROKER,
        "sub": "mallory",
        "iat": now,
        "exp": now + 600,
        "ga4gh_passport_v1": visas,
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def grant(gov: GovernedNode, dataset: str = "ctrl", **kwargs: Any) -> str:
    """Mallory's grant: issued by the node's DAC, or (with ``kwargs``) signed with its key
    but altered the way an attacker would."""
    if not kwargs:
        return gov.issue_grant("mallory", dataset)
    kwargs.setdefault("by", "dac")
    return keys.sign_visa(
        gov.dac, "mallory", "ControlledAccessGrants", gov.grant(dataset), **kwargs
    )


def visa_claims(gov: GovernedNode, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    body = {
        "type": "ControlledAccessGrants",
        "asserted": now,
        "value": gov.grant("ctrl"),
        "source": "https://dac.test",
        "by": "dac",
    }
    body.update(changes.pop("visa", {}))
    payload = {
        "iss": gov.dac.issuer,
        "sub": "mallory",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,  # the node's own visas must be revocable, so need a jti
        "ga4gh_visa_v1": body,
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def pp(gov: GovernedNode, visas: list[str], key: SigningKey | None = None, **changes: Any) -> str:
    return signed(
        key or gov.broker, passport_claims(gov, visas, **changes), typ="vnd.ga4gh.passport+jwt"
    )


def alg_none(gov: GovernedNode) -> str:
    header = b64({"alg": "none", "typ": "vnd.ga4gh.passport+jwt"})
    return f"{header}.{b64(passport_claims(gov, [grant(gov)]))}."


def hs256_with_public_key(gov: GovernedNode) -> str:
    head = b64({"alg": "HS256", "kid": gov.broker.kid, "typ": "vnd.ga4gh.passport+jwt"})
    body = b64(passport_claims(gov, [grant(gov)]))
    secret = json.dumps(gov.broker.jwks()["keys"][0]).encode()
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def tampered(gov: GovernedNode) -> str:
    real = pp(gov, [grant(gov, "reg")])
    head, body, sig = real.split(".")
    payload = claims(real)
    payload["ga4gh_passport_v1"] = [grant(gov)]
    return f"{head}.{b64(payload)}.{sig}"


def kid_spoof(gov: GovernedNode) -> str:
    from joserfc import jwt

    header = {"alg": "ES256", "kid": gov.broker.kid, "typ": "vnd.ga4gh.passport+jwt"}
    return jwt.encode(header, passport_claims(gov, [grant(gov)]), gov.rogue.key)


def jku(gov: GovernedNode) -> str:
    return signed(
        gov.rogue,
        passport_claims(gov, [grant(gov)]),
        typ="vnd.ga4gh.passport+jwt",
        jku="https://evil.test/jwks.json",
    )


def visa_signed_by(gov: GovernedNode, key: SigningKey, **changes: Any) -> str:
    payload = visa_claims(gov, **changes)
    payload["iss"] = key.issuer
    return signed(key, payload)


def with_conditions(gov: GovernedNode, conditions: Any) -> str:
    return signed(gov.dac, visa_claims(gov, visa={"conditions": conditions}))


def revoked_grant(gov: GovernedNode) -> str:
    """A real DAC approval, then revoked: the Passport that worked before is replayed."""
    from genofed.governance.duo import ResearchPurpose
    from genofed.node.runtime import NodeRuntime

    dac = NodeRuntime(gov.node.root).gate.dac
    app = dac.create("mallory", BROKER, "ctrl", "Replay", ResearchPurpose(category="general"))
    dac.submit(app["id"], ("mallory", BROKER))  # no consent codes recorded: a reviewer decides
    dac.decide(app["id"], "reviewer", "approve", None)
    passport = pp(gov, [dac.visa(app["id"], ("mallory", BROKER))])
    dac.revoke(app["id"], "reviewer", "replay test")
    return passport


CASES: dict[str, Callable[[GovernedNode], dict[str, Any]]] = {
    "replay after revocation": lambda g: {"bearer": revoked_grant(g)},
    "alg none": lambda g: {"bearer": alg_none(g)},
    "HS256 signed with the public key": lambda g: {"bearer": hs256_with_public_key(g)},
    "expired Passport": lambda g: {
        "bearer": pp(g, [grant(g)], exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    },
    "Passport issued in the future": lambda g: {
        "bearer": pp(g, [grant(g)], iat=int(time.time()) + 3600)
    },
    "Passport without exp": lambda g: {"bearer": pp(g, [grant(g)], exp=None)},
    "untrusted issuer": lambda g: {
        "bearer": pp(
            g,
            [grant(g)],
            key=keys.create_key(Path(g.node.root.parent / "evil.json"), "https://evil.test"),
            iss="https://evil.test",
        )
    },
    "trusted issuer name, unknown key and kid": lambda g: {
        "bearer": pp(g, [grant(g)], key=g.rogue)
    },
    "rogue key under the broker's kid": lambda g: {"bearer": kid_spoof(g)},
    "jku not on the allow-list": lambda g: {"bearer": jku(g)},
    "tampered payload": lambda g: {"bearer": tampered(g)},
    "Passport for another audience": lambda g: {
        "bearer": pp(g, [grant(g)], aud="https://other-node.test")
    },
    "visa for another dataset": lambda g: {"bearer": pp(g, [grant(g, "reg")])},
    "grant not by a DAC": lambda g: {"bearer": pp(g, [grant(g, by="self")])},
    "expired visa": lambda g: {
        "bearer": pp(
            g,
            [signed(g.dac, visa_claims(g, exp=int(time.time()) - 60, iat=int(time.time()) - 3600))],
        )
    },
    "visa issued in the future": lambda g: {
        "bearer": pp(g, [signed(g.dac, visa_claims(g, iat=int(time.time()) + 3600))])
    },
    "visa asserted in the future": lambda g: {
        "bearer": pp(g, [signed(g.dac, visa_claims(g, visa={"asserted": int(time.time()) + 3600}))])
    },
    "visa signed by an untrusted key": lambda g: {"bearer": pp(g, [visa_signed_by(g, g.rogue)])},
    "visa of another subject": lambda g: {
        "bearer": pp(g, [signed(g.dac, visa_claims(g, sub="alice"))])
    },
    "over-long URL claim": lambda g: {
        "bearer": pp(
            g, [signed(g.dac, visa_claims(g, visa={"source": "https://x.test/" + "a" * 300}))]
        )
    },
    "unmet conditions": lambda g: {
        "bearer": pp(
            g,
            [
                with_conditions(
                    g, [[{"type": "AffiliationAndRole", "value": "const:faculty@uni.test"}]]
                )
            ],
        )
    },
    "conditions with an unknown prefix": lambda g: {
        "bearer": pp(
            g, [with_conditions(g, [[{"type": "AffiliationAndRole", "value": "regex:.*"}]])]
        )
    },
    "nested conditions": lambda g: {
        "bearer": pp(
            g, [with_conditions(g, [[{"type": "AffiliationAndRole", "conditions": "const:x"}]])]
        )
    },
    "node's own visa without a jti (cannot be revoked)": lambda g: {
        "bearer": pp(g, [signed(g.dac, visa_claims(g, jti=None))])
    },
    "custom visa type": lambda g: {
        "bearer": pp(g, [signed(g.dac, visa_claims(g, visa={"type": "controlledaccessgrants"}))])
    },
    "visa missing required claims": lambda g: {
        "bearer": pp(g, [signed(g.dac, visa_claims(g, visa={"source": None}))])
    },
    "registered researcher without a grant": lambda g: {
        "bearer": g.passport("mallory", bona_fide=True)
    },
    "not a JWT": lambda g: {"bearer": "definitely-not-a-token"},
    "two-part token": lambda g: {"bearer": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0"},
    "oversized token": lambda g: {"bearer": "a" * 70_000 + ".b.c"},
    "Basic instead of Bearer": lambda g: {"authorization": "Basic bWFsbG9yeTpwYXNz"},
    "ID token without visas, no broker to exchange it": lambda g: {
        "bearer": signed(
            g.broker,
            {
                "iss": BROKER,
                "sub": "mallory",
                "iat": int(time.time()),
                "exp": int(time.time()) + 600,
            },
            typ="JWT",
        )
    },
    "passports member is not a list": lambda g: {"passports": "eyJ.eyJ.sig"},
    "forged Passport in the body": lambda g: {"passports": [alg_none(g)]},
}


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", sorted(CASES))
def test_attack_is_refused_and_leaks_nothing(
    case: str, gov: GovernedNode, client: TestClient
) -> None:
    attack = CASES[case](gov)
    params = {"datasets": "ctrl", "requestedGranularity": "record"}
    headers = {}
    if "bearer" in attack:
        headers["Authorization"] = f"Bearer {attack['bearer']}"
    if "authorization" in attack:
        headers["Authorization"] = attack["authorization"]
    if "passports" in attack:
        body = {
            "query": {
                "requestParameters": {"datasets": {"datasetIds": ["ctrl"]}},
                "requestedGranularity": "record",
            },
            "passports": attack["passports"],
        }
        response = client.post("/beacon/v2/individuals", json=body, headers=headers)
    else:
        response = client.get("/beacon/v2/individuals", params=params, headers=headers)
    assert response.status_code in (401, 403), (case, response.text[:300])
    text = response.text
    for secret in SECRETS:
        assert secret not in text, (case, secret)
    token = attack.get("bearer")
    if token and len(token) > 20:
        assert token[-16:] not in text  # the error never echoes the credential


def test_the_same_grant_done_right_is_accepted(gov: GovernedNode, client: TestClient) -> None:
    """The control: without the flaw, the corpus's credential opens the dataset."""
    response = client.get(
        "/beacon/v2/individuals",
        params={"datasets": "ctrl", "requestedGranularity": "record"},
        headers={"Authorization": f"Bearer {pp(gov, [grant(gov)])}"},
    )
    assert response.status_code == 200
    assert response.json()["meta"]["returnedGranularity"] == "record"
    assert "S1" in response.text


def test_conditions_that_are_met_open_the_dataset(gov: GovernedNode) -> None:
    """An external DAC's grant (a value the operator lists for the dataset) with
    conditions: honoured when the holder's other visas meet them."""
    config = load_config(gov.node.config_path)
    config.datasets["ctrl"] = DatasetPolicy(grant_values=["https://external-dac.test/ctrl"])
    save_config(config, gov.node.config_path)
    affiliation = keys.sign_visa(
        gov.broker, "mallory", "AffiliationAndRole", "faculty@uni.test", by="system"
    )
    conditions = [
        [{"type": "AffiliationAndRole", "value": "pattern:faculty@*", "by": "const:system"}]
    ]
    conditional = keys.sign_visa(
        gov.broker,
        "mallory",
        "ControlledAccessGrants",
        "https://external-dac.test/ctrl",
        by="dac",
        conditions=conditions,
    )
    client = TestClient(create_app(gov.node.root))
    response = client.get(
        "/beacon/v2/individuals",
        params={"datasets": "ctrl", "requestedGranularity": "record"},
        headers={"Authorization": f"Bearer {pp(gov, [affiliation, conditional])}"},
    )
    assert (
        response.status_code == 200 and response.json()["meta"]["returnedGranularity"] == "record"
    )


def test_linked_identities_join_visas_of_another_subject(
    gov: GovernedNode, client: TestClient
) -> None:
    link = keys.sign_visa(
        gov.broker, "mallory", "LinkedIdentities", f"alice,{BROKER.replace(':', '%3A')}"
    )
    other = gov.issue_grant("alice", "ctrl")  # the DAC granted (alice, the broker)
    response = client.get(
        "/beacon/v2/individuals",
        params={"datasets": "ctrl", "requestedGranularity": "record"},
        headers={"Authorization": f"Bearer {pp(gov, [link, other])}"},
    )
    assert (
        response.status_code == 200 and response.json()["meta"]["returnedGranularity"] == "record"
    )
