"""Give a GT-only VCF the FORMAT fields of a GATK joint call: ``GT:AD:DP:GQ:PL``.

The genotypes stay those of the input (msprime's, from ``genofed.simulate``); each cell
gets read depths, a genotype quality and phred-scaled likelihoods consistent with its
call, drawn from a seeded generator, so the file has the byte layout of a real joint call
(about 25 bytes a sample instead of 4) with the same genotypes. The output is BGZF
(``bgzip``) and indexed (``tabix``).

Usage::

    .venv/bin/python bench/gatk_format.py IN.vcf.gz OUT.vcf.gz [--seed 7]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np

_VARIANTS = 32  # distinct cells per genotype class
_HEADER = (
    b'##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">\n'
    b'##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">\n'
    b'##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">\n'
    b'##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Phred-scaled likelihoods">\n'
)


def _cells(gt: bytes, rng: np.random.Generator) -> list[bytes]:
    """``_VARIANTS`` cells for one call: depths and likelihoods that fit it."""
    cells = []
    for _ in range(_VARIANTS):
        depth = int(rng.integers(8, 60))
        if gt in (b"0|0", b"0/0"):
            ad, pl = (depth, 0), (0, 3 * depth, 30 * depth)
        elif gt in (b"1|1", b"1/1"):
            ad, pl = (0, depth), (30 * depth, 3 * depth, 0)
        elif gt.startswith(b"."):
            cells.append(gt + b":0,0:0:.:0,0,0")
            continue
        else:
            alt = depth // 2 + int(rng.integers(-3, 4))
            ad, pl = (depth - alt, alt), (25 * alt, 0, 25 * (depth - alt))
        gq = min(99, min(p for p in pl if p) if any(pl) else 0)
        text = f"{gt.decode()}:{ad[0]},{ad[1]}:{depth}:{gq}:{pl[0]},{pl[1]},{pl[2]}"
        cells.append(text.encode())
    return cells


def add_gatk_format(source: Path, target: Path, seed: int = 7) -> Path:
    """Write ``target`` (.vcf.gz, indexed) from the GT-only VCF ``source``."""
    rng = np.random.default_rng(seed)
    table: dict[bytes, list[bytes]] = {}
    bgzip = subprocess.Popen(
        [shutil.which("bgzip") or "bgzip", "-@", "2", "-l", "1", "-c"],
        stdin=subprocess.PIPE,
        stdout=target.open("wb"),
    )
    assert bgzip.stdin is not None
    with gzip.open(source, "rb") as lines:
        for line in lines:
            if line.startswith(b"##"):
                bgzip.stdin.write(line)
                continue
            if line.startswith(b"#CHROM"):
                bgzip.stdin.write(_HEADER + line)
                continue
            fields = line.rstrip(b"\n").split(b"\t")
            calls = fields[9:]
            picks = rng.integers(0, _VARIANTS, size=len(calls)).tolist()
            out = []
            for call, pick in zip(calls, picks, strict=True):
                options = table.get(call)
                if options is None:
                    options = table[call] = _cells(call, rng)
                out.append(options[pick])
            fields[8] = b"GT:AD:DP:GQ:PL"
            bgzip.stdin.write(b"\t".join(fields[:9] + out) + b"\n")
    bgzip.stdin.close()
    if bgzip.wait() != 0:
        raise RuntimeError("bgzip failed")
    subprocess.run(["tabix", "-f", "-p", "vcf", str(target)], check=True)
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    add_gatk_format(args.source, args.target, args.seed)
