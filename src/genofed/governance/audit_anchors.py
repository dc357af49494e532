"""Anchors of the audit chain: its head, signed by the node and kept by someone else.

A hash chain shows that entries were changed only if the changer did not recompute every
later hash. Someone who can write the log can, so the chain is anchored outside the node:
the node signs its head (``seq``, ``hash``, time) with its key at ``GET /-/audit/head``; the
hub fetches it every ``audit_anchor_interval_s`` and appends it to a file of the heads it
has seen; ``genofed audit verify --anchors <file>`` checks that each anchor's entry is still
in the log with the same hash. A log rewritten before an anchor, or cut short after one,
no longer matches it. The signature says the head came from the node, so an anchor cannot
be made up later by whoever keeps the file.

An anchor line is JSON: ``{"node", "seq", "hash", "time", "jws"}``; only ``jws`` counts
(the other members repeat its claims for people reading the file).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from genofed.governance.audit import AuditLog
from genofed.governance.keys import SigningKey

TOKEN_TYPE = "genofed-audit-head+jwt"
SUBJECT = "audit-head"


def signed_head(log: AuditLog, key: SigningKey, node: str) -> dict[str, Any]:
    """The log's head now, signed with the node's key."""
    seq, digest = log.head()
    now = time.time()
    claims = {
        "iss": key.issuer,
        "sub": SUBJECT,
        "node": node,
        "seq": seq,
        "hash": digest,
        "iat": math.floor(now),
        "time": round(now, 3),
    }
    return {
        "node": node,
        "seq": seq,
        "hash": digest,
        "time": claims["time"],
        "jws": key.sign(claims, typ=TOKEN_TYPE),
    }


@dataclass(frozen=True)
class Anchor:
    node: str
    seq: int
    hash: str
    time: float


def check_head(jws: str, key: ECKey) -> Anchor:
    """The anchor ``jws`` signs with ``key``; ``ValueError`` saying why it is not one."""
    try:
        token = jwt.decode(jws, key, algorithms=["ES256"])
    except (JoseError, ValueError, TypeError) as exc:
        raise ValueError(f"not signed by this key ({type(exc).__name__})") from None
    claims = token.claims
    if token.header.get("typ") != TOKEN_TYPE or claims.get("sub") != SUBJECT:
        raise ValueError("signed, but not an audit head")
    seq, digest = claims.get("seq"), claims.get("hash")
    if not isinstance(seq, int) or seq < 0 or not isinstance(digest, str) or len(digest) != 64:
        raise ValueError("an audit head without a valid seq and hash")
    stamp = claims.get("time")
    return Anchor(
        str(claims.get("node", "")),
        seq,
        digest,
        float(stamp) if isinstance(stamp, int | float) else 0.0,
    )


def read_anchors(path: Path, key: ECKey) -> tuple[list[Anchor], list[str]]:
    """The anchors of a file the hub kept, checked against the node's key, and what is
    wrong with the lines that are not this node's anchors (by line number)."""
    anchors: list[Anchor] = []
    problems: list[str] = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
            jws = line["jws"] if isinstance(line, dict) else None
            if not isinstance(jws, str):
                raise ValueError("no 'jws' member")
            anchors.append(check_head(jws, key))
        except (orjson.JSONDecodeError, KeyError, ValueError) as exc:
            problems.append(f"anchor line {number}: {exc}")
    return anchors, problems
