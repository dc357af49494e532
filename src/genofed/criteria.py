"""Who belongs to a cohort: criteria the hub's cohorts and the nodes' analyses share.

A cohort is a definition, not a list of people: phenotype or disease terms (with their
descendants), sex, an age range, carriers of a variant, and optionally the datasets to
look in. The hub asks each node to count it (a Beacon ``/individuals`` query made from
``beacon_body``); a node's analysis task restricted to a cohort evaluates the same
filters on its own individuals.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class VariantCriterion(BaseModel):
    """Carriers of one allele (Beacon sequence query: 0-based ``start``)."""

    model_config = ConfigDict(extra="forbid")
    referenceName: str = Field(min_length=1, max_length=10)  # noqa: N815 - Beacon's name
    start: int = Field(ge=0)
    referenceBases: str = Field(pattern=r"^[ACGTN]+$", max_length=1000)  # noqa: N815
    alternateBases: str = Field(pattern=r"^[ACGTN]+$", max_length=1000)  # noqa: N815

    def variant_id(self) -> str:
        """The node's id of the variant: ``chrom-pos-ref-alt``, 1-based."""
        chrom = self.referenceName.removeprefix("chr")
        return f"{chrom}-{self.start + 1}-{self.referenceBases}-{self.alternateBases}"


class CohortCriteria(BaseModel):
    """Who belongs to a cohort; every criterion given must hold."""

    model_config = ConfigDict(extra="forbid")
    terms: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Phenotype or disease CURIEs (HP:0001250, ICD10:G40); descendants count",
    )
    sex: Literal["female", "male"] | None = None
    min_age: float | None = Field(None, ge=0, le=150, description="Years, inclusive")
    max_age: float | None = Field(None, ge=0, le=150, description="Years, inclusive")
    variant: VariantCriterion | None = None
    datasets: list[str] = Field(
        default_factory=list,
        description="Only these datasets, as <node>:<dataset>; nodes with none listed are "
        "not asked",
    )

    @model_validator(mode="after")
    def _check(self) -> CohortCriteria:
        for term in self.terms:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*:[^\s,]+", term):
                raise ValueError(f"terms are CURIEs such as HP:0001250, not {term!r}")
        for dataset in self.datasets:
            if ":" not in dataset:
                raise ValueError(f"datasets are <node>:<dataset>, not {dataset!r}")
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ValueError("min_age is above max_age")
        return self

    def nodes(self) -> set[str] | None:
        """The nodes to ask (None: all)."""
        return {d.split(":", 1)[0] for d in self.datasets} or None

    def filters(self) -> list[dict[str, Any]]:
        """The criteria other than the variant and datasets, as Beacon filters."""
        filters: list[dict[str, Any]] = [
            {"id": term, "includeDescendantTerms": True} for term in self.terms
        ]
        if self.sex is not None:
            filters.append({"id": "sex.label", "operator": "=", "value": self.sex})
        if self.min_age is not None:
            filters.append({"id": "age", "operator": ">=", "value": _years(self.min_age)})
        if self.max_age is not None:
            filters.append({"id": "age", "operator": "<=", "value": _years(self.max_age)})
        return filters

    def beacon_path(self) -> str:
        """The individuals to count: everyone's, or the variant's carriers (the node's
        ``/g_variants/{id}/individuals``, the id being ``chrom-pos-ref-alt``, 1-based)."""
        if self.variant is None:
            return "/beacon/v2/individuals"
        return f"/beacon/v2/g_variants/{self.variant.variant_id()}/individuals"

    def beacon_body(self, node: str) -> dict[str, Any]:
        """The Beacon count request for ``node`` (POST to ``beacon_path()``)."""
        filters = self.filters()
        parameters: dict[str, Any] = {}
        datasets = [d.split(":", 1)[1] for d in self.datasets if d.split(":", 1)[0] == node]
        if datasets:
            parameters["datasets"] = datasets
        # The most the caller may have (an exact count for record-level callers, a safe one
        # for the others), and no result sets: no record leaves the node.
        query: dict[str, Any] = {
            "filters": filters,
            "requestedGranularity": "record",
            "includeResultsetResponses": "NONE",
        }
        if parameters:
            query["requestParameters"] = parameters
        return {"meta": {"apiVersion": "v2.0.0"}, "query": query}

    def summary(self) -> str:
        """The criteria in one line a person reads, e.g. ``HP:0001250 · female · aged
        50–70 · carriers of 22-1006700-G-C · in alpha:cohort``."""
        parts = list(self.terms)
        if self.sex is not None:
            parts.append(self.sex)
        if self.min_age is not None and self.max_age is not None:
            parts.append(f"aged {self.min_age:g}–{self.max_age:g}")
        elif self.min_age is not None:
            parts.append(f"aged {self.min_age:g}+")
        elif self.max_age is not None:
            parts.append(f"aged up to {self.max_age:g}")
        if self.variant is not None:
            parts.append(f"carriers of {self.variant.variant_id()}")
        if self.datasets:
            parts.append("in " + ", ".join(self.datasets))
        return " · ".join(parts) or "everyone"

    def breakdowns(self) -> dict[str, list[tuple[str, CohortCriteria]]]:
        """The cohort split by sex and by age band, each part a cohort of its own (so each
        is counted, and made safe, by the nodes like any cohort). Bands that the cohort's
        own age range excludes are left out."""
        sexes = [self.sex] if self.sex is not None else ["female", "male"]
        by_sex = [(sex, self.model_copy(update={"sex": sex})) for sex in sexes]
        by_age = []
        for low, high in AGE_BANDS:
            # ages are compared in whole months: a band ends a month before the next begins
            top = None if high is None else high - 1 / 12
            lo = max(low, self.min_age or 0.0)
            highs = [h for h in (top, self.max_age) if h is not None]
            hi = min(highs) if highs else None
            if hi is not None and lo > hi:
                continue
            label = f"{low}+" if high is None else f"{low}–{high - 1}"
            by_age.append((label, self.model_copy(update={"min_age": lo, "max_age": hi})))
        return {"sex": by_sex, "age": by_age}


AGE_BANDS: list[tuple[int, int | None]] = [(0, 18), (18, 40), (40, 60), (60, 80), (80, None)]


def _years(value: float) -> str:
    whole = int(value)
    months = round((value - whole) * 12)
    return f"P{whole}Y{months}M" if months else f"P{whole}Y"
