"""Descendant expansion against the real bundled HPO and ICD-10 data and small OBO files."""

import re
from pathlib import Path

import pytest

from genofed.store.ontology import OboTerm, OntologyIndex, load_obo

SEIZURE = "HP:0001250"
MOTOR_SEIZURE = "HP:0020219"
PHENOTYPIC_ABNORMALITY = "HP:0000118"

# A diamond (TST:4 under both TST:2 and TST:3) plus an obsolete term that must not count.
SMALL_OBO = """\
format-version: 1.2
ontology: tst

[Term]
id: TST:0000001
name: root

[Term]
id: TST:0000002
name: left
is_a: TST:0000001 ! root

[Term]
id: TST:0000003
name: right
is_a: TST:0000001 ! root

[Term]
id: TST:0000004
name: bottom
is_a: TST:0000002 ! left
is_a: TST:0000003 ! right

[Term]
id: TST:0000005
name: obsolete leaf
is_obsolete: true
is_a: TST:0000001

[Typedef]
id: part_of
name: part of
"""

# Operator terms hung below bundled terms: expansion must cross from HPO/ICD-10 into them.
BRIDGE_OBO = """\
format-version: 1.2

[Term]
id: LOCAL:0000001
name: site-specific seizure subtype
is_a: HP:0001250 ! Seizure

[Term]
id: LOCAL:0000002
name: site-specific diabetes subtype
is_a: ICD10:E11
"""


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> OntologyIndex:
    # Module-scoped: the first HPO look-up parses hp.obo, which takes seconds.
    bridge = tmp_path_factory.mktemp("obo") / "bridge.obo"
    bridge.write_text(BRIDGE_OBO)
    return OntologyIndex([bridge])


@pytest.fixture
def small_obo(tmp_path: Path) -> Path:
    path = tmp_path / "tst.obo"
    path.write_text(SMALL_OBO)
    return path


def test_hpo_descendants_include_self_and_children(index: OntologyIndex) -> None:
    seizures = index.descendants(SEIZURE)
    assert SEIZURE in seizures
    assert MOTOR_SEIZURE in seizures
    assert PHENOTYPIC_ABNORMALITY not in seizures
    assert index.knows(SEIZURE)
    assert index.label(SEIZURE) == "Seizure"


def test_hpo_top_level_term_has_thousands_of_descendants(index: OntologyIndex) -> None:
    assert len(index.descendants(PHENOTYPIC_ABNORMALITY)) > 10_000


def test_hpo_prefix_is_case_insensitive(index: OntologyIndex) -> None:
    assert index.knows("hp:0001250")
    assert index.descendants("hp:0001250") == index.descendants(SEIZURE)


def test_obsolete_hpo_term_is_not_known(index: OntologyIndex) -> None:
    # HP:0000057 is "obsolete Clitoromegaly" in the bundled hp.obo.
    assert not index.knows("HP:0000057")
    assert index.descendants("HP:0000057") == frozenset({"HP:0000057"})


def test_icd10_category_descendants(index: OntologyIndex) -> None:
    diabetes = index.descendants("ICD10:E11")
    assert {"ICD10:E11", "ICD10:E11.9"} <= diabetes
    assert "ICD10:E10.9" not in diabetes
    assert index.label("ICD10:E11.9") == "Type 2 diabetes mellitus without complications"


def test_icd10_subcategory_is_known_in_any_spelling(index: OntologyIndex) -> None:
    assert index.knows("ICD10:E11.9")
    assert index.descendants("icd10:e119") == frozenset({"ICD10:E11.9"})


def test_icd10_chapter_and_block_cover_codes_below(index: OntologyIndex) -> None:
    circulatory = index.descendants("ICD10:IX")
    assert {"ICD10:IX", "ICD10:I30-I52", "ICD10:I42", "ICD10:I42.0"} <= circulatory
    assert "ICD10:E11" not in circulatory
    assert "ICD10:I42" in index.descendants("ICD10:I30-I52")
    assert index.label("ICD10:IX") == "Diseases of the circulatory system"


def test_operator_terms_below_bundled_terms(index: OntologyIndex) -> None:
    assert "LOCAL:0000001" in index.descendants(SEIZURE)
    assert "LOCAL:0000002" in index.descendants("ICD10:E11")
    assert "LOCAL:0000002" in index.descendants("ICD10:IV")


@pytest.mark.parametrize("term_id", ["HP:9999999", "ICD10:Z99.99", "NOPE:1", "not a curie"])
def test_unknown_term_is_only_itself(index: OntologyIndex, term_id: str) -> None:
    assert not index.knows(term_id)
    assert index.label(term_id) is None
    assert index.descendants(term_id) == frozenset({term_id})


def test_prefixes(index: OntologyIndex) -> None:
    assert index.prefixes() == {"HP", "ICD10", "LOCAL"}


def test_obo_hierarchy(small_obo: Path) -> None:
    index = OntologyIndex([small_obo])
    assert index.descendants("TST:0000001") == {
        "TST:0000001",
        "TST:0000002",
        "TST:0000003",
        "TST:0000004",
    }
    assert index.descendants("TST:0000002") == {"TST:0000002", "TST:0000004"}
    assert index.descendants("tst:0000004") == {"TST:0000004"}
    assert index.label("TST:0000003") == "right"
    assert index.prefixes() == {"HP", "ICD10", "TST"}


def test_obo_obsolete_term_is_ignored(small_obo: Path) -> None:
    index = OntologyIndex([small_obo])
    assert not index.knows("TST:0000005")
    assert "TST:0000005" not in index.descendants("TST:0000001")


def test_load_obo_terms(small_obo: Path) -> None:
    terms = load_obo(small_obo)
    assert set(terms) == {"TST:0000001", "TST:0000002", "TST:0000003", "TST:0000004"}
    assert terms["TST:0000004"] == OboTerm("TST:0000004", "bottom", ("TST:0000002", "TST:0000003"))


def test_malformed_obo_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.obo"
    bad.write_text("[Term]\nid: TST:1\nis_a TST:2\n")
    with pytest.raises(ValueError, match=re.escape(str(bad)) + r".*line 3"):
        OntologyIndex([bad])


def test_non_utf8_obo_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.obo"
    bad.write_bytes(b"[Term]\nid: TST:1\nname: caf\xe9\n")
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_obo(bad)
