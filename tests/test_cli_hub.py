"""The command-line client (``genofed query``, ``genofed cohort``) against a real hub
app served on 127.0.0.1 over in-memory nodes (``genofed.testing``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from genofed.cli import app
from genofed.testing import FakeNode, FakeRequest, fake_hub_app
from tests.live_server import ThreadServer

runner = CliRunner()


def dc_answer(request: FakeRequest) -> dict[str, Any]:
    rows = [{"__k0": "female", "__a1": "10"}, {"__k0": "male", "__a1": "15"}]
    return {
        "data_model": {"properties": {"__k0": {"type": "string"}, "__a1": {"type": "string"}}},
        "data": rows,
        "pagination": {},
    }


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    nodes = [
        FakeNode.counting("alpha", 20, "rounded"),
        FakeNode.counting("beta", None, exists=True),
        FakeNode("gamma", tables=[{"name": "g.individuals"}], data_connect=dc_answer),
    ]
    nodes[0].tables = [{"name": "a.individuals"}]
    nodes[0].data_connect = dc_answer
    application = fake_hub_app(nodes, tmp_path_factory.mktemp("hub"))
    with ThreadServer(application) as server:
        yield server.url


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_query_beacon_prints_each_node_and_an_honest_total(hub: str) -> None:
    output = run("query", "beacon", "--hub", hub, "--entry", "individuals")
    assert "alpha" in output and "beta" in output
    assert "total: 20 (imprecise)" in output  # beta gave no count: a lower bound


def test_cohort_count_says_which_node_withheld(hub: str) -> None:
    output = run("cohort", "count", "--hub", hub, "--term", "HP:0001250")
    assert "some (gave no count to this caller" in output
    assert "partial: some nodes gave no count" in output


def test_cohort_create_and_list(hub: str) -> None:
    created = run("cohort", "create", "--hub", hub, "--name", "Seizures", "--term", "HP:0001250")
    cohort_id = created.split("saved as")[1].split()[0]
    assert cohort_id.startswith("cohort-")
    assert cohort_id in run("cohort", "list", "--hub", hub)


def test_saved_cohorts_read_as_summaries_and_are_shown_and_deleted_by_full_id(hub: str) -> None:
    created = run(
        "cohort", "create", "--hub", hub, "--name", "Older women with seizures",
        "--term", "HP:0001250", "--sex", "female", "--min-age", "50",
    )  # fmt: skip
    cohort_id = created.split("saved as")[1].split()[0]
    listed = run("cohort", "list", "--hub", hub)  # an 80-column terminal
    row = next(line for line in listed.splitlines() if cohort_id in line)  # never wrapped
    assert "20 (imprecise; partial)" in row  # the total when saved, as it was made safe
    wide = runner.invoke(app, ["cohort", "list", "--hub", hub], env={"COLUMNS": "200"}).output
    row = next(line for line in wide.splitlines() if cohort_id in line)
    assert "Older women with seizures" in row and "HP:0001250 · female · aged 50+" in row
    shown = run("cohort", "show", cohort_id, "--hub", hub)
    assert "Older women with seizures" in shown
    assert "who: HP:0001250 · female · aged 50+" in shown
    assert "count then: 20 (imprecise; partial)" in shown
    assert "alpha" in shown and "total: 20" in shown  # counted again now

    prefix = runner.invoke(app, ["cohort", "show", cohort_id[:-2], "--hub", hub])
    assert prefix.exit_code != 0 and "in full" in prefix.output  # a prefix is never enough
    assert f"deleted {cohort_id}" in run("cohort", "delete", cohort_id, "--hub", hub)
    assert cohort_id not in run("cohort", "list", "--hub", hub)
    again = runner.invoke(app, ["cohort", "delete", cohort_id, "--hub", hub])
    assert again.exit_code != 0 and "HTTP 404" in again.output and "no cohort" in again.output


def test_query_sql_merges_every_node(hub: str) -> None:
    output = run(
        "query", "sql", "--hub", hub, 'SELECT sex, count(*) AS n FROM "*.individuals" GROUP BY sex'
    )
    assert "female" in output and "20" in output  # 10 + 10, merged
    assert "male" in output and "30" in output
    assert "beta: No such table" in output


def test_errors_are_one_readable_line(hub: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["query", "sql", "--hub", hub, "DROP TABLE x"])
    assert result.exit_code != 0
    assert "HTTP 400 (bad_request)" in result.output and "Traceback" not in result.output
    nowhere = runner.invoke(app, ["cohort", "list", "--hub", "http://127.0.0.1:9"])
    assert nowhere.exit_code != 0 and "could not reach the hub" in nowhere.output
