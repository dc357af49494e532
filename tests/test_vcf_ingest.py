"""VCF ingest: counts recomputed from genotypes, multi-allelic splitting, atomic failures."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pytest
import zarr

from genofed import IngestError
from genofed.store.node_dir import NodeDir
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf
from tests.conftest import SMALL_CLINICAL, SMALL_VCF

HAVE_BGZIP = shutil.which("bgzip") is not None


def variant_rows(node: NodeDir, dataset: str) -> list[dict]:
    con = duckdb.connect(str(node.dataset(dataset).database), read_only=True)
    cur = con.execute("SELECT * FROM variants ORDER BY variant_idx")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    con.close()
    return rows


def independent_counts(vcf_text: str) -> dict[tuple[str, int, str, str], tuple[int, ...]]:
    """AC, AN, het, hom-alt per ALT allele, counted from the GT strings in plain Python."""
    out = {}
    for line in vcf_text.splitlines():
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        chrom = fields[0].removeprefix("chr")
        pos, ref, alts = int(fields[1]), fields[3], fields[4].split(",")
        calls = [c.split(":")[0].replace("|", "/").split("/") for c in fields[9:]]
        an = sum(a != "." for call in calls for a in call)
        for index, alt in enumerate(alts, start=1):
            copies = [sum(a == str(index) for a in call) for call in calls]
            called = [sum(a != "." for a in call) for call in calls]
            ac = sum(copies)
            het = sum(0 < c < n for c, n in zip(copies, called, strict=True))
            hom = sum(c > 0 and c == n for c, n in zip(copies, called, strict=True))
            out[(chrom, pos, ref, alt)] = (ac, an, het, hom)
    return out


def tree_digest(root: Path) -> str:
    """A digest of every file's path and bytes, to prove a failed ingest changed nothing."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_counts_match_independent_genotype_counting(empty_node: NodeDir) -> None:
    ingest_vcf(empty_node, "small", SMALL_VCF, assembly="GRCh38")
    rows = variant_rows(empty_node, "small")
    expected = independent_counts(SMALL_VCF.read_text())
    got = {
        (r["chrom"], r["pos"], r["ref"], r["alt"]): (r["ac"], r["an"], r["n_het"], r["n_homalt"])
        for r in rows
    }
    assert got == expected


def test_info_ac_is_not_trusted(empty_node: NodeDir) -> None:
    assert "AC=99" in SMALL_VCF.read_text()
    ingest_vcf(empty_node, "small", SMALL_VCF, assembly="GRCh38")
    first = variant_rows(empty_node, "small")[0]
    assert (first["pos"], first["ac"]) == (16050075, 4)


def test_multiallelic_sites_become_one_row_per_alt(empty_node: NodeDir) -> None:
    ingest_vcf(empty_node, "small", SMALL_VCF, assembly="GRCh38")
    rows = [r for r in variant_rows(empty_node, "small") if r["pos"] == 16050115]
    assert [(r["alt"], r["allele_idx"]) for r in rows] == [("A", 1), ("T", 2)]
    assert rows[0]["site_idx"] == rows[1]["site_idx"]


def test_coordinates_are_beacon_zero_based_half_open(empty_node: NodeDir) -> None:
    ingest_vcf(empty_node, "small", SMALL_VCF, assembly="GRCh38")
    by_pos = {r["pos"]: r for r in variant_rows(empty_node, "small")}
    deletion = by_pos[16050200]
    assert (deletion["start"], deletion["end"], deletion["vtype"]) == (16050199, 16050202, "DEL")
    symbolic = by_pos[16051000]
    assert (symbolic["start"], symbolic["end"]) == (16050999, 16056000)
    assert by_pos[16050300]["vtype"] == "INS"


def test_annotations_from_snpeff_ann(empty_node: NodeDir) -> None:
    ingest_vcf(empty_node, "small", SMALL_VCF, assembly="GRCh38")
    row = next(r for r in variant_rows(empty_node, "small") if r["pos"] == 16050400)
    assert row["genes"] == ["BRAF"]
    assert row["aa_changes"] == ["V600E"]
    assert row["hgvs"] == ["NM_004333.6:c.1799T>A"]


