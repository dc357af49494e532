"""A simulated cohort split over three nodes, for the tests of federated analyses."""

from __future__ import annotations

import numpy as np
import pandas as pd


def cohort(n: int = 900, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n)
    male = rng.random(n) < 0.5
    bmi = rng.normal(27, 4, n)
    group = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    effect = pd.Series(group).map({"a": 0.0, "b": 0.4, "c": -0.3}).to_numpy()
    exposure = rng.uniform(0.5, 3, n)
    frame = pd.DataFrame({
        "age": age,
        "sex": np.where(male, "male", "female"),
        "bmi": bmi,
        "group": group,
        "qt": 1 + 0.05 * age + 0.3 * male + 0.1 * bmi + effect + rng.normal(0, 1, n),
        "case": (rng.random(n) < 1 / (1 + np.exp(-(-4 + 0.04 * age + 0.5 * male + 0.05 * bmi))))
        .astype(int),
        "events": rng.poisson(np.exp(-2 + 0.02 * age + 0.2 * male) * exposure),
        "exposure": exposure,
    })  # fmt: skip
    frame.loc[rng.choice(n, 25, replace=False), "bmi"] = np.nan  # dropped listwise
    return frame


def split(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """Three nodes of 50 %, 30 % and 20 %; the smallest has no one of group c."""
    a, b, rest = frame.iloc[:450], frame.iloc[450:720], frame.iloc[720:]
    return [a, b, rest[rest["group"] != "c"]]
