"""A rewritten audit log: an entry edited and every later hash recomputed verified as
intact. The hub keeps the heads each node signs; ``audit verify --anchors`` finds it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import orjson

from genofed.governance import keys
from genofed.governance.audit import GENESIS, _line
from genofed.governance.audit_anchors import check_head
from genofed.store.node_dir import NodeDir
from tests.federation import federation
from tests.live_server import GENOFED


def anchors_of(hub: str, node: str) -> list[dict]:
    answer = httpx.get(f"{hub}/hub/audit-anchors/{node}", timeout=10)
    assert answer.status_code == 200, answer.text
    return [orjson.loads(line) for line in answer.content.splitlines()]


def rewrite(log: Path, seq: int) -> None:
    """Change entry ``seq`` and recompute the hash of it and every entry after it: what
    an attacker with write access to the node's files does."""
    lines = [orjson.loads(raw) for raw in log.read_bytes().splitlines()]
    prev = GENESIS
    out = []
    for entry in lines:
        entry.pop("hash")
        if entry["seq"] == seq:
            entry["path"] = "/beacon/v2/info"  # it never asked for records
            entry["decision"] = "allowed"
        entry["prev"] = prev
        line, prev = _line(entry)
        out.append(line)
    log.write_bytes(b"".join(out))


def verify(node_dir: Path, *extra: str) -> tuple[int, str]:
    """``genofed audit verify``'s exit code and what it printed (its report on stderr)."""
    done = subprocess.run(
        [GENOFED, "audit", "verify", str(node_dir), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def test_a_rewritten_log_no_longer_matches_the_heads_the_hub_kept(tmp_path) -> None:
    with federation(tmp_path) as fed:
        node = fed.add_node("alpha", seed=5, samples=20)
        hub = fed.start_hub(audit_anchor_interval_s=0.3)
        for _ in range(5):
            httpx.get(f"{node}/beacon/v2/individuals", timeout=10)
        target = NodeDir(tmp_path / "alpha").audit_path
        seen = len(target.read_bytes().splitlines())  # the entries written so far
        deadline = time.monotonic() + 30
        while not any(a["seq"] >= seen for a in anchors_of(hub, "alpha")):
            assert time.monotonic() < deadline, "the hub kept no head"
            time.sleep(0.2)
        kept = anchors_of(hub, "alpha")
        # each kept head is signed by the node's key, as published
        published = keys.parse_key_set(httpx.get(f"{node}/.well-known/jwks.json").json())
        head = check_head(kept[-1]["jws"], next(iter(published.values())))  # type: ignore[arg-type]
        assert (head.seq, head.hash) == (kept[-1]["seq"], kept[-1]["hash"])
        fed.processes["alpha"].kill()
        fed.processes["alpha"].wait()
        saved = tmp_path / "alpha-anchors.jsonl"
        saved.write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in kept))

    node_dir = tmp_path / "alpha"
    assert verify(node_dir, "--anchors", str(saved))[0] == 0  # untouched: intact
    rewrite(target, seq=3)
    code, said = verify(node_dir)
    assert code == 0, said  # the attack: the chain alone looks intact
    code, said = verify(node_dir, "--anchors", str(saved))
    assert code == 1, said
    assert "the log was rewritten up to there" in said


def test_an_anchor_not_signed_by_the_node_is_reported(tmp_path) -> None:
    with federation(tmp_path) as fed:
        node = fed.add_node("alpha", seed=6, samples=20)
        head = httpx.get(f"{node}/-/audit/head", timeout=10).json()
    forger = keys.create_key(tmp_path / "forger.json", "https://forger.example")
    claims = orjson.loads(orjson.dumps(head))
    forged = forger.sign(
        {"iss": forger.issuer, "sub": "audit-head", "seq": 1, "hash": "f" * 64, "time": 1.0},
        typ="genofed-audit-head+jwt",
    )
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_bytes(orjson.dumps(claims) + b"\n" + orjson.dumps({"jws": forged}) + b"\n")
    code, said = verify(tmp_path / "alpha", "--anchors", str(anchors))
    assert code == 1
    assert "anchor not this node's: anchor line 2: not signed by this key" in said
    assert "anchor line 1" not in said  # the node's own head checks out
