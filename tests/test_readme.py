"""The README's "Running a node" steps run as written on a fresh clone: every bash block
of that section, in order, in one shell (the node on a free port instead of 8701), with
the files ``genofed example`` writes. Each answer is checked: Beacon questions are
answered (above the disclosure floor where a count is given) and the SQL returns rows."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from genofed.config import Disclosure
from tests.live_server import GENOFED, free_port, start_node_server, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
END = "@@answer-ends@@"


def section_blocks(title: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def test_running_a_node_steps_run_as_written(tmp_path: Path) -> None:
    blocks = section_blocks("Running a node")
    assert len(blocks) >= 4
    script = "\n".join(blocks).replace("8701", str(free_port()))
    # every curl answer is kept, delimited, and the shell stops at the first failure
    prelude = (
        "set -euo pipefail\n"
        f'curl() {{ local rc=0; command curl -sS "$@" || rc=$?; echo; echo {END}; return $rc; }}\n'
    )
    shell = subprocess.Popen(
        ["bash", "-c", prelude + script],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = shell.communicate(timeout=600)
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
    assert shell.returncode == 0, err[-3000:]
    chunks = [c.strip() for c in out.split(END) if c.strip()]
    assert all(c.startswith("{") for c in chunks), out[:3000]
    answers = [json.loads(c) for c in chunks]
    answers = [a for a in answers if "status" not in a or "meta" in a]  # not the health checks
    floor = Disclosure().min_count
    beacon = [a for a in answers if "responseSummary" in a]
    assert len(beacon) == 5, answers
    for answer in beacon:
        assert answer["responseSummary"]["exists"] is True, answer
        if "numTotalResults" in answer["responseSummary"]:
            assert answer["responseSummary"]["numTotalResults"] >= floor, answer
    assert beacon[-1]["meta"]["returnedGranularity"] == "count"  # with the Passport
    tables = [a for a in answers if "tables" in a]
    assert [t["name"] for t in tables[0]["tables"]].count("cohort.visits") == 1
    searches = [a for a in answers if "data" in a]
    assert len(searches) == 2
    for search in searches:
        assert search["data"] and not search.get("errors"), search
    assert "Audit log intact" in err


def _doc_block(page: str, language: str, index: int = 0) -> str:
    text = (ROOT / "docs" / page).read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)[index]


def _readme_node(tmp_path: Path, *ingest: str) -> Callable[..., str]:
    """The README's node in ``tmp_path``, built by the command line: the example files, the
    node, ``cohort1`` ingested with ``ingest`` options, and the development broker trusted.
    Returns a runner of further ``genofed`` commands there."""

    def genofed(*args: str) -> str:
        done = subprocess.run(
            [GENOFED, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    genofed("example", ".")
    genofed("node", "init", "mynode", "--name", "Example Hospital")
    genofed(
        "node", "ingest", "mynode", "--dataset", "cohort1", "--vcf", "cohort1.vcf.gz",
        "--individuals", "clinical.csv", *ingest,
    )  # fmt: skip
    genofed("passport", "keygen", "broker.json", "--issuer", "https://broker.example.org")
    (tmp_path / "jwks.json").write_text(genofed("passport", "jwks", "broker.json"))
    genofed(
        "node", "trust", "mynode", "--issuer", "https://broker.example.org",
        "--jwks-file", "jwks.json",
    )  # fmt: skip
    return genofed


@pytest.mark.servers
def test_the_dnastack_example_in_the_data_connect_docs_runs(tmp_path: Path) -> None:
    """Before: the example had no Passport (no tables, then a traceback). As written, with
    the README's node: DNAstack's client exchanges the researcher's token at the broker."""
    code = _doc_block("data-connect.md", "python")
    node_port, broker_port = free_port(), free_port()
    code = code.replace("8701", str(node_port)).replace("8780", str(broker_port))
    (tmp_path / "client.py").write_text(code)

    genofed = _readme_node(tmp_path, "--tier", "registered")
    token = genofed("passport", "issue", "broker.json", "--sub", "alice", "--bona-fide").strip()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    broker = subprocess.Popen(
        [GENOFED, "passport", "serve", "broker.json", "--port", str(broker_port)],
        cwd=tmp_path,
        **quiet,
    )
    node, _ = start_node_server(tmp_path / "mynode", port=node_port, **quiet)
    try:
        wait_until_up(f"http://127.0.0.1:{broker_port}/.well-known/jwks.json")
        env = {**os.environ, "TOKEN": token, "HOME": str(tmp_path)}  # the client's cache
        ran = subprocess.run(
            [sys.executable, "client.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        lines = ran.stdout.splitlines()
        assert "'cohort1.individuals'" in lines[0] and "'cohort1.variants'" in lines[0]
        rows = [ast.literal_eval(line) for line in lines[1:]]
        assert {r["sex"] for r in rows} == {"female", "male"}
        assert sum(r["n"] for r in rows) == 400  # the example's genomes, rounded counts
    finally:
        for process in (node, broker):
            process.terminate()
            process.wait(timeout=30)


@pytest.mark.servers
def test_the_dac_visa_is_used_as_the_governance_docs_show(tmp_path: Path) -> None:
    """Before: the DAC section never showed how to use the visa it issues. The docs' block,
    as written, turns an approved application's visa into record-level answers."""
    text = (ROOT / "docs" / "governance.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S) if "VISA=" in b)
    port = free_port()
    block = block.replace("8701", str(port))

    genofed = _readme_node(tmp_path, "--tier", "controlled", "--granularity", "record")
    genofed("dac", "consent", "mynode", "cohort1", "--duo", "DUO:0000042")  # general research
    passport = genofed("passport", "issue", "broker.json", "--sub", "alice", "--bona-fide")
    passport = passport.strip()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    node, base = start_node_server(tmp_path / "mynode", port=port, **quiet)
    try:
        auth = {"Authorization": f"Bearer {passport}"}
        applied = httpx.post(
            f"{base}/dac/applications",
            headers=auth,
            json={
                "dataset_id": "cohort1",
                "title": "Focal seizure genetics",
                "purpose": {"category": "disease", "diseases": ["HP:0007359"]},
            },
            timeout=30,
        )
        assert applied.status_code == 201, applied.text
        app_id = applied.json()["id"]
        submitted = httpx.post(f"{base}/dac/applications/{app_id}/submit", headers=auth)
        assert submitted.json()["status"] == "approved", submitted.text
        before = httpx.get(
            f"{base}/beacon/v2/individuals",
            params={"filters": "HP:0001250", "requestedGranularity": "record"},
            headers=auth,
            timeout=30,
        ).json()
        assert before["meta"]["returnedGranularity"] != "record"

        ran = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + block],
            cwd=tmp_path,
            env={
                **os.environ,
                "ID": app_id,
                "PASSPORT": passport,
                # genofed and python as after `. .venv/bin/activate`
                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        after = json.loads(ran.stdout)
        assert after["meta"]["returnedGranularity"] == "record"
        results = after["response"]["resultSets"][0]["results"]
        assert results and all(r["id"].startswith("P") for r in results)
    finally:
        node.terminate()
        node.wait(timeout=30)


def test_the_analysis_docs_python_example_runs_as_written() -> None:
    code = _doc_block("analysis.md", "python")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["Intercept", "age", "sex[T.male]"]
    assert lines[-1].startswith("AIC") and "n = 1000" in lines[-1]


def test_the_analysis_docs_peer_steps_run_as_written(tmp_path: Path) -> None:
    script = _doc_block("analysis.md", "bash", 1)  # the first is against the demo's hub
    env = {**os.environ, "PATH": f"{Path(GENOFED).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "beta" in done.stdout and "Pinned beta" in done.stderr
