"""Secure aggregation (``genofed.analysis.secure_sum``): the unmasked sum is the plain sum,
with and without nodes dropping out; what a node sends is not its value; every refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from genofed._exceptions import SecureSumError
from genofed.analysis.secure_sum import (
    Context,
    FileRounds,
    SecureSumNode,
    decode,
    decode_integers,
    decode_wide,
    default_threshold,
    encode,
    encode_wide,
    shamir_join,
    shamir_split,
    unmask,
)


def federation(
    n: int,
    *,
    min_participants: int = 3,
    keys: dict[str, X25519PrivateKey] | None = None,
    spool: Path | None = None,
) -> dict[str, SecureSumNode]:
    """``n`` nodes, each with every other's key pinned (their rounds in files under
    ``spool``, if given)."""
    keys = keys or {f"node-{i}": X25519PrivateKey.generate() for i in range(n)}
    return {
        name: SecureSumNode(
            name,
            key,
            {peer: k.public_key() for peer, k in keys.items() if peer != name},
            min_participants=min_participants,
            rounds=None if spool is None else FileRounds(spool / name),
        )
        for name, key in keys.items()
    }


def secure_sum(
    nodes: dict[str, SecureSumNode],
    values: dict[str, np.ndarray],
    context: Context,
    *,
    drop_after_sharing: frozenset[str] = frozenset(),
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The three steps as a hub runs them; returns the sum and what each node sent."""
    sealed = {name: nodes[name].share(context) for name in context.participants}
    shared = list(context.participants)
    masked = {
        name: nodes[name].mask(
            context, values[name], {s: out[name] for s, out in sealed.items() if s != name}
        )
        for name in shared
        if name not in drop_after_sharing
    }
    survivors = sorted(masked)
    reveals = {name: nodes[name].reveal(context, survivors) for name in survivors}
    return unmask(context, shared, masked, reveals), masked


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(3, 6),
    length=st.integers(1, 12),
    data=st.data(),
)
def test_the_unmasked_sum_is_the_plain_sum_of_integers(n: int, length: int, data) -> None:
    nodes = federation(n)
    names = sorted(nodes)
    context = Context.of("task-int", 0, names)
    bound = 2**63 // n - 1
    values = {
        name: np.array(
            data.draw(st.lists(st.integers(-bound, bound), min_size=length, max_size=length)),
            dtype=np.int64,
        )
        for name in names
    }
    dropped = data.draw(
        st.frozensets(st.sampled_from(names), max_size=n - max(context.threshold, 3))
    )
    # integers beyond 2^53 are not floats: they are their own encoding (two's complement)
    encoded = {name: v.view(np.uint64) for name, v in values.items()}
    total, _ = secure_sum(nodes, encoded, context, drop_after_sharing=dropped)
    plain = np.zeros(length, dtype=np.int64)
    for name in names:
        if name not in dropped:
            plain = plain + values[name]
    assert np.array_equal(decode_integers(total), plain)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(3, 5),
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=3, max_size=5),
    frac_bits=st.integers(0, 30),
)
def test_real_values_sum_to_the_encoding_s_precision(n: int, values: list, frac_bits: int) -> None:
    nodes = federation(n)
    names = sorted(nodes)
    context = Context.of("task-real", 1, names)
    vectors = {name: np.array(values) * (i + 1) for i, name in enumerate(names)}
    encoded = {name: encode(v, frac_bits, n) for name, v in vectors.items()}
    total, _ = secure_sum(nodes, encoded, context)
    plain = sum(vectors.values())
    # each node rounds to the nearest 2^-frac_bits: at most half a step each
    assert np.all(np.abs(decode(total, frac_bits) - plain) <= n * 0.5 * 2.0**-frac_bits + 1e-9)


def test_what_a_node_sends_is_not_its_value_and_differs_every_round() -> None:
    nodes = federation(3)
    names = sorted(nodes)
    value = np.array([7, 0, 123456], dtype=np.uint64)
    values = dict.fromkeys(names, value)
    first_sum, first = secure_sum(nodes, values, Context.of("task-x", 0, names))
    second_sum, second = secure_sum(nodes, values, Context.of("task-x", 1, names))
    assert np.array_equal(decode_integers(first_sum), [21, 0, 370368])
    assert np.array_equal(first_sum, second_sum)
    for name in names:
        assert not np.any(first[name] == value)  # masked in every element
        assert not np.array_equal(first[name], second[name])  # fresh masks each round


