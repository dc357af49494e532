"""Debian's chromium for the portal's tests (the ``browser`` fixture, in conftest.py,
drives it headless with Playwright); tests that need it are skipped where it is not
installed."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium")

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"
)
