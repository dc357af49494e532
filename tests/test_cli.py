"""The command line, run as a user would: real processes, real files, readable errors."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import BFF_FIXTURES, DATA, SMALL_CLINICAL, SMALL_VCF
from tests.live_server import GENOFED, free_port, start_node_server


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [GENOFED, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_help_explains_every_command() -> None:
    top = run("--help").stdout
    assert "node" in top and "demo" in top
    node_help = run("node", "--help").stdout
    for command in ("init", "ingest", "import-bff", "genes", "serve"):
        assert command in node_help
    ingest_help = run("node", "ingest", "--help").stdout
    for option in (
        "--dataset",
        "--vcf",
        "--assembly",
        "--individuals",
        "--granularity",
        "--sample-column",
        "--description",
    ):
        assert option in ingest_help


def test_init_ingest_import_genes(tmp_path: Path) -> None:
    node = tmp_path / "node"
    run("node", "init", str(node), "--name", "CLI hospital")
    assert (node / "node.yaml").read_text().startswith("format: 1\nname: CLI hospital")
    again = run("node", "init", str(node), "--name", "x", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    out = run(
        "node",
        "ingest",
        str(node),
        "--dataset",
        "small",
        "--vcf",
        str(SMALL_VCF),
        "--assembly",
        "GRCh38",
        "--individuals",
        str(SMALL_CLINICAL),
    ).stderr
    assert "7 sites, 8 variants, 6 samples" in out
    out = run("node", "import-bff", str(node), str(BFF_FIXTURES), "--dataset", "fix").stderr
    assert "41 variants" in out and "GRCh37" in out
    out = run("node", "genes", str(node), str(DATA / "genes.bed")).stderr
    assert "2 gene regions" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vcf", "missing.vcf"], "file not found"),
        (["--vcf", str(SMALL_VCF), "--assembly", "hg42"], "unknown assembly 'hg42'"),
        (["--vcf", str(SMALL_VCF), "--assembly", "GRCh37"], "check --assembly"),
        (
            [
                "--vcf",
                str(SMALL_VCF),
                "--assembly",
                "GRCh38",
                "--individuals",
                str(BFF_FIXTURES / "individuals.json"),
            ],
            "not in the VCF",
        ),
    ],
)
def test_ingest_errors_are_one_readable_line(tmp_path: Path, args: list[str], message: str) -> None:
    node = tmp_path / "node"
    run("node", "init", str(node), "--name", "n")
    result = run("node", "ingest", str(node), "--dataset", "d", *args, check=False)
    assert result.returncode == 1
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert not (node / "catalog.json").exists()


def test_ingest_into_a_directory_that_is_not_a_node(tmp_path: Path) -> None:
    result = run(
        "node", "ingest", str(tmp_path), "--dataset", "d", "--vcf", str(SMALL_VCF), check=False
    )
    assert result.returncode == 1 and "genofed node init" in " ".join(result.stderr.split())


@pytest.mark.servers
def test_serve_answers_over_http_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """A real server process on 127.0.0.1 serving a real node."""
    node = tmp_path / "node"
    run("node", "init", str(node), "--name", "served")
    run(
        "node",
        "ingest",
        str(node),
        "--dataset",
        "small",
        "--vcf",
        str(SMALL_VCF),
        "--assembly",
        "GRCh38",
        "--granularity",
        "record",
        "--tier",
        "public",
    )
    server, base = start_node_server(
        node, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        params = {
            "referenceName": "chr22",
            "start": 16050074,
            "alternateBases": "G",
            "requestedGranularity": "record",
        }
        body = httpx.get(f"{base}/beacon/v2/g_variants", params=params).json()
        # Secure defaults: an anonymous caller gets a public dataset as yes/no only.
        assert body["meta"]["returnedGranularity"] == "boolean"
        assert "response" not in body
        # Its allele count (4) is below the public floor of 5, so it is not revealed.
        assert body["responseSummary"]["exists"] is False
        # A new ingest is served without restarting the server.
        run(
            "node",
            "ingest",
            str(node),
            "--dataset",
            "second",
            "--vcf",
            str(SMALL_VCF),
            "--assembly",
            "GRCh38",
            "--tier",
            "public",
        )
        datasets = httpx.get(f"{base}/beacon/v2/datasets").json()["response"]["collections"]
        assert {d["id"] for d in datasets} == {"small", "second"}
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
        server.stdout.close()
        server.stderr.close()
    assert server.returncode in (0, -signal.SIGINT)


@pytest.mark.servers
def test_demo_runs_without_serving(tmp_path: Path) -> None:
    result = run(
        "demo",
        "--no-serve",
        "--workdir",
        str(tmp_path / "demo"),
        "--samples",
        "120",
        "--port",
        str(free_port()),
    )
    out = " ".join(result.stdout.split())
    assert "Example Beacon v2 queries" in out
    assert "Does anyone carry the planted variant?" in out
    # Three callers, three answers: the node enforces its tiers.
    assert "Same question, three callers" in out
    for caller, granularity in (("anonymous", "boolean"), ("researcher", "count")):
        assert f"{caller} │ {granularity}" in out, out
    assert "grant │ record" in out
    # Data Connect: no table for the anonymous caller, aggregates, then rows.
    assert "anonymous caller sees 0" in out
    assert "icd10_letter" in out and "variant_id" in out
    # The federation, through the hub: every node answered each question.
    assert "Federated variant look-up" in out
    assert "hospital-a ok, biobank-b ok, national-c ok" in out
    assert "Cross-node cohort" in out and "saved as cohort-" in out
    # every count says what it counts: "5 (imprecise)" is not read as five people
    assert re.search(r"│ \d+ variants", out) and re.search(r"│ \d+ people", out), out
    assert not re.search(r"│ \d+ \((imprecise|rounded)\)", out), out
    assert "Federated Data Connect" in out and "female" in out and "male" in out
    # then it trains a model at the three institutions
    assert "7/8" in out and "held-out AUC" in out and "membership-inference AUC" in out
    # and runs a workflow at each, whose table each custodian releases
    assert "8/8" in out
    if shutil.which("bwrap") is None:
        assert "apt-get install bubblewrap" in out
    else:
        assert "Allele frequencies, side by side" in out
        for title in ("Hospital A", "Biobank B", "National programme C"):
            assert f"{title}: COMPLETE, automatic checks passed; released" in out, out
    for site in ("hospital-a", "biobank-b", "national-c"):
        assert (tmp_path / "demo" / "nodes" / site / "catalog.json").exists()
    # every server it started has stopped
    for log in (tmp_path / "demo" / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(), log


@pytest.mark.servers
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_demo_federation_serves_the_portal_until_ctrl_c(tmp_path: Path, stop: int) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [
            GENOFED,
            "demo",
            "--workdir",
            str(tmp_path / "demo"),
            "--samples",
            "60",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        seen = ""
        assert demo.stdout is not None
        for line in demo.stdout:
            seen += line
            if "Press Ctrl-C" in line:
                break
        assert "The portal:" in seen, seen
        assert ". .venv/bin/activate" in seen  # genofed is not on PATH by itself
        hub = seen.split("The portal: ")[1].split()[0].rstrip("/")
        assert "cohort builder" in httpx.get(hub, timeout=10).text.lower()
        nodes = httpx.get(f"{hub}/hub/nodes", timeout=10).json()["nodes"]
        assert {n["health"] for n in nodes} == {"up"} and len(nodes) == 3
    finally:
        demo.send_signal(stop)
        demo.wait(timeout=60)
        demo.stdout.close()  # type: ignore[union-attr]
    assert demo.returncode in (0, -signal.SIGINT)
    with pytest.raises(httpx.TransportError):  # the hub and the nodes are gone
        httpx.get(f"{hub}/-/health", timeout=2)
    for node in nodes:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{node['url']}/-/health", timeout=2)


def test_a_damaged_signing_key_stops_start_up_with_advice_not_a_traceback(tmp_path: Path) -> None:
    """Before: a garbage keys/dac-signing.json crashed start-up with a traceback."""
    node = tmp_path / "damaged"
    run("node", "init", str(node), "--name", "damaged")
    (node / "keys").mkdir(exist_ok=True)
    (node / "keys" / "dac-signing.json").write_text('{"issuer": 1, "jwk": "garbage"')
    started = run("node", "serve", str(node), "--port", str(free_port()), check=False)
    assert started.returncode != 0
    said = " ".join(started.stderr.split())
    assert "dac-signing.json is not a signing key" in said and "Restore it" in said
    assert "Traceback" not in started.stderr


@pytest.mark.servers
@pytest.mark.parametrize("proxies", [[], ["127.0.0.1"]])
def test_forwarded_addresses_are_believed_only_from_configured_proxies(
    tmp_path: Path, proxies: list[str]
) -> None:
    """Before: uvicorn believed X-Forwarded-For from 127.0.0.1, so any local process could
    write another address into the audit log. After: only `trust.proxies` are believed."""
    import orjson

    from genofed.config import load_config, save_config

    node = tmp_path / "proxied"
    run("node", "init", str(node), "--name", "proxied")
    config = load_config(node / "node.yaml")
    config.trust.proxies = proxies
    save_config(config, node / "node.yaml")
    server, base = start_node_server(node, stderr=subprocess.DEVNULL)
    try:
        httpx.get(f"{base}/beacon/v2/info", headers={"X-Forwarded-For": "203.0.113.9"})
    finally:
        server.terminate()
        server.wait(timeout=20)
    log = (node / "audit" / "audit.log").read_bytes().splitlines()
    clients = {orjson.loads(line)["caller"].get("client") for line in log}
    assert clients == ({"203.0.113.9", "127.0.0.1"} if proxies else {"127.0.0.1"})


def test_the_demo_keeps_its_ports_when_only_time_wait_connections_hold_them() -> None:
    """Before: a second demo run moved the nodes to random ports although nothing listened
    on the usual ones (only connections of the first run in TIME-WAIT)."""
    import socket

    from genofed.demo import _port

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first: its end stays in TIME-WAIT
    client.close()
    listener.close()
    with socket.socket() as plain:  # the condition of the bug: a plain bind is refused
        with pytest.raises(OSError, match="in use"):
            plain.bind(("127.0.0.1", port))
    assert _port(port) == port