def test_a_round_completes_when_a_node_dies_after_masking_began() -> None:
    nodes = federation(5)
    names = sorted(nodes)
    context = Context.of("task-drop", 0, names)
    assert context.threshold == default_threshold(5) == 4
    values = {
        name: np.array([i + 1, 10 * (i + 1)], dtype=np.uint64) for i, name in enumerate(names)
    }
    total, _ = secure_sum(nodes, values, context, drop_after_sharing=frozenset({"node-2"}))
    assert np.array_equal(decode_integers(total), [15 - 3, 150 - 30])  # all but node-2


def test_too_many_dropouts_are_refused_rather_than_summed_wrong() -> None:
    nodes = federation(4)
    names = sorted(nodes)
    context = Context.of("task-few", 0, names)  # t = 3
    sealed = {name: nodes[name].share(context) for name in names}
    masked = {
        name: nodes[name].mask(
            context, np.array([1], dtype=np.uint64),
            {s: out[name] for s, out in sealed.items() if s != name},
        )
        for name in names[:2]
    }  # fmt: skip
    with pytest.raises(SecureSumError, match="only 2 survivors"):
        nodes[names[0]].reveal(context, sorted(masked))
    with pytest.raises(SecureSumError, match="fewer than the threshold"):
        unmask(context, names, masked, {})


def test_each_node_refuses_what_its_rules_forbid() -> None:
    nodes = federation(3)
    names = sorted(nodes)
    node = nodes[names[0]]
    context = Context.of("task-r", 0, names)
    node.share(context)
    with pytest.raises(SecureSumError, match="already run here"):
        node.share(context)  # a replayed task id and round
    stranger = Context.of("task-s", 0, [*names, "node-9"])
    with pytest.raises(SecureSumError, match="node-9 have no pinned aggregation key"):
        node.share(stranger)
    with pytest.raises(SecureSumError, match="fewer than this node's minimum of 3"):
        node.share(Context.of("task-t", 0, names[:2]))
    with pytest.raises(SecureSumError, match="too large to sum over 3 nodes"):
        encode(np.array([2.0**62]), 0, 3)
    with pytest.raises(SecureSumError, match="not finite"):
        encode(np.array([np.nan]), 10, 3)
    assert decode(encode(np.array([-(2.0**40)]), 20, 3), 20)[0] == -(2.0**40)


def test_a_node_reveals_once_and_only_for_nodes_that_shared() -> None:
    nodes = federation(3)
    names = sorted(nodes)
    context = Context.of("task-once", 0, names)
    sealed = {name: nodes[name].share(context) for name in names}
    node = nodes[names[0]]
    with pytest.raises(SecureSumError, match="after this node masked"):
        node.reveal(context, names)
    node.mask(
        context,
        np.zeros(2, np.uint64),
        {s: o[names[0]] for s, o in sealed.items() if s != names[0]},
    )
    with pytest.raises(SecureSumError, match="already masked"):
        node.mask(context, np.zeros(2, np.uint64), {})
    with pytest.raises(SecureSumError, match="survivors must be nodes that shared"):
        node.reveal(context, [*names, "node-7"])
    revealed = node.reveal(context, names)
    assert set(revealed) == set(names) and all(set(r) == {"b"} for r in revealed.values())
    with pytest.raises(SecureSumError, match="reveal comes once"):
        node.reveal(context, names[1:])  # a second reveal could unmask a survivor


def test_altered_or_misrouted_shares_do_not_open() -> None:
    nodes = federation(3)
    names = sorted(nodes)
    context = Context.of("task-alter", 0, names)
    sealed = {name: nodes[name].share(context) for name in names}
    to_first = {s: o[names[0]] for s, o in sealed.items() if s != names[0]}
    tampered = bytearray(to_first[names[1]])
    tampered[0] ^= 1
    with pytest.raises(SecureSumError, match=f"shares from {names[1]} do not open"):
        nodes[names[0]].mask(
            context, np.zeros(1, np.uint64), {**to_first, names[1]: bytes(tampered)}
        )
    misrouted = {names[1]: sealed[names[1]][names[2]], names[2]: to_first[names[2]]}
    with pytest.raises(SecureSumError, match="do not open"):
        nodes[names[0]].mask(context, np.zeros(1, np.uint64), misrouted)


