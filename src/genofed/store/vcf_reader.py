"""Reading VCF records in blocks: a fast text reader and an htslib (cyvcf2) reader.

Both yield ``RecordBlock``s: up to ``block_size`` records with their genotypes as an int8
array ``(records, samples, 2)`` (-1 missing allele, -2 no second allele for haploid calls).

The text reader is the fast path for ``.vcf``/``.vcf.gz``: ``bgzip -d -@2`` decompresses in
a separate process while NumPy decodes the common genotype layouts (``GT``-only FORMAT with
single-digit alleles, diploid ``0|1`` or haploid ``0``) for a whole block of lines at once.
Other lines (more FORMAT fields, multi-digit alleles) go through a per-sample parser, and
BCF files go through htslib. Parsing is strict: a malformed line raises ``IngestError``
naming the file, the line and the problem.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from genofed._exceptions import IngestError

_READ_SIZE = 8 << 20


@dataclass
class Record:
    chrom: str
    pos: int
    vcf_id: str | None
    ref: str
    alts: list[str]
    info: str  # raw INFO text, parsed only when needed
    where: str  # "line 123" / "record 45", for error messages


@dataclass
class RecordBlock:
    records: list[Record]
    genotypes: np.ndarray


@dataclass
class VcfHeader:
    lines: list[str]
    samples: list[str]


_MISSING_DIGIT = (ord(".") - ord("0")) & 0xFF  # '.' after subtracting '0', as uint8
_TAB_PHASED = 0x09007C00  # bytes 1 and 3 of a little-endian "a|b\t" cell
_TAB_UNPHASED = 0x09002F00  # "a/b\t"


def _digits(chars: np.ndarray) -> np.ndarray | None:
    """Allele characters → int8 codes (digit, or -1 for '.'); None if any is neither."""
    codes = chars - np.uint8(ord("0"))
    if not ((codes <= 9) | (codes == _MISSING_DIGIT)).all():
        return None
    codes = codes.view(np.int8)
    codes[codes == np.int8(_MISSING_DIGIT - 256)] = -1
    return codes


def _decode_fixed(parts: list[bytes], n_samples: int, out: np.ndarray) -> bool:
    """Decode equal-length GT-only sample columns of many lines at once; False if not that.

    In the common layouts every cell has a fixed width: diploid ``a|b\t`` (4 bytes) or
    haploid ``a\t`` (2 bytes), so allele characters sit at even byte offsets and
    separators at odd ones, and the whole block decodes with a few array operations.
    """
    width = len(parts[0]) + 1
    if width not in (4 * n_samples, 2 * n_samples):
        return False
    raw = b"\t".join(parts) + b"\t"
    data = np.frombuffer(raw, dtype=np.uint8)
    if width == 4 * n_samples:
        masked = np.frombuffer(raw, dtype="<u4") & np.uint32(0xFF00FF00)
        if not ((masked == _TAB_PHASED) | (masked == _TAB_UNPHASED)).all():
            return False
        codes = _digits(data[0::2])
        if codes is None:
            return False
        out.reshape(-1)[:] = codes
        return True
    if not (data[1::2] == 9).all():
        return False
    codes = _digits(data[0::2])
    if codes is None:
        return False
    out[:, :, 0] = codes.reshape(len(parts), n_samples)
    out[:, :, 1] = -2
    return True


def _decode_general(samples: bytes, n_samples: int, where: str, source: str) -> np.ndarray:
    """Any FORMAT whose first key is GT: '0/1:35:...', '12|3', '.', '1'."""
    row = np.full((n_samples, 2), -1, dtype=np.int8)
    cells = samples.split(b"\t")
    if len(cells) != n_samples:
        raise IngestError(
            f"{len(cells)} sample columns but the header names {n_samples}",
            source=source,
            where=where,
        )
    for i, cell in enumerate(cells):
        gt = cell.split(b":", 1)[0]
        alleles = gt.replace(b"|", b"/").split(b"/")
        if len(alleles) > 2:
            raise IngestError(
                f"ploidy {len(alleles)} in {gt.decode()!r} is not supported (1 or 2)",
                source=source,
                where=where,
            )
        for j, allele in enumerate(alleles):
            if allele == b".":
                continue
            if not allele.isdigit() or int(allele) > 127:
                raise IngestError(
                    f"genotype {gt.decode()!r} of sample {i + 1} is not valid",
                    source=source,
                    where=where,
                )
            row[i, j] = int(allele)
        if len(alleles) == 1:
            row[i, 1] = -2
    return row


class TextVcfReader:
    def __init__(self, path: Path):
        self.path = path
        self.source = str(path)
        self._process: subprocess.Popen | None = None
        self._stream = self._open()
        self._line_no = 0
        self._pending = b""
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    def _open(self) -> IO[bytes]:
        with self.path.open("rb") as handle:
            compressed = handle.read(2) == b"\x1f\x8b"
        if not compressed:
            return self.path.open("rb")
        bgzip = shutil.which("bgzip")
        if bgzip is None:
            return gzip.open(self.path, "rb")  # type: ignore[return-value]
        self._process = subprocess.Popen(
            [bgzip, "-d", "-c", "-@", "2", str(self.path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        return self._process.stdout

    def _lines(self) -> Iterator[bytes]:
        while True:
            try:
                chunk = self._stream.read(_READ_SIZE)
            except (OSError, EOFError) as exc:
                raise IngestError(
                    f"cannot decompress ({exc}); the file may be truncated",
                    source=self.source,
                    where=f"after line {self._line_no}",
                ) from exc
            if not chunk:
                break
            data = self._pending + chunk
            lines = data.split(b"\n")
            self._pending = lines.pop()
            yield from lines
        if self._pending:
            yield self._pending
            self._pending = b""
        self._check_process()

    def _check_process(self) -> None:
        if self._process is None:
            return
        code = self._process.wait()
        if code != 0:
            message = (
                self._process.stderr.read().decode(errors="replace").strip()
                if self._process.stderr
                else ""
            )
            raise IngestError(
                f"decompression failed ({message or f'bgzip exit {code}'}); "
                "the file may be truncated or corrupt",
                source=self.source,
                where=f"after line {self._line_no}",
            )

    def _read_header(self) -> VcfHeader:
        lines: list[str] = []
        self._iter = self._lines()
        for raw in self._iter:
            self._line_no += 1
            text = raw.decode("utf-8", errors="replace").rstrip("\r")
            if text.startswith("##"):
                lines.append(text)
                continue
            if text.startswith("#CHROM"):
                lines.append(text)
                columns = text.split("\t")
                if columns[:8] != ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]:
                    raise IngestError(
                        "the #CHROM header line does not have the 8 fixed VCF columns",
                        source=self.source,
                        where=f"line {self._line_no}",
                    )
                return VcfHeader(lines, columns[9:])
            break
        if not lines or not lines[0].startswith("##fileformat=VCF"):
            raise IngestError(
                "not a VCF file (no ##fileformat=VCF header)", source=self.source, where="line 1"
            )
        raise IngestError(
            "no #CHROM header line", source=self.source, where=f"line {self._line_no}"
        )

    def blocks(self, block_size: int) -> Iterator[RecordBlock]:
        n = len(self.header.samples)
        records: list[Record] = []
        parts: list[bytes] = []
        for raw in self._iter:
            self._line_no += 1
            if not raw or raw == b"\r":
                continue
            where = f"line {self._line_no}"
            fields = raw.rstrip(b"\r").split(b"\t", 9)
            expected = 10 if n else 8
            if len(fields) < expected:
                raise IngestError(
                    f"{len(fields)} tab-separated fields, expected at least {expected}",
                    source=self.source,
                    where=where,
                )
            try:
                pos = int(fields[1])
            except ValueError:
                raise IngestError(
                    f"POS {fields[1].decode(errors='replace')!r} is not a number",
                    source=self.source,
                    where=where,
                ) from None
            if n and not fields[8].startswith(b"GT"):
                raise IngestError("FORMAT does not start with GT", source=self.source, where=where)
            vcf_id = fields[2].decode()
            records.append(
                Record(
                    fields[0].decode(),
                    pos,
                    None if vcf_id == "." else vcf_id,
                    fields[3].decode(),
                    fields[4].decode().split(","),
                    fields[7].decode(),
                    where,
                )
            )
            parts.append(fields[9] if n else b"")
            if len(records) == block_size:
                yield self._block(records, parts, n)
                records, parts = [], []
        if records:
            yield self._block(records, parts, n)

    def _block(self, records: list[Record], parts: list[bytes], n: int) -> RecordBlock:
        out = np.empty((len(records), n, 2), dtype=np.int8)
        if n == 0:
            return RecordBlock(records, out)
        # Most files have one layout for every line: decode runs of equal-width lines at once.
        start = 0
        while start < len(parts):
            end = start + 1
            while end < len(parts) and len(parts[end]) == len(parts[start]):
                end += 1
            if not _decode_fixed(parts[start:end], n, out[start:end]):
                for i in range(start, end):
                    out[i] = _decode_general(parts[i], n, records[i].where, self.source)
            start = end
        return RecordBlock(records, out)

    def close(self) -> None:
        self._stream.close()
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            if self._process.stderr is not None:
                self._process.stderr.close()


class HtslibVcfReader:
    """BCF (and anything htslib reads) through cyvcf2."""

    def __init__(self, path: Path):
        from cyvcf2 import VCF

        self.source = str(path)
        try:
            self._vcf = VCF(str(path), lazy=True, threads=2)
        except (OSError, ValueError, RuntimeError) as exc:
            raise IngestError(f"not a readable VCF/BCF ({exc})", source=self.source) from exc
        self.header = VcfHeader(self._vcf.raw_header.splitlines(), list(self._vcf.samples))

    def blocks(self, block_size: int) -> Iterator[RecordBlock]:
        n = len(self.header.samples)
        records: list[Record] = []
        out = np.empty((block_size, n, 2), dtype=np.int8)
        for number, rec in enumerate(self._vcf, start=1):
            where = f"record {number} ({rec.CHROM}:{rec.POS})"
            if n:
                arr = rec.genotype.array() if rec.genotype is not None else None
                if arr is None:
                    raise IngestError("record has no GT field", source=self.source, where=where)
                ploidy = arr.shape[1] - 1
                if ploidy > 2:
                    raise IngestError(
                        f"ploidy {ploidy} is not supported (1 or 2)",
                        source=self.source,
                        where=where,
                    )
                out[len(records), :, 0] = arr[:, 0]
                out[len(records), :, 1] = arr[:, 1] if ploidy == 2 else -2
            info = ";".join(f"{k}={v}" for k, v in rec.INFO)
            records.append(Record(rec.CHROM, rec.POS, rec.ID, rec.REF, list(rec.ALT), info, where))
            if len(records) == block_size:
                yield RecordBlock(records, out.copy())
                records = []
        if records:
            yield RecordBlock(records, out[: len(records)].copy())

    def close(self) -> None:
        self._vcf.close()


def open_vcf(path: Path) -> TextVcfReader | HtslibVcfReader:
    if path.name.lower().endswith(".bcf"):
        return HtslibVcfReader(path)
    return TextVcfReader(path)


def info_value(info: str, key: str) -> str | None:
    """One INFO value, without parsing the whole field unless the key occurs."""
    if key not in info:
        return None
    for item in info.split(";"):
        name, _, value = item.partition("=")
        if name == key:
            return value
    return None
