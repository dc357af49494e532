"""A compiled scan of VCF text (numba, compiled on first use): every FORMAT layout.

The kernel walks whole lines, records where the ten fields start, and writes each line's
calls straight into the genotype block, with no Python per sample:

- ``FORMAT`` = ``GT`` with diploid single-digit calls (imputation, phasing, simulation):
  every cell is exactly four bytes, ``a|b\\t``, so the sample part needs no searching and
  a branch-free decoder reads whole cells as 32-bit words.
- Any other layout (``GT:AD:DP:GQ:PL`` of joint calls, GT anywhere among the keys,
  haploid or multi-digit calls, dropped trailing fields, CRLF): GT is located in FORMAT
  once per line and decoded in each cell, and the other fields are skipped eight bytes at
  a time (a SWAR search for the tab that ends the cell).

In the same pass it counts, per line, ALT allele 1 (AC, AN, het, hom-alt) and the highest
allele seen, so only multi-allelic lines need counting again. A line it cannot take
stops the scan with a status saying why (and, for a bad cell, which sample), so the
reader can report it; lines whose fixed fields need Python (short or empty lines) are
handed back the same way.

Compiled code is cached next to this file (``cache=True``), so only the first ingest on a
machine pays the compilation. Importing this module imports numba, so the reader imports
it only when it starts reading.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

# status values returned by the kernel
DONE = 0  # reached the end of the text or filled the block
FIXED_FIELDS = 1  # the line at the returned position has fewer than ten fields (or none)
NO_GT = 2  # FORMAT has no GT key
BAD_GT = 3  # the GT of sample ``detail`` is not valid
PLOIDY = 4  # the GT of sample ``detail`` has more than two alleles
BIG_ALLELE = 5  # the GT of sample ``detail`` names an allele above 127
FEW_COLUMNS = 6  # the line ends after sample ``detail``
MANY_COLUMNS = 7  # the line has more sample columns than the header

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


_COLON, _SLASH, _PIPE, _DOT, _CR = 58, 47, 124, 46, 13
_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_TABS = np.uint64(0x0909090909090909)
_NEWLINES = np.uint64(0x0A0A0A0A0A0A0A0A)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _allele(buf, p):  # pragma: no cover - compiled
    """``(allele, next position)``; allele -1 for '.', ``_INVALID`` for anything but a
    number, 128 for a number above 127."""
    c = buf[p]
    if c == _DOT:
        return np.int64(-1), p + 1
    if c < 48 or c > 57:
        return np.int64(_INVALID), p
    value = np.int64(0)
    while 48 <= buf[p] <= 57:
        value = min(value * 10 + np.int64(buf[p] - 48), 128)
        p += 1
    return value, p


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _cell_call(buf, p, key):  # pragma: no cover - compiled
    """``(status, a, b)`` of the cell starting at ``p``, GT being FORMAT key ``key``."""
    skipped = 0
    while skipped < key:  # to the GT subfield (rarely needed: GT is nearly always first)
        c = buf[p]
        if c == _TAB or c == _NEWLINE:
            return DONE, np.int64(-1), np.int64(-2)  # trailing fields dropped, GT among them
        if c == _COLON:
            skipped += 1
        p += 1
    a, p = _allele(buf, p)
    b = np.int64(-2)
    c = buf[p]
    if c == _SLASH or c == _PIPE:
        b, p = _allele(buf, p + 1)
        c = buf[p]
        if c == _SLASH or c == _PIPE:
            return PLOIDY, a, b
    if a == _INVALID or b == _INVALID:
        return BAD_GT, a, b
    if c != _COLON and c != _TAB and c != _NEWLINE and c != _CR:
        return BAD_GT, a, b
    if a > 127 or b > 127:
        return BIG_ALLELE, a, b
    return DONE, a, b


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _cell_ends(buf, words, p, ends):  # pragma: no cover - compiled
    """Fill ``ends`` with where each cell from ``p`` to the end of the line ends (its tab,
    or the newline); returns how many, stopping at ``len(ends)``.

    Eight bytes at a time: a byte equal to 9 (tab) or 10 (newline) is a zero byte of
    ``word ^ 0x09..`` or ``word ^ 0x0A..``, flagged by the classic has-zero-byte test.
    Each flag is checked against the byte itself, as the test may also flag a byte 8 or
    11 right above a match. The bytes after the last whole word are read one by one.
    """
    count = 0
    q = p >> 3
    if q < words.shape[0]:
        shift = np.uint64(8 * (p & 7))
        while q < words.shape[0]:
            x = words[q]
            t = x ^ _TABS
            u = x ^ _NEWLINES
            found = (((t - _ONES) & ~t) | ((u - _ONES) & ~u)) & _HIGHS
            found = (found >> shift) << shift
            shift = np.uint64(0)
            while found != 0:
                at = 8 * q + np.int64(trailing_zeros(found) >> np.uint64(3))
                found &= found - np.uint64(1)
                c = buf[at]
                if c == _TAB or c == _NEWLINE:
                    ends[count] = at
                    count += 1
                    if c == _NEWLINE or count == ends.shape[0]:
                        return count
            q += 1
        p = 8 * q
    while True:
        c = buf[p]
        if c == _TAB or c == _NEWLINE:
            ends[count] = p
            count += 1
            if c == _NEWLINE or count == ends.shape[0]:
                return count
        p += 1


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _any_layout_calls(buf, words, p, n, key, g, ends):  # pragma: no cover - compiled
    """Decode the sample columns starting at ``p``, GT being FORMAT key number ``key``;
    ``ends`` is scratch space for ``n + 1`` cell ends.

    Returns ``(status, detail, end, ac, an, het, hom, top)``: ``end`` is the line's
    newline; ``detail`` the sample a bad status is about. Cells of one-digit diploid
    calls, GT first (nearly all cells of real files), are decoded on a fast path.
    """
    cells = _cell_ends(buf, words, p, ends)
    end = ends[cells - 1]
    if buf[end] != _NEWLINE:
        return MANY_COLUMNS, n, end, 0, 0, 0, 0, 0
    if cells != n:
        return FEW_COLUMNS, cells - 1, end, 0, 0, 0, 0, 0
    ac = np.int64(0)
    an = np.int64(0)
    het = np.int64(0)
    hom = np.int64(0)
    top = np.int64(0)
    cell = p
    for s in range(n):
        fast = False
        a = b = np.int64(0)
        if key == 0 and ends[s] - cell >= 3:  # the four bytes read here are the cell's
            a = np.int64(buf[cell]) - 48
            b = np.int64(buf[cell + 2]) - 48
            separator = buf[cell + 1]
            after = buf[cell + 3]
            fast = (
                np.uint64(a) < 10
                and np.uint64(b) < 10
                and (separator == _SLASH or separator == _PIPE)
                and (after == _COLON or after == _TAB or after == _NEWLINE)
            )
        if not fast:
            status, a, b = _cell_call(buf, cell, key)
            if status != DONE:
                return status, s, end, 0, 0, 0, 0, 0
        g[2 * s] = a
        g[2 * s + 1] = b
        copies = np.int64(a == 1) + np.int64(b == 1)
        called = np.int64(a >= 0) + np.int64(b >= 0)
        ac += copies
        an += called
        het += np.int64(copies >= 1) & np.int64(copies < called)
        hom += np.int64(copies >= 1) & np.int64(copies == called)
        top = max(top, max(a, b))
        cell = ends[s] + 1
    return DONE, 0, end, ac, an, het, hom, top


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _gt_key(buf, start, end):  # pragma: no cover - compiled
    """Index of the GT key in the FORMAT field ``buf[start:end]``, or -1."""
    key = 0
    p = start
    while p < end:
        q = p
        while q < end and buf[q] != _COLON:
            q += 1
        if q - p == 2 and buf[p] == 71 and buf[p + 1] == 84:  # "GT"
            return key
        key += 1
        p = q + 1
    return -1


@numba.njit(cache=True, nogil=True, boundscheck=False)
def scan_lines(buf, words, pos, stop, n, gt, offsets, stats, max_rows, ends):  # pragma: no cover
    """Decode lines from ``buf[pos:stop]`` into up to ``max_rows`` rows of ``gt``.

    ``words`` is ``buf`` seen as uint64 (its whole words), ``ends`` scratch space for
    ``n + 1`` int64. Returns
    ``(rows, pos, status, detail)``: ``pos`` is where the scan stopped (the line a status
    other than ``DONE`` is about); ``offsets[row]`` gets where each of the line's ten
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
                    return row, line, FIXED_FIELDS, 0
                pos += 1
            pos += 1
            offsets[row, field] = pos
            field += 1
        alleles = gt[row].reshape(2 * n)
        end = pos + width - 1
        fixed = (
            pos - offsets[row, 8] == 3
            and buf[pos - 3] == 71  # FORMAT is "GT"
            and buf[pos - 2] == 84
            and end < stop
            and buf[end] == _NEWLINE
        )
        bad = 1
        ac = an = het = hom = top = 0
        if fixed:
            cells = buf[pos : pos + width].view(np.uint32)
            bad, ac, hom = _biallelic_calls(cells, alleles.view(np.uint16))
            if not bad:
                an, het, top = 2 * n, ac - 2 * hom, 1 if ac else 0
            else:
                bad, ac, an, het, hom, top = _any_calls(cells, alleles)
        if bad:
            key = _gt_key(buf, offsets[row, 8], pos - 1)
            if key < 0:
                return row, line, NO_GT, 0
            status, detail, end, ac, an, het, hom, top = _any_layout_calls(
                buf, words, pos, n, key, alleles, ends
            )
            if status != DONE:
                return row, line, status, detail
        stats[row, 0] = ac
        stats[row, 1] = an
        stats[row, 2] = het
        stats[row, 3] = hom
        stats[row, 4] = top
        pos = end + 1
        row += 1
    return row, pos, DONE, 0
