"""The EDA report's sections on labelled anomalies (see `AnomalyDetection.eda_sections`).

With labels, every sensor is shown for normal and anomalous readings apart, with the anomaly
rate overall and per category (such as the machine). Without labels the report has only its
generic sections.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .eda import save_figure, target_figure
from .tables import markdown


def by_label_figure(df: pd.DataFrame, columns: list[str], target: str):
    """Each numeric feature's distribution for normal and for anomalous readings."""
    cols = 3
    rows = math.ceil(len(columns) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.7 * rows), squeeze=False)
    anomalous = pd.to_numeric(df[target], errors="coerce") == 1
    for ax, name in zip(axes.flat, columns, strict=False):
        values = df[name].dropna()
        bins = np.histogram_bin_edges(values, bins=30)
        for mask, label, colour in (
            (~anomalous, "normal", "tab:blue"),
            (anomalous, "anomaly", "tab:red"),
        ):
            ax.hist(
                df.loc[mask, name].dropna(),
                bins=bins,
                density=True,
                alpha=0.55,
                color=colour,
                label=label,
            )
        ax.set_title(name, fontsize=9)
    axes.flat[0].legend(fontsize=8)
    for ax in list(axes.flat)[len(columns) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def anomaly_rates(df: pd.DataFrame, target: str, categorical: list[str]) -> pd.DataFrame:
    """The anomaly rate and row count per value of each categorical feature."""
    anomalous = (pd.to_numeric(df[target], errors="coerce") == 1).rename("anomaly rate")
    tables = [
        anomalous.groupby(df[name].astype(str))
        .agg(["mean", "size"])
        .rename_axis("value")
        .reset_index()
        .assign(feature=name)
        for name in categorical
    ]
    table = pd.concat(tables).rename(columns={"mean": "anomaly rate", "size": "rows"})
    return table.set_index(["feature", "value"])


def labels_section(
    df: pd.DataFrame, features: dict[str, str], target: str, out_dir: Path
) -> list[str]:
    """The anomaly rate, each feature for normal and anomalous readings, rates per category."""
    figures = out_dir / "figures"
    numeric = [n for n, k in features.items() if k == "numeric"]
    categorical = [n for n, k in features.items() if k == "categorical"]
    rate = float((pd.to_numeric(df[target], errors="coerce") == 1).mean())
    lines = [
        "## Anomalies",
        "",
        f"{rate:.1%} of the training readings are labelled anomalous. A detector that "
        "flags about that share is calibrated; PR-AUC of a random score equals this rate.",
        "",
        f"![label]({save_figure(target_figure(df[target]), figures / 'target.png', out_dir)})",
        "",
    ]
    if numeric:
        link = save_figure(by_label_figure(df, numeric, target), figures / "by_label.png", out_dir)
        lines += [
            "### Each feature, normal against anomalous readings",
            "",
            "Anomalies far outside a feature's normal range are what a per-feature rule "
            "(the baseline) catches; those inside every range show only in how features "
            "move together.",
            "",
            f"![by label]({link})",
            "",
        ]
    if categorical:
        table = markdown(anomaly_rates(df, target, categorical))
        lines += ["### Anomaly rate per category", "", table, ""]
    return lines
