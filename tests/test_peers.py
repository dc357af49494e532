"""``genofed node peer``: each node's aggregation key, and the peers it pins, used for a
real secure sum between three nodes configured only through the command line."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import numpy as np
import yaml

from genofed.analysis.secure_sum import Context, SecureSumNode, decode_integers, unmask
from genofed.config import load_config
from genofed.governance.keys import (
    fingerprint,
    load_or_create_aggregation_key,
    public_key_of,
)
from genofed.store.node_dir import NodeDir
from tests.test_cli_input import refused, run


def _init(root: Path, name: str) -> Path:
    made = run("node", "init", str(root / name), "--name", name)
    assert made.returncode == 0, made.stderr
    assert "aggregation key" in made.stderr and "fingerprint" in made.stderr
    return root / name


def test_three_nodes_pin_each_other_and_sum_securely(tmp_path: Path) -> None:
    nodes = {name: _init(tmp_path, name) for name in ("alpha", "beta", "gamma")}
    keys = {}
    for name, path in nodes.items():
        shown = run("node", "peer", "key", str(path))
        assert shown.returncode == 0
        keys[name] = shown.stdout.strip()
        assert run("node", "peer", "key", str(path)).stdout.strip() == keys[name]  # stable
        assert f"fingerprint: {fingerprint(keys[name])}" in shown.stderr
        key_file = NodeDir(path).aggregation_key_path
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    for name, path in nodes.items():
        for peer, key in keys.items():
            if peer != name:
                added = run("node", "peer", "add", str(path), peer, "--key", key)
                assert added.returncode == 0 and fingerprint(key) in added.stderr
        listed = run("node", "peer", "list", str(path))
        assert all(fingerprint(keys[p]) in listed.stdout for p in keys if p != name)

    # the keys and pins as the nodes hold them: a secure sum among the three
    members = {}
    for name, path in nodes.items():
        node = NodeDir(path)
        config = load_config(node.config_path)
        pinned = {p: public_key_of(k) for p, k in config.analysis.peers.items()}
        key = load_or_create_aggregation_key(node.aggregation_key_path)
        members[name] = SecureSumNode(name, key, pinned, min_participants=3)
    context = Context.of("pinned-sum", 0, sorted(members))
    sealed = {n: m.share(context) for n, m in members.items()}
    values = {"alpha": [1, 2], "beta": [10, 20], "gamma": [100, 200]}
    masked = {
        n: m.mask(
            context,
            np.array(values[n], dtype=np.uint64),
            {s: o[n] for s, o in sealed.items() if s != n},
        )
        for n, m in members.items()
    }
    reveals = {n: m.reveal(context, sorted(masked)) for n, m in members.items()}
    assert decode_integers(unmask(context, sorted(members), masked, reveals)).tolist() == [111, 222]

    # unpinned: alpha no longer sums with gamma
    assert run("node", "peer", "remove", str(nodes["alpha"]), "gamma").returncode == 0
    config = load_config(NodeDir(nodes["alpha"]).config_path)
    assert set(config.analysis.peers) == {"beta"}


def test_bad_peers_are_refused_readably(tmp_path: Path) -> None:
    alpha, beta = _init(tmp_path, "alpha"), _init(tmp_path, "beta")
    key = run("node", "peer", "key", str(beta)).stdout.strip()
    own = run("node", "peer", "key", str(alpha)).stdout.strip()
    refused(run("node", "peer", "add", str(alpha), "Beta", "--key", key), "lower case")
    refused(
        run("node", "peer", "add", str(alpha), "beta", "--key", "abc"), "not an X25519 public key"
    )
    refused(run("node", "peer", "add", str(alpha), "alpha", "--key", own), "this node's own key")
    refused(run("node", "peer", "remove", str(alpha), "nobody"), "no peer 'nobody'")
    # base64url keys may begin with '-': still a key, not an option
    dashed = base64.urlsafe_b64encode(b"\xf8" + bytes(31)).rstrip(b"=").decode()
    assert dashed.startswith("-")
    assert run("node", "peer", "add", str(alpha), "delta", "--key", dashed).returncode == 0
    refused(run("node", "peer", "list", str(tmp_path / "nothing")), "is not a node")
    # a key damaged by hand in node.yaml: the node's configuration says which
    path = NodeDir(alpha).config_path
    data = yaml.safe_load(path.read_text())
    data["analysis"]["peers"] = {"beta": "short"}
    path.write_text(yaml.safe_dump(data))
    refused(run("node", "peer", "list", str(alpha)), "aggregation key of beta")
    NodeDir(alpha).aggregation_key_path.write_bytes(b"broken")
    refused(run("node", "peer", "key", str(alpha)), "not an aggregation key")


def test_a_node_publishes_its_aggregation_key_and_its_pins(tmp_path: Path, ontology) -> None:
    from fastapi.testclient import TestClient

    from genofed.node.app import create_app

    alpha, beta = _init(tmp_path, "alpha"), _init(tmp_path, "beta")
    own = run("node", "peer", "key", str(alpha)).stdout.strip()
    with TestClient(create_app(alpha, ontology=ontology)) as client:
        published = client.get("/analysis/v1/aggregation-key").json()
        assert published["publicKey"] == own and published["algorithm"] == "X25519"
        assert published["fingerprint"] == fingerprint(own)
        assert published["pinnedPeers"] == [] and published["minParticipants"] == 3
        key = run("node", "peer", "key", str(beta)).stdout.strip()
        assert run("node", "peer", "add", str(alpha), "beta", "--key", key).returncode == 0
        # node.yaml edits take effect on the next request
        assert client.get("/analysis/v1/aggregation-key").json()["pinnedPeers"] == ["beta"]
