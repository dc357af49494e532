"""The audit log: every request is recorded, and any tampering is found and named."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from genofed.governance.audit import AuditLog, verify
from genofed.node.app import create_app
from tests.governance import GovernedNode, build_governed_node

GENOFED = str(Path(sys.executable).with_name("genofed"))


@pytest.fixture
def audited(tmp_path) -> tuple[GovernedNode, Path]:
    gov = build_governed_node(tmp_path, differencing_k=1)
    with TestClient(create_app(gov.node.root)) as client:
        client.get("/beacon/v2/individuals", params={"datasets": "open"})
        headers = {"Authorization": f"Bearer {gov.passport('ann', grants=('ctrl',))}"}
        client.get(
            "/beacon/v2/individuals",
            params={"datasets": "ctrl", "requestedGranularity": "record"},
            headers=headers,
        )
        client.get("/beacon/v2/individuals", params={"datasets": "ctrl"})  # denied
        client.get("/beacon/v2/info")
        client.get("/beacon/v2/g_variants", headers={"Authorization": "Bearer junk"})
    return gov, gov.node.root / "audit" / "audit.log"


def entries(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_every_request_is_recorded_with_who_what_and_the_decision(audited) -> None:
    _gov, path = audited
    log = entries(path)
    assert [e["seq"] for e in log] == [1, 2, 3, 4, 5]
    anonymous, granted, denied, info, bad = log
    assert anonymous["caller"] == {"client": "testclient"} and anonymous["datasets"] == ["open"]
    assert (
        anonymous["decision"] == "allowed" and anonymous["endpoint"] == "GET /beacon/v2/individuals"
    )
    assert granted["caller"]["sub"] == "ann" and granted["datasets"] == ["ctrl"]
    assert granted["results"] == 6  # record access: the exact number of individuals
    assert denied["decision"] == "denied" and denied["status"] == 403
    assert info["decision"] == "allowed"
    assert bad["decision"] == "denied" and bad["status"] == 401
    assert len({e["policy"] for e in log}) == 1 and len(log[0]["policy"]) == 12
    assert verify(path).ok


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def cli_verify(gov: GovernedNode, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GENOFED, "audit", "verify", str(gov.node.root), *extra], capture_output=True, text=True
    )


def test_cli_verify_passes_an_intact_log(audited) -> None:
    gov, _ = audited
    result = cli_verify(gov)
    assert result.returncode == 0 and "intact: 5 entries" in " ".join(result.stderr.split())


@pytest.mark.parametrize("attack", ["modify", "delete", "insert", "reorder", "truncate"])
def test_tampering_is_detected_and_named(audited, attack: str) -> None:
    gov, path = audited
    head = subprocess.run(
        [GENOFED, "audit", "head", str(gov.node.root)], capture_output=True, text=True
    ).stdout.strip()
    lines = path.read_bytes().splitlines()
    if attack == "modify":
        entry = orjson.loads(lines[1])
        entry["results"] = 0  # hide what ann saw
        lines[1] = orjson.dumps(entry)
        expected = "line 2 (seq 2): modified"
    elif attack == "delete":
        del lines[2]
        expected = "line 3 (seq 4): entries 3..3 are missing"
    elif attack == "insert":
        forged = orjson.loads(lines[1])
        forged["caller"] = {"sub": "someone-else"}
        lines.insert(2, orjson.dumps(forged))
        expected = "line 3 (seq 2): modified"
    elif attack == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
        expected = "line 2 (seq 3): out of order: seq 3 where 2 was expected"
    else:
        lines = lines[:-2]
        expected = "entries were removed from the end"
    rewrite(path, lines)
    result = cli_verify(gov, "--expect-head", head)
    assert result.returncode == 1
    assert expected in " ".join(result.stderr.split()), result.stderr


def test_audit_fails_closed(tmp_path) -> None:
    gov = build_governed_node(tmp_path)
    log = gov.node.root / "audit" / "audit.log"
    with TestClient(create_app(gov.node.root)) as client:
        assert client.get("/beacon/v2/info").status_code == 200
        log.unlink()
        log.mkdir()  # the log can no longer be appended to
        refused = client.get("/beacon/v2/individuals")
        assert refused.status_code == 503
        assert "audit log" in refused.json()["error"]["errorMessage"]
        shutil.rmtree(log)
        assert client.get("/beacon/v2/info").status_code == 200


def test_appends_from_two_logs_on_one_file_stay_one_chain(tmp_path) -> None:
    """Two server workers hold two AuditLog objects on the same file."""
    path = tmp_path / "audit.log"
    first, second = AuditLog(path), AuditLog(path)
    for i in range(50):
        (first if i % 3 else second).append({"n": i})
    result = verify(path)
    assert result.ok and result.entries == 50


def _append_in_child(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append({"child": i})


def test_a_kept_handle_follows_the_file_and_the_process(tmp_path) -> None:
    """The log stays open across appends: a log moved aside (rotated) is not written to
    again, and a forked worker opens its own handle, so its flock excludes the parent's."""
    import multiprocessing

    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for i in range(5):
        log.append({"n": i})
    path.rename(tmp_path / "audit.log.1")
    log.append({"n": 5})
    assert verify(tmp_path / "audit.log.1").entries == 5
    assert verify(path).ok and verify(path).entries == 1
    child = multiprocessing.get_context("fork").Process(target=_append_in_child, args=(log, 3000))
    child.start()
    for i in range(3000):
        log.append({"parent": i})
    child.join()
    assert child.exitcode == 0
    result = verify(path)
    assert result.ok and result.entries == 6001
    log.close()


