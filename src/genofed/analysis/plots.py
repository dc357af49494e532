"""Plots of association results (matplotlib, no display needed): a Manhattan plot and a QQ
plot with the genomic inflation factor λGC, each as PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

# λGC: the median association chi-squared over its expectation under the null (1 df)
_MEDIAN_CHI2 = float(stats.chi2.ppf(0.5, 1))


def genomic_inflation(p: np.ndarray) -> float | None:
    """λGC of the p-values (None without any)."""
    p = np.asarray(p, dtype=np.float64)
    p = p[np.isfinite(p) & (p > 0)]
    if not len(p):
        return None
    return float(np.median(stats.chi2.isf(p, 1)) / _MEDIAN_CHI2)


def _figure():  # noqa: ANN202 - matplotlib's types
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, thread-safe enough for a server
    from matplotlib.figure import Figure

    return Figure(figsize=(9, 3.6), dpi=110)


def manhattan(results: pd.DataFrame, title: str, out: Path) -> list[Path]:
    """``-log10(P)`` by position along the chromosomes (``#CHROM``, ``POS``, ``P``), with
    the genome-wide line at 5e-8. Writes ``out``.png and ``out``.svg."""
    figure = _figure()
    axes = figure.subplots()
    data = results[np.isfinite(results["P"]) & (results["P"] > 0)]
    offset, ticks, labels = 0.0, [], []
    for i, (chrom, rows) in enumerate(data.groupby("#CHROM", sort=False)):
        x = rows["POS"].to_numpy(dtype=np.float64)
        axes.scatter(offset + x, -np.log10(rows["P"]), s=4,
                     color="#1d3b5f" if i % 2 == 0 else "#6f98c8")  # fmt: skip
        ticks.append(offset + (x.min() + x.max()) / 2)
        labels.append(str(chrom))
        offset += x.max() + 1
    axes.axhline(-np.log10(5e-8), color="#b42318", linewidth=0.8, linestyle="--")
    axes.set_xticks(ticks, labels)
    axes.set_xlabel("chromosome (position)")
    axes.set_ylabel("-log10(P)")
    axes.set_title(title)
    figure.tight_layout()
    return _save(figure, out)


def qq(p: np.ndarray, title: str, out: Path) -> list[Path]:
    """Observed against expected ``-log10(P)``, with λGC in the title."""
    figure = _figure()
    figure.set_size_inches(4.2, 4.2)
    axes = figure.subplots()
    p = np.sort(np.asarray(p, dtype=np.float64)[np.isfinite(p) & (np.asarray(p) > 0)])
    expected = -np.log10((np.arange(1, len(p) + 1) - 0.5) / max(len(p), 1))
    axes.scatter(expected, -np.log10(p), s=4, color="#1d3b5f")
    top = float(max(expected.max(initial=1), (-np.log10(p)).max(initial=1)))
    axes.plot([0, top], [0, top], color="#b42318", linewidth=0.8)
    inflation = genomic_inflation(p)
    axes.set_title(f"{title}  λGC = {inflation:.3f}" if inflation else title)
    axes.set_xlabel("expected -log10(P)")
    axes.set_ylabel("observed -log10(P)")
    figure.tight_layout()
    return _save(figure, out)


def _save(figure, out: Path) -> list[Path]:  # noqa: ANN001 - matplotlib's types
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for path in paths:
        figure.savefig(path)
    return paths


def training_curve(curve: list[dict], title: str, out: Path) -> list[Path]:
    """The loss (training and held-out rows) and the held-out AUC of the model each round
    was given."""
    figure = _figure()
    loss, auc = figure.subplots(1, 2)
    rounds = [c["round"] for c in curve]
    loss.plot(rounds, [c["lossTrain"] for c in curve], color="#1d3b5f", label="training rows")
    loss.plot(rounds, [c["lossTest"] for c in curve], color="#b42318", label="held-out rows")
    loss.set_xlabel("round")
    loss.set_ylabel("log-loss")
    loss.legend(frameon=False)
    auc.plot(rounds, [c["auc"] for c in curve], color="#1d3b5f")
    auc.set_xlabel("round")
    auc.set_ylabel("held-out AUC")
    figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, out)
