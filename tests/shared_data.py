"""Where ../shared is, and a marker that skips tests needing it when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GENOFED_SHARED", ROOT.parent / "shared")).resolve()
HAVE_SHARED = (SHARED / "specs" / "beacon-v2").is_dir()

needs_shared = pytest.mark.skipif(
    not HAVE_SHARED,
    reason=f"needs the shared specs and data at {SHARED} (set GENOFED_SHARED to point there)",
)