def test_genotype_matrix_matches_the_file(empty_node: NodeDir) -> None:
    ingest_vcf(empty_node, "small", SMALL_VCF, assembly="GRCh38")
    gt = zarr.open_array(str(empty_node.dataset("small").genotypes / "call_genotype"), mode="r")
    assert gt.shape == (7, 6, 2)
    # record 2 (G>A,T): 0/1 1/2 2/2 0/0 ./. 0/0
    assert gt[1].tolist() == [[0, 1], [1, 2], [2, 2], [0, 0], [-1, -1], [0, 0]]


@pytest.mark.skipif(not HAVE_BGZIP, reason="needs bgzip (Debian package tabix)")
@pytest.mark.parametrize("suffix", ["vcf.gz", "bcf"])
def test_compressed_and_bcf_inputs_give_the_same_rows(
    empty_node: NodeDir, tmp_path: Path, suffix: str
) -> None:
    ingest_vcf(empty_node, "plain", SMALL_VCF, assembly="GRCh38")
    target = tmp_path / f"small.{suffix}"
    if suffix == "bcf":
        if shutil.which("bcftools") is None:
            pytest.skip("needs bcftools to write BCF")
        subprocess.run(["bcftools", "view", "-Ob", "-o", str(target), str(SMALL_VCF)], check=True)
    else:
        with target.open("wb") as out:
            subprocess.run(["bgzip", "-c", str(SMALL_VCF)], stdout=out, check=True)
    ingest_vcf(empty_node, "other", target, assembly="GRCh38")
    columns = ("variant_id", "start", "end", "ac", "an", "n_het", "n_homalt")

    def pick(rows: list[dict]) -> list[tuple]:
        return [tuple(r[c] for c in columns) for r in rows]

    assert pick(variant_rows(empty_node, "other")) == pick(variant_rows(empty_node, "plain"))


def test_individuals_are_linked_from_clinical_csv(empty_node: NodeDir) -> None:
    ingest_vcf(empty_node, "small", SMALL_VCF, assembly="GRCh38", individuals=SMALL_CLINICAL)
    con = duckdb.connect(str(empty_node.dataset("small").database), read_only=True)
    terms = con.execute(
        "SELECT id, term FROM entry_terms WHERE entity = 'individual' ORDER BY id, term"
    ).fetchall()
    assert ("S1", "HP:0002069") in terms and ("S1", "NCIT:C16576") in terms
    assert ("S2", "NCIT:C20197") in terms and ("S2", "ICD10:E11.9") in terms
    ages = dict(
        con.execute(
            "SELECT id, num FROM entry_values WHERE path = 'info.age.iso8601duration'"
        ).fetchall()
    )
    assert ages["S5"] == pytest.approx(80)


def test_reingest_replaces_the_dataset(empty_node: NodeDir, tmp_path: Path) -> None:
    ingest_vcf(empty_node, "d", SMALL_VCF, assembly="GRCh38")
    first = empty_node.dataset("d").version
    fewer = tmp_path / "fewer.vcf"
    text = SMALL_VCF.read_text().splitlines()
    fewer.write_text("\n".join(text[:-3]) + "\n")
    ingest_vcf(empty_node, "d", fewer, assembly="GRCh38")
    assert empty_node.dataset("d").version != first
    assert len(variant_rows(empty_node, "d")) == 5


