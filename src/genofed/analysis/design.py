"""Design matrices from R-style formulas (formulaic), coded identically at every node.

A categorical variable is dummy-coded against its agreed levels (their sorted union over
the nodes, agreed before the model is fitted), so a level one node lacks is still a column
there, and the reference level is the same everywhere. Rows missing any variable the model
uses are dropped (listwise) and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import FormulaicError

from genofed._exceptions import QueryError


@dataclass
class Design:
    x: np.ndarray
    y: np.ndarray
    offset: np.ndarray | None
    columns: list[str]
    intercept: bool
    n_dropped: int  # rows missing a variable the model uses


# Formulas are evaluated by formulaic, which evaluates Python in its terms: only these
# functions are let through (a formula is the analyst's, and runs at the node). They are
# stateless, so a node codes its rows as it would in the pooled data; formulaic's stateful
# transforms (center, scale, poly...) would use each node's own means, and C() each
# node's own levels, so they are refused.
FUNCTIONS = frozenset({"I", "log", "exp", "np.log", "np.exp", "np.sqrt", "np.log1p"})
_EXPRESSION = re.compile(r"^[A-Za-z0-9_.+\-*/:~() ]*$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def check_expression(text: str, what: str = "formula") -> None:
    """Refuse an expression using more than variables, numbers, the operators of a formula
    and the ``FUNCTIONS``, saying what to change."""
    if len(text) > 1000:
        raise QueryError(f"the {what} is longer than 1,000 characters")
    if not _EXPRESSION.match(text) or "__" in text:
        raise QueryError(
            f"the {what} {text!r} may use variable names, numbers, + - * / : ~ ( ) and the "
            f"functions {', '.join(sorted(FUNCTIONS))}"
        )
    for match in _NAME.finditer(text):
        name, rest = match.group(), text[match.end() :].lstrip()
        called = rest.startswith("(")
        if called and name not in FUNCTIONS:
            raise QueryError(
                f"{name}() is not allowed in a {what}: use {', '.join(sorted(FUNCTIONS))}"
            )
        if not called and "." in name:
            raise QueryError(f"{name!r} in the {what} is neither a variable nor a function call")


def parse(formula: str) -> Formula:
    """``formula`` parsed, or a ``QueryError`` that says what is wrong with it."""
    check_expression(formula)
    try:
        parsed = Formula(formula)
    except (FormulaicError, SyntaxError, ValueError) as exc:
        raise QueryError(f"the formula {formula!r} does not parse: {exc}") from None
    if not hasattr(parsed, "lhs") or not str(parsed.lhs).strip():
        raise QueryError(f"the formula {formula!r} has no outcome: write 'outcome ~ terms'")
    return parsed


def variables(formula: str, offset: str | None = None) -> set[str]:
    """The data variables ``formula`` (and the offset expression) use."""
    names = {str(v) for v in parse(formula).required_variables}
    if offset:
        check_expression(offset, "offset")
        names |= {str(v) for v in Formula(f"{offset} - 1").required_variables}
    return names - {"np"}


def categorical_levels(frame: pd.DataFrame, names: set[str]) -> dict[str, list[str]]:
    """The levels of each non-numeric variable among ``names`` in ``frame`` (this node's
    share of the agreement)."""
    return {
        name: sorted({str(v) for v in frame[name].dropna()})
        for name in sorted(names)
        if name in frame and not pd.api.types.is_numeric_dtype(frame[name])
    }


def agree_levels(each_node: list[dict[str, list[str]]]) -> dict[str, list[str]]:
    """The levels every node codes with: the sorted union of the nodes' levels."""
    agreed: dict[str, set[str]] = {}
    for levels in each_node:
        for name, values in levels.items():
            agreed.setdefault(name, set()).update(values)
    return {name: sorted(values) for name, values in sorted(agreed.items())}


def design(
    formula: str,
    frame: pd.DataFrame,
    levels: dict[str, list[str]],
    *,
    offset: str | None = None,
) -> Design:
    """The outcome, design matrix and offset of ``formula`` over ``frame``'s complete rows,
    with each categorical variable coded against its agreed ``levels``."""
    parse(formula)
    used = variables(formula, offset)
    missing = sorted(used - set(frame.columns))
    if missing:
        raise QueryError(f"unknown variable(s) {', '.join(missing)}")
    data = frame[sorted(used)].dropna()  # listwise: a copy, recoded below
    for name, values in levels.items():
        if name in data:
            unknown = set(data[name].astype(str)) - set(values)
            if unknown:
                raise QueryError(f"{name} has levels outside the agreed ones")
            data[name] = pd.Categorical(data[name].astype(str), categories=values)
    try:
        matrices = model_matrix(formula, data, na_action="raise")
        offset_values = (
            None
            if offset is None
            else np.asarray(model_matrix(f"{offset} - 1", data).values, dtype=np.float64)[:, 0]
        )
    except (FormulaicError, ValueError, TypeError, KeyError) as exc:
        raise QueryError(f"the formula {formula!r} cannot be evaluated: {exc}") from None
    lhs = np.asarray(matrices.lhs.values, dtype=np.float64)
    if lhs.shape[1] != 1:
        outcome = str(parse(formula).lhs)
        raise QueryError(
            f"the outcome {outcome!r} must be one numeric column (a two-level variable: "
            "code it 0/1)"
        )
    columns = list(matrices.rhs.columns)
    return Design(
        x=np.asarray(matrices.rhs.values, dtype=np.float64),
        y=lhs[:, 0],
        offset=offset_values,
        columns=columns,
        intercept="Intercept" in columns,
        n_dropped=len(frame) - len(data),
    )
