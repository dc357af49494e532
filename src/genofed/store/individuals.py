"""Individuals linked to the samples of a VCF, and the entries a VCF dataset gets.

The clinical file is either a CSV/TSV (one row per sample) or a Beacon-Friendly-Format
``individuals.json`` whose ids are the sample ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genofed._exceptions import IngestError
from genofed.store.documents import read_clinical_csv, read_json_documents

# Biosample status/origin for samples known only from a VCF column: we know they were
# sequenced from a person, nothing more.
_SAMPLE_STATUS = {"id": "EFO:0009654", "label": "reference sample"}
_SAMPLE_ORIGIN = {"id": "OBI:0001479", "label": "specimen from organism"}


@dataclass
class Individuals:
    by_sample: dict[str, dict[str, Any]] = field(default_factory=dict)
    line_of: dict[str, int] = field(default_factory=dict)


def load_individuals(path: Path, *, sample_column: str = "sample_id") -> Individuals:
    if not path.is_file():
        raise IngestError("file not found", source=str(path))
    people = Individuals()
    if path.suffix.lower() == ".json":
        for index, doc in enumerate(read_json_documents(path)):
            if not isinstance(doc, dict) or "id" not in doc:
                raise IngestError(
                    "each individual needs an 'id'", source=str(path), where=f"item {index}"
                )
            doc = {k: v for k, v in doc.items() if not k.startswith("_") and k != "datasetId"}
            doc.setdefault("sex", {"id": "NCIT:C17998", "label": "unknown"})
            people.by_sample[str(doc["id"])] = doc
            people.line_of[str(doc["id"])] = index
        return people
    for line, (sample_id, doc) in enumerate(
        read_clinical_csv(path, sample_column=sample_column), start=2
    ):
        people.by_sample[sample_id] = doc
        people.line_of[sample_id] = line
    return people


def dataset_doc(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": meta["id"],
        "name": meta["name"],
        "description": meta["description"],
        "createDateTime": meta["created"],
        "updateDateTime": meta["created"],
        "info": {"assemblyId": meta["assembly"], "testData": meta["test_data"]},
    }


def cohort_doc(meta: dict[str, Any], n_individuals: int) -> dict[str, Any]:
    return {
        "id": f"{meta['id']}-cohort",
        "name": f"Individuals of dataset {meta['name']}",
        "cohortType": "beacon-defined",
        "cohortSize": n_individuals,
        "info": {"datasetId": meta["id"]},
    }


def dataset_entries(
    meta: dict[str, Any], samples: list[str], linked: dict[str, dict[str, Any]]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """All entry documents of a VCF dataset, in ``(entity, doc)`` pairs."""
    yield "dataset", dataset_doc(meta)
    seen: set[str] = set()
    for sample in samples:
        person = linked[sample]
        if person["id"] not in seen:
            seen.add(person["id"])
            yield "individual", person
        yield (
            "biosample",
            {
                "id": sample,
                "individualId": person["id"],
                "biosampleStatus": _SAMPLE_STATUS,
                "sampleOriginType": _SAMPLE_ORIGIN,
            },
        )
    yield "cohort", cohort_doc(meta, len(seen))
