"""The hub keeps the audit heads its nodes sign (``governance.audit_anchors``): every
``audit_anchor_interval_s`` it fetches each node's ``/-/audit/head``, checks the signature
against the node's published keys, and appends a head it has not seen to
``<state_dir>/audit-anchors/<node>.jsonl``. The node's operator (or an auditor) later runs
``genofed audit verify --anchors`` with that file: a log rewritten since no longer matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import orjson

from genofed.config import HubConfig, HubNode
from genofed.governance.audit_anchors import Anchor, check_head
from genofed.governance.keys import parse_key_set
from genofed.hub.transport import Transport

log = logging.getLogger(__name__)
_TIMEOUT_S = 5.0


class AnchorKeeper:
    def __init__(self, config: HubConfig, folder: Path):
        self.config = config
        self.folder = folder
        self._last: dict[str, Anchor] = {}

    def path(self, node: str) -> Path:
        return self.folder / f"{node}.jsonl"

    async def fetch(self, transport: Transport, node: HubNode) -> Anchor:
        """Fetch, check and keep ``node``'s head; ``ValueError`` saying why it was not kept."""
        head = await self._get(transport, node, "/-/audit/head")
        jwks = await self._get(transport, node, "/.well-known/jwks.json")
        jws = head.get("jws")
        if not isinstance(jws, str):
            raise ValueError("its audit head has no 'jws'")
        reasons = []
        for key in parse_key_set(jwks).values():
            try:
                anchor = check_head(jws, key)  # type: ignore[arg-type]
                break
            except ValueError as exc:
                reasons.append(str(exc))
        else:
            raise ValueError(f"its audit head is not signed by its keys: {'; '.join(reasons)}")
        last = self._last.get(node.name) or self._read_last(node.name)
        if last is not None and (last.seq, last.hash) == (anchor.seq, anchor.hash):
            return anchor
        if last is not None and anchor.seq < last.seq:
            log.warning(
                "node %s: its audit head went back from seq %d to %d (log cut short or "
                "replaced); both are kept",
                node.name,
                last.seq,
                anchor.seq,
            )
        line = {
            "node": node.name,
            "seq": anchor.seq,
            "hash": anchor.hash,
            "time": anchor.time,
            "received": round(time.time(), 3),
            "jws": jws,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.path(node.name).open("ab") as out:
            out.write(orjson.dumps(line) + b"\n")
        self._last[node.name] = anchor
        return anchor

    def _read_last(self, name: str) -> Anchor | None:
        path = self.path(name)
        if not path.exists():
            return None
        for raw in reversed(path.read_bytes().splitlines()):
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                line = orjson.loads(raw)
                return Anchor(name, int(line["seq"]), str(line["hash"]), float(line["time"]))
        return None

    async def _get(self, transport: Transport, node: HubNode, path: str) -> dict:
        response = await transport.request(node, "GET", path, timeout_s=_TIMEOUT_S)
        if response.status != 200:
            raise ValueError(f"GET {path} answered HTTP {response.status}")
        try:
            document = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ValueError(f"GET {path} is not JSON") from None
        if not isinstance(document, dict):
            raise ValueError(f"GET {path} is not a JSON object")
        return document

    async def watch(self, transport: Transport) -> None:
        """Keep every node's head now and every ``audit_anchor_interval_s``, until cancelled."""
        if self.config.audit_anchor_interval_s <= 0:
            return
        while True:
            outcomes = await asyncio.gather(
                *(self.fetch(transport, n) for n in self.config.nodes), return_exceptions=True
            )
            for node, outcome in zip(self.config.nodes, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    log.warning("node %s: audit head not kept: %s", node.name, outcome)
            await asyncio.sleep(self.config.audit_anchor_interval_s)
