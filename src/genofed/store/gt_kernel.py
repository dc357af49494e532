"""A compiled scan of VCF text in the common genotype layout (numba, compiled on first use).

Most VCFs from imputation, phasing and simulation have ``FORMAT`` = ``GT`` and diploid
single-digit calls, so every sample cell is exactly four bytes, ``a|b\\t`` or ``a/b\\t``.
For such lines the sample part needs no searching: its end is known from its start, and
the alleles sit at fixed offsets. This kernel walks lines in that layout, records where the
nine fixed fields start, and writes the alleles straight into the genotype block; it stops
at the first line in any other layout (more FORMAT keys, multi-digit alleles, haploid
calls, CRLF) and leaves that line to the general parser. In the same pass it counts, per
line, ALT allele 1 (AC, AN, het, hom-alt) and the highest allele seen, so only
multi-allelic lines need counting again.

Compiled code is cached next to this file (``cache=True``), so only the first ingest on a
machine pays the compilation. Importing this module imports numba, so the reader imports
it only when it starts reading.
"""

from __future__ import annotations

import numba
import numpy as np

# status values returned by the kernel
DONE = 0  # reached the end of the text or filled the block
OTHER_LAYOUT = 1  # the line at the returned position needs the general parser

# A sample cell ``a|b\t`` read as one little-endian 32-bit word: the separator and the
# tab (or, for the last sample, the newline) sit under this mask.
_LAYOUT_MASK = 0xFF00FF00
_PHASED_TAB, _UNPHASED_TAB = 0x09007C00, 0x09002F00
_PHASED_END, _UNPHASED_END = 0x0A007C00, 0x0A002F00
_TAB, _NEWLINE = 9, 10
_INVALID = -128

# allele byte -> allele: '0'..'9' -> 0..9, '.' -> -1, anything else -> _INVALID
ALLELE_OF_BYTE = np.full(256, _INVALID, dtype=np.int8)
ALLELE_OF_BYTE[ord("0") : ord("9") + 1] = np.arange(10)
ALLELE_OF_BYTE[ord(".")] = -1


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _biallelic_calls(words, pairs):  # pragma: no cover - compiled
    """Decode a line whose alleles are all 0 or 1, the common case, into ``pairs``
    (one uint16 per sample: first allele in the low byte).

    Returns ``(bad, ac, hom_alt)``; ``bad`` is set if any cell is not ``[01][|/][01]``
    followed by a tab, or by a newline on the last cell only. Everything is 32-bit
    arithmetic on whole cells with no branch, so LLVM vectorizes the loop: about 1 ns a
    sample, against 5 ns for a byte-by-byte decoder.
    """
    bad = np.uint32(0)
    ac = np.uint32(0)
    hom = np.uint32(0)
    newlines = np.uint32(0)
    for s in range(words.shape[0]):
        w = words[s]
        separator = w & np.uint32(0xFF00)
        end = w >> np.uint32(24)
        bad |= np.uint32((w & np.uint32(0x00FE00FE)) != np.uint32(0x00300030))  # '0' or '1'
        bad |= np.uint32((separator != np.uint32(0x7C00)) & (separator != np.uint32(0x2F00)))
        bad |= np.uint32((end != np.uint32(_TAB)) & (end != np.uint32(_NEWLINE)))
        newlines += np.uint32(end == np.uint32(_NEWLINE))
        alleles = (w & np.uint32(0x00FF00FF)) - np.uint32(0x00300030)  # a in byte 0, b in 2
        ac += (alleles & np.uint32(0xFF)) + (alleles >> np.uint32(16))
        hom += alleles & (alleles >> np.uint32(16))
        pairs[s] = np.uint16((alleles | (alleles >> np.uint32(8))) & np.uint32(0xFFFF))
    bad |= np.uint32(newlines != 1)
    return bad, ac, hom


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _any_calls(words, g):  # pragma: no cover - compiled
    """Decode a line with missing calls or alleles 2-9 into ``g`` (alleles, flattened).

    Branch-free like ``_biallelic_calls``: a bad cell only sets ``bad``, checked once
    per line.
    """
    bad = 0
    newlines = 0
    ac = 0
    an = 0
    het = 0
    hom = 0
    top = 0
    for s in range(words.shape[0]):
        w = words[s]
        layout = w & np.uint32(_LAYOUT_MASK)
        bad |= np.int64(
            (layout != _PHASED_TAB)
            & (layout != _UNPHASED_TAB)
            & (layout != _PHASED_END)
            & (layout != _UNPHASED_END)
        )
        newlines += np.int64((w >> np.uint32(24)) == _NEWLINE)
        a = np.int64(ALLELE_OF_BYTE[w & np.uint32(0xFF)])
        b = np.int64(ALLELE_OF_BYTE[(w >> np.uint32(16)) & np.uint32(0xFF)])
        bad |= np.int64(a == _INVALID) | np.int64(b == _INVALID)
        g[2 * s] = a
        g[2 * s + 1] = b
        copies = np.int64(a == 1) + np.int64(b == 1)
        called = np.int64(a >= 0) + np.int64(b >= 0)
        ac += copies
        an += called
        het += np.int64(copies == 1) & np.int64(called == 2)
        hom += np.int64(copies >= 1) & np.int64(copies == called)
        top = max(top, max(a, b))
    # only the last cell may end in a newline (the caller checked that one does)
    bad |= np.int64(newlines != 1)
    return bad, ac, an, het, hom, top


@numba.njit(cache=True, nogil=True, boundscheck=False)
def scan_fixed_layout(buf, pos, stop, n, gt, offsets, stats, max_rows):  # pragma: no cover
    """Decode lines from ``buf[pos:stop]`` into up to ``max_rows`` rows of ``gt``.

    Returns ``(rows, pos, status)``; ``offsets[row]`` gets where each of the line's ten
    fields starts and ``stats[row]`` its ``(ac, an, het, hom_alt, max_allele)`` of ALT
    allele 1.
    """
    row = 0
    width = 4 * n
    while pos < stop and row < max_rows:
        line = pos
        field = 1
        offsets[row, 0] = pos
        while field < 10:
            while buf[pos] != _TAB:
                if buf[pos] == _NEWLINE:
                    return row, line, OTHER_LAYOUT
                pos += 1
            pos += 1
            offsets[row, field] = pos
            field += 1
        end = pos + width - 1
        if end >= stop or buf[end] != _NEWLINE:
            return row, line, OTHER_LAYOUT
        words = buf[pos : pos + width].view(np.uint32)
        alleles = gt[row].reshape(2 * n)
        bad, ac, hom = _biallelic_calls(words, alleles.view(np.uint16))
        if bad:
            bad, ac, an, het, hom, top = _any_calls(words, alleles)
            if bad:
                return row, line, OTHER_LAYOUT
        else:
            an, het, top = 2 * n, ac - 2 * hom, 1 if ac else 0
        stats[row, 0] = ac
        stats[row, 1] = an
        stats[row, 2] = het
        stats[row, 3] = hom
        stats[row, 4] = top
        pos = end + 1
        row += 1
    return row, pos, DONE
