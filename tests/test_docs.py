"""The reference pages in docs/reference/ are generated from the code (the CLI, every
setting, endpoint and error code), and fail to build when any of those has no
description: this test fails when a page is stale or something is undocumented."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import reference_docs  # noqa: E402


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return reference_docs.pages()


@pytest.mark.parametrize("name", ["cli.md", "settings.md", "endpoints.md", "errors.md"])
def test_reference_pages_are_current(pages, name: str) -> None:
    written = (ROOT / "docs" / "reference" / name).read_text()
    assert written == pages[name], f"docs/reference/{name} is out of date: run `make docs`"


def test_every_setting_has_a_row(pages) -> None:
    from genofed.config import Disclosure, NodeConfig

    for name in NodeConfig.model_fields:
        assert f"| `{name}` |" in pages["settings.md"]
    for name in Disclosure.model_fields:
        assert f"| `disclosure.{name}` |" in pages["settings.md"]


def test_an_undocumented_setting_fails_the_build(monkeypatch) -> None:
    from genofed.config import Disclosure

    field = Disclosure.model_fields["min_count"]
    monkeypatch.setattr(field, "description", None)
    with pytest.raises(reference_docs.UndocumentedError, match="disclosure.min_count"):
        reference_docs.settings_page()


def test_the_user_docs_point_to_the_reference() -> None:
    index = (ROOT / "docs" / "architecture.md").read_text()
    for name in ("cli.md", "settings.md", "endpoints.md", "errors.md"):
        assert f"reference/{name}" in index
