"""Exact secure aggregation: the hub learns the sum of the nodes' vectors, nothing else.

Why this is written here: Flower's SecAgg+ is built for model weights (it clips and
quantises, so sums are approximate) and brings its own server; no maintained Python
library implements the double-masking protocol of Bonawitz et al. (CCS 2017) over exact
integers. The primitives are `cryptography`'s (X25519, HKDF-SHA256, ChaCha20,
ChaCha20-Poly1305); only the protocol and Shamir's secret sharing are ours.

One aggregation is bound to a ``Context``: the task id, the round, the sorted list of
participants and the threshold t. Its three steps, each a plain method:

1. ``share``: node u draws a self-mask seed b_u and derives a pairwise seed s_uv with every
   peer v from the X25519 secret of their pinned keys (so the hub cannot stand in for a
   peer). It splits b_u and every s_uv into t-of-n Shamir shares, and sends share j to
   participant j encrypted under a key only u and j can derive.
2. ``mask``: the hub hands u the shares addressed to it by the set U1 of nodes that shared.
   u returns y_u = x_u + PRG(b_u) + sum over v in U1 of (+PRG(s_uv) if u < v else
   -PRG(s_uv)), in Z_2^64. The pairwise masks cancel in the sum over U1.
3. ``reveal``: the hub names U2, the nodes whose masked inputs arrived. Each survivor
   reveals, for v in U2, its share of b_v, and for v in U1 but not U2 (dropped after
   sharing), its shares of s_vw. Never both for the same v: that would unmask v's input.
   From t shares the hub rebuilds the seeds, removes the masks, and has the sum over U2.

The threat model is an honest-but-curious hub (it follows the protocol and tries to
learn from what it sees): it learns the sum over U2 and who took part. A hub that lies
about U2 to different nodes is the malicious setting, which needs the protocol's
consistency round (not built); each node still applies its own disclosure rules to what
it masks, so a sum of one node's values is never a value the node would not release.

Each node refuses a context it has already used (a replayed task id and round), a
participant whose key it has not pinned, fewer participants than its minimum, and a
value that would overflow the encoding (it never wraps).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from genofed._exceptions import SecureSumError

# Shamir's sharing is over the integers modulo this Mersenne prime: larger than any
# 32-byte seed, so a seed is one field element.
PRIME = 2**521 - 1
SEED_BYTES = 32


# --------------------------------------------------------------------------------------
# fixed-point encoding in Z_2^64
# --------------------------------------------------------------------------------------


def encode(values: np.ndarray, frac_bits: int, n_participants: int) -> np.ndarray:
    """``values`` as integers in Z_2^64: ``round(x * 2**frac_bits)`` (integers exactly with
    ``frac_bits=0``). Refuses (never wraps) a value whose sum over ``n_participants``
    nodes could leave the signed 64-bit range, and non-finite values."""
    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise SecureSumError("a value to sum is not finite (NaN or infinity)")
    scaled = np.rint(np.ldexp(x, frac_bits))
    limit = float(2**63 // max(1, n_participants))
    if scaled.size and float(np.max(np.abs(scaled))) >= limit:
        biggest = float(np.max(np.abs(x)))
        raise SecureSumError(
            f"a value ({biggest:.3g}) is too large to sum over {n_participants} nodes with "
            f"{frac_bits} fractional bits (at most {limit / 2**frac_bits:.3g}); use fewer "
            "fractional bits"
        )
    return scaled.astype(np.int64).view(np.uint64)


def decode(total: np.ndarray, frac_bits: int) -> np.ndarray:
    """The sum ``total`` (Z_2^64) as numbers again."""
    return np.ldexp(
        np.asarray(total, dtype=np.uint64).view(np.int64).astype(np.float64), -frac_bits
    )


def decode_integers(total: np.ndarray) -> np.ndarray:
    """The sum of integers encoded with ``frac_bits=0``, exactly."""
    return np.asarray(total, dtype=np.uint64).view(np.int64).copy()


LIMB_BITS = 32


def encode_wide(values: np.ndarray, frac_bits: int, n_participants: int, limbs: int = 3):
    """``values`` as fixed-point numbers of ``limbs`` 32-bit limbs, one Z_2^64 element
    each (``limbs`` times the length of ``values``): the range grows with the limbs, so
    biobank-scale sums (cross-products of 500,000 people) keep 32 fractional bits.

    Each limb carries the value's sign, so a limb's sum over the nodes stays far inside
    64 bits and every limb sums exactly; ``decode_wide`` puts the carries back."""
    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise SecureSumError("a value to sum is not finite (NaN or infinity)")
    scaled = np.rint(np.ldexp(x, frac_bits))  # integer-valued floats: exact below
    top = np.ldexp(1.0, LIMB_BITS * (limbs - 1)) * (2.0**31 // max(1, n_participants))
    if scaled.size and float(np.max(np.abs(scaled))) >= top:
        raise SecureSumError(
            f"a value ({float(np.max(np.abs(x))):.3g}) is too large to sum over "
            f"{n_participants} nodes in {limbs} limbs with {frac_bits} fractional bits"
        )
    sign = np.sign(scaled)
    rest = np.abs(scaled)
    out = np.empty((limbs, x.size), dtype=np.int64)
    for i in range(limbs):
        limb = np.fmod(rest, 2.0**LIMB_BITS)
        out[i] = (sign * limb).astype(np.int64)
        rest = (rest - limb) / 2.0**LIMB_BITS
    return out.ravel().view(np.uint64)


def decode_wide(total: np.ndarray, frac_bits: int, limbs: int = 3) -> np.ndarray:
    """The sum of ``encode_wide`` vectors as numbers: the limbs' exact sums recombined in
    Python integers, then rounded once to floating point."""
    sums = np.asarray(total, dtype=np.uint64).view(np.int64).reshape(limbs, -1)
    whole = np.zeros(sums.shape[1], dtype=object)  # Python integers, element by element
    for i in range(limbs):
        whole += sums[i].astype(object) * (1 << (LIMB_BITS * i))
    return (whole / (1 << frac_bits)).astype(np.float64)  # int / int: correctly rounded


# --------------------------------------------------------------------------------------
# Shamir's t-of-n secret sharing
# --------------------------------------------------------------------------------------


def shamir_split(secret: int, n: int, t: int) -> list[int]:
    """Shares 1..n of ``secret`` (share i is the polynomial at x = i); any t rebuild it."""
    if not 0 <= secret < PRIME or not 1 <= t <= n:
        raise ValueError("a secret in the field, and 1 <= t <= n")
    coefficients = [secret] + [secrets.randbelow(PRIME) for _ in range(t - 1)]
    shares = []
    for x in range(1, n + 1):
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares.append(y)
    return shares


def shamir_join(shares: dict[int, int]) -> int:
    """The secret from shares ``{x: y}`` (Lagrange interpolation at 0)."""
    secret = 0
    for xi, yi in shares.items():
        numerator, denominator = 1, 1
        for xj in shares:
            if xj != xi:
                numerator = numerator * -xj % PRIME
                denominator = denominator * (xi - xj) % PRIME
        secret = (secret + yi * numerator * pow(denominator, -1, PRIME)) % PRIME
    return secret


# --------------------------------------------------------------------------------------
# the context every secret and message is bound to
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """One aggregation: a task's round over a sorted list of participants."""

    task_id: str
    round: int
    participants: tuple[str, ...]
    threshold: int

    def __post_init__(self) -> None:
        if list(self.participants) != sorted(set(self.participants)):
            raise SecureSumError("participants must be sorted and distinct")
        if not 1 <= self.threshold <= len(self.participants):
            raise SecureSumError("the threshold must be between 1 and the participants")

    @classmethod
    def of(cls, task_id: str, round: int, participants: list[str], threshold: int | None = None):
        names = tuple(sorted(set(participants)))
        return cls(task_id, round, names, threshold or default_threshold(len(names)))

    def info(self, purpose: str, *names: str) -> bytes:
        """Canonical bytes naming everything a derived key is bound to."""
        return json.dumps(
            [purpose, self.task_id, self.round, list(self.participants), self.threshold,
             sorted(names)],
            separators=(",", ":"),
        ).encode()  # fmt: skip

    def index(self, name: str) -> int:
        """The x of ``name``'s Shamir shares (1-based)."""
        return self.participants.index(name) + 1

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.info("context")).hexdigest()


