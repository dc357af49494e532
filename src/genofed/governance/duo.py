"""Matching a research purpose against a dataset's GA4GH Data Use Ontology (DUO) codes.

Each code of the dataset gives one outcome with a reason; the application's result is
DENY if any code denies, else ABSTAIN if any code needs a human (ethics approval,
collaboration, geography, unknown codes…), else APPROVE. Disease-specific consent (DS)
is met when every disease of the purpose is the same as, or a descendant of, one of the
dataset's disease terms (HPO, ICD-10 or an operator ontology).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["APPROVE", "DENY", "ABSTAIN"]

NRES, GRU, HMB, DS, POA = "DUO:0000004", "DUO:0000042", "DUO:0000006", "DUO:0000007", "DUO:0000011"
CC = "DUO:0000043"
PRIMARY = {NRES, GRU, HMB, DS, POA, CC}
NAMES = {
    NRES: "no restriction",
    GRU: "general research use",
    HMB: "health or medical or biomedical research",
    DS: "disease specific research",
    POA: "population origins or ancestry research only",
    CC: "clinical care use",
    "DUO:0000015": "no general methods research",
    "DUO:0000016": "genetic studies only",
    "DUO:0000018": "not for profit, non commercial use only",
    "DUO:0000019": "publication required",
    "DUO:0000020": "collaboration required",
    "DUO:0000021": "ethics approval required",
    "DUO:0000022": "geographical restriction",
    "DUO:0000024": "publication moratorium",
    "DUO:0000025": "time limit on use",
    "DUO:0000026": "user specific restriction",
    "DUO:0000027": "project specific restriction",
    "DUO:0000028": "institution specific restriction",
    "DUO:0000029": "return to database or resource",
    "DUO:0000012": "research specific restrictions",
    "DUO:0000044": "population origins or ancestry research prohibited",
    "DUO:0000045": "not for profit organisation use only",
    "DUO:0000046": "non-commercial use only",
}
# Restrictions only a person can check (agreements, places, dates, named users…).
NEEDS_REVIEW = {
    "DUO:0000012",
    "DUO:0000020",
    "DUO:0000021",
    "DUO:0000022",
    "DUO:0000024",
    "DUO:0000025",
    "DUO:0000026",
    "DUO:0000027",
    "DUO:0000028",
    "DUO:0000029",
}


class ResearchPurpose(BaseModel):
    """What an applicant says they will do with the data."""

    model_config = ConfigDict(extra="forbid")
    category: Literal["general", "health", "disease", "ancestry", "methods", "clinical-care"] = (
        Field(description="The main kind of research")
    )
    diseases: list[str] = Field(
        default_factory=list, description="Disease terms studied (for category 'disease')"
    )
    commercial: bool = False
    for_profit: bool = False
    genetic_study: bool = True
    ancestry_analysis: bool = False
    methods_development: bool = False
    will_publish: bool = True


@dataclass(frozen=True)
class CodeOutcome:
    code: str
    name: str
    outcome: Outcome
    explanation: str


@dataclass(frozen=True)
class Match:
    outcome: Outcome
    codes: list[CodeOutcome]

    def as_dict(self) -> dict:
        return {"outcome": self.outcome, "codes": [asdict(c) for c in self.codes]}


def match(
    purpose: ResearchPurpose,
    codes: list[str],
    disease_terms: list[str],
    descendants: Callable[[str], frozenset[str]],
) -> Match:
    """The DUO decision for ``purpose`` on a dataset with ``codes`` and DS ``disease_terms``."""
    results = [_primary(purpose, codes, disease_terms, descendants)]
    results += [_modifier(purpose, c) for c in codes if c not in PRIMARY]
    outcomes = {r.outcome for r in results}
    overall: Outcome = (
        "DENY" if "DENY" in outcomes else "ABSTAIN" if "ABSTAIN" in outcomes else "APPROVE"
    )
    return Match(overall, results)


def _out(code: str, outcome: Outcome, why: str) -> CodeOutcome:
    return CodeOutcome(code, NAMES.get(code, "unknown code"), outcome, why)


def _primary(
    purpose: ResearchPurpose,
    codes: list[str],
    disease_terms: list[str],
    descendants: Callable[[str], frozenset[str]],
) -> CodeOutcome:
    primary = [c for c in codes if c in PRIMARY]
    if not primary:
        return _out("none", "ABSTAIN", "the dataset has no primary DUO code; a reviewer decides")
    # With several primary codes, the most permissive one applies.
    for code in (NRES, GRU):
        if code in primary:
            return _out(code, "APPROVE", "any research use is allowed")
    if HMB in primary:
        if purpose.category in ("health", "disease", "clinical-care"):
            return _out(HMB, "APPROVE", f"{purpose.category} research is biomedical")
    if DS in primary and purpose.category == "disease":
        if not purpose.diseases:
            return _out(DS, "DENY", "disease-specific consent: name the diseases studied")
        if not disease_terms:
            return _out(DS, "ABSTAIN", "the dataset's DS code names no disease; a reviewer decides")
        allowed = frozenset().union(*(descendants(t) for t in disease_terms))
        outside = [d for d in purpose.diseases if d not in allowed]
        if not outside:
            return _out(DS, "APPROVE", f"every disease studied falls under {disease_terms}")
        return _out(DS, "DENY", f"{outside} are not within the consented diseases {disease_terms}")
    if POA in primary and purpose.category == "ancestry":
        return _out(POA, "APPROVE", "ancestry research is the consented use")
    if CC in primary and purpose.category == "clinical-care":
        return _out(CC, "APPROVE", "clinical care use is consented")
    return _out(
        primary[0],
        "DENY",
        f"{purpose.category} research is outside the consent ({', '.join(primary)})",
    )


def _modifier(purpose: ResearchPurpose, code: str) -> CodeOutcome:
    checks: dict[str, tuple[bool, str]] = {
        "DUO:0000015": (
            purpose.methods_development or purpose.category == "methods",
            "methods development is not allowed",
        ),
        "DUO:0000016": (not purpose.genetic_study, "only genetic studies are allowed"),
        "DUO:0000018": (
            purpose.commercial or purpose.for_profit,
            "only not-for-profit, non-commercial use is allowed",
        ),
        "DUO:0000019": (not purpose.will_publish, "results must be published"),
        "DUO:0000044": (
            purpose.ancestry_analysis or purpose.category == "ancestry",
            "ancestry research is not allowed",
        ),
        "DUO:0000045": (purpose.for_profit, "only not-for-profit organisations may use it"),
        "DUO:0000046": (purpose.commercial, "only non-commercial use is allowed"),
    }
    if code in checks:
        violated, why = checks[code]
        return _out(code, "DENY" if violated else "APPROVE", why if violated else "respected")
    if code in NEEDS_REVIEW:
        return _out(code, "ABSTAIN", "a reviewer must check this condition")
    return _out(code, "ABSTAIN", "unknown DUO code; a reviewer decides")
