"""A dataset's individuals as an analysis frame: one row per individual, one column per
variable an analysis names.

Variables (the names formulas use):

* ``sex``: ``female`` or ``male`` (other and unknown sex are missing);
* ``age``: years, from ``info.age`` (an ISO 8601 duration);
* a measure recorded under ``info`` (``bmi``, ``smoker``...): a number where every value
  is one, else text (a categorical variable);
* a phenotype or disease term, written with ``_`` for ``:`` and ``.`` (``HP_0001250``,
  ``ICD10_G40``): 1 if the individual has the term or one of its descendants, else 0.

Only the variables asked for are read.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from genofed._exceptions import QueryError
from genofed.store.dataset_reader import DatasetReader
from genofed.store.ontology import OntologyIndex

_TERM_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9]*)_([A-Za-z0-9_]+)$")
_SEXES = {"female": "female", "male": "male"}


def term_of(name: str, known_prefixes: set[str]) -> str | None:
    """The CURIE a variable name stands for (``HP_0001250`` → ``HP:0001250``,
    ``ICD10_G40_1`` → ``ICD10:G40.1``), or ``None`` if it is not a term's name."""
    match = _TERM_NAME.match(name)
    if match is None or match.group(1) not in known_prefixes:
        return None
    prefix, rest = match.groups()
    if prefix.upper().startswith("ICD10"):
        head, _, tail = rest.partition("_")
        return f"{prefix}:{head}{'.' + tail.replace('_', '') if tail else ''}"
    return f"{prefix}:{rest.replace('_', ':')}"


def individuals_frame(
    reader: DatasetReader,
    names: set[str],
    ontology: OntologyIndex,
    *,
    ids: set[str] | None = None,
) -> pd.DataFrame:
    """The individuals of ``reader`` (or those of ``ids``: a cohort) with the variables
    ``names``, indexed by individual id. Unknown names are refused, naming them."""
    everyone = reader.entry_ids("individual")
    index = [i for i in everyone if ids is None or i in ids]
    frame = pd.DataFrame(index=pd.Index(index, name="individual_id"))
    values = _values(reader, names)
    recorded = {t for _, t, _ in reader.term_index()}
    prefixes = {t.split(":", 1)[0] for t in recorded} | ontology.prefixes()
    unknown = []
    for name in sorted(names):
        if name == "sex":
            sexes = values.get("sex.label", {})
            frame[name] = [_SEXES.get(str(sexes.get(i, ("", None))[0]).lower()) for i in index]
        elif name == "age":
            ages = values.get("info.age.iso8601duration", {})
            frame[name] = [ages.get(i, (None, None))[1] for i in index]
            frame[name] = frame[name].astype("float64")
        elif f"info.{name}" in values:
            column = values[f"info.{name}"]
            cells = [column.get(i) for i in index]
            numbers = [c[1] if c else None for c in cells]
            if all(c is None or n is not None for c, n in zip(cells, numbers, strict=True)):
                frame[name] = pd.array(numbers, dtype="Float64").astype("float64")
            else:
                frame[name] = [c[0] if c else None for c in cells]
        elif (term := term_of(name, prefixes)) is not None:
            if term not in recorded and not ontology.knows(term):
                unknown.append(f"{name} (no term {term} here or in the ontologies)")
                continue
            wanted = sorted(ontology.descendants(term) | {term})
            having = reader.ids_with_terms("individual", wanted)
            frame[name] = np.array([1.0 if i in having else 0.0 for i in index])
        else:
            unknown.append(name)
    if unknown:
        raise QueryError(
            f"unknown variable(s) {', '.join(unknown)}: use sex, age, a measure under info "
            "(see /beacon/v2/filtering_terms), or a term as HP_0001250 or ICD10_G40"
        )
    return frame


def _values(reader: DatasetReader, names: set[str]) -> dict[str, dict[str, tuple[str, float]]]:
    """path → individual id → (text, number) for the paths the names may use (only those:
    a dataset's values are read per path)."""
    paths = {f"info.{n}" for n in names}
    if "sex" in names:
        paths.add("sex.label")
    if "age" in names:
        paths.add("info.age.iso8601duration")
    if not paths:
        return {}
    rows = (
        reader.cursor()
        .execute(
            "SELECT path, id, text, num FROM entry_values WHERE entity = 'individual' "
            "AND path IN (SELECT unnest(?))",
            [sorted(paths)],
        )
        .fetchall()
    )
    out: dict[str, dict[str, tuple[str, float]]] = {}
    for path, entry_id, text, number in rows:
        out.setdefault(path, {})[entry_id] = (text, number)
    return out
