"""Reading VCF records in blocks: a fast text reader and an htslib (cyvcf2) reader.

Both yield ``RecordBlock``s: up to ``block_size`` records with their genotypes as an int8
array ``(records, samples, 2)`` (-1 missing allele, -2 no second allele for haploid calls).

The text reader is the fast path for ``.vcf``/``.vcf.gz``: a thread reads ahead and
decompresses with ISA-L (``isal``), and a compiled scanner (``gt_kernel``) decodes every
line's calls, whatever its FORMAT layout, with no Python per sample. BCF files go through
htslib. Parsing is strict: a malformed line raises ``IngestError`` naming the file, the
line and the problem.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

import numpy as np
from isal import igzip, isal_zlib

from genofed._exceptions import IngestError
from genofed.store.dataset_db import BlockCounts, allele_counts

_READ_SIZE = 1 << 20


@dataclass(slots=True)
class Record:
    chrom: str
    pos: int
    vcf_id: str | None
    ref: str
    alts: list[str]
    info: str  # raw INFO text, parsed only when needed
    number: int  # line number (text) or record number (htslib), for error messages
    unit: str = "line"

    @property
    def where(self) -> str:
        return f"{self.unit} {self.number}"


@dataclass
class RecordBlock:
    records: list[Record]
    genotypes: np.ndarray
    counts: BlockCounts | None = None  # filled in by the reader's decoding thread


@dataclass
class VcfHeader:
    lines: list[str]
    samples: list[str]


def counts_from_stats(
    genotypes: np.ndarray, stats: np.ndarray, records: list[Record]
) -> BlockCounts:
    """BlockCounts from per-line allele-1 statistics; other alleles counted on their lines."""
    sites = len(records)
    max_alts = max(len(r.alts) for r in records)
    shape = (max(max_alts, 1), sites)
    ac, n_het, n_homalt = (np.zeros(shape, dtype=np.int64) for _ in range(3))
    stats = stats[:sites]
    ac[0], n_het[0], n_homalt[0] = stats[:, 0], stats[:, 2], stats[:, 3]
    max_allele = stats[:, 4].copy()
    for allele in range(2, max_alts + 1):
        rows = np.flatnonzero(max_allele >= allele)
        if len(rows):
            counts = allele_counts(genotypes[rows], allele)
            ac[allele - 1, rows] = counts["ac"]
            n_het[allele - 1, rows] = counts["n_het"]
            n_homalt[allele - 1, rows] = counts["n_homalt"]
    return BlockCounts(ac, stats[:, 1].copy(), n_het, n_homalt, max_allele)


class TextVcfReader:
    """Plain or gzip/BGZF-compressed text VCF, parsed in large chunks.

    The compiled scanner walks chunks of decompressed text, decodes the calls into a
    block-sized matrix and says where each line's fields start; the fixed fields are then
    sliced out of the chunk in Python, one line at a time.
    """

    def __init__(self, path: Path):
        self.path = path
        self.source = str(path)
        self._line_no = 0
        self._unit = "line"
        self._contig: str | None = None  # set by start_at: read only this contig
        self._after_header: tuple[bytes, int, int] = (b"", 0, 0)
        self._start(self._open())
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    def _start(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._closing = False
        self._prefetched: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=16)
        self._reader = threading.Thread(target=self._prefetch, daemon=True)
        self._reader.start()

    def start_at(self, offset: int, contig: str) -> None:
        """Read only the records of ``contig``, from the BGZF virtual offset where they
        start (``vcf_index``): a partition of a parallel ingest. Errors then name the
        record's number within the contig."""
        self.close()
        raw = self.path.open("rb")
        raw.seek(offset >> 16)
        stream = igzip.IGzipFile(fileobj=raw, mode="rb")
        stream.read(offset & 0xFFFF)
        self._raw = raw
        self._start(stream)  # type: ignore[arg-type]
        self._chunk_iter = self._chunks()
        self._after_header = (b"", 0, 0)
        self._contig = contig
        self._unit = f"contig {contig} record"
        self._line_no = 0

    def _open(self) -> IO[bytes]:
        with self.path.open("rb") as handle:
            compressed = handle.read(2) == b"\x1f\x8b"
        if compressed:
            return igzip.open(self.path, "rb")  # type: ignore[return-value]
        return self.path.open("rb")

    def _read(self) -> bytes:
        item = self._prefetched.get()
        if isinstance(item, BaseException):
            raise IngestError(
                f"cannot decompress ({item}); the file may be truncated or corrupt",
                source=self.source,
                where=f"after line {self._line_no}",
            ) from item
        return item

    def _where(self, line_no: int) -> str:
        return f"{self._unit} {line_no}"

    def _prefetch(self) -> None:
        """Read ahead in a thread, so decompression overlaps parsing.

        ISA-L's inflate (``isal.igzip``) releases the GIL and takes about a third of the
        CPU time of zlib, and decompressing in process spares a pipe's copies.
        """
        try:
            while True:
                data = self._stream.read(_READ_SIZE)
                self._prefetched.put(data)
                if not data or self._closing:
                    return
        except (OSError, EOFError, ValueError, isal_zlib.error) as exc:
            self._prefetched.put(exc)

    def _chunks(self) -> Iterator[tuple[bytes, int, int]]:
        """``(buffer, begin, end)``: whole lines ``buffer[begin:end]``, without copying.

        A line split across two reads is joined on its own; everything else is handed on
        in the buffer it arrived in.
        """
        pieces: list[bytes] = []  # a line longer than one read, joined once it is whole
        while True:
            data = self._read()
            if not data:
                break
            begin = 0
            if pieces:
                first = data.find(b"\n")
                if first < 0:
                    pieces.append(data)
                    continue
                line = b"".join([*pieces, data[: first + 1]])
                pieces = []
                yield line, 0, len(line)
                begin = first + 1
            cut = data.rfind(b"\n") + 1
            if cut > begin:
                yield data, begin, cut
            if len(data) > max(cut, begin):
                pieces.append(data[max(cut, begin) :])
        if pieces:
            rest = b"".join([*pieces, b"\n"])
            yield rest, 0, len(rest)

    def _read_header(self) -> VcfHeader:
        lines: list[str] = []
        self._chunk_iter = self._chunks()
        for chunk, begin, stop in self._chunk_iter:
            start = begin
            while start < stop:
                end = chunk.index(b"\n", start)
                raw = chunk[start:end]
                start = end + 1
                self._line_no += 1
                text = raw.decode("utf-8", errors="replace").rstrip("\r")
                if text.startswith("##"):
                    lines.append(text)
                    continue
                if text.startswith("#CHROM"):
                    lines.append(text)
                    columns = text.split("\t")
                    if columns[:8] != [
                        "#CHROM",
                        "POS",
                        "ID",
                        "REF",
                        "ALT",
                        "QUAL",
                        "FILTER",
                        "INFO",
                    ]:
                        raise IngestError(
                            "the #CHROM header line does not have the 8 fixed VCF columns",
                            source=self.source,
                            where=f"line {self._line_no}",
                        )
                    self._after_header = (chunk, start, stop)
                    return VcfHeader(lines, columns[9:])
                if not lines or not lines[0].startswith("##fileformat=VCF"):
                    raise IngestError(
                        "not a VCF file (no ##fileformat=VCF header)",
                        source=self.source,
                        where="line 1",
                    )
                raise IngestError(
                    "no #CHROM header line", source=self.source, where=f"line {self._line_no}"
                )
        raise IngestError(
            "not a VCF file (no #CHROM header line)",
            source=self.source,
            where=f"line {self._line_no}",
        )

    def _record_chunks(self) -> Iterator[tuple[bytes, int, int]]:
        """What is left of the chunk holding the header, then the following chunks."""
        chunk, start, stop = self._after_header
        if start < stop:
            yield chunk, start, stop
        yield from self._chunk_iter

    def blocks(self, block_size: int) -> Iterator[RecordBlock]:
        """Blocks of records with their genotypes decoded by the compiled scanner.

        Lines it hands back are those with fewer than ten fields (all lines, in a file
        without samples), parsed here, and lines it cannot decode, reported here.
        """
        from genofed.store.gt_kernel import DONE, FIXED_FIELDS, scan_lines  # imports numba

        n = len(self.header.samples)
        genotypes = np.empty((block_size, n, 2), dtype=np.int8)
        offsets = np.empty((block_size, 10), dtype=np.int64)
        stats = np.empty((block_size, 5), dtype=np.int64)
        ends = np.empty(n + 1, dtype=np.int64)
        records: list[Record] = []
        line_no = self._line_no
        for chunk, begin, stop in self._record_chunks():
            data = np.frombuffer(chunk, dtype=np.uint8)
            words = data[: len(data) // 8 * 8].view(np.uint64)
            pos = begin
            while pos < stop:
                if n:
                    first = len(records)
                    rows, pos, status, detail = scan_lines(
                        data,
                        words,
                        pos,
                        stop,
                        n,
                        genotypes[first:],
                        offsets,
                        stats[first:],
                        block_size - first,
                        ends,
                    )
                    records += self._scanned_records(chunk, offsets[:rows].tolist(), line_no)
                    line_no += rows
                    if self._contig is not None and records and records[-1].chrom != self._contig:
                        yield from self._last_of_contig(records, first, genotypes, stats)
                        return
                    if len(records) == block_size:
                        yield self._block(records, genotypes, stats)
                        genotypes = np.empty((block_size, n, 2), dtype=np.int8)
                        records = []
                        continue
                    if status == DONE:
                        continue
                    if status != FIXED_FIELDS:
                        self._fail_calls(chunk, pos, line_no + 1, status, detail)
                line_no += 1
                pos = self._fixed_fields_line(chunk, pos, stop, line_no, n, records)
                if self._contig is not None and records and records[-1].chrom != self._contig:
                    yield from self._last_of_contig(records, len(records) - 1, genotypes, stats)
                    return
                if len(records) == block_size:
                    yield self._block(records, genotypes, stats)
                    genotypes = np.empty((block_size, n, 2), dtype=np.int8)
                    records = []
        self._line_no = line_no
        if records:
            yield self._block(records, genotypes[: len(records)], stats[: len(records)])

    def _last_of_contig(
        self, records: list[Record], first: int, genotypes: np.ndarray, stats: np.ndarray
    ) -> Iterator[RecordBlock]:
        """The block's records up to the first of another contig (from ``first`` on)."""
        cut = next(i for i in range(first, len(records)) if records[i].chrom != self._contig)
        if cut:
            yield self._block(records[:cut], genotypes[:cut], stats[:cut])

    def _fixed_fields_line(
        self, chunk: bytes, start: int, stop: int, line_no: int, n: int, records: list[Record]
    ) -> int:
        """A line the scanner handed back: skipped if empty, a record if the file has no
        samples, otherwise an error. Returns where the next line starts."""
        end = chunk.find(b"\n", start, stop)
        end = stop if end < 0 else end
        line = chunk[start:end].rstrip(b"\r")
        if not line:
            return end + 1
        fields = line.split(b"\t", 9)
        expected = 10 if n else 8
        if len(fields) < expected:
            raise IngestError(
                f"{len(fields)} tab-separated fields, expected at least {expected}",
                source=self.source,
                where=self._where(line_no),
            )
        records.append(self._record(fields, line_no))
        return end + 1

    def _fail_calls(
        self, chunk: bytes, start: int, line_no: int, status: int, detail: int
    ) -> NoReturn:
        """Raise the error the scanner found on the line at ``start``, in words."""
        from genofed.store import gt_kernel as k

        where = self._where(line_no)
        end = chunk.find(b"\n", start)
        fields = chunk[start : end if end >= 0 else len(chunk)].rstrip(b"\r").split(b"\t")
        self._record(fields, line_no)  # a bad POS is the first thing to report
        keys = fields[8].split(b":")
        if status == k.NO_GT:
            message = f"FORMAT {fields[8].decode(errors='replace')!r} has no GT key"
        elif status in (k.FEW_COLUMNS, k.MANY_COLUMNS):
            message = (
                f"{len(fields) - 9} sample columns but the header names {len(self.header.samples)}"
            )
        else:
            cell = fields[9 + detail].split(b":")
            gt = cell[keys.index(b"GT")] if keys.index(b"GT") < len(cell) else b""
            shown = gt.decode(errors="replace")[:40]
            message = {
                k.PLOIDY: f"ploidy {len(gt.replace(b'|', b'/').split(b'/'))} in {shown!r} is "
                "not supported (1 or 2)",
                k.BIG_ALLELE: f"genotype {shown!r} of sample {detail + 1} names an allele "
                "above 127, which is not supported",
            }.get(status, f"genotype {shown!r} of sample {detail + 1} is not valid")
        raise IngestError(message, source=self.source, where=where)

    def _scanned_records(
        self, chunk: bytes, offsets: list[list[int]], line_no: int
    ) -> list[Record]:
        """Records of lines the compiled scanner decoded, their fields sliced straight
        out of the chunk at the offsets it found (a third faster than splitting)."""
        records = []
        for number, (c, p, i, r, a, qual, _, info, fmt, gts) in enumerate(offsets, line_no + 1):
            try:
                pos = int(chunk[p : i - 1])
            except ValueError:  # the general path finds the fault and says what it is
                self._record(chunk[c : gts - 1].split(b"\t"), number)
            vcf_id = chunk[i : r - 1]
            records.append(
                Record(
                    chunk[c : p - 1].decode(),
                    pos,
                    None if vcf_id == b"." else vcf_id.decode(),
                    chunk[r : a - 1].decode(),
                    chunk[a : qual - 1].decode().split(","),
                    chunk[info : fmt - 1].decode(),
                    number,
                    self._unit,
                )
            )
        return records

    def _record(self, fields: list[bytes], line_no: int) -> Record:
        try:
            pos = int(fields[1])
        except ValueError:
            raise IngestError(
                f"POS {fields[1].decode(errors='replace')!r} is not a number",
                source=self.source,
                where=self._where(line_no),
            ) from None
        vcf_id = fields[2].decode()
        return Record(
            fields[0].decode(),
            pos,
            None if vcf_id == "." else vcf_id,
            fields[3].decode(),
            fields[4].decode().split(","),
            fields[7].decode(),
            line_no,
            self._unit,
        )

    def _block(
        self, records: list[Record], genotypes: np.ndarray, stats: np.ndarray
    ) -> RecordBlock:
        if genotypes.shape[1] == 0:
            return RecordBlock(records, genotypes)
        return RecordBlock(records, genotypes, counts_from_stats(genotypes, stats, records))

    def close(self) -> None:
        self._closing = True
        while self._reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                self._prefetched.get(timeout=0.05)
            except queue.Empty:
                pass
        self._stream.close()
        if raw := getattr(self, "_raw", None):
            raw.close()


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
            where = f"record {number}"
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
            records.append(
                Record(rec.CHROM, rec.POS, rec.ID, rec.REF, list(rec.ALT), info, number, "record")
            )
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
