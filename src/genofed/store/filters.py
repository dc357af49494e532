"""Beacon v2 filters (ontology, alphanumeric, custom) evaluated against one dataset.

A filter selects entries of its *scope* entity; ``selection.py`` then links those entries
to the entity the caller asked for (individual ↔ biosample ↔ run ↔ analysis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from genofed._exceptions import QueryError
from genofed.store.dataset_reader import DatasetReader
from genofed.store.documents import as_number
from genofed.store.ontology import OntologyIndex

ENTITY_NAMES = {
    "individual": "individual",
    "individuals": "individual",
    "biosample": "biosample",
    "biosamples": "biosample",
    "run": "run",
    "runs": "run",
    "analysis": "analysis",
    "analyses": "analysis",
    "cohort": "cohort",
    "cohorts": "cohort",
    "dataset": "dataset",
    "datasets": "dataset",
    "genomicvariation": "genomicVariation",
    "genomicvariations": "genomicVariation",
    "genomicvariant": "genomicVariation",
    "g_variants": "genomicVariation",
    "g_variant": "genomicVariation",
}
OPERATORS = ("=", "<", ">", "!", ">=", "<=")
_SQL_NUMERIC = {"=": "=", "<": "<", ">": ">", "!": "!=", ">=": ">=", "<=": "<="}


@dataclass(frozen=True)
class Filter:
    kind: Literal["ontology", "alphanumeric", "custom"]
    id: str
    operator: str = "="
    value: str | None = None
    include_descendants: bool = True
    scope: str | None = None  # canonical entity name, None = decided per query

    def describe(self) -> str:
        """The filter as one string, the form receivedRequestSummary.filters takes."""
        if self.kind == "alphanumeric":
            return f"{self.id}{self.operator}{self.value}"
        return self.id


def canonical_scope(scope: object) -> str:
    name = ENTITY_NAMES.get(scope.strip().lower()) if isinstance(scope, str) else None
    if name is None:
        raise QueryError(
            f"unknown filter scope {scope!r}; use one of individual, biosample, run, "
            "analysis, cohort, dataset, genomicVariation"
        )
    return name


def parse_filter(raw: Any) -> Filter:
    """One element of ``query.filters`` (an object, or a string from a GET request)."""
    if isinstance(raw, str):
        return _parse_filter_text(raw)
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
        raise QueryError(f"each filter needs a string 'id'; got {raw!r}")
    scope = canonical_scope(raw["scope"]) if raw.get("scope") else None
    if "operator" in raw or "value" in raw:
        operator = raw.get("operator", "=")
        if operator not in OPERATORS:
            raise QueryError(f"filter operator {operator!r} is not one of {OPERATORS}")
        if "value" not in raw:
            raise QueryError(f"alphanumeric filter {raw['id']!r} needs a 'value'")
        return Filter("alphanumeric", raw["id"], operator, str(raw["value"]), scope=scope)
    include = raw.get("includeDescendantTerms", True)
    if not isinstance(include, bool):
        raise QueryError("includeDescendantTerms must be true or false")
    similarity = raw.get("similarity", "exact")
    if similarity not in ("exact", "high", "medium", "low"):
        raise QueryError(f"similarity {similarity!r} is not exact/high/medium/low")
    return Filter("ontology", raw["id"], include_descendants=include, scope=scope)


def _parse_filter_text(text: str) -> Filter:
    text = text.strip()
    for operator in (">=", "<=", "=", "<", ">", "!"):
        if operator in text:
            field, _, value = text.partition(operator)
            if field and ":" not in field:
                return Filter("alphanumeric", field.strip(), operator, value.strip())
    if not text:
        raise QueryError("empty filter in 'filters'")
    return Filter("ontology", text)


@dataclass
class FilterContext:
    """What a node knows about its terms and fields, to resolve scopes and warn early."""

    ontology: OntologyIndex
    term_scopes: dict[str, set[str]]  # term -> entities where it occurs
    path_scopes: dict[str, set[str]]  # field path -> entities where it occurs
    custom_terms: dict[str, tuple[str, str, set[str]]]  # custom id -> (path, value, scopes)
    identifiers: frozenset[str] = frozenset()  # field paths that identify one entry

    def names_individuals(self, flt: Filter) -> bool:
        """Whether the filter tests a field that identifies entries (an ``id``, an
        ``individualId``, or any text field whose values are nearly all different): such
        a filter asks about named people."""
        if flt.kind != "alphanumeric":
            return False
        return any(_path_matches(path, flt.id) for path in self.identifiers)

    def classify(self, flt: Filter) -> Filter:
        """Ontology-looking ids that are really custom terms become custom filters."""
        if (
            flt.kind == "ontology"
            and flt.id in self.custom_terms
            and flt.id not in self.term_scopes
        ):
            return Filter("custom", flt.id, scope=flt.scope)
        return flt

    def expand(self, flt: Filter) -> list[str]:
        if flt.include_descendants:
            return sorted(self.ontology.descendants(flt.id) | {flt.id})
        return [flt.id]

    def scopes_of(self, flt: Filter) -> set[str]:
        if flt.kind == "ontology":
            found: set[str] = set()
            for term in self.expand(flt):
                found |= self.term_scopes.get(term, set())
            return found
        if flt.kind == "custom":
            return self.custom_terms.get(flt.id, ("", "", set()))[2]
        return {e for p, es in self.path_scopes.items() if _path_matches(p, flt.id) for e in es}

    def warning(self, flt: Filter) -> str | None:
        """Why a filter can match nothing here, or None if it is a known term/field."""
        if is_variant_field(flt) or self.scopes_of(flt):
            return None
        if flt.kind == "ontology":
            if self.ontology.knows(flt.id):
                return None  # a real term that no record here carries: a true zero
            return (
                f"filter term {flt.id!r} is not known to this beacon; "
                "see /filtering_terms for the terms it can filter on"
            )
        if flt.kind == "custom":
            return f"custom filter {flt.id!r} is not defined here; see /filtering_terms"
        return (
            f"alphanumeric filter field {flt.id!r} does not occur in any record here; "
            "see /filtering_terms"
        )


VARIANT_FIELDS = ("geneIds", "aminoacidChanges", "variantType")
PERSON_ENTITIES = ("individual", "biosample", "run", "analysis")
# A text field is an identifier when nearly all its values differ, in a dataset of at least
# this many entries (in a smaller one every field looks unique).
_UNIQUE_SHARE = 0.9
_UNIQUE_MIN_ENTRIES = 10


def identifier_paths(
    value_paths: list[tuple[str, str, int, bool]], entries: dict[str, int]
) -> set[str]:
    """The field paths of person-level entries that identify one entry: ``id``, a path
    ending in ``Id``/``_id`` (``individualId``, ``info.patient_id``), or a text field
    whose values are nearly all different. Ontology-coded fields (``sex.id``,
    ``diseaseCode.id``) are not: their values are shared."""
    found = set()
    for entity, path, distinct, numeric in value_paths:
        if entity not in PERSON_ENTITIES or numeric:
            continue
        last = path.rsplit(".", 1)[-1]
        named = path == "id" or (last != "id" and last.lower().endswith(("id", "_id")))
        n = entries.get(entity, 0)
        unique = n >= _UNIQUE_MIN_ENTRIES and distinct >= _UNIQUE_SHARE * n
        if named or unique:
            found.add(path)
    return found


def is_variant_field(flt: Filter) -> bool:
    """An alphanumeric filter on a field of the variant records themselves."""
    return flt.kind == "alphanumeric" and (
        flt.scope == "genomicVariation" or flt.id.split(".")[-1] in VARIANT_FIELDS
    )


def _path_matches(path: str, field: str) -> bool:
    return f".{field}." in f".{path}."


def matching_ids(
    reader: DatasetReader, flt: Filter, entity: str, context: FilterContext
) -> set[str]:
    """Ids of ``entity`` entries in this dataset that the filter selects."""
    if flt.kind == "ontology":
        return reader.ids_with_terms(entity, context.expand(flt))
    if flt.kind == "custom":
        path, value, _ = context.custom_terms[flt.id]
        return reader.ids_with_value(entity, "path = ? AND lower(text) = lower(?)", [path, value])
    value = flt.value or ""
    path_sql = "contains('.' || path || '.', ?)"
    field = f".{flt.id}."
    number = as_number(value)
    if number is None and flt.operator not in ("=", "!"):
        raise QueryError(
            f"operator {flt.operator!r} on {flt.id!r} needs a number or an ISO 8601 duration "
            f"such as P70Y; got {value!r}"
        )
    if number is not None and flt.operator != "!":
        op = _SQL_NUMERIC[flt.operator]
        return reader.ids_with_value(entity, f"{path_sql} AND num {op} ?", [field, number])
    if number is not None:
        matched = reader.ids_with_value(entity, f"{path_sql} AND num = ?", [field, number])
    else:
        matched = reader.ids_with_value(entity, f"{path_sql} AND text ILIKE ?", [field, value])
    if flt.operator == "=":
        return matched
    # "!" is decided per entry over all its values on the field: one stored value that
    # is not "European" (the ontology id next to the label "European") must not make a
    # European match "ethnicity ! European". Entries without the field are not selected.
    return reader.ids_with_value(entity, path_sql, [field]) - matched