def _broken_files(tmp: Path) -> dict[str, tuple[Path, dict, str]]:
    """name -> (file, extra ingest kwargs, text the error must contain)."""
    lines = SMALL_VCF.read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    records = [line for line in lines if not line.startswith("#")]
    cases: dict[str, tuple[Path, dict, str]] = {}

    def write(name: str, content: str) -> Path:
        path = tmp / name
        path.write_text(content)
        return path

    bad_gt = records[0].replace("0|1\t0|0", "0|X\t0|0", 1)
    cases["bad genotype"] = (write("badgt.vcf", "\n".join(header + [bad_gt]) + "\n"), {}, "line 10")
    short = "\t".join(records[1].split("\t")[:5])
    cases["too few fields"] = (
        write("short.vcf", "\n".join(header + records[:1] + [short])),
        {},
        "line 11",
    )
    bad_pos = records[0].replace("16050075", "16O50075", 1)
    cases["bad POS"] = (write("pos.vcf", "\n".join(header + [bad_pos])), {}, "POS")
    unsorted = [records[2], records[0]]
    cases["unsorted"] = (write("unsorted.vcf", "\n".join(header + unsorted)), {}, "sorted")
    bad_contig = records[0].replace("chr22", "scaffold_7", 1)
    cases["unknown contig"] = (
        write("contig.vcf", "\n".join(header + [bad_contig])),
        {},
        "scaffold_7",
    )
    cases["allele beyond ALT"] = (
        write("allele.vcf", "\n".join(header + [records[0].replace("1|1", "1|2", 1)])),
        {},
        "allele 2",
    )
    cases["wrong assembly"] = (SMALL_VCF, {"assembly": "GRCh37"}, "GRCh37")
    clinical = tmp / "clinical.csv"
    clinical.write_text("sample_id,sex\nS1,female\nNOT_IN_VCF,male\n")
    cases["unknown sample in individuals"] = (SMALL_VCF, {"individuals": clinical}, "NOT_IN_VCF")
    cases["not a VCF"] = (write("notvcf.vcf", "hello\nworld\n"), {}, "not a VCF")
    if HAVE_BGZIP:
        full = tmp / "full.vcf.gz"
        with full.open("wb") as out:
            subprocess.run(["bgzip", "-c", str(SMALL_VCF)], stdout=out, check=True)
        truncated = tmp / "truncated.vcf.gz"
        truncated.write_bytes(full.read_bytes()[:-40])
        cases["truncated gzip"] = (truncated, {}, "truncated")
    plain_gzip = tmp / "cut.vcf.gz"
    plain_gzip.write_bytes(gzip.compress(SMALL_VCF.read_bytes())[:-30])
    cases["truncated plain gzip"] = (plain_gzip, {}, "truncated")
    return cases


@pytest.mark.parametrize(
    "case",
    [
        "bad genotype",
        "too few fields",
        "bad POS",
        "unsorted",
        "unknown contig",
        "allele beyond ALT",
        "wrong assembly",
        "unknown sample in individuals",
        "not a VCF",
        "truncated gzip",
        "truncated plain gzip",
    ],
)
def test_failed_ingest_leaves_the_node_unchanged(
    empty_node: NodeDir, tmp_path: Path, case: str
) -> None:
    ingest_vcf(empty_node, "live", SMALL_VCF, assembly="GRCh38")
    cases = _broken_files(tmp_path)
    if case not in cases:
        pytest.skip(f"{case}: needs bgzip")
    path, kwargs, message = cases[case]
    kwargs = {"assembly": "GRCh38", **kwargs}
    before = tree_digest(empty_node.root)
    for dataset in ("live", "new"):  # replacing a live dataset, and creating a new one
        with pytest.raises(IngestError) as excinfo:
            ingest_vcf(empty_node, dataset, path, **kwargs)
        text = str(excinfo.value)
        assert message in text
        assert excinfo.value.source is not None and Path(excinfo.value.source).name in text
        assert tree_digest(empty_node.root) == before


def test_sample_column_option(empty_node: NodeDir, tmp_path: Path) -> None:
    clinical = tmp_path / "c.tsv"
    clinical.write_text("participant\tsex\tage\nS1\tF\t50\nS2\tM\t40\n")
    with pytest.raises(IngestError, match="--sample-column"):
        ingest_vcf(empty_node, "d", SMALL_VCF, assembly="GRCh38", individuals=clinical)
    ingest_vcf(
        empty_node,
        "d",
        SMALL_VCF,
        assembly="GRCh38",
        individuals=clinical,
        sample_column="participant",
        settings=DatasetSettings(granularity="record"),
    )
    con = duckdb.connect(str(empty_node.dataset("d").database), read_only=True)
    sexes = dict(
        con.execute(
            "SELECT id, term FROM entry_terms WHERE entity = 'individual' AND term LIKE 'NCIT:%'"
        ).fetchall()
    )
    assert sexes["S1"] == "NCIT:C16576" and sexes["S2"] == "NCIT:C20197"
    assert sexes["S3"] == "NCIT:C17998"  # no clinical row: sex unknown


