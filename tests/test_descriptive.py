"""Descriptive statistics from summed node parts equal pandas on the pooled rows, and
the node's disclosure rules withhold whole payloads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from genofed.analysis.descriptive import describe, moments_part, table_part
from genofed.analysis.design import agree_levels, categorical_levels, design
from genofed.analysis.rules import (
    enough_observations,
    outcome_levels,
    parameters_per_observation,
    released,
    subset_size,
    table_cells,
)
from genofed.config import AnalysisRules
from tests.analysis_data import cohort, split

RULES = AnalysisRules()


def test_means_variances_and_correlations_equal_the_pooled_ones() -> None:
    frames = split(cohort())
    names = ["age", "bmi", "qt"]
    total = sum(moments_part(f, names) for f in frames)
    pooled = pd.concat(frames)[names].dropna()
    moments = describe(total, names)
    assert moments.n == len(pooled)
    np.testing.assert_allclose(moments.means, pooled.mean(), rtol=1e-12)
    np.testing.assert_allclose(moments.variances, pooled.var(ddof=1), rtol=1e-9)
    np.testing.assert_allclose(moments.correlation, pooled.corr(), rtol=1e-9)


def test_contingency_tables_sum_over_agreed_levels() -> None:
    frames = split(cohort())
    levels = agree_levels([categorical_levels(f, {"sex", "group"}) for f in frames])
    assert "c" not in set(frames[2]["group"]) and levels["group"] == ["a", "b", "c"]
    total = sum(table_part(f, "sex", "group", levels) for f in frames)
    expected = pd.crosstab(pd.concat(frames)["sex"], pd.concat(frames)["group"])
    np.testing.assert_array_equal(total, expected.to_numpy())
    assert all(table_cells(table_part(f, "sex", "group", levels), RULES).passed for f in frames)


def test_each_rule_withholds_the_whole_payload_and_says_which() -> None:
    frame = cohort(60)
    levels = agree_levels([categorical_levels(frame, {"sex", "group"})])
    # a saturated model: as many parameters as observations
    few = frame.iloc[:4]
    d = design("qt ~ age + sex + bmi", few.dropna(), levels)
    check = parameters_per_observation(d.x.shape[1], len(d.y), RULES)
    assert not check.passed and check.rule == "nfilter.glm"
    assert released({"beta": [1, 2]}, [check]) is None
    # a subset of 2
    subset = subset_size(2, RULES)
    assert not subset.passed and "fewer than 3" in subset.detail
    assert subset_size(0, RULES).passed and subset_size(3, RULES).passed
    # a binomial outcome with 2 cases at this node
    y = np.array([1, 1] + [0] * 40)
    levels_check = outcome_levels(y, RULES)
    assert not levels_check.passed and levels_check.rule == "nfilter.tab"
    assert outcome_levels(np.array([1, 1, 1] + [0] * 40), RULES).passed
    # a table with a cell of 1; a zero cell is fine
    assert not table_cells(np.array([[1, 10], [0, 9]]), RULES).passed
    assert table_cells(np.array([[0, 10], [3, 9]]), RULES).passed
    assert not enough_observations(9, RULES).passed and enough_observations(10, RULES).passed
    passed = [subset_size(50, RULES), enough_observations(50, RULES)]
    assert released({"x": 1}, passed) == {"x": 1}
    strict = AnalysisRules.model_validate({"nfilter.tab": 5})
    assert not outcome_levels(np.array([1] * 4 + [0] * 40), strict).passed
