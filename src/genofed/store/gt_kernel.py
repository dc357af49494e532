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
machine pays the compilation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

# status values returned by the kernel
DONE = 0  # reached the end of the text or filled the block
OTHER_LAYOUT = 1  # the line at the returned position needs the general parser

_TAB, _NEWLINE, _PIPE, _SLASH, _DOT, _ZERO = 9, 10, 124, 47, 46, 48


def _scan(buf, pos, stop, n, gt, offsets, stats, max_rows):  # pragma: no cover - compiled
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
        ac = 0
        an = 0
        het = 0
        hom = 0
        top = 0
        for s in range(n):
            p = pos + 4 * s
            separator = buf[p + 1]
            if separator != _PIPE and separator != _SLASH:
                return row, line, OTHER_LAYOUT
            if s < n - 1 and buf[p + 3] != _TAB:
                return row, line, OTHER_LAYOUT
            a = np.int16(buf[p]) - _ZERO
            b = np.int16(buf[p + 2]) - _ZERO
            if buf[p] == _DOT:
                a = -1
            elif a < 0 or a > 9:
                return row, line, OTHER_LAYOUT
            if buf[p + 2] == _DOT:
                b = -1
            elif b < 0 or b > 9:
                return row, line, OTHER_LAYOUT
            gt[row, s, 0] = a
            gt[row, s, 1] = b
            called = (a >= 0) + (b >= 0)
            copies = (a == 1) + (b == 1)
            an += called
            ac += copies
            if copies > 0:
                if copies == called:
                    hom += 1
                else:
                    het += 1
            top = max(top, a, b)
        stats[row, 0] = ac
        stats[row, 1] = an
        stats[row, 2] = het
        stats[row, 3] = hom
        stats[row, 4] = top
        pos = end + 1
        row += 1
    return row, pos, DONE


@cache
def fixed_layout_scanner() -> Callable[..., tuple[int, int, int]]:
    """The compiled kernel.

    ``(buf, pos, stop, n, gt, offsets, stats, max_rows) -> (rows, pos, status)``, where
    ``stats`` rows are ``(ac, an, het, hom_alt, max_allele)`` of ALT allele 1. Importing
    numba and compiling are deferred to the first ingest.
    """
    import numba

    return numba.njit(cache=True, nogil=True)(_scan)
