"""Virtual cohorts: criteria evaluated at every node, counted there, saved at the hub.

A cohort is a definition, not a list of people: phenotype or disease terms (with their
descendants), sex, an age range, carriers of a variant, and optionally the datasets to
look in. Each node counts its individuals matching all of them under its own disclosure
rules (a Beacon ``/individuals`` count query); the hub shows each node's count and the
total, made safe again. Who the individuals are never leaves the nodes. A saved cohort
keeps its definition under an id that later analyses can target.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from genofed._exceptions import NotFoundError, QueryError
from genofed.criteria import CohortCriteria


class CohortDefinition(BaseModel):
    """What ``POST /hub/cohorts`` takes."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    criteria: CohortCriteria


class CohortStore:
    """Saved cohorts, one JSON file each under the hub's state directory."""

    def __init__(self, directory: Path):
        self.directory = directory

    def save(self, definition: CohortDefinition, counts: dict[str, Any]) -> dict[str, Any]:
        """Save ``definition`` with the total it had when saved (``counts``, as
        ``count_cohort`` gives it: already made safe)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        cohort = {
            "id": f"cohort-{secrets.token_hex(6)}",
            "name": definition.name,
            "description": definition.description,
            "criteria": definition.criteria.model_dump(exclude_none=True),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "countAtSave": {
                key: counts.get(key) for key in ("total", "countPrecision", "exists", "partial")
            },
        }
        path = self.directory / f"{cohort['id']}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(cohort, indent=2))
        os.replace(temporary, path)
        return cohort

    def get(self, cohort_id: str) -> dict[str, Any]:
        try:
            return _readable(json.loads(self._path(cohort_id).read_text()))
        except FileNotFoundError:
            raise NotFoundError(f"no cohort {cohort_id!r}; GET /hub/cohorts lists them") from None

    def delete(self, cohort_id: str) -> None:
        try:
            self._path(cohort_id).unlink()
        except FileNotFoundError:
            raise NotFoundError(f"no cohort {cohort_id!r}; GET /hub/cohorts lists them") from None

    def all(self) -> list[dict[str, Any]]:
        if not self.directory.is_dir():
            return []
        cohorts = [
            _readable(json.loads(p.read_text())) for p in sorted(self.directory.glob("*.json"))
        ]
        return sorted(cohorts, key=lambda c: c["created"], reverse=True)

    def _path(self, cohort_id: str) -> Path:
        # the full id, never a prefix: a prefix could name another cohort tomorrow
        if not re.fullmatch(r"cohort-[0-9a-f]{12}", cohort_id):
            raise NotFoundError(
                f"no cohort {cohort_id!r}: ids are cohort- and 12 hex digits, in full"
            )
        return self.directory / f"{cohort_id}.json"


def _readable(cohort: dict[str, Any]) -> dict[str, Any]:
    """A saved cohort with its criteria in words (``summary``); saved before counts were
    kept, its ``countAtSave`` is None."""
    try:
        summary = CohortCriteria.model_validate(cohort["criteria"]).summary()
    except (KeyError, ValueError):
        summary = "(unreadable criteria)"
    return {**cohort, "summary": summary, "countAtSave": cohort.get("countAtSave")}


def criteria_of(cohort: dict[str, Any]) -> CohortCriteria:
    try:
        return CohortCriteria.model_validate(cohort["criteria"])
    except (KeyError, ValueError) as exc:
        raise QueryError(f"the saved cohort is unreadable: {exc}") from None