def default_threshold(n: int) -> int:
    """t = ceil(2n/3): a round completes if a third of the nodes drop out."""
    return max(1, math.ceil(2 * n / 3))


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def prg(seed: bytes, context: Context, length: int) -> np.ndarray:
    """``length`` pseudo-random elements of Z_2^64 from ``seed`` (ChaCha20 keystream)."""
    key = _hkdf(seed, context.info("mask"))
    stream = Cipher(algorithms.ChaCha20(key, b"\0" * 16), mode=None).encryptor()
    return np.frombuffer(stream.update(b"\0" * (8 * length)), dtype=np.uint64).copy()


def _seed_int(seed: bytes) -> int:
    return int.from_bytes(seed, "big")


def _int_seed(value: int) -> bytes:
    return value.to_bytes(SEED_BYTES, "big")


# --------------------------------------------------------------------------------------
# a node's side
# --------------------------------------------------------------------------------------


@dataclass
class RoundState:
    """What one node keeps of one round between its steps: its seeds (secret), the shares
    the others sent it, and how far it went. Plain values: it persists as JSON."""

    digest: str  # the context it belongs to
    self_seed: bytes
    pair_seeds: dict[str, bytes]
    shared_with: frozenset[str] = frozenset()  # U1, known once masked
    held: dict[str, dict] = field(default_factory=dict)  # sender -> its shares for us
    masked: bool = False
    revealed: bool = False

    def to_json(self) -> dict:
        return {
            "digest": self.digest,
            "self_seed": self.self_seed.hex(),
            "pair_seeds": {p: s.hex() for p, s in self.pair_seeds.items()},
            "shared_with": sorted(self.shared_with),
            "held": {n: {"b": _hexed(h["b"]), "s": _hexed(h["s"])} for n, h in self.held.items()},
            "masked": self.masked,
            "revealed": self.revealed,
        }

    @classmethod
    def from_json(cls, data: dict) -> RoundState:
        return cls(
            digest=data["digest"],
            self_seed=bytes.fromhex(data["self_seed"]),
            pair_seeds={p: bytes.fromhex(s) for p, s in data["pair_seeds"].items()},
            shared_with=frozenset(data["shared_with"]),
            held={n: _unhexed(h) for n, h in data["held"].items()},
            masked=data["masked"],
            revealed=data["revealed"],
        )


