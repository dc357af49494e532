"""Reference assemblies: names, contig synonyms and chromosome lengths.

Beacon clients name chromosomes in many ways (``22``, ``chr22``, ``NC_000022.11``,
``refseq:NC_000022.11``); the store keeps one canonical name (``22``, ``X``, ``Y``, ``MT``)
so every spelling finds the same rows. Lengths let ingest catch a VCF declared with the
wrong assembly before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHROMOSOMES: tuple[str, ...] = (*(str(i) for i in range(1, 23)), "X", "Y", "MT")

_LENGTHS = {
    "GRCh37": (
        249250621,
        243199373,
        198022430,
        191154276,
        180915260,
        171115067,
        159138663,
        146364022,
        141213431,
        135534747,
        135006516,
        133851895,
        115169878,
        107349540,
        102531392,
        90354753,
        81195210,
        78077248,
        59128983,
        63025520,
        48129895,
        51304566,
        155270560,
        59373566,
        16569,
    ),
    "GRCh38": (
        248956422,
        242193529,
        198295559,
        190214555,
        181538259,
        170805979,
        159345973,
        145138636,
        138394717,
        133797422,
        135086622,
        133275309,
        114364328,
        107043718,
        101991189,
        90338345,
        83257441,
        80373285,
        58617616,
        64444167,
        46709983,
        50818468,
        156040895,
        57227415,
        16569,
    ),
}
# RefSeq accession versions of GRCh37 chromosomes 1..24; GRCh38 is one higher for each.
_GRCH37_REFSEQ_VERSION = (
    10,
    11,
    11,
    11,
    9,
    11,
    13,
    10,
    11,
    10,
    9,
    11,
    10,
    8,
    9,
    9,
    10,
    9,
    9,
    10,
    8,
    10,
    10,
    9,
)
_ASSEMBLY_SYNONYMS = {
    "grch37": "GRCh37",
    "hg19": "GRCh37",
    "b37": "GRCh37",
    "hs37d5": "GRCh37",
    "grch38": "GRCh38",
    "hg38": "GRCh38",
    "b38": "GRCh38",
}
ASSEMBLIES: tuple[str, ...] = tuple(_LENGTHS)


@dataclass(frozen=True)
class ContigName:
    """A canonical chromosome plus the assembly its spelling implies, if any."""

    chrom: str
    assembly: str | None = None


# Patch releases (GRCh37.p13) and NCBI assembly accessions name the same coordinates as
# their major release. The versions of GCF_/GCA_000001405 are NCBI's: GRCh37 is RefSeq
# .13 (GRCh37) to .25 (GRCh37.p13) and GenBank .1 to .14; GRCh38 is RefSeq .26 to .40
# (GRCh38.p14) and GenBank .15 to .29.
_PATCH = re.compile(r"(grch3[78])\.p\d{1,2}")
_ACCESSION = re.compile(r"gc([af])_000001405\.(\d{1,2})")
_ACCESSION_VERSIONS = {
    "f": {"GRCh37": range(13, 26), "GRCh38": range(26, 41)},
    "a": {"GRCh37": range(1, 15), "GRCh38": range(15, 30)},
}


def canonical_assembly(name: str) -> str | None:
    """``hg19``, ``GRCh37.p13`` or ``GCF_000001405.25`` → ``GRCh37``; ``None`` when the
    name is not a known human assembly."""
    key = name.strip().lower()
    if key in _ASSEMBLY_SYNONYMS:
        return _ASSEMBLY_SYNONYMS[key]
    if patch := _PATCH.fullmatch(key):
        return _ASSEMBLY_SYNONYMS[patch.group(1)]
    if accession := _ACCESSION.fullmatch(key):
        version = int(accession.group(2))
        for assembly, versions in _ACCESSION_VERSIONS[accession.group(1)].items():
            if version in versions:
                return assembly
    return None


def chromosome_length(assembly: str, chrom: str) -> int:
    return _LENGTHS[assembly][CHROMOSOMES.index(chrom)]


def parse_contig(name: str) -> ContigName | None:
    """Canonicalise a chromosome name; ``None`` if it is not a primary human chromosome."""
    raw = name.strip()
    low = raw.lower()
    for prefix in ("refseq:", "chr"):
        if low.startswith(prefix):
            raw, low = raw[len(prefix) :], low[len(prefix) :]
    if low.startswith("nc_"):
        return _parse_refseq(raw)
    if low in ("m", "mt"):
        return ContigName("MT")
    upper = raw.upper()
    if upper in CHROMOSOMES:
        return ContigName(upper)
    return None


def _parse_refseq(accession: str) -> ContigName | None:
    body, _, version = accession.partition(".")
    if body.upper() == "NC_012920":
        return ContigName("MT")
    try:
        number = int(body[3:])
    except ValueError:
        return None
    if not 1 <= number <= 24:
        return None
    chrom = CHROMOSOMES[number - 1]
    assembly = None
    if version.isdigit():
        v37 = _GRCH37_REFSEQ_VERSION[number - 1]
        assembly = {v37: "GRCh37", v37 + 1: "GRCh38"}.get(int(version))
    return ContigName(chrom, assembly)


def refseq_accession(assembly: str, chrom: str) -> str:
    """RefSeq accession of a chromosome, used in HGVS ids of returned variants."""
    if chrom == "MT":
        return "NC_012920.1"
    index = CHROMOSOMES.index(chrom)
    version = _GRCH37_REFSEQ_VERSION[index] + (1 if assembly == "GRCh38" else 0)
    return f"NC_{index + 1:06d}.{version}"


def guess_assembly(contig_lengths: dict[str, int]) -> str | None:
    """The assembly whose chromosome lengths match a VCF header's ``##contig`` lines."""
    votes: dict[str, int] = {}
    for name, length in contig_lengths.items():
        contig = parse_contig(name)
        if contig is None or contig.chrom == "MT":
            continue
        for assembly in ASSEMBLIES:
            if chromosome_length(assembly, contig.chrom) == length:
                votes[assembly] = votes.get(assembly, 0) + 1
    return max(votes, key=lambda a: votes[a]) if votes else None
