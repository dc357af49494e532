"""Beacon entry documents: building them from clinical tables and indexing them for filters.

Every entry (individual, biosample, run, analysis, cohort, dataset) is kept as its Beacon
JSON document. For filtering, each document is flattened once at ingest into
- the ontology terms it mentions (any ``{"id": "PREFIX:…"}`` object), and
- its scalar leaves as ``(path, text, number)``, where ISO 8601 durations become years,
so that ontology, alphanumeric and custom filters are plain SQL at query time.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import isodate

from genofed._exceptions import IngestError
from genofed.store.ontology import standard_label

CURIE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*:\S+$")
SEX_TERMS = {
    "female": ("NCIT:C16576", "female"),
    "f": ("NCIT:C16576", "female"),
    "2": ("NCIT:C16576", "female"),
    "male": ("NCIT:C20197", "male"),
    "m": ("NCIT:C20197", "male"),
    "1": ("NCIT:C20197", "male"),
}
UNKNOWN_SEX = ("NCIT:C17998", "unknown")
# How a clinical file says the sex is not known (PLINK's 0 among them).
_UNKNOWN_SEX_CELLS = {"", "unknown", "u", "0", "na", "n/a", "not known", "unspecified", "other"}
# The identifiers of the ontologies a clinical file names most, with their shapes: a
# malformed one (HP:00008222, ICD-10:E11.9) would be a term no filter ever finds.
_CURIE_SHAPES = {
    "HP": re.compile(r"HP:\d{7}"),
    "ICD10": re.compile(r"ICD10:[A-Z]\d{2}(\.\d{1,4})?"),
    "NCIT": re.compile(r"NCIT:C\d+"),
    "MONDO": re.compile(r"MONDO:\d{7}"),
    "ORPHA": re.compile(r"ORPHA:\d+"),
    "OMIM": re.compile(r"OMIM:\d{6}"),
    "EFO": re.compile(r"EFO:\d{7}"),
    "SNOMED": re.compile(r"SNOMED:\d+"),
}
_CURIE_EXAMPLES = {
    "HP": "HP:0001250",
    "ICD10": "ICD10:E11.9",
    "NCIT": "NCIT:C16576",
    "MONDO": "MONDO:0005148",
    "ORPHA": "ORPHA:558",
    "OMIM": "OMIM:154700",
    "EFO": "EFO:0000400",
    "SNOMED": "SNOMED:44054006",
}
_PREFIX_SPELLINGS = {"ICD-10": "ICD10", "ICD10CM": "ICD10", "HPO": "HP", "NCI": "NCIT"}


def curie_problem(curie: str) -> str | None:
    """Why ``curie`` is not a well-formed ontology term, or ``None``."""
    if not CURIE.match(curie):
        return "is not an ontology CURIE such as HP:0001250 or ICD10:E11.9"
    prefix = curie.split(":", 1)[0]
    if prefix.upper() in _PREFIX_SPELLINGS:
        right = _PREFIX_SPELLINGS[prefix.upper()]
        return f"uses the prefix {prefix!r}; write it {right}: (e.g. {_CURIE_EXAMPLES[right]})"
    shape = _CURIE_SHAPES.get(prefix)
    if shape is not None and not shape.fullmatch(curie):
        return f"is not a well-formed {prefix} term (e.g. {_CURIE_EXAMPLES[prefix]})"
    return None


_LIST_COLUMNS = {
    "phenotypes": "phenotypicFeatures",
    "hpo": "phenotypicFeatures",
    "phenotypic_features": "phenotypicFeatures",
    "diseases": "diseases",
    "icd10": "diseases",
}


@dataclass
class FlatDocument:
    """What filters need from one document."""

    terms: dict[str, str | None] = field(default_factory=dict)  # CURIE -> label
    values: list[tuple[str, str, float | None]] = field(default_factory=list)


def duration_years(text: str) -> float | None:
    """``P45Y6M`` → 45.5; ``None`` if the text is not an ISO 8601 duration."""
    if not text.startswith("P"):
        return None
    try:
        duration = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError):
        return None
    if isinstance(duration, isodate.Duration):
        years = float(duration.years) + float(duration.months) / 12
        return years + duration.tdelta.total_seconds() / (365.25 * 86400)
    return duration.total_seconds() / (365.25 * 86400)


def _duration(years: float) -> str:
    """Years as an ISO 8601 duration to the month: 57.6 → ``P57Y7M`` (not ``P57Y``: an
    analysis of age must not lose a year's resolution at ingest)."""
    whole, months = divmod(round(years * 12), 12)
    return f"P{whole}Y{months}M" if months else f"P{whole}Y"


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        # Test the first character before trying: most strings (ids, labels) are not
        # numbers, and a failed float() costs an exception each.
        if value[0] in _NUMBER_START:
            try:
                return float(value)
            except ValueError:
                return None
        return duration_years(value)
    return None


_NUMBER_START = frozenset("0123456789+-.")


def flatten(doc: dict[str, Any]) -> FlatDocument:
    flat = FlatDocument()
    _walk(doc, "", flat)
    return flat


def _walk(node: Any, path: str, flat: FlatDocument) -> None:
    if isinstance(node, dict):
        term = node.get("id")
        if isinstance(term, str) and CURIE.match(term) and path:
            flat.terms.setdefault(term, node.get("label"))
        for key, value in node.items():
            if key.startswith("_"):
                continue
            _walk(value, f"{path}.{key}" if path else key, flat)
    elif isinstance(node, list):
        for item in node:
            _walk(item, path, flat)
    elif node is not None:
        text = str(node).lower() if isinstance(node, bool) else str(node)
        flat.values.append((path, text, as_number(node)))


def _curies(cell: str, *, source: str, line: int, column: str) -> list[str]:
    items = [c.strip() for c in re.split(r"[;|]", cell) if c.strip()]
    for item in items:
        problem = curie_problem(item)
        if problem is not None:
            raise IngestError(
                f"column {column!r} holds {item!r}, which {problem}; separate several with ';'",
                source=source,
                where=f"line {line}",
            )
    return items


def read_clinical_csv(
    path: Path,
    *,
    sample_column: str = "sample_id",
    label: Callable[[str], str | None] = standard_label,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(sample_id, individual document)`` for each row of a clinical CSV/TSV; each
    ontology term carries its name (from HPO and ICD-10; the id where none is known)."""
    source = str(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = reader.fieldnames or []
        if sample_column not in columns:
            raise IngestError(
                f"no sample id column {sample_column!r}; the columns are {columns}. "
                "Name the right one with --sample-column",
                source=source,
                where="line 1",
            )
        seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            sample_id = (row.get(sample_column) or "").strip()
            if not sample_id:
                raise IngestError(f"empty {sample_column!r}", source=source, where=f"line {line}")
            if sample_id in seen:
                raise IngestError(
                    f"sample {sample_id!r} appears twice", source=source, where=f"line {line}"
                )
            seen.add(sample_id)
            yield (
                sample_id,
                _individual_from_row(row, sample_id, source, line, label, sample_column),
            )


def _individual_from_row(
    row: dict[str, str],
    sample_id: str,
    source: str,
    line: int,
    label: Callable[[str], str | None],
    sample_column: str,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": (row.get("individual_id") or sample_id).strip()}
    sex_cell = (row.get("sex") or "").strip().lower()
    if sex_cell not in SEX_TERMS and sex_cell not in _UNKNOWN_SEX_CELLS:
        raise IngestError(
            f"sex {row.get('sex')!r} is not female (female, f, 2), male (male, m, 1) or "
            "unknown (blank, unknown, u, 0)",
            source=source,
            where=f"line {line}",
        )
    sex_id, sex_label = SEX_TERMS.get(sex_cell, UNKNOWN_SEX)
    doc["sex"] = {"id": sex_id, "label": sex_label}
    info: dict[str, Any] = {}
    for column, cell in row.items():
        if column is None:
            raise IngestError(
                "row has more cells than the header", source=source, where=f"line {line}"
            )
        key = column.strip()
        cell = (cell or "").strip()
        if key in (sample_column, "individual_id", "sex") or not cell:
            continue
        lowered = key.lower()
        if lowered in _LIST_COLUMNS:
            target = _LIST_COLUMNS[lowered]
            for curie in _curies(cell, source=source, line=line, column=key):
                term = {"id": curie, "label": label(curie) or curie}
                if target == "diseases":
                    doc.setdefault("diseases", []).append({"diseaseCode": term})
                else:
                    doc.setdefault("phenotypicFeatures", []).append({"featureType": term})
        elif lowered == "ethnicity" and CURIE.match(cell) and not curie_problem(cell):
            doc["ethnicity"] = {"id": cell, "label": label(cell) or cell}
        elif lowered == "age":
            years = as_number(cell)
            if years is None:
                raise IngestError(
                    f"age {cell!r} is neither years nor an ISO 8601 duration",
                    source=source,
                    where=f"line {line}",
                )
            info["age"] = {"iso8601duration": cell if cell.startswith("P") else _duration(years)}
        else:
            number = as_number(cell)
            info[key] = number if number is not None and not cell.startswith("P") else cell
    if info:
        doc["info"] = info
    return doc


def read_json_documents(path: Path) -> list[dict[str, Any]]:
    """A JSON file holding a list of objects (a BFF collection), with errors that point."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise IngestError(
            f"invalid JSON: {exc.msg}",
            source=str(path),
            where=f"line {exc.lineno} column {exc.colno}",
        ) from exc
    if not isinstance(data, list):
        raise IngestError("expected a JSON list of documents", source=str(path))
    for index, doc in enumerate(data):
        if not isinstance(doc, dict):
            raise IngestError(
                "each item must be a JSON object", source=str(path), where=f"item {index}"
            )
    return data