def test_haploid_and_general_format_paths(empty_node: NodeDir, tmp_path: Path) -> None:
    vcf = tmp_path / "haploid.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=X,length=156040895>\n"
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB\tC\n"
        "X\t100\t.\tA\tG\t.\t.\t.\tGT\t1\t0\t.\n"
        "X\t200\t.\tC\tT\t.\t.\t.\tGT\t0/1\t1\t0|0\n"
        "X\t300\t.\tG\tA,C,T,GA,GC,GT,GG,GAA,GAC,GAG\t.\t.\t.\tGT:DP\t10/0:3\t1/10:4\t./.:0\n"
    )
    ingest_vcf(empty_node, "x", vcf, assembly="GRCh38")
    got = {
        (r["pos"], r["alt"]): (r["ac"], r["an"], r["n_het"], r["n_homalt"])
        for r in variant_rows(empty_node, "x")
    }
    assert got[(100, "G")] == (1, 2, 0, 1)
    assert got[(200, "T")] == (2, 5, 1, 1)  # a haploid call adds one allele to AN
    assert got[(300, "GAG")] == (2, 4, 2, 0)
    assert got[(300, "A")] == (1, 4, 1, 0)
    expected = independent_counts(vcf.read_text())
    assert dict(got.items()) == {(p, a): v for (_c, p, _r, a), v in expected.items()}


def test_record_count_and_memory_blocks(empty_node: NodeDir, tmp_path: Path) -> None:
    """More records than one block: the block boundary must not lose or repeat sites."""
    from genofed.store import dataset_db

    n = dataset_db.SITES_PER_CHUNK + 17
    rng = np.random.default_rng(1)
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB"]
    for i in range(n):
        a, b = rng.integers(0, 2, 4).reshape(2, 2)
        lines.append(f"22\t{1000 + i}\t.\tA\tC\t.\t.\t.\tGT\t{a[0]}|{a[1]}\t{b[0]}|{b[1]}")
    vcf = tmp_path / "many.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    ingest_vcf(empty_node, "m", vcf, assembly="GRCh38")
    rows = variant_rows(empty_node, "m")
    assert len(rows) == n
    assert [r["pos"] for r in rows] == list(range(1000, 1000 + n))
    expected = independent_counts(vcf.read_text())
    assert all(expected[(r["chrom"], r["pos"], "A", "C")][0] == r["ac"] for r in rows)


