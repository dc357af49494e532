"""The Beacon v2 default model as this node serves it: entry types, paths and links."""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_BASE = (
    "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/models/json/"
    "beacon-v2-default-model"
)
API_VERSION = "v2.0.0"


@dataclass(frozen=True)
class EntryType:
    entity: str  # entity name used in the store and in filter scopes
    path: str  # URL path segment
    id: str  # Beacon entryType id
    name: str
    ontology: tuple[str, str]
    schema_folder: str
    schema_id: str
    links: tuple[str, ...]  # path segments reachable as /{path}/{id}/{link}
    collection: bool = False
    has_id_filtering_terms: bool = False


ENTRY_TYPES: tuple[EntryType, ...] = (
    EntryType(
        "analysis",
        "analyses",
        "analysis",
        "Bioinformatics analysis",
        ("edam:operation_2945", "Analysis"),
        "analyses",
        "beacon-analysis-v2.0.0",
        ("g_variants",),
    ),
    EntryType(
        "biosample",
        "biosamples",
        "biosample",
        "Biological Sample",
        ("NCIT:C70699", "Biospecimen"),
        "biosamples",
        "beacon-biosample-v2.0.0",
        ("analyses", "g_variants", "runs"),
    ),
    EntryType(
        "cohort",
        "cohorts",
        "cohort",
        "Cohort",
        ("NCIT:C61512", "Cohort"),
        "cohorts",
        "beacon-cohort-v2.0.0",
        ("analyses", "biosamples", "g_variants", "individuals", "runs"),
        collection=True,
        has_id_filtering_terms=True,
    ),
    EntryType(
        "dataset",
        "datasets",
        "dataset",
        "Dataset",
        ("NCIT:C47824", "Data set"),
        "datasets",
        "beacon-dataset-v2.0.0",
        ("analyses", "biosamples", "g_variants", "individuals", "runs"),
        collection=True,
        has_id_filtering_terms=True,
    ),
    EntryType(
        "genomicVariation",
        "g_variants",
        "genomicVariant",
        "Genomic Variants",
        ("ENSGLOSSARY:0000092", "Variant"),
        "genomicVariations",
        "beacon-g_variant-v2.0.0",
        ("analyses", "biosamples", "individuals", "runs"),
    ),
    EntryType(
        "individual",
        "individuals",
        "individual",
        "Individual",
        ("NCIT:C25190", "Person"),
        "individuals",
        "beacon-individual-v2.0.0",
        ("analyses", "biosamples", "g_variants", "runs"),
        has_id_filtering_terms=True,
    ),
    EntryType(
        "run",
        "runs",
        "run",
        "Sequencing run",
        ("NCIT:C148088", "Sequencing run"),
        "runs",
        "beacon-run-v2.0.0",
        ("analyses", "g_variants"),
    ),
)
BY_PATH = {e.path: e for e in ENTRY_TYPES}


def schema_url(entry: EntryType) -> str:
    return f"{SCHEMA_BASE}/{entry.schema_folder}/defaultSchema.json"


def returned_schema(entry: EntryType) -> dict[str, str]:
    return {"entityType": entry.id, "schema": entry.schema_id}


def entry_type_definition(entry: EntryType) -> dict:
    doc = {
        "id": entry.id,
        "name": entry.name,
        "ontologyTermForThisType": {"id": entry.ontology[0], "label": entry.ontology[1]},
        "partOfSpecification": f"Beacon {API_VERSION}",
        "description": f"{entry.name} entries of the Beacon v2 default model",
        "defaultSchema": {
            "id": entry.schema_id,
            "name": f"Default schema for {entry.name.lower()}",
            "referenceToSchemaDefinition": schema_url(entry),
            "schemaVersion": API_VERSION,
        },
        "additionallySupportedSchemas": [],
        "nonFilteredQueriesAllowed": True,
    }
    if entry.collection:
        doc["aCollectionOf"] = [{"id": "individual", "name": "Individuals"}]
    return doc
