"""The ``/filtering_terms`` documents: what a caller can filter on, and where."""

from __future__ import annotations

from typing import Any

from genofed.store.dataset_reader import DatasetReader
from genofed.store.live import LiveDatasets, custom_terms

_ONTOLOGY_NAMES = {
    "HP": ("Human Phenotype Ontology", "https://purl.obolibrary.org/obo/HP_"),
    "ICD10": (
        "International Classification of Diseases, 10th revision",
        "https://icd.who.int/browse10/2019/en#/",
    ),
    "NCIT": ("NCI Thesaurus", "http://purl.obolibrary.org/obo/NCIT_"),
    "MONDO": ("Mondo Disease Ontology", "http://purl.obolibrary.org/obo/MONDO_"),
    "EFO": ("Experimental Factor Ontology", "http://www.ebi.ac.uk/efo/EFO_"),
    "OBI": ("Ontology for Biomedical Investigations", "http://purl.obolibrary.org/obo/OBI_"),
    "UBERON": ("Uberon", "http://purl.obolibrary.org/obo/UBERON_"),
    "GENO": ("Genotype Ontology", "http://purl.obolibrary.org/obo/GENO_"),
    "LOINC": ("Logical Observation Identifiers Names and Codes", "https://loinc.org/"),
    "GAZ": ("Gazetteer", "http://purl.obolibrary.org/obo/GAZ_"),
}


def filtering_terms(
    live: LiveDatasets,
    *,
    scope: str | None = None,
    readers: list[DatasetReader],
    entry: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Terms of the chosen datasets (those the caller may see, without test data),
    optionally of one scope or one entry."""
    terms: dict[str, dict[str, Any]] = {}
    alphanumeric: dict[str, set[str]] = {}
    prefixes: set[str] = set()
    for reader in readers:
        for entity, term, label in _terms(reader, entry):
            if scope and entity != scope:
                continue
            item = terms.setdefault(term, {"type": "ontology", "id": term, "scopes": set()})
            if "label" not in item and label and label != term:
                item["label"] = label
            elif "label" not in item and (named := live.ontology.label(term)):
                item["label"] = named  # datasets ingested before terms carried names
            item["scopes"].add(entity)
            prefixes.add(term.split(":", 1)[0])
        if entry is None:
            for entity, path, _n, _numeric in reader.value_paths():
                if scope and entity != scope:
                    continue
                alphanumeric.setdefault(path, set()).add(entity)
    result: list[dict[str, Any]] = []
    for item in sorted(terms.values(), key=lambda t: t["id"]):
        prefix = item["id"].split(":", 1)[0]
        item["type"] = _ONTOLOGY_NAMES.get(prefix, (prefix, ""))[0]
        item["scopes"] = sorted(item["scopes"])
        result.append(item)
    if entry is None:
        for path, scopes in sorted(alphanumeric.items()):
            result.append({"type": "alphanumeric", "id": path, "scopes": sorted(scopes)})
        for custom_id, (_path, _value, scopes) in sorted(custom_terms(readers).items()):
            if scope and scope not in scopes:
                continue
            result.append({"type": "custom", "id": custom_id, "scopes": sorted(scopes)})
    resources = [
        {
            "id": p.lower(),
            "name": _ONTOLOGY_NAMES[p][0],
            "nameSpacePrefix": p,
            "iriPrefix": _ONTOLOGY_NAMES[p][1],
        }
        for p in sorted(prefixes)
        if p in _ONTOLOGY_NAMES
    ]
    return {"filteringTerms": result, "resources": resources}


def _terms(reader: DatasetReader, entry: tuple[str, str] | None):
    if entry is None:
        return reader.term_index()
    entity, entry_id = entry
    return (
        reader.cursor()
        .execute(
            "SELECT entity, term, any_value(label) FROM entry_terms WHERE entity = ? AND id = ? "
            "GROUP BY entity, term",
            [entity, entry_id],
        )
        .fetchall()
    )
