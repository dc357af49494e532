"""What the command line does with bad or doubtful input: ids that would escape the node
directory, malformed clinical values, datasets and codes that do not exist, paths that
are not nodes, missing files. Each refusal is one readable line with what to do (never a
traceback unless --debug); what is legal but probably a mistake is a warning."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SMALL_CLINICAL, SMALL_VCF
from tests.live_server import GENOFED


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GENOFED, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.fixture
def node(tmp_path: Path) -> Path:
    root = tmp_path / "node"
    assert run("node", "init", str(root), "--name", "Test").returncode == 0
    return root


@pytest.mark.parametrize("dataset", ["../../escaped", "my cohort/1", "a:b", ".hidden", ""])
def test_dataset_ids_that_are_not_plain_names_are_refused(node: Path, dataset: str) -> None:
    before = set(node.parent.rglob("*"))
    result = run("node", "ingest", str(node), "--dataset", dataset, "--vcf", str(SMALL_VCF))
    refused(result, "dataset id", "letters, digits")
    assert set(node.parent.rglob("*")) == before  # nothing written anywhere


def _clinical(tmp_path: Path, replace: tuple[str, str]) -> Path:
    text = SMALL_CLINICAL.read_text().replace(*replace, 1)
    path = tmp_path / "clinical.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("replace", "needles"),
    [
        (("S2,male", "S2,mal"), ["sex 'mal'", "line 3"]),
        (("HP:0000822", "HP:00008222"), ["HP:00008222", "well-formed HP term"]),
        (("ICD10:E11.9", "ICD-10:E11.9"), ["ICD-10", "ICD10:"]),
        (("ICD10:I10", "ICD10:10"), ["not a well-formed ICD10 term"]),
    ],
    ids=["sex", "hpo-digits", "icd-prefix", "icd-shape"],
)
def test_malformed_clinical_values_are_refused(
    node: Path, tmp_path: Path, replace: tuple[str, str], needles: list[str]
) -> None:
    clinical = _clinical(tmp_path, replace)
    result = run(
        "node", "ingest", str(node), "--dataset", "d", "--vcf", str(SMALL_VCF),
        "--individuals", str(clinical), "--tier", "public",
    )  # fmt: skip
    refused(result, *needles)
    assert not (node / "datasets" / "d").exists()


def test_what_is_legal_but_probably_a_mistake_is_warned(node: Path, tmp_path: Path) -> None:
    lines = SMALL_CLINICAL.read_text().splitlines()
    clinical = tmp_path / "clinical.csv"
    clinical.write_text("\n".join(line for line in lines if not line.startswith("S4,")) + "\n")
    result = run(
        "node", "ingest", str(node), "--dataset", "d", "--vcf", str(SMALL_VCF),
        "--individuals", str(clinical),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 of 6 VCF samples have no row" in result.stderr and "S4" in result.stderr
    assert "has no tier, so it is served to no one" in result.stderr
    with_tier = run(
        "node", "ingest", str(node), "--dataset", "d", "--vcf", str(SMALL_VCF), "--tier", "public"
    )
    assert with_tier.returncode == 0 and "warning" not in with_tier.stderr


def test_consent_for_what_does_not_exist_is_refused(node: Path) -> None:
    ingest = run("node", "ingest", str(node), "--dataset", "d", "--vcf", str(SMALL_VCF))
    assert ingest.returncode == 0, ingest.stderr
    refused(run("dac", "consent", str(node), "nosuch", "--duo", "DUO:0000042"), "no dataset")
    refused(run("dac", "consent", str(node), "d", "--duo", "DUO:9999999"), "DUO:9999999")
    refused(run("dac", "consent", str(node), "d", "--duo", "DUO:0000007"), "--disease")
    ok = run("dac", "consent", str(node), "d", "--duo", "DUO:0000007", "--disease", "ICD10:E11")
    assert ok.returncode == 0, ok.stderr
    assert "DUO:0000007" in (node / "node.yaml").read_text()


@pytest.mark.parametrize(
    "args",
    [("audit", "verify"), ("audit", "head"), ("dac", "list"), ("node", "check")],
    ids=lambda a: " ".join(a),
)
def test_a_path_that_is_not_a_node_fails_loudly(tmp_path: Path, args: tuple[str, ...]) -> None:
    refused(run(*args, str(tmp_path / "nonode")), "is not a genofed node", "genofed node init")


@pytest.mark.parametrize(
    "args",
    [
        ("passport", "jwks", "missing.json"),
        ("passport", "issue", "missing.json", "--sub", "alice"),
        ("passport", "serve", "missing.json", "--port", "1"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_a_missing_key_file_is_one_readable_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run(*args[:2], str(tmp_path / args[2]), *args[3:])
    refused(result, "missing.json", "no such file", "--debug")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run("--debug", "passport", "jwks", str(tmp_path / "missing.json"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_an_empty_jwks_file_says_what_a_jwks_is(node: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("")
    args = ("node", "trust", str(node), "--issuer", "https://id.example", "--jwks-file")
    refused(run(*args, str(empty)), "holds no keys", '{"keys": [...]}')
    empty.write_text(json.dumps({"keys": []}))
    refused(run(*args, str(empty)), "holds no keys")


def test_version() -> None:
    from genofed import __version__

    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"genofed {__version__}"


def test_printed_commands_are_not_wrapped(tmp_path: Path) -> None:
    # Without a terminal rich would break lines at 80 columns, inside the command to paste.
    deep = tmp_path / ("a-long-folder-name-" * 4) / "nonode"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run(
        [GENOFED, "audit", "head", str(deep)], capture_output=True, text=True, env=env
    )
    assert f"genofed node init {deep} --name NAME" in result.stderr


def test_a_visa_that_is_not_a_jwt_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "broker.json"
    assert run("passport", "keygen", str(key), "--issuer", "https://b.test").returncode == 0
    result = run("passport", "issue", str(key), "--sub", "a", "--visa", "not-a-visa")
    refused(result, "--visa takes the visa's JWT itself")
    assert result.stdout == ""  # no Passport printed