class RoundStore(Protocol):
    """Where a node keeps its rounds: in memory, or on disk so that every server worker
    (and a restarted node) sees them. ``create`` refuses a key it has seen (replays);
    ``update`` holds the round for one step, and keeps what the step changed."""

    def create(self, key: str, state: RoundState) -> bool: ...

    def update(self, key: str) -> AbstractContextManager[RoundState | None]: ...


class MemoryRounds:
    def __init__(self) -> None:
        self._rounds: dict[str, RoundState] = {}
        self._lock = threading.Lock()

    def create(self, key: str, state: RoundState) -> bool:
        with self._lock:
            if key in self._rounds:
                return False
            self._rounds[key] = state
            return True

    @contextmanager
    def update(self, key: str) -> Iterator[RoundState | None]:
        with self._lock:
            yield self._rounds.get(key)


class FileRounds:
    """Rounds kept as files (mode 0600: they hold seeds) under ``directory``, one per task
    round; a step holds an exclusive lock on its round's file, so two workers never run
    one round's step at once."""

    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def create(self, key: str, state: RoundState) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(self._path(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            json.dump(state.to_json(), out)
        return True

    @contextmanager
    def update(self, key: str) -> Iterator[RoundState | None]:
        try:
            handle = open(self._path(key), "r+")  # noqa: SIM115 - held for the whole step
        except FileNotFoundError:
            yield None
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            text = handle.read()
            if not text:  # created, not yet written (a race with create): not there yet
                yield None
                return
            state = RoundState.from_json(json.loads(text))
            yield state
            handle.seek(0)
            handle.truncate()
            json.dump(state.to_json(), handle)
            handle.flush()
            os.fsync(handle.fileno())


class SecureSumNode:
    """One node's part in secure sums: its key, the peers' pinned keys, its minimum."""

    def __init__(
        self,
        name: str,
        key: X25519PrivateKey,
        pinned: dict[str, X25519PublicKey],
        *,
        min_participants: int = 3,
        rounds: RoundStore | None = None,
    ):
        self.name = name
        self.key = key
        self.pinned = pinned
        self.min_participants = min_participants
        self.rounds: RoundStore = rounds if rounds is not None else MemoryRounds()

    def check(self, context: Context) -> None:
        """Refuse a round this node cannot take part in (before any work is done)."""
        if self.name not in context.participants:
            raise SecureSumError(f"{self.name} is not a participant of this round")
        if len(context.participants) < self.min_participants:
            raise SecureSumError(
                f"{len(context.participants)} participants, fewer than this node's minimum "
                f"of {self.min_participants}"
            )
        unpinned = [p for p in context.participants if p != self.name and p not in self.pinned]
        if unpinned:
            raise SecureSumError(
                f"participant(s) {', '.join(unpinned)} have no pinned aggregation key at "
                f"{self.name}: pin them first (genofed node peer add)"
            )

    def _secret(self, peer: str, context: Context, purpose: str) -> bytes:
        shared = self.key.exchange(self.pinned[peer])
        return _hkdf(shared, context.info(purpose, self.name, peer))

    def share(self, context: Context) -> dict[str, bytes]:
        """Step 1: the encrypted shares for every other participant (by name). A node
        keeps its own share; a context can be shared once."""
        self.check(context)
        peers = [p for p in context.participants if p != self.name]
        state = RoundState(
            digest=context.digest,
            self_seed=secrets.token_bytes(SEED_BYTES),
            pair_seeds={p: self._secret(p, context, "pair") for p in peers},
        )
        n, t = len(context.participants), context.threshold
        b_shares = shamir_split(_seed_int(state.self_seed), n, t)
        s_shares = {p: shamir_split(_seed_int(s), n, t) for p, s in state.pair_seeds.items()}
        out: dict[str, bytes] = {}
        for recipient in context.participants:
            i = context.index(recipient) - 1
            payload = {"b": b_shares[i], "s": {p: s[i] for p, s in s_shares.items()}}
            if recipient == self.name:
                state.held[self.name] = payload
            else:
                out[recipient] = self._seal(recipient, context, payload)
        # one round per task id and round number, whatever its participants: a replay
        if not self.rounds.create(_key(context), state):
            raise SecureSumError("this task round was already run here (a replay?)")
        return out

    def _nonce(self, sender: str, recipient: str) -> bytes:
        return (b"\1" if sender < recipient else b"\2") + b"\0" * 11

    def _seal(self, recipient: str, context: Context, payload: dict) -> bytes:
        key = self._secret(recipient, context, "shares")
        text = json.dumps({k: _hexed(v) for k, v in payload.items()}).encode()
        return ChaCha20Poly1305(key).encrypt(
            self._nonce(self.name, recipient), text, context.info("to", self.name, recipient)
        )

    def _open(self, sender: str, context: Context, sealed: bytes) -> dict:
        key = self._secret(sender, context, "shares")
        try:
            text = ChaCha20Poly1305(key).decrypt(
                self._nonce(sender, self.name), sealed, context.info("to", sender, self.name)
            )
        except InvalidTag:
            raise SecureSumError(
                f"the shares from {sender} do not open: altered or misrouted"
            ) from None
        raw = json.loads(text)
        return {"b": int(raw["b"], 16), "s": {p: int(v, 16) for p, v in raw["s"].items()}}

    def mask(self, context: Context, value: np.ndarray, shares: dict[str, bytes]) -> np.ndarray:
        """Step 2: ``value`` (already encoded, Z_2^64) masked. ``shares`` are those
        addressed to this node by the other nodes that shared (U1 is they and us)."""
        with self._round(context) as state:
            return self._mask(state, context, value, shares)

    def _mask(
        self, state: RoundState, context: Context, value: np.ndarray, shares: dict[str, bytes]
    ) -> np.ndarray:
        if state.masked:
            raise SecureSumError("this task round was already masked here (a replay?)")
        shared_with = frozenset(shares) | {self.name}
        if not shared_with <= set(context.participants):
            raise SecureSumError("shares from a node that is not a participant")
        if len(shared_with) < max(context.threshold, self.min_participants):
            raise SecureSumError(
                f"only {len(shared_with)} nodes shared, fewer than the threshold "
                f"({context.threshold}) or this node's minimum ({self.min_participants})"
            )
        for sender, sealed in shares.items():
            state.held[sender] = self._open(sender, context, sealed)
        encoded = np.asarray(value, dtype=np.uint64)
        masked = encoded + prg(state.self_seed, context, encoded.size)
        for peer in shared_with - {self.name}:
            mask = prg(state.pair_seeds[peer], context, encoded.size)
            masked = masked + mask if self.name < peer else masked - mask
        state.shared_with, state.masked = shared_with, True
        return masked

    def reveal(self, context: Context, survivors: list[str]) -> dict[str, dict]:
        """Step 3: for each survivor its self-mask share; for each node that shared but
        did not mask, its pairwise shares with the survivors. Never both for one node."""
        with self._round(context) as state:
            return self._reveal(state, context, survivors)

    def _reveal(self, state: RoundState, context: Context, survivors: list[str]) -> dict:
        if not state.masked or state.revealed:
            raise SecureSumError("reveal comes once, after this node masked")
        alive = frozenset(survivors)
        if not alive <= state.shared_with or self.name not in alive:
            raise SecureSumError("survivors must be nodes that shared, this one among them")
        if len(alive) < max(context.threshold, self.min_participants):
            raise SecureSumError(
                f"only {len(alive)} survivors, fewer than the threshold ({context.threshold})"
                f" or this node's minimum ({self.min_participants})"
            )
        state.revealed = True
        out: dict[str, dict] = {}
        for node in state.shared_with:
            held = state.held[node]
            if node in alive:
                out[node] = {"b": _hexed(held["b"])}
            else:  # dropped after sharing: the masks it shares with the survivors
                out[node] = {"s": {w: _hexed(held["s"][w]) for w in alive}}
        return out

    @contextmanager
    def _round(self, context: Context) -> Iterator[RoundState]:
        self.check(context)
        with self.rounds.update(_key(context)) as state:
            if state is None or state.digest != context.digest:
                raise SecureSumError("this task round has not shared here")
            yield state


def _key(context: Context) -> str:
    return f"{context.task_id}:{context.round}"


def _hexed(value: int | dict) -> str | dict:
    if isinstance(value, dict):
        return {k: format(v, "x") for k, v in value.items()}
    return format(value, "x")


def _unhexed(held: dict) -> dict:
    return {"b": int(held["b"], 16), "s": {p: int(v, 16) for p, v in held["s"].items()}}


# --------------------------------------------------------------------------------------
# the hub's side
# --------------------------------------------------------------------------------------


def unmask(
    context: Context,
    shared: list[str],
    masked: dict[str, np.ndarray],
    reveals: dict[str, dict[str, dict]],
) -> np.ndarray:
    """The sum (Z_2^64) of the inputs of the nodes in ``masked`` (U2), from their masked
    inputs and the survivors' ``reveals``. ``shared`` is U1. Needs t reveals."""
    alive, dropped = set(masked), set(shared) - set(masked)
    if len(reveals) < context.threshold:
        raise SecureSumError(
            f"{len(reveals)} nodes revealed, fewer than the threshold {context.threshold}"
        )
    length = len(next(iter(masked.values())))
    total = np.zeros(length, dtype=np.uint64)
    for value in masked.values():
        total = total + np.asarray(value, dtype=np.uint64)
    for node in alive:
        shares = {context.index(r): int(rev[node]["b"], 16) for r, rev in reveals.items()}
        total = total - prg(_int_seed(shamir_join(shares)), context, length)
    for node in dropped:
        for w in alive:
            shares = {context.index(r): int(rev[node]["s"][w], 16) for r, rev in reveals.items()}
            mask = prg(_int_seed(shamir_join(shares)), context, length)
            # w added +mask if w < node else -mask: take it away again
            total = total - mask if w < node else total + mask
    return total
