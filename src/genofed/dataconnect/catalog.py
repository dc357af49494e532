"""The node's Data Connect tables and the locked-down engine that serves them.

Every table is a view in one in-memory DuckDB that attaches the node's files read-only:
each dataset's variants and individuals, and each registered table. After attaching, the
engine is locked: no file or network access, no extension loading, configuration frozen.
That is defence in depth only; the SQL guard (``sql.py``) already refuses anything but a
single SELECT over tables the caller may see.

Each table also has an internal view with ``__genofed_row``, the row's id in its source
table, which aggregate-only answers use to count distinct records and to guard against
differencing. Callers cannot name internal views: names are resolved by the guard.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from genofed.config import DataConnect, Granularity
from genofed.store.dataset_reader import DatasetReader
from genofed.store.registered_tables import RegisteredTable

ROW_ID = "__genofed_row"

VARIANT_COLUMNS = {
    "variant_id": "chrom-pos-ref-alt, unique in the dataset",
    "chrom": "Chromosome (1-22, X, Y, MT)",
    "pos": "1-based VCF position",
    "start": "0-based start (Beacon coordinates)",
    "end": "0-based exclusive end (Beacon coordinates)",
    "ref": "Reference allele",
    "alt": "Alternate allele (one row per ALT of a multi-allelic site)",
    "vtype": "SNP, MNP, INS, DEL or a symbolic type",
    "vcf_id": "The VCF ID column (e.g. an rsID), if any",
    "ac": "Alternate allele count, recomputed from the genotypes",
    "an": "Called alleles at the site",
    "af": "Alternate allele frequency (ac / an)",
    "n_het": "Heterozygous carriers",
    "n_homalt": "Homozygous carriers",
    "genes": "Genes from the VCF's functional annotation, if any",
    "aa_changes": "Protein changes from the annotation, if any",
    "hgvs": "HGVS expressions from the annotation, if any",
    "effects": "Sequence Ontology effects from the annotation, if any",
}
INDIVIDUAL_COLUMNS = {
    "id": "Individual id",
    "sex": "Sex, as a label",
    "sex_id": "Sex, as an ontology CURIE (NCIT)",
    "diseases": "Disease CURIEs (e.g. ICD10:E11.9)",
    "phenotypic_features": "Phenotype CURIEs (e.g. HP:0001250)",
    "info": "The operator's own clinical columns, as JSON",
    "doc": "The whole Beacon v2 individual document, as JSON",
}
_VARIANTS_COLUMNS_SQL = ", ".join(f'"{c}"' for c in VARIANT_COLUMNS)
_INDIVIDUALS_COLUMNS_SQL = (
    "id, doc->>'$.sex.label' AS sex, doc->>'$.sex.id' AS sex_id, "
    "CAST(json_extract_string(doc, '$.diseases[*].diseaseCode.id') AS VARCHAR[]) AS diseases, "
    "CAST(json_extract_string(doc, '$.phenotypicFeatures[*].featureType.id') AS VARCHAR[]) "
    "AS phenotypic_features, CAST(doc->'$.info' AS JSON) AS info, CAST(doc AS JSON) AS doc"
)


@dataclass(frozen=True)
class TableSource:
    """One table callers may name, and where its rows come from."""

    name: str
    description: str
    owner: str  # the dataset id or registered table name: the key of tier and grants
    tier: str | None  # tier given at ingest or registration (node.yaml may override)
    ceiling: Granularity  # the most this table ever gives anyone
    person_level: bool  # rows are people: aggregate answers are guarded against differencing
    database: Path
    select: str  # the public columns, as a select list
    source: str  # FROM (and WHERE) over the attached database {db}
    columns: dict[str, str] = field(default_factory=dict)
    dataset: str | None = None  # a variants table: its dataset, whose position index pins rows
    people: str | None = None  # the column naming each row's individual (a dataset's people)
    identifiers: frozenset[str] = frozenset()  # columns that identify a row's person

    @property
    def subject(self) -> str:
        """Whose people this table's aggregates are about, for the differencing guard:
        a dataset's individuals table shares them with the Beacon's answers."""
        if self.people is not None:
            return f"{self.owner}/individual"
        return f"data-connect:{self.name}"

    @property
    def internal(self) -> str:
        """The view with ROW_ID, for aggregate-only answers."""
        return f"__genofed_rows:{self.name}"


def dataset_tables(reader: DatasetReader) -> list[TableSource]:
    dataset = reader.dataset_id
    ceiling: Granularity = reader.granularity  # type: ignore[assignment]
    common = {"owner": dataset, "tier": reader.tier, "ceiling": ceiling}
    return [
        TableSource(
            name=f"{dataset}.variants",
            description=f"Variants of dataset {dataset} ({reader.assembly}): one row per ALT "
            "allele, counts recomputed from the genotypes",
            person_level=False,
            database=reader.version.database,
            select=_VARIANTS_COLUMNS_SQL,
            source="{db}.variants",
            dataset=dataset,
            columns=VARIANT_COLUMNS,
            **common,
        ),
        TableSource(
            name=f"{dataset}.individuals",
            description=f"Individuals of dataset {dataset}, with their clinical data",
            person_level=True,
            database=reader.version.database,
            select=_INDIVIDUALS_COLUMNS_SQL,
            source="{db}.entries WHERE entity = 'individual'",
            columns=INDIVIDUAL_COLUMNS,
            people="id",
            identifiers=frozenset({"id"}),
            **common,
        ),
    ]


def registered_table_source(table: RegisteredTable) -> TableSource:
    return TableSource(
        name=table.name,
        description=table.description or f"Table {table.name}, registered by the node operator",
        owner=table.name,
        tier=table.tier,
        ceiling="record",
        person_level=True,
        database=table.path,
        select="*",
        source="{db}.data",
        columns=table.columns,
    )


_LOCKDOWN = (
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET allow_unsigned_extensions = false",
    "SET lock_configuration = true",
)


class QueryEngine:
    """The locked DuckDB over ``sources``; ``cursor()`` gives each query its own connection."""

    def __init__(self, sources: list[TableSource], settings: DataConnect):
        self.sources = {s.name: s for s in sources}
        self._con = duckdb.connect(
            ":memory:",
            config={"threads": settings.threads, "memory_limit": settings.memory_limit},
        )
        self._lock = threading.Lock()
        self._local = threading.local()
        attached: dict[Path, str] = {}
        for source in sources:
            db = attached.get(source.database)
            if db is None:
                db = attached[source.database] = f"src{len(attached)}"
                self._con.execute(f"ATTACH '{_sql_string(source.database)}' AS {db} (READ_ONLY)")
            origin = source.source.format(db=db)
            # two views over the same rows: the one callers name, and one with row ids
            self._con.execute(
                f"CREATE VIEW {quote(source.name)} AS SELECT {source.select} FROM {origin}"
            )
            self._con.execute(
                f"CREATE VIEW {quote(source.internal)} AS "
                f"SELECT rowid AS {ROW_ID}, {source.select} FROM {origin}"
            )
        for statement in _LOCKDOWN:
            self._con.execute(statement)
        self._columns: dict[str, list[tuple[str, str]]] = {}

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            return self._con.cursor()

    def thread_cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's own connection, kept for its next query: opening one costs
        0.5 ms, a third of a point query. A caller that leaves a result unfinished must
        ``abort()`` it."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self.cursor()
        return cursor

    def columns(self, name: str) -> list[tuple[str, str]]:
        """``(column, DuckDB type)`` of a table's public view."""
        known = self._columns.get(name)
        if known is None:
            cur = self.cursor()
            try:
                rows = cur.execute(f"DESCRIBE {quote(name)}").fetchall()
            finally:
                cur.close()
            known = self._columns[name] = [(r[0], r[1]) for r in rows]
        return known

    def close(self) -> None:
        self._con.close()


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(path: Path) -> str:
    return str(path).replace("'", "''")


def row_count(engine: QueryEngine, name: str) -> int:
    cur = engine.cursor()
    try:
        result: Any = cur.execute(f"SELECT count(*) FROM {quote(name)}").fetchone()
        return int(result[0])
    finally:
        cur.close()
