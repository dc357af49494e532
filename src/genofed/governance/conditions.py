"""Visa ``conditions`` (GA4GH Passport 1.2, "conditions" and "Pattern Matching").

``conditions`` is a list of OR alternatives, each a list of AND'ed condition clauses. A
clause names a visa ``type`` and one or more other visa-object claims, each written as
``const:…``, ``pattern:…`` or ``split_pattern:…``; every claim of one clause must match the
same visa of the Passport, and visas that themselves carry conditions are never used to
satisfy a clause (no nesting). A clause that cannot be evaluated makes the visa invalid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from genofed._exceptions import VisaConditionError

# Claims a clause may test: the visa object's string claims, never timestamps or conditions.
CLAUSE_CLAIMS = frozenset({"type", "value", "source", "by"})


def pattern_matches(pattern: str, text: str) -> bool:
    """Full-string, case-sensitive match where ``?`` is one character and ``*`` any run
    (no escape character). Matched with one backtracking point, the last ``*``: time
    proportional to ``len(pattern) * len(text)`` at worst, never exponential, whatever
    the pattern (a regular expression of many stars backtracks for minutes)."""
    p = t = 0
    star, resume = -1, 0
    while t < len(text):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, resume = p, t
            p += 1
        elif star >= 0:
            resume += 1
            t = resume
            p = star + 1
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def check_conditions(conditions: Any) -> list[list[dict[str, str]]]:
    """The conditions in their validated shape, or ``VisaConditionError`` saying what is wrong."""
    if not isinstance(conditions, list) or not conditions:
        raise VisaConditionError("conditions must be a non-empty list of lists of clauses")
    checked: list[list[dict[str, str]]] = []
    for alternative in conditions:
        if not isinstance(alternative, list) or not alternative:
            raise VisaConditionError("each alternative in conditions must be a non-empty list")
        clauses = []
        for clause in alternative:
            if not isinstance(clause, dict) or "type" not in clause:
                raise VisaConditionError("each condition clause must be an object with a 'type'")
            if len(clause) < 2:
                raise VisaConditionError("a condition clause must test a claim besides 'type'")
            for name, value in clause.items():
                if name not in CLAUSE_CLAIMS:
                    raise VisaConditionError(f"condition clauses cannot test claim {name!r}")
                if not isinstance(value, str):
                    raise VisaConditionError(f"condition claim {name!r} must be a string")
                if name != "type":
                    prefix, colon, _ = value.partition(":")
                    if not colon or prefix not in ("const", "pattern", "split_pattern"):
                        raise VisaConditionError(
                            f"condition claim {name!r} has no known prefix "
                            "(const:, pattern: or split_pattern:)"
                        )
            clauses.append(dict(clause))
        checked.append(clauses)
    return checked


def _claim_matches(spec: str, actual: Any) -> bool:
    if not isinstance(actual, str):
        return False
    prefix, _, expected = spec.partition(":")
    if prefix == "const":
        return actual == expected
    if prefix == "pattern":
        return pattern_matches(expected, actual)
    if prefix == "split_pattern":
        return any(pattern_matches(expected, part) for part in actual.split(";"))
    return False  # unknown prefix: the clause fails to match


def clause_matches(clause: Mapping[str, str], visa: Mapping[str, Any]) -> bool:
    """Whether one visa object satisfies every claim of ``clause``."""
    if visa.get("type") != clause["type"] or "conditions" in visa:
        return False
    return all(
        _claim_matches(spec, visa.get(name)) for name, spec in clause.items() if name != "type"
    )


def conditions_met(
    conditions: list[list[dict[str, str]]], visas: Sequence[Mapping[str, Any]]
) -> bool:
    """Whether some alternative has all its clauses matched, each by a single visa."""
    return any(
        all(any(clause_matches(clause, visa) for visa in visas) for clause in alternative)
        for alternative in conditions
    )