def _mixed_layout_vcf(path: Path, n_samples: int, n_lines: int, seed: int) -> Path:
    """Lines in every layout, interleaved at random: GT-only one-digit calls, missing
    calls and alleles 2-9, haploid and multi-digit calls, CRLF, the GATK joint-call layout
    ``GT:AD:DP:GQ:PL`` (with cells that drop their trailing fields), GT not first among
    the keys (with cells that drop it), and an empty-valued FORMAT field."""
    rng = np.random.default_rng(seed)
    samples = [f"S{i}" for i in range(n_samples)]
    alt_alleles = "C G T CA CG CT GA GC GT TA TC TG".split()
    lines = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=22,length=50818468>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
        '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">',
        '##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Likelihoods">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples),
    ]
    kinds = ["biallelic", "missing", "multi", "haploid", "wide", "format", "gatk", "gt_later"]
    for i, kind in enumerate(rng.choice(kinds, n_lines)):
        n_alts = 12 if kind == "wide" else 3 if kind in ("multi", "gatk") else 1
        alts = ",".join(alt_alleles[:n_alts])
        cells = []
        for _ in samples:
            a, b = (str(x) for x in rng.integers(0, n_alts + 1, 2))
            if kind in ("missing", "gatk") and rng.random() < 0.3:
                a = "."
            gt = f"{a}{rng.choice(['|', '/'])}{b}"
            if kind == "haploid" and rng.random() < 0.5:
                gt = a
            depth = int(rng.integers(0, 99))
            if kind == "format":
                cell = f"{gt}:{depth}"
            elif kind == "gatk":
                cell = f"{gt}:{depth},{depth // 3}:{depth}:{min(depth, 99)}:0,{depth},{9 * depth}"
                if rng.random() < 0.1:
                    cell = "./." if rng.random() < 0.5 else f"{gt}:{depth},0"
            elif kind == "gt_later":
                cell = f"{depth}:{gt}" if rng.random() < 0.8 else f"{depth}"
            else:
                cell = gt
            cells.append(cell)
        fmt = {"format": "GT:DP", "gatk": "GT:AD:DP:GQ:PL", "gt_later": "DP:GT"}.get(kind, "GT")
        line = f"22\t{1000 + i}\t.\tA\t{alts}\t.\t.\t.\t{fmt}\t" + "\t".join(cells)
        lines.append(line + ("\r" if kind in ("wide", "gatk") and i % 2 else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def _read_like_htslib(vcf: Path, block_size: int = 64) -> None:
    """Genotypes and counts of ours and htslib's for the same file must be equal."""
    import cyvcf2

    from genofed.store.vcf_reader import TextVcfReader

    reader = TextVcfReader(vcf)
    try:
        blocks = list(reader.blocks(block_size))
    finally:
        reader.close()
    ours = np.concatenate([b.genotypes for b in blocks])
    ac = np.concatenate([b.counts.ac[0] for b in blocks if b.counts])
    an = np.concatenate([b.counts.an for b in blocks if b.counts])
    theirs = np.array([v.genotype.array()[:, :2] for v in cyvcf2.VCF(str(vcf))], dtype=np.int8)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ac, (theirs == 1).sum(axis=(1, 2)))
    np.testing.assert_array_equal(an, (theirs >= 0).sum(axis=(1, 2)))


@pytest.mark.parametrize("read_size", [1 << 20, 997])
def test_compiled_scan_matches_htslib_on_every_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_size: int
) -> None:
    """Every layout through the compiled scanner, also with reads far shorter than one
    line (997 bytes: every line is joined from pieces), against htslib's reading."""
    from genofed.store import vcf_reader

    monkeypatch.setattr(vcf_reader, "_READ_SIZE", read_size)
    _read_like_htslib(_mixed_layout_vcf(tmp_path / "mixed.vcf", 37, 400, seed=7))


def test_lines_longer_than_the_read_buffer(tmp_path: Path) -> None:
    """A joint call's line of 60,000 samples (about 1.9 MB, more than the 1 MB read):
    the same calls as htslib's."""
    _read_like_htslib(_mixed_layout_vcf(tmp_path / "wide.vcf", 60_000, 6, seed=3))


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("0/1:3\t1/1:4\t0/0", "FORMAT 'DP' has no GT key"),
        ("0/1\t1/1\t0/0\t0/0", "4 sample columns but the header names 3"),
        ("0/1\t1/1", "2 sample columns but the header names 3"),
        ("0/1\t1/1/1\t0/0", "ploidy 3 in '1/1/1'"),
        ("0/1\t0/200\t0/0", "'0/200' of sample 2 names an allele above 127"),
        ("0/1\t1/x:3\t0/0", "genotype '1/x' of sample 2 is not valid"),
        ("0/1\t1/1\t0-0", "genotype '0-0' of sample 3 is not valid"),
    ],
)
def test_bad_calls_are_reported_by_line_and_sample(
    empty_node: NodeDir, tmp_path: Path, cells: str, message: str
) -> None:
    fmt = "DP" if "no GT" in message else "GT"
    vcf = tmp_path / "bad.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=22,length=50818468>\n"
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB\tC\n"
        "22\t100\t.\tA\tG\t.\t.\t.\tGT\t0/0\t0/1\t1/1\n"
        f"22\t200\t.\tC\tT\t.\t.\t.\t{fmt}\t{cells}\n"
    )
    with pytest.raises(IngestError) as excinfo:
        ingest_vcf(empty_node, "bad", vcf, assembly="GRCh38")
    assert message in str(excinfo.value)
    assert "line 5" in str(excinfo.value)
