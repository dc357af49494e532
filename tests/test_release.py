"""What leaves a node: one release policy for every answer, and what it must never do
(turn a true answer into a false one, round what a caller may count, lose track of the
state it keeps)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from genofed.config import Disclosure, Granularity, default_config, load_config, save_config
from genofed.governance.access import Entitlement, Standing
from genofed.governance.disclosure import Precision, PublicAlleleGuard, SafeCount
from genofed.governance.release import Part, ReleasePolicy
from genofed.node.app import create_app
from genofed.simulate import simulate_cohort
from genofed.store.node_dir import NodeDir
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf
from tests.governance import GovernedNode, build_governed_node

G = Granularity


def rounded(n: int, min_count: int = 5, step: int = 5) -> tuple[int, str]:
    """The node's documented rule, written out independently of genofed's code."""
    if n == 0:
        return 0, "exact"
    if n < min_count:
        return min_count, "imprecise"
    return max(min_count, ((n + step // 2) // step) * step), "rounded"


# -- the decision -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entitled", "standing", "asked", "granularity", "exact", "floor", "differencing"),
    [
        (G.BOOLEAN, Standing.ANONYMOUS, G.RECORD, G.BOOLEAN, False, True, True),
        (G.COUNT, Standing.ANONYMOUS, G.COUNT, G.COUNT, False, True, True),
        (G.COUNT, Standing.REGISTERED, G.RECORD, G.COUNT, False, False, True),
        (G.RECORD, Standing.GRANTED, G.COUNT, G.COUNT, True, False, False),
        (G.RECORD, Standing.GRANTED, G.BOOLEAN, G.BOOLEAN, True, False, False),
        (G.RECORD, Standing.ANONYMOUS, G.RECORD, G.RECORD, True, True, False),
    ],
)
def test_terms_follow_the_entitlement_not_the_granularity_asked_for(
    entitled, standing, asked, granularity, exact, floor, differencing
) -> None:
    terms = ReleasePolicy(Disclosure(), None).terms(Entitlement(entitled, standing), asked)
    assert terms.granularity == granularity
    assert terms.exact is exact  # a caller who may see the records counts them exactly
    assert (terms.floor is not None) is floor  # only anonymous callers meet the floor
    assert terms.differencing is differencing
    assert terms.min_group == (1 if exact else 5)


def test_granularity_is_ordered() -> None:
    assert G.BOOLEAN < G.COUNT < G.RECORD
    assert max(G.COUNT, G.BOOLEAN) == G.COUNT and min("record", G.COUNT) == G.COUNT
    assert sorted([G.RECORD, G.BOOLEAN, G.COUNT]) == [G.BOOLEAN, G.COUNT, G.RECORD]


@pytest.mark.parametrize(
    ("counts", "precisions", "total", "precision"),
    [
        ([3, 4], ["exact", "exact"], 7, "exact"),
        ([5, 10], ["rounded", "imprecise"], 15, "imprecise"),
        ([10, 10, 5], ["rounded", "rounded", "rounded"], 25, "rounded"),
        ([12, 1], ["exact", "rounded"], 15, "rounded"),
    ],
)
def test_merged_counts_are_exact_only_when_every_part_is(
    counts, precisions, total, precision
) -> None:
    policy = ReleasePolicy(Disclosure(), None)
    parts = [
        Part(f"n{i}", SafeCount(c, Precision(p)))
        for i, (c, p) in enumerate(zip(counts, precisions, strict=True))
    ]
    merged = policy.merge(parts)
    assert merged.count is not None
    assert (merged.count.value, merged.count.precision) == (total, precision)
    expected = sum(counts) if precision == "exact" else rounded(sum(counts))[0]
    assert merged.count.value == expected
    assert not merged.partial


def test_a_total_that_leaves_a_part_out_says_so() -> None:
    policy = ReleasePolicy(Disclosure(), None)
    merged = policy.merge(
        [Part("a", SafeCount(10, Precision.ROUNDED)), Part("b", None, "answered yes/no only")]
    )
    assert merged.partial and [p.source for p in merged.missing] == ["b"]
    assert policy.merge([Part("b", None, "timeout")]).count is None


# -- the public allele guard --------------------------------------------------------------


def _guard(tmp_path: Path, max_excluded: int, now: list[float]) -> PublicAlleleGuard:
    return PublicAlleleGuard(tmp_path / "guard.sqlite", max_excluded, clock=lambda: now[0])


def test_the_allele_guard_withholds_what_one_person_decides(tmp_path: Path) -> None:
    """Alleles (rows) over samples s0..s5 with copies per sample; floor 3."""
    copies = np.array(
        [
            [1, 1, 1, 0, 0, 0],  # AC 3: everyone pivotal: withheld, all three left out
            [2, 1, 0, 0, 1, 1],  # AC 5; without s0 (2 copies): 3: shown
            [0, 0, 0, 1, 1, 1],  # AC 3, none of them left out: pivotal: withheld
            [1, 0, 0, 1, 1, 1],  # AC 4 counts 3 without s0 (left out), s3..s5 pivotal
        ]
    )
    now = [0.0]
    guard = _guard(tmp_path, 10, now)
    samples = [f"s{i}" for i in range(6)]
    shown = guard.shown(
        "eve",
        "d",
        samples,
        np.arange(4),
        copies.sum(axis=1),
        lambda rows: copies[rows],
        3,
    )
    assert list(shown.shown) == [1]
    assert guard.left_out("d") == set(samples)  # the dataset's, whoever asks next
    assert guard.left_out("other") == set()
    assert guard.status() == [("d", 6, False, ["eve"])]
    now[0] += 86400  # the next window starts afresh
    assert guard.left_out("d") == set()


def test_the_allele_guard_state_is_bounded_and_never_hides_common_alleles(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 40
    copies = np.zeros((30, n), dtype=np.int64)
    for row in range(29):  # rare alleles, each carried by 3 people: all pivotal at floor 3
        copies[row, rng.choice(n, 3, replace=False)] = 1
    copies[29] = 1  # one allele everyone carries
    guard = _guard(tmp_path, 4, [0.0])
    samples = [f"s{i}" for i in range(n)]
    for row in range(30):
        shown = guard.shown(
            "eve",
            "d",
            samples,
            np.array([row]),
            copies[[row]].sum(axis=1),
            lambda rows, row=row: copies[[row]][rows],
            3,
        )
        assert len(guard.left_out("d")) <= 4  # bounded
    assert list(shown.shown) == [29]  # the common allele is shown, the state full or not
    assert shown.floor == 3 + 2 + 2 * 4  # the floor rose instead of leaving out more
    assert guard.status() == [("d", len(guard.left_out("d")), True, ["eve"])]
    assert guard.reset("d") > 0 and guard.left_out("d") == set()


# -- through the node ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated_node(tmp_path_factory: pytest.TempPathFactory) -> tuple[NodeDir, str]:
    """A public dataset of 500 simulated people over 2 Mb with the node's default rules,
    as the demo serves it (where the old guard once left everyone out)."""
    root = tmp_path_factory.mktemp("release")
    cohort = simulate_cohort(root / "data", n_samples=500, sequence_length=2_000_000, seed=1)
    assert cohort.planted_variant
    node = NodeDir.create(root / "node", default_config("release"))
    ingest_vcf(
        node,
        "sim",
        cohort.vcf,
        assembly="GRCh38",
        individuals=cohort.clinical,
        settings=DatasetSettings(granularity=G.RECORD, tier="public"),
    )
    return node, cohort.planted_variant


def _variant_params(variant: str) -> dict[str, Any]:
    chrom, pos, ref, alt = variant.split("-")
    return {
        "referenceName": chrom,
        "start": int(pos) - 1,
        "referenceBases": ref,
        "alternateBases": alt,
    }


def test_a_public_beacon_never_says_no_when_the_answer_is_yes(simulated_node) -> None:
    """The demo's own range query once left every carrier out of the public answers for
    good, after which even the planted (common) variant answered "exists: false"."""
    node, planted = simulated_node
    with TestClient(create_app(node.root)) as client:
        before = client.get("/beacon/v2/g_variants", params=_variant_params(planted)).json()
        assert before["responseSummary"]["exists"] is True
        everything = {"referenceName": "22", "start": 0, "end": 2_000_000}
        for granularity in ("boolean", "count"):
            params = {**everything, "requestedGranularity": granularity}
            assert client.get("/beacon/v2/g_variants", params=params).status_code == 200
        after = client.get("/beacon/v2/g_variants", params=_variant_params(planted)).json()
        assert after["responseSummary"]["exists"] is True
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        guard = runtime.gate.release.alleles
        left_out = guard.left_out("sim")
        assert len(left_out) <= runtime.config.disclosure.public_guard_max_excluded


def test_an_allele_not_shown_to_the_public_is_said_to_be_withheld(simulated_node) -> None:
    node, _ = simulated_node
    with TestClient(create_app(node.root)) as client:
        params = {"referenceName": "22", "start": 0, "end": 2_000_000, "variantMaxLength": 0}
        answer = client.get("/beacon/v2/g_variants", params=params).json()
        assert answer["responseSummary"]["exists"] is False
        [warning] = answer["info"]["warnings"]
        assert "withheld, not absent" in warning and "fewer than 5 times" in warning


def test_counts_for_a_caller_entitled_to_records_are_exact(tmp_path: Path) -> None:
    gov: GovernedNode = build_governed_node(tmp_path)
    headers = {"Authorization": f"Bearer {gov.passport('holder', grants=('ctrl',))}"}
    with TestClient(create_app(gov.node.root)) as client:

        def get(path: str, **params: Any) -> dict[str, Any]:
            response = client.get(f"/beacon/v2{path}", params=params, headers=headers)
            assert response.status_code == 200, response.text
            return response.json()

        records = get("/individuals/S1/g_variants", datasets="ctrl", requestedGranularity="record")
        n = records["responseSummary"]["numTotalResults"]
        assert n == len(records["response"]["resultSets"][0]["results"])
        counted = get("/individuals/S1/g_variants", datasets="ctrl", requestedGranularity="count")
        assert counted["responseSummary"]["numTotalResults"] == n
        assert "countPrecision" not in counted["responseSummary"]
        one = get(
            "/g_variants",
            datasets="ctrl",
            referenceName="22",
            start=16050074,
            alternateBases="G",
            requestedGranularity="count",
        )
        assert one["responseSummary"]["numTotalResults"] == 1
        assert "countPrecision" not in one["responseSummary"]
        # A registered researcher, who may only count, is not told about one named person.
        registered = {"Authorization": f"Bearer {gov.passport('reg', bona_fide=True)}"}
        refused = client.get(
            "/beacon/v2/individuals/S1/g_variants",
            params={"datasets": "open", "requestedGranularity": "count"},
            headers=registered,
        )
        assert refused.status_code == 403
        assert "needs record-level access" in refused.json()["error"]["errorMessage"]


@pytest.fixture
def guarded_client(tmp_path: Path) -> Iterator[tuple[GovernedNode, TestClient]]:
    gov = build_governed_node(tmp_path)
    config = load_config(gov.node.config_path)
    config.disclosure.public_min_allele_count = 3
    save_config(config, gov.node.config_path)
    with TestClient(create_app(gov.node.root)) as client:
        yield gov, client


def test_guard_state_is_shown_and_reset_by_the_operator(guarded_client, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from genofed.cli import app

    gov, client = guarded_client
    params = {"referenceName": "22", "start": 16050074, "alternateBases": "G", "datasets": "open"}
    assert (
        client.get("/beacon/v2/g_variants", params=params).json()["responseSummary"]["exists"]
        is False
    )  # S3 alone lifts it over a floor of 3
    runner = CliRunner()
    status = runner.invoke(app, ["node", "guard", "status", str(gov.node.root)])
    assert status.exit_code == 0, status.output
    assert "address testclient" in status.output and "open" in status.output
    reset = runner.invoke(app, ["node", "guard", "reset", str(gov.node.root), "--dataset", "open"])
    assert reset.exit_code == 0 and "alleles: forgot 1 record(s)" in reset.output
    guard = client.app.state.runtime.gate.release.alleles  # type: ignore[attr-defined]
    assert guard.left_out("open") == set()
