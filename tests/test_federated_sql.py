"""Data Connect at the hub, without HTTP: where a query goes, what each node is asked, and
how the nodes' rows are merged (``genofed.dataconnect.federated``)."""

from __future__ import annotations

from typing import Any

import pytest

from genofed import QueryError
from genofed.config import Disclosure
from genofed.dataconnect.federated import (
    Federated,
    NodeRows,
    Routed,
    merge_answers,
    merge_rows,
    merged_model,
    plan,
)
from genofed.governance.disclosure import Precision
from genofed.governance.release import ReleasePolicy

EXACT = ReleasePolicy(Disclosure(), None)


@pytest.mark.parametrize(
    ("query", "node", "sql"),
    [
        ('SELECT * FROM "alpha.d.individuals"', "alpha", 'SELECT * FROM "d.individuals"'),
        (
            'SELECT i.id FROM "alpha.d.individuals" AS i JOIN "alpha.t" AS t ON i.id = t.id',
            "alpha",
            'SELECT i.id FROM "d.individuals" AS i JOIN "t" AS t ON i.id = t.id',
        ),
    ],
)
def test_a_query_of_one_nodes_tables_is_routed_to_it(query: str, node: str, sql: str) -> None:
    routed = plan(query)
    assert isinstance(routed, Routed)
    assert (routed.node, routed.sql) == (node, sql)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('SELECT * FROM "alpha.a" JOIN "beta.b" ON 1 = 1', "tables of one node"),
        ("SELECT * FROM individuals", "name tables as <node>.<table>"),
        ("SELECT 1", "reads no table"),
        ("DELETE FROM x", "send one SELECT"),
        ("SELECT ((", "syntax error"),
        ('SELECT * FROM "*.individuals"', "GROUP BY"),
        ('SELECT count(DISTINCT id) AS n FROM "*.individuals"', "distinct counts"),
        (
            'SELECT sex, count(*) AS n FROM "*.individuals" GROUP BY sex HAVING count(*) > 1',
            "HAVING",
        ),
        ('SELECT sum(x) + 1 AS n FROM "*.t"', "aggregates only"),
        ('SELECT count(*) AS n FROM "*.a" JOIN "*.b" ON 1 = 1', "one table"),
        ('SELECT n FROM (SELECT count(*) AS n FROM "*.t")', "no subqueries"),
        ('SELECT count(*) AS n, sum(x) AS n FROM "*.t"', "its own name"),
        ('SELECT count(*) AS n FROM "*.t" ORDER BY sex', "orders by output columns"),
        ('SELECT count(*) AS n FROM "*.t" LIMIT 1.5', "whole number as LIMIT"),
        ('SELECT count(*) AS n FROM "*.t" LIMIT ?', "in its WHERE clause only"),
        ("SELECT " + "(" * 3000 + "1" + ")" * 3000 + ' FROM "*.t"', "nested too deeply"),
    ],
)
def test_what_the_hub_cannot_route_or_merge_is_refused_with_a_reason(
    query: str, message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        plan(query)


def test_an_aggregate_becomes_sums_and_counts_at_each_node() -> None:
    federated = plan(
        'SELECT sex, count(*) AS n, avg(age) AS mean, min(age) AS youngest FROM "*.individuals" '
        "WHERE age > ? GROUP BY sex ORDER BY n DESC LIMIT 3"
    )
    assert isinstance(federated, Federated)
    assert federated.table == "individuals" and federated.parameters == 1
    assert federated.for_table("d1.individuals") == (
        'SELECT sex AS "__k0", COUNT(*) AS "__a1", SUM(age) AS "__a2s", COUNT(age) AS "__a2c", '
        'MIN(age) AS "__a3" FROM "d1.individuals" WHERE age > ? GROUP BY sex'
    )
    assert [(o.name, o.kind) for o in federated.outputs] == [
        ("sex", "key"),
        ("n", "count"),
        ("mean", "avg"),
        ("youngest", "min"),
    ]
    assert federated.order == (("n", True),) and federated.limit == 3
    assert federated.matches("d1.individuals") and federated.matches("individuals")
    assert not federated.matches("d1.individualsx")


QUERY = 'SELECT sex, count(*) AS n, avg(age) AS mean, max(age) AS oldest FROM "*.individuals" GROUP BY sex ORDER BY n DESC, sex LIMIT 2'  # noqa: E501


def rows(*items: tuple[str | None, int, float, int, int]) -> list[dict[str, Any]]:
    return [
        {"__k0": sex, "__a1": str(n), "__a2s": total, "__a2c": str(c), "__a3": oldest}
        for sex, n, total, c, oldest in items
    ]


def test_rows_merge_by_key_and_are_ordered_and_cut_as_asked() -> None:
    federated = plan(QUERY)
    assert isinstance(federated, Federated)
    merged = merge_rows(
        federated,
        [
            NodeRows("a", rows(("female", 3, 120.0, 3, 70), ("male", 1, 30.0, 1, 30)), {}),
            NodeRows("b", rows(("female", 2, 60.0, 2, 80), (None, 9, 0.0, 0, 1)), {}),
        ],
        EXACT,
    )
    assert merged == [
        {"sex": None, "n": "9", "mean": None, "oldest": 1},
        {"sex": "female", "n": "5", "mean": 36.0, "oldest": 80},
    ]


def test_counts_merged_with_a_node_that_made_them_safe_are_made_safe() -> None:
    federated = plan('SELECT sex, count(*) AS n FROM "*.individuals" GROUP BY sex')
    assert isinstance(federated, Federated)
    partials = [
        NodeRows("a", [{"__k0": "f", "__a1": "10"}], {"__a1": Precision.ROUNDED}),
        NodeRows("b", [{"__k0": "f", "__a1": "3"}], {}),
    ]
    assert merge_rows(federated, partials, EXACT) == [{"sex": "f", "n": "15"}]
    exact = [NodeRows("a", [{"__k0": "f", "__a1": "3"}], {}), partials[1]]
    assert merge_rows(federated, exact, EXACT) == [{"sex": "f", "n": "6"}]


def test_the_merged_data_model_says_how_exact_counts_are() -> None:
    federated = plan('SELECT sex, count(*) AS n, avg(x) AS m FROM "*.t" GROUP BY sex')
    assert isinstance(federated, Federated)
    models = [
        {
            "properties": {
                "__k0": {"type": "string"},
                "__a1": {"x-genofed-countPrecision": "rounded"},
            }
        },
        {"properties": {"__a1": {"x-genofed-countPrecision": "imprecise"}}},
    ]
    model = merged_model(federated, models)
    assert model["properties"]["sex"] == {"type": "string"}
    assert model["properties"]["n"]["x-genofed-countPrecision"] == "imprecise"
    assert model["properties"]["m"] == {"type": "number", "format": "double"}


def test_a_merged_answer_lists_what_each_node_could_not_give() -> None:
    federated = plan('SELECT count(*) AS n FROM "*.t"')
    assert isinstance(federated, Federated)
    answered = [
        ("a", {"rows": [{"__a0": "4"}], "models": [], "notes": [], "tables": ["t"]}),
        ("b", {"rows": [], "models": [], "notes": [{"title": "Rows withheld"}], "tables": []}),
        ("c", {"rows": [{"__a0": "oops"}], "models": [], "notes": [], "tables": ["t"]}),
    ]
    timeout = {"source": "d", "title": "Node timeout", "detail": "slow", "code": "node_timeout"}
    answer = merge_answers(federated, answered, [timeout], EXACT)
    assert answer["data"] == [{"n": "4"}]
    by_source = {(e["source"], e["title"]) for e in answer["errors"]}
    assert by_source == {
        ("d", "Node timeout"),
        ("b", "Rows withheld"),
        ("b", "No such table"),
        ("c", "Node error"),
    }
