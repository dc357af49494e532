"""Where each contig's records start in a BGZF-compressed VCF, from its tabix or CSI index.

A parallel ingest reads each contig on its own worker, starting at the contig's first
BGZF block: both index formats list, per contig, bins of chunks (pairs of virtual file
offsets), and the smallest chunk start is where the contig's first record is. A virtual
offset is ``compressed block start << 16 | offset inside the decompressed block``.

The formats are those of the SAM/BAM/VCF specifications (``tabix.pdf``, ``CSIv1.pdf``).
They are read here because no maintained Python package exposes the offsets (cyvcf2 and
htslib's Python bindings give only the contig names).
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

from genofed._exceptions import IngestError


@dataclass(frozen=True)
class ContigStart:
    name: str
    offset: int  # virtual file offset of the contig's first record
    records: int | None = None  # how many records the contig holds, if the index says


def index_of(vcf: Path) -> Path | None:
    """The VCF's index (``.csi`` preferred, as bcftools writes it, else ``.tbi``)."""
    for suffix in (".csi", ".tbi"):
        candidate = vcf.with_name(vcf.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def contig_starts(vcf: Path, header_contigs: list[str]) -> list[ContigStart]:
    """The indexed contigs that hold records, in file order. ``header_contigs`` (the
    ``##contig`` ids in order) names them when the index does not (CSI of BCF files)."""
    index = index_of(vcf)
    if index is None:
        raise IngestError(
            "a parallel ingest needs the VCF's index; make one with `bcftools index` "
            "or `tabix -p vcf`",
            source=str(vcf),
        )
    if index.stat().st_mtime < vcf.stat().st_mtime:
        raise IngestError(
            f"the index {index.name} is older than the VCF; re-index it with `bcftools index -f`",
            source=str(vcf),
        )
    try:
        data = gzip.decompress(index.read_bytes())
        starts = _read_csi(data, header_contigs) if data[:4] == b"CSI\1" else _read_tbi(data)
    except (OSError, EOFError, struct.error, IndexError, UnicodeDecodeError) as exc:
        raise IngestError(f"cannot read the index {index.name} ({exc})", source=str(vcf)) from exc
    return sorted(starts, key=lambda s: s.offset)


class _Cursor:
    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, fmt: str) -> tuple[int, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def int(self) -> int:
        return self.take("i")[0]


def _names(blob: bytes) -> list[str]:
    return [n.decode() for n in blob.split(b"\0") if n]


def _first_offset(
    cursor: _Cursor, n_bins: int, with_loffset: bool, pseudo_bin: int
) -> tuple[int, int | None]:
    """The smallest chunk start over a contig's bins, and the number of records htslib's
    pseudo-bin of statistics counts (its second pair: mapped, unmapped)."""
    first, records = -1, None
    for _ in range(n_bins):
        (bin_id,) = cursor.take("I")
        if with_loffset:
            cursor.take("Q")
        n_chunks = cursor.int()
        chunks = cursor.take(f"{2 * n_chunks}Q")
        if bin_id == pseudo_bin:
            if n_chunks == 2:
                records = chunks[2]
            continue
        for begin in chunks[0::2]:
            first = begin if first < 0 else min(first, begin)
    return first, records


def _read_tbi(data: bytes) -> list[ContigStart]:
    if data[:4] != b"TBI\1":
        raise IngestError("not a tabix or CSI index")
    cursor = _Cursor(data, 4)
    n_ref, _fmt, _seq, _beg, _end, _meta, _skip, l_nm = cursor.take("8i")
    names = _names(data[cursor.pos : cursor.pos + l_nm])
    cursor.pos += l_nm
    starts = []
    for name in names[:n_ref]:
        offset, records = _first_offset(cursor, cursor.int(), False, 37450)
        n_intervals = cursor.int()
        cursor.pos += 8 * n_intervals
        if offset >= 0:
            starts.append(ContigStart(name, offset, records))
    return starts


def _read_csi(data: bytes, header_contigs: list[str]) -> list[ContigStart]:
    cursor = _Cursor(data, 4)
    _min_shift, depth, l_aux = cursor.take("3i")
    aux = data[cursor.pos : cursor.pos + l_aux]
    cursor.pos += l_aux
    # For a VCF.gz, htslib keeps tabix's settings and the contig names in the aux block;
    # without them, references are the header's contigs in order.
    if l_aux >= 28:
        l_nm = struct.unpack_from("<i", aux, 24)[0]
        names = _names(aux[28 : 28 + l_nm])
    else:
        names = header_contigs
    n_ref = cursor.int()
    pseudo_bin = ((1 << (3 * (depth + 1))) - 1) // 7 + 1
    starts = []
    for name in names[:n_ref]:
        offset, records = _first_offset(cursor, cursor.int(), True, pseudo_bin)
        if offset >= 0:
            starts.append(ContigStart(name, offset, records))
    return starts
