"""Functional annotations carried in a VCF: SnpEff ``ANN`` and Ensembl VEP ``CSQ``.

Both give, per ALT allele and transcript, a gene symbol, an HGVS coding change and an HGVS
protein change. Beacon asks for genes (``geneId``), 1-letter amino-acid changes
(``aminoacidChange`` = ``V600E``) and HGVS short forms (``genomicAlleleShortForm``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_AA3 = {
    "Ala": "A",
    "Arg": "R",
    "Asn": "N",
    "Asp": "D",
    "Cys": "C",
    "Gln": "Q",
    "Glu": "E",
    "Gly": "G",
    "His": "H",
    "Ile": "I",
    "Leu": "L",
    "Lys": "K",
    "Met": "M",
    "Phe": "F",
    "Pro": "P",
    "Ser": "S",
    "Thr": "T",
    "Trp": "W",
    "Tyr": "Y",
    "Val": "V",
    "Ter": "*",
    "Sec": "U",
    "Pyl": "O",
    "Xaa": "X",
}
_P_SIMPLE = re.compile(r"^p\.\(?([A-Z][a-z]{2}|\*)(\d+)([A-Z][a-z]{2}|\*|=)\)?$")


@dataclass
class AlleleAnnotation:
    genes: set[str] = field(default_factory=set)
    aa_changes: set[str] = field(default_factory=set)
    hgvs: set[str] = field(default_factory=set)
    effects: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class AnnotationFormat:
    """Where the fields sit in one ``|``-separated annotation entry."""

    tag: str  # "ANN" or "CSQ"
    allele: int
    effect: int
    gene: int
    feature: int
    hgvs_c: int
    hgvs_p: int


def detect_format(header_lines: list[str]) -> AnnotationFormat | None:
    """Read the ``##INFO=<ID=ANN|CSQ`` header line to learn the field order."""
    for line in header_lines:
        for tag in ("ANN", "CSQ"):
            if line.startswith(f"##INFO=<ID={tag},"):
                match = re.search(r"(?:Format|Functional annotations):\s*'?([^\"']+)", line)
                if not match:
                    continue
                names = [n.strip().lower() for n in match.group(1).split("|")]
                return _format_from_names(tag, names)
    return None


def _format_from_names(tag: str, names: list[str]) -> AnnotationFormat | None:
    def find(*candidates: str) -> int:
        for candidate in candidates:
            if candidate in names:
                return names.index(candidate)
        return -1

    fmt = AnnotationFormat(
        tag=tag,
        allele=find("allele"),
        effect=find("annotation", "consequence"),
        gene=find("gene_name", "symbol"),
        feature=find("feature_id", "feature"),
        hgvs_c=find("hgvs.c", "hgvsc"),
        hgvs_p=find("hgvs.p", "hgvsp"),
    )
    return fmt if fmt.allele >= 0 else None


def protein_change_1letter(hgvs_p: str) -> str | None:
    """``p.Val600Glu`` (optionally ``ENSP…:p.(Val600Glu)``) → ``V600E``."""
    text = hgvs_p.split(":", 1)[-1]
    match = _P_SIMPLE.match(text)
    if not match:
        return None
    ref, pos, alt = match.groups()
    ref1 = "*" if ref == "*" else _AA3.get(ref)
    alt1 = ref1 if alt == "=" else ("*" if alt == "*" else _AA3.get(alt))
    if ref1 is None or alt1 is None:
        return None
    return f"{ref1}{pos}{alt1}"


def _allele_keys(ref: str, alt: str) -> set[str]:
    """Spellings of an ALT allele in annotations: VEP drops a shared first base."""
    keys = {alt}
    if len(ref) != len(alt) or len(ref) > 1:
        trimmed = alt[1:] if alt[:1] == ref[:1] else alt
        keys.add(trimmed or "-")
    return keys


def parse_annotations(
    value: str, fmt: AnnotationFormat, ref: str, alts: list[str]
) -> list[AlleleAnnotation]:
    """Split one record's annotation INFO value into one summary per ALT allele."""
    result = [AlleleAnnotation() for _ in alts]
    keys = [_allele_keys(ref, alt) for alt in alts]
    for entry in value.split(","):
        parts = entry.split("|")
        if len(parts) <= fmt.allele:
            continue
        allele = parts[fmt.allele]
        for index, allele_keys in enumerate(keys):
            if allele in allele_keys:
                _add(result[index], parts, fmt)
    return result


def _add(target: AlleleAnnotation, parts: list[str], fmt: AnnotationFormat) -> None:
    def get(i: int) -> str:
        return parts[i] if 0 <= i < len(parts) else ""

    if gene := get(fmt.gene):
        target.genes.add(gene)
    for effect in filter(None, get(fmt.effect).split("&")):
        target.effects.add(effect)
    hgvs_c = get(fmt.hgvs_c)
    if hgvs_c:
        feature = get(fmt.feature)
        target.hgvs.add(hgvs_c if ":" in hgvs_c or not feature else f"{feature}:{hgvs_c}")
    hgvs_p = get(fmt.hgvs_p)
    if hgvs_p and (aa := protein_change_1letter(hgvs_p)):
        target.aa_changes.add(aa)
