"""The Data Connect SQL guard: escape and abuse attempts are refused before any engine runs
them; allowed Trino SQL is translated for DuckDB with parameters, ga4gh_type and
aggregate-only rules."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from genofed import QueryError
from genofed.dataconnect.catalog import TableSource
from genofed.dataconnect.sql import HIDDEN_COUNT, HIDDEN_IDS, plan_query
from genofed.node.app import create_app
from genofed.store.node_dir import NodeDir
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf
from tests.conftest import SMALL_CLINICAL, SMALL_VCF, make_node


def _source(name: str, person_level: bool) -> TableSource:
    return TableSource(name, "test", name, "public", "record", person_level, Path("x"), "*", "")


VISIBLE = {
    "small.variants": _source("small.variants", False),
    "small.individuals": _source("small.individuals", True),
    "cohort:2024.visits": _source("cohort:2024.visits", True),
}

# Each is refused by the guard; the HTTP test below also sends each to a live node.
ABUSE = [
    # the node's internal row ids and views
    "SELECT __genofed_row, count(*) FROM small.variants GROUP BY 1",
    'SELECT * FROM "__genofed_rows:small.variants"',
    # files, through table functions, replacement scans and plain strings
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_parquet('/tmp/x.parquet')",
    "SELECT * FROM read_json('/etc/hosts')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM '/etc/passwd'",
    'SELECT * FROM "/etc/passwd"',
    "SELECT \"read_csv\"('/etc/passwd') FROM small.variants",
    # writing files and databases
    "COPY (SELECT 1) TO '/tmp/genofed-escape.csv'",
    "COPY \"small.variants\" TO '/tmp/genofed-escape.csv'",
    "EXPORT DATABASE '/tmp/genofed-escape'",
    "ATTACH '/tmp/genofed-escape.db' AS evil",
    "DETACH src0",
    # extensions
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT * FROM postgres_scan('host=x', 'public', 't')",
    # settings and pragmas
    "PRAGMA database_list",
    "PRAGMA enable_profiling",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET ALL",
    "SELECT current_setting('threads') FROM small.variants",
    "SELECT * FROM duckdb_settings()",
    "CALL pragma_version()",
    # DDL and DML
    "CREATE TABLE x AS SELECT 1",
    "CREATE VIEW v AS SELECT * FROM small.variants",
    'INSERT INTO "small.variants" VALUES (1)',
    'UPDATE "small.variants" SET ac = 0',
    'DELETE FROM "small.variants"',
    'DROP TABLE "small.variants"',
    'ALTER TABLE "small.variants" ADD COLUMN x INT',
    "SELECT 1 AS one INTO copied FROM small.variants",
    "VACUUM",
    "USE src0",
    "EXPLAIN SELECT 1 FROM small.variants",
    "SHOW TABLES",
    "DESCRIBE small.variants",
    # stacked statements and comment tricks
    'SELECT 1 FROM small.variants; DROP TABLE "small.variants"',
    "SELECT 1 FROM small.variants /* harmless? */; COPY (SELECT 1) TO '/tmp/genofed-escape.csv'",
    "SELECT 1 FROM small.variants; SELECT 2 FROM small.variants",
    "SELECT 1 FROM small.variants -- a comment\n; ATTACH '/tmp/genofed-escape.db' AS e",
    # environment, engine catalogs and internals
    "SELECT getenv('HOME') FROM small.variants",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM pg_catalog.pg_tables",
    'SELECT * FROM "__genofed_rows:small.individuals"',
    "SELECT * FROM src0.variants",
    "SELECT * FROM src0.main.entries",
    "SELECT query('SELECT 1')",
    "SELECT * FROM query_table('small.variants')",
    # hidden tables named directly, quoted or with look-alike characters
    'SELECT * FROM "secret.variants"',
    "SELECT * FROM secret.individuals",
    'SELECT * FROM "small.variants\u200b"',
    'SELECT * FROM "ｓmall.variants"',
    "ＳＥＬＥＣＴ * FROM small.variants",
    "SELECT * FROM U&\"\\0072ead_csv\"('/etc/passwd')",
    # files smuggled inside otherwise valid queries
    "SELECT chrom FROM small.variants UNION SELECT * FROM read_csv('/etc/passwd')",
    "WITH x AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM x",
    "SELECT (SELECT getenv('HOME')) FROM small.variants",
    "SELECT chrom FROM small.variants WHERE chrom IN (SELECT * FROM read_csv('/etc/passwd'))",
    # runaway work
    "SELECT * FROM small.variants a, small.variants b, small.variants c, small.variants d",
    "SELECT * FROM small.variants a CROSS JOIN small.variants b",
    "SELECT * FROM range(1000000000000)",
    "SELECT * FROM generate_series(1, 1000000000000)",
    "SELECT * FROM small.variants TABLESAMPLE (10)",
    # not a query at all
    "",
    "SELECT",
    "SELECT 1",
    "SELECT * FROM small.variants WHERE pos = $1",
]


@pytest.mark.parametrize("query", ABUSE)
def test_abuse_is_refused_by_the_guard(query: str) -> None:
    with pytest.raises(QueryError) as refused:
        plan_query(query, VISIBLE)
    message = str(refused.value)
    assert message
    for internal in ("src0", "__genofed", "main.variants"):  # only echoed if the caller wrote it
        assert internal not in message or internal in query


def test_the_corpus_is_large_and_distinct() -> None:
    assert len(ABUSE) >= 40
    assert len(set(ABUSE)) == len(ABUSE)


def _digest(root: Path) -> str:
    """Every file outside the audit log and the per-request state, with its bytes."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in ("audit", "state"):
            continue
        digest.update(str(relative).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def small_dc_node(tmp_path_factory: pytest.TempPathFactory) -> NodeDir:
    node = make_node(tmp_path_factory.mktemp("dc") / "node")
    settings = DatasetSettings(granularity="record", tier="public")
    ingest_vcf(
        node, "small", SMALL_VCF, assembly="GRCh38", individuals=SMALL_CLINICAL, settings=settings
    )
    ingest_vcf(
        node,
        "secret",
        SMALL_VCF,
        assembly="GRCh38",
        settings=DatasetSettings(granularity="record", tier="controlled"),
    )
    return node


def test_abuse_over_http_changes_nothing(small_dc_node: NodeDir) -> None:
    """Each attempt gets a 4xx ErrorResponse that says what is wrong, the node keeps
    serving, and no file of the node (or the attempts' targets) is created or changed."""
    with TestClient(create_app(small_dc_node.root)) as client:
        before = _digest(small_dc_node.root)  # after start-up, which creates the DAC's files
        for query in ABUSE:
            response = client.post("/data-connect/search", json={"query": query})
            assert response.status_code in (400, 404), (query, response.text)
            errors = response.json()["errors"]
            assert errors[0]["title"] and errors[0]["detail"], query
            assert "root:x:0" not in response.text  # no file content ever comes back
        still = client.post(
            "/data-connect/search", json={"query": "SELECT count(*) AS n FROM small.variants"}
        )
        assert still.status_code == 200 and int(still.json()["data"][0]["n"]) > 0
        assert _digest(small_dc_node.root) == before
    for leftover in ("genofed-escape.csv", "genofed-escape.db", "genofed-escape"):
        assert not (Path("/tmp") / leftover).exists()


def test_translation_keeps_meaning_and_numbers_parameters() -> None:
    plan = plan_query(
        "SELECT chrom, pos FROM small.variants WHERE pos = ? AND ref = ? AND alt IN (?, ?) LIMIT 5",
        VISIBLE,
    )
    assert plan.parameters == 4
    assert "$1" in plan.sql and "$4" in plan.sql and "?" not in plan.sql
    assert plan.tables == ("small.variants",)
    assert '"small.variants"' in plan.sql


def test_point_queries_are_pinned_to_index_rows() -> None:
    """chrom = ? AND pos = ? on a variants table: the plan adds the row range, and its
    exact variant leaves the two conditions to the index (and only those two)."""
    variants = replace(VISIBLE["small.variants"], dataset="small")
    visible = {**VISIBLE, "small.variants": variants}
    plan = plan_query(
        "SELECT v.ref FROM small.variants v WHERE ? = v.chrom AND v.pos = ? AND v.alt = ?",
        visible,
    )
    assert plan.point is not None
    assert (plan.point.chrom, plan.point.pos) == (("parameter", 0), ("parameter", 1))
    assert "__genofed_row BETWEEN $4 AND $5" in plan.sql and "$1 = v.chrom" in plan.sql
    exact = plan.point.sql
    assert "chrom" not in exact and "pos =" not in exact
    assert "NOT $1 IS NULL" in exact and "NOT $2 IS NULL" in exact and "v.alt = $3" in exact
    literal = plan_query(
        "SELECT ref FROM small.variants WHERE chrom = '22' AND pos = 5", visible
    ).point
    assert literal is not None and literal.pos == ("value", 5.0)
    assert "chrom" not in literal.sql and "TRUE" in literal.sql
    # `*` leaves out the row id of the view read; the table as a row value is not pinned
    star = plan_query("SELECT * FROM small.variants WHERE chrom = '1' AND pos = 5", visible)
    assert "* EXCLUDE (__genofed_row)" in star.sql and star.point is not None
    as_row = "SELECT variants FROM small.variants WHERE chrom = '1' AND pos = 5"
    assert plan_query(as_row, visible).point is None
    # not pinned: another table, no dataset, or a condition that is not a conjunct
    assert (
        plan_query("SELECT ref FROM small.variants WHERE chrom = '22' OR pos = 5", visible).point
        is None
    )
    assert (
        plan_query("SELECT ref FROM small.variants WHERE chrom = '22' AND pos = 5", VISIBLE).point
        is None
    )


def test_names_with_dots_and_colons_and_qualified_columns() -> None:
    plan = plan_query(
        'SELECT visits.id FROM "cohort:2024.visits" AS visits WHERE visits.age > 60', VISIBLE
    )
    assert plan.tables == ("cohort:2024.visits",)
    plan = plan_query("SELECT individuals.id FROM small.individuals", VISIBLE)
    assert '"small.individuals" AS "individuals"' in plan.sql


def test_ga4gh_type_becomes_a_ref_and_is_removed() -> None:
    plan = plan_query(
        "SELECT ga4gh_type(id, '$ref:https://schemablocks.org/Person.json') AS person, sex "
        "FROM small.individuals",
        VISIBLE,
    )
    assert plan.refs == {"person": "https://schemablocks.org/Person.json"}
    assert "ga4gh_type" not in plan.sql.lower()
    with pytest.raises(QueryError, match="ga4gh_type"):
        plan_query("SELECT id FROM small.individuals WHERE ga4gh_type(id, '$ref:x') = 'a'", VISIBLE)
    with pytest.raises(QueryError, match=r"\$ref"):
        plan_query("SELECT ga4gh_type(id, 'x') FROM small.individuals", VISIBLE)


def test_trino_functions_translate_for_duckdb() -> None:
    plan = plan_query(
        "SELECT json_extract_scalar(doc, '$.sex.label') AS s, IF(sex = 'male', 1, 0) AS m, "
        "substring(id, 2) AS rest, id || '!' AS shout, extract(year FROM current_date) AS y, "
        "CAST(? AS DATE) AS d FROM small.individuals",
        VISIBLE,
    )
    assert "CASE WHEN" in plan.sql and plan.parameters == 1


AGGREGATE_ONLY = frozenset({"small.individuals", "small.variants"})


def test_aggregate_only_callers_get_hidden_record_counts() -> None:
    plan = plan_query(
        "SELECT sex, count(*) AS n, avg(CAST(json_extract_scalar(info, '$.bmi') AS DOUBLE)) "
        "FROM small.individuals GROUP BY sex",
        VISIBLE,
        AGGREGATE_ONLY,
    )
    assert plan.aggregate is not None and plan.aggregate.count_columns == (1,)
    assert HIDDEN_COUNT in plan.sql and HIDDEN_IDS in plan.sql
    assert '"__genofed_rows:small.individuals"' in plan.sql
    variants = plan_query("SELECT count(*) FROM small.variants", VISIBLE, AGGREGATE_ONLY)
    assert HIDDEN_IDS not in variants.sql  # rows are variants, not people


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("SELECT id FROM small.individuals", "GROUP BY"),
        ("SELECT * FROM small.individuals", "GROUP BY|\\*"),
        ("SELECT max(id) FROM small.individuals", "MAX"),
        (
            "SELECT min(CAST(json_extract_scalar(info, '$.bmi') AS DOUBLE)) FROM small.individuals",
            "MIN",
        ),
        ("SELECT array_agg(id) FROM small.individuals", "ARRAYAGG|ARRAY_AGG"),
        ("SELECT sex, id, count(*) FROM small.individuals GROUP BY sex", "id"),
        ("SELECT count(*) + length(sex) FROM small.individuals", "nothing around it"),
        ("SELECT count(*) FROM (SELECT * FROM small.individuals) t", "subqueries"),
        (
            "SELECT count(*) FROM small.individuals i JOIN small.variants v ON i.id = v.ref",
            "joined",
        ),
        ("WITH x AS (SELECT sex FROM small.individuals) SELECT count(*) FROM x", "one SELECT"),
        ("SELECT count(*) OVER () FROM small.individuals", "window"),
        ("SELECT sex FROM small.individuals GROUP BY sex", "count, sum or avg"),
    ],
)
def test_aggregate_only_refusals(query: str, reason: str) -> None:
    with pytest.raises(QueryError, match=reason):
        plan_query(query, VISIBLE, AGGREGATE_ONLY)


def test_aggregate_over_unnested_lists_is_allowed() -> None:
    plan = plan_query(
        "SELECT substring(d, 1, 7) AS chapter, count(*) AS n FROM small.individuals, "
        "UNNEST(diseases) AS u(d) GROUP BY 1",
        VISIBLE,
        AGGREGATE_ONLY,
    )
    assert plan.aggregate is not None and plan.aggregate.count_columns == (1,)
