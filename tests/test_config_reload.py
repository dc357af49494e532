"""node.yaml edits take effect on the next request of a running node (two workers): the
README's steps `node trust` and `dac consent` work without a restart, and an edit that
does not load leaves the running configuration in force and says so in /-/health."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genofed.config import load_config
from tests.conftest import SMALL_CLINICAL, SMALL_VCF
from tests.live_server import GENOFED, start_node_server

pytestmark = pytest.mark.servers

ISSUER = "https://idp.reload.test"


def run(*args: str) -> str:
    result = subprocess.run(
        [GENOFED, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    root = tmp_path_factory.mktemp("reload")
    node = root / "node"
    run("node", "init", str(node), "--name", "Reload")
    run(
        "node", "ingest", str(node), "--dataset", "cohort", "--vcf", str(SMALL_VCF),
        "--individuals", str(SMALL_CLINICAL), "--tier", "registered",
    )  # fmt: skip
    key = root / "idp-key.json"
    run("passport", "keygen", str(key), "--issuer", ISSUER)
    server, url = start_node_server(node, workers=2)
    try:
        yield node, key, url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _ask(url: str, token: str) -> httpx.Response:
    return httpx.get(
        f"{url}/beacon/v2/individuals",
        params={"requestedGranularity": "count"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_a_trusted_issuer_is_honoured_without_a_restart(served: tuple[Path, Path, str]) -> None:
    node, key, url = served
    token = run("passport", "issue", str(key), "--sub", "alice", "--bona-fide").strip()
    before = _ask(url, token)
    assert before.status_code == 401
    assert "not trusted" in before.json()["error"]["errorMessage"]
    jwks = node.parent / "idp-jwks.json"
    jwks.write_text(run("passport", "jwks", str(key)))
    run("node", "trust", str(node), "--issuer", ISSUER, "--jwks-file", str(jwks))
    for _ in range(4):  # every worker has it in force
        after = _ask(url, token)
        assert after.status_code == 200, after.text
        assert after.json()["responseSummary"]["numTotalResults"] > 0


def test_consent_codes_are_used_by_the_dac_without_a_restart(
    served: tuple[Path, Path, str],
) -> None:
    node, key, url = served
    run("dac", "consent", str(node), "cohort", "--duo", "DUO:0000042")  # general research use
    assert load_config(node / "node.yaml").datasets["cohort"].duo == ["DUO:0000042"]
    jwks = node.parent / "idp-jwks.json"
    if not jwks.exists():
        jwks.write_text(run("passport", "jwks", str(key)))
        run("node", "trust", str(node), "--issuer", ISSUER, "--jwks-file", str(jwks))
    token = run("passport", "issue", str(key), "--sub", "bob", "--bona-fide").strip()
    headers = {"Authorization": f"Bearer {token}"}
    application = {
        "dataset_id": "cohort",
        "title": "Blood pressure and variants",
        "purpose": {"category": "general"},
    }
    created = httpx.post(f"{url}/dac/applications", json=application, headers=headers)
    assert created.status_code == 201, created.text
    app_id = created.json()["id"]
    submitted = httpx.post(f"{url}/dac/applications/{app_id}/submit", headers=headers)
    assert submitted.status_code == 200, submitted.text
    match = submitted.json()["match"]
    assert match["outcome"] == "APPROVE", match  # not ABSTAIN for lack of a DUO code


def test_an_edit_that_does_not_load_keeps_the_running_configuration(
    served: tuple[Path, Path, str],
) -> None:
    node, _, url = served
    path = node / "node.yaml"
    good = path.read_text()
    try:
        path.write_text(good + "\nthis is: [not yaml\n")
        health = httpx.get(f"{url}/-/health").json()
        assert health["status"] == "degraded" and "node.yaml" in health["detail"]
        assert httpx.get(f"{url}/beacon/v2/info").status_code == 200  # still serving
    finally:
        path.write_text(good)
    assert httpx.get(f"{url}/-/health").json() == {"status": "ok"}
