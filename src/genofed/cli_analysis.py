"""``genofed node peer …``: the federation a node takes part in secure sums with.

Each node has an X25519 key for secure aggregation (``keys/aggregation.x25519``). The
operators of a federation exchange their nodes' public keys out of band, read the
fingerprints to each other, and pin them: a hub then cannot stand in for a node.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from genofed._exceptions import ConfigError, GenofedError
from genofed.cli_output import console, fail
from genofed.config import load_config, save_config
from genofed.governance.keys import (
    fingerprint,
    load_or_create_aggregation_key,
    public_key_of,
    public_key_text,
)
from genofed.store.node_dir import NodeDir

out = Console()  # results to stdout, messages to stderr
peer_app = typer.Typer(
    help="The nodes this node sums with securely: show its aggregation key, pin peers' keys.",
    no_args_is_help=True,
)
NodePath = Annotated[Path, typer.Argument(help="The node directory")]
PeerName = Annotated[
    str, typer.Argument(help="The peer's name in the federation (as the hub names it)")
]


def _node(directory: Path) -> NodeDir:
    node = NodeDir(directory)
    if not node.config_path.is_file():
        raise ConfigError(
            f"{directory} is not a node (no node.yaml); create one with genofed node init"
        )
    return node


def own_key_text(node: NodeDir) -> str:
    return public_key_text(load_or_create_aggregation_key(node.aggregation_key_path))


@peer_app.command("key")
def peer_key(directory: NodePath) -> None:
    """Print this node's aggregation public key (stdout) and its fingerprint (stderr), to
    give the other operators of the federation.

    Example: genofed node peer key ./alpha
    """
    try:
        text = own_key_text(_node(directory))
    except (GenofedError, OSError) as err:
        raise fail(err) from None
    out.print(text)
    console.print(f"fingerprint: {fingerprint(text)}")


@peer_app.command("add")
def peer_add(
    directory: NodePath,
    name: PeerName,
    key: Annotated[
        str,
        typer.Option(help="The peer's public key (`genofed node peer key` on its node)"),
    ],
) -> None:
    """Pin a peer's aggregation key (replacing an earlier one of that name). Check the
    fingerprint printed with the peer's operator before relying on it.

    Example: genofed node peer add ./alpha beta --key "$(genofed node peer key ./beta)"
    """
    try:
        node = _node(directory)
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            raise ConfigError(f"peer names are lower case letters, digits and -, not {name!r}")
        public_key_of(key)
        config = load_config(node.config_path)
        if key == own_key_text(node):
            raise ConfigError("that is this node's own key: pin the other nodes' keys")
        config.analysis.peers = {**config.analysis.peers, name: key}
        save_config(config, node.config_path)
    except (GenofedError, OSError, ValueError) as err:
        raise fail(err) from None
    console.print(
        f"Pinned {name}; fingerprint {fingerprint(key)} (check it with {name}'s operator)"
    )


@peer_app.command("remove")
def peer_remove(directory: NodePath, name: PeerName) -> None:
    """Unpin a peer: secure sums naming it are refused from now on."""
    try:
        node = _node(directory)
        config = load_config(node.config_path)
        if name not in config.analysis.peers:
            raise ConfigError(f"no peer {name!r} is pinned (genofed node peer list)")
        config.analysis.peers = {k: v for k, v in config.analysis.peers.items() if k != name}
        save_config(config, node.config_path)
    except (GenofedError, OSError, ValueError) as err:
        raise fail(err) from None
    console.print(f"Removed {name}")


@peer_app.command("list")
def peer_list(directory: NodePath) -> None:
    """The pinned peers, with their fingerprints."""
    try:
        config = load_config(_node(directory).config_path)
    except (GenofedError, OSError) as err:
        raise fail(err) from None
    table = Table(title=f"Peers ({len(config.analysis.peers)})")
    table.add_column("peer", no_wrap=True)
    table.add_column("fingerprint", no_wrap=True)
    table.add_column("key", overflow="fold")
    for name, key in sorted(config.analysis.peers.items()):
        table.add_row(name, fingerprint(key), key)
    out.print(table)