@settings(max_examples=30, deadline=None)
@given(secret=st.integers(0, 2**256 - 1), n=st.integers(1, 8), data=st.data())
def test_any_t_shamir_shares_rebuild_the_secret(secret: int, n: int, data) -> None:
    t = data.draw(st.integers(1, n))
    shares = dict(enumerate(shamir_split(secret, n, t), start=1))
    chosen = data.draw(
        st.lists(st.sampled_from(sorted(shares)), min_size=t, max_size=n, unique=True)
    )
    assert shamir_join({x: shares[x] for x in chosen}) == secret
    if t > 1:  # fewer than t shares say nothing useful
        assert shamir_join({x: shares[x] for x in chosen[: t - 1]}) != secret or secret == 0


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(3, 5),
    # within what three limbs hold: |x| * n * 2^frac_bits below 2^64 * 2^31 / n
    values=st.lists(st.floats(-1e16, 1e16, allow_nan=False), min_size=1, max_size=6),
    frac_bits=st.integers(0, 32),
)
def test_wide_sums_are_exact_far_beyond_64_bits(n: int, values: list, frac_bits: int) -> None:
    nodes = federation(n)
    names = sorted(nodes)
    context = Context.of("task-wide", 0, names)
    vectors = {name: np.array(values) * (1 - 2 * (i % 2)) * (i + 1) for i, name in enumerate(names)}
    encoded = {name: encode_wide(v, frac_bits, n) for name, v in vectors.items()}
    total, _ = secure_sum(nodes, encoded, context)
    # the exact sum of what each node rounded to, in Python integers
    rounded = [
        sum(int(np.rint(np.ldexp(vectors[name][j], frac_bits))) for name in names)
        for j in range(len(values))
    ]
    assert decode_wide(total, frac_bits).tolist() == [r / 2**frac_bits for r in rounded]


def test_wide_encoding_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(SecureSumError, match="too large to sum over 3 nodes in 3 limbs"):
        encode_wide(np.array([3e20]), 32, 3)
    with pytest.raises(SecureSumError, match="not finite"):
        encode_wide(np.array([np.inf]), 32, 3)
    assert decode_wide(encode_wide(np.array([-(2.0**70)]), 8, 3), 8)[0] == -(2.0**70)


def test_rounds_kept_in_files_survive_a_restart_and_refuse_replays(tmp_path: Path) -> None:
    """Each step may reach another server worker, or a restarted node: with its rounds in
    files, a node masks and reveals a round another process shared, and a replay of the
    task round is refused there too. The files hold seeds: only the node may read them."""
    keys = {f"node-{i}": X25519PrivateKey.generate() for i in range(3)}
    first = federation(3, keys=keys, spool=tmp_path)
    context = Context.of("task-files", 0, sorted(keys))
    sealed = {name: first[name].share(context) for name in context.participants}
    again = federation(3, keys=keys, spool=tmp_path)  # as if every node restarted
    values = {name: np.array([i + 1, 10 * i], dtype=np.uint64) for i, name in enumerate(keys)}
    masked = {
        name: again[name].mask(
            context, values[name], {s: out[name] for s, out in sealed.items() if s != name}
        )
        for name in context.participants
    }
    reveals = {name: again[name].reveal(context, sorted(masked)) for name in masked}
    total = unmask(context, list(context.participants), masked, reveals)
    assert total.tolist() == [6, 30]
    with pytest.raises(SecureSumError, match="already run here"):
        federation(3, keys=keys, spool=tmp_path)["node-0"].share(context)
    with pytest.raises(SecureSumError, match="already masked"):
        again["node-1"].mask(context, values["node-1"], {})
    files = list((tmp_path / "node-0").iterdir())
    assert files and all(f.stat().st_mode & 0o077 == 0 for f in files)