def test_an_unexpected_error_is_audited_too(tmp_path) -> None:
    gov = build_governed_node(tmp_path, differencing_k=1)
    version = next(v for v in gov.node.datasets() if v.dataset_id == "ctrl")
    shutil.rmtree(version.genotypes)  # damage the store under a running node
    headers = {"Authorization": f"Bearer {gov.passport('ann', grants=('ctrl',))}"}
    with TestClient(create_app(gov.node.root), raise_server_exceptions=False) as client:
        broken = client.get(
            "/beacon/v2/g_variants/22-16050075-A-G/individuals",
            params={"datasets": "ctrl", "requestedGranularity": "record"},
            headers=headers,
        )
    assert broken.status_code == 500
    assert "S1" not in broken.text  # the error says where to look, not what is stored
    last = entries(gov.node.root / "audit" / "audit.log")[-1]
    assert last["status"] == 500 and last["decision"] == "error"
    assert last["caller"]["sub"] == "ann" and last["datasets"] == ["ctrl"]
    assert verify(gov.node.root / "audit" / "audit.log").ok


def test_a_long_request_is_recorded_in_full_and_the_log_stays_appendable(tmp_path) -> None:
    """Before: one request with a long path made the log unreadable after a restart (every
    request then 503), and filters or SQL padded past a length limit were logged only up to
    the padding. After: long texts are kept by digest under texts/, the chain reads back."""
    gov = build_governed_node(tmp_path)
    path = gov.node.root / "audit" / "audit.log"
    long_path = "/beacon/v2/individuals/" + "x" * 20_000
    padded = "NCIT:C0" + " " * 5000 + ",HP:0000118"
    body = {"query": {"filters": [{"id": "HP:0000118"}]}, "meta": {"pad": "y" * 10_000}}
    with TestClient(create_app(gov.node.root)) as client:
        client.get(long_path)
        client.get("/beacon/v2/individuals", params={"filters": padded})
        client.post("/beacon/v2/individuals", json=body)
    with TestClient(create_app(gov.node.root)) as client:  # a restart reads the tail back
        assert client.get("/beacon/v2/info").status_code == 200
    log = entries(path)
    texts = path.parent / "texts"

    def full(value: dict) -> str:
        return (texts / value["sha256"]).read_text()

    assert full(log[0]["endpoint"]) == f"GET {long_path}"
    query = full(log[1]["query"])  # the filter after the padding is there too
    assert query.endswith("0000118") and len(query) > 5000
    assert orjson.loads(full(log[2]["body"])) == body
    assert verify(path).ok and verify(path).entries == 4
    (texts / log[2]["body"]["sha256"]).write_text("{}")  # the kept text is edited
    assert "the full body" in str(verify(path).problems[0])


def test_a_torn_tail_is_set_aside_reported_and_the_node_keeps_serving(tmp_path) -> None:
    """Before: a torn last line of the audit log took the whole node down."""
    gov = build_governed_node(tmp_path)
    path = gov.node.root / "audit" / "audit.log"
    with TestClient(create_app(gov.node.root)) as client:
        client.get("/beacon/v2/info")
    with path.open("ab") as handle:
        handle.write(b'{"seq":2,"time":17')  # killed mid-write
    torn = cli_verify(gov)
    assert torn.returncode == 0 and "torn tail" in " ".join(torn.stderr.split())
    with TestClient(create_app(gov.node.root)) as client:
        assert client.get("/beacon/v2/info").status_code == 200
        assert client.get("/beacon/v2/individuals").status_code == 200
    result = verify(path)
    assert result.ok and result.entries == 3 and len(result.torn) == 1
    assert result.torn[0].read_bytes() == b'{"seq":2,"time":17'
    reported = " ".join(cli_verify(gov).stderr.split())
    assert "torn tail set aside" in reported and "intact: 3 entries" in reported
