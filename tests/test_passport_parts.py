"""Pieces of the clearinghouse on their own: pattern matching and conditions as the
Passport specification words them, and issuer keys fetched, cached and rotated over HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from genofed import CredentialError, VisaConditionError
from genofed import devbroker as broker
from genofed.config import TrustedIssuer
from genofed.governance import keys
from genofed.governance.conditions import (
    check_conditions,
    conditions_met,
    pattern_matches,
)
from genofed.governance.keys import REFRESH_INTERVAL, KeyRing
from genofed.governance.passports import Clearinghouse


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("faculty@*", "faculty@uni.example", True),
        ("faculty@*", "Faculty@uni.example", False),  # case-sensitive
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("*", "", True),
        ("a.c", "abc", False),  # '.' is not special
        ("https://example?.org", "https://example1.org", True),
        ("x*y*z", "x--y--z", True),
        ("x*y*z", "x--y--", False),
    ],
)
def test_pattern_matching(pattern: str, text: str, expected: bool) -> None:
    assert pattern_matches(pattern, text) is expected


def test_split_pattern_example_from_the_specification() -> None:
    value = (
        "001,https::%2F%2Fexample1.org;123,https::%2F%2Fexample2.org;456,https::%2F%2Fexample3.org"
    )
    visas = [{"type": "LinkedIdentities", "value": value, "source": "https://s.example"}]
    ok = check_conditions(
        [[{"type": "LinkedIdentities", "value": "split_pattern:123,https::%2F%2Fexample?.org"}]]
    )
    no = check_conditions([[{"type": "LinkedIdentities", "value": "split_pattern:999,*"}]])
    assert conditions_met(ok, visas) and not conditions_met(no, visas)


def test_one_clause_must_match_one_visa() -> None:
    visas = [
        {"type": "AffiliationAndRole", "value": "faculty@a.example", "by": "self"},
        {"type": "AffiliationAndRole", "value": "student@b.example", "by": "so"},
    ]
    same_visa = check_conditions(
        [[{"type": "AffiliationAndRole", "value": "pattern:faculty@*", "by": "const:so"}]]
    )
    assert not conditions_met(same_visa, visas)  # the two claims match two different visas
    either = check_conditions(
        [
            [{"type": "AffiliationAndRole", "value": "pattern:faculty@*", "by": "const:so"}],
            [{"type": "AffiliationAndRole", "value": "pattern:student@*"}],
        ]
    )
    assert conditions_met(either, visas)
    conditional = [{**visas[1], "conditions": [[{"type": "X", "value": "const:y"}]]}]
    assert not conditions_met(either[1:], conditional)  # visas with conditions never count


@pytest.mark.parametrize(
    "bad",
    [
        [],
        [[]],
        [{"type": "A"}],
        [[{"value": "const:x"}]],
        [[{"type": "A"}]],
        [[{"type": "A", "value": "regex:x"}]],
        [[{"type": "A", "asserted": "const:1"}]],
        [[{"type": "A", "conditions": "const:x"}]],
        [[{"type": "A", "value": 3}]],
    ],
)
def test_malformed_conditions_are_refused(bad) -> None:
    with pytest.raises(VisaConditionError):
        check_conditions(bad)


class _Counting(SimpleHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).hits += 1
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def jwks_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    handler = partial(_Counting, directory=str(tmp_path))
    _Counting.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", tmp_path
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_keys_are_fetched_cached_and_rotated(jwks_server, tmp_path: Path) -> None:
    base, folder = jwks_server
    old = keys.create_key(tmp_path / "old.json", "https://idp.example")
    new = keys.create_key(tmp_path / "new.json", "https://idp.example")
    (folder / "jwks.json").write_text(json.dumps(old.jwks()))
    issuer = TrustedIssuer(issuer="https://idp.example", jwks_url=f"{base}/jwks.json")
    now = [1000.0]
    with httpx.Client() as client:
        ring = KeyRing([issuer], tmp_path, client, clock=lambda: now[0])
        house = Clearinghouse(ring, ring, audience=None, leeway=30)
        assert house.passport(broker.passport(old, "u", [])).sub == "u"
        assert house.passport(broker.passport(old, "v", [])).sub == "v"
        assert _Counting.hits == 1  # cached
        # The issuer rotates its key; a token with the new kid triggers one re-fetch.
        (folder / "jwks.json").write_text(json.dumps(new.jwks()))
        now[0] += REFRESH_INTERVAL  # the refresh interval has passed
        assert house.passport(broker.passport(new, "w", [])).sub == "w"
        assert _Counting.hits == 2
        # Made-up kids within the interval do not make the node fetch again.
        rogue = keys.create_key(tmp_path / "rogue.json", "https://idp.example")
        for i in range(5):
            with pytest.raises(CredentialError, match="kid"):
                house.passport(broker.passport(rogue, f"x{i}", []))
        assert _Counting.hits == 2


def test_an_allow_listed_jku_is_used(jwks_server, tmp_path: Path) -> None:
    base, folder = jwks_server
    key = keys.create_key(tmp_path / "k.json", "https://idp.example")
    (folder / "other.json").write_text(json.dumps(key.jwks()))
    issuer = TrustedIssuer(
        issuer="https://idp.example",
        jwks={"keys": []},
        jku_allowed=[f"{base}/other.json"],
    )
    now = int(time.time())
    claims = {
        "iss": "https://idp.example",
        "sub": "u",
        "iat": now,
        "exp": now + 60,
        "ga4gh_passport_v1": [],
    }
    from joserfc import jwt

    token = jwt.encode(
        {"alg": "ES256", "kid": key.kid, "jku": f"{base}/other.json"}, claims, key.key
    )
    with httpx.Client() as client:
        ring = KeyRing([issuer], tmp_path, client)
        assert Clearinghouse(ring, ring, audience=None, leeway=30).passport(token).sub == "u"
