"""Stage 3: exploratory analysis of the training part of the series, written to
reports/eda/README.md: the series, its seasonal profile, autocorrelation and gaps."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .config import FeatureKind
from .series import FILLED, gap_runs
from .tables import dropped_section, markdown

log = logging.getLogger(__name__)
MAX_LAG = 60


def _save(fig, path: Path, out_dir: Path) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.relative_to(out_dir).as_posix()


def series_figure(dates: pd.Series, values: pd.Series, filled: pd.Series):
    """The series over time, with interpolated steps marked."""
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.plot(dates, values, color="tab:blue", linewidth=0.8)
    ax.scatter(dates[filled], values[filled], color="tab:red", s=12, zorder=3, label="interpolated")
    rolling = values.rolling(max(len(values) // 20, 2), center=True).mean()
    ax.plot(dates, rolling, color="black", linewidth=1.2, label="rolling mean")
    ax.set_title(f"{values.name} over time")
    ax.legend()
    fig.tight_layout()
    return fig


def season_unit(dates: pd.Series) -> tuple[str, pd.Series]:
    """The calendar unit one level above the frequency: hour of day for sub-daily data, day
    of week for daily data, month of year for anything coarser."""
    step = pd.Series(dates).diff().median()
    if step < pd.Timedelta(days=1):
        return "hour of day", dates.dt.hour
    if step < pd.Timedelta(days=7):
        return "day of week (0 = Monday)", dates.dt.day_of_week
    return "month", dates.dt.month


def seasonal_profile(dates: pd.Series, values: pd.Series) -> pd.DataFrame:
    """Mean, spread and count of the values by place in the season."""
    unit, key = season_unit(dates)
    profile = values.groupby(key.to_numpy()).agg(["mean", "std", "count"])
    profile.index.name = unit
    return profile


def profile_figure(profile: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.bar(profile.index, profile["mean"], yerr=profile["std"], color="tab:blue", alpha=0.8)
    ax.set_xlabel(profile.index.name)
    ax.set_ylabel("mean ± std")
    ax.set_title("Seasonal profile")
    fig.tight_layout()
    return fig


def profile_section(profile: pd.DataFrame, out_dir: Path) -> list[str]:
    """The profile's figure and table, or why there is none: one row says nothing."""
    unit = profile.index.name
    if len(profile) == 1:
        return [f"Every step has the same {unit}, {profile.index[0]}: no profile to show.", ""]
    figure = _save(profile_figure(profile), out_dir / "figures" / "profile.png", out_dir)
    return [f"![profile]({figure})", "", markdown(profile), ""]


def autocorrelation(values: np.ndarray, max_lag: int = MAX_LAG) -> np.ndarray:
    """Sample autocorrelation at lags 1..max_lag."""
    x = np.asarray(values, dtype=float) - np.mean(values)
    denominator = float(x @ x) or 1.0
    lags = range(1, min(max_lag, len(x) - 1) + 1)
    return np.array([float(x[lag:] @ x[:-lag]) / denominator for lag in lags])


def autocorrelation_figure(acf: np.ndarray, rows: int):
    fig, ax = plt.subplots(figsize=(6, 3.4))
    lags = np.arange(1, len(acf) + 1)
    ax.vlines(lags, 0, acf, color="tab:blue")
    band = 1.96 / np.sqrt(rows)
    ax.axhspan(-band, band, color="grey", alpha=0.2, label="±1.96/√n")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("lag (steps)")
    ax.set_title("Autocorrelation")
    ax.legend()
    fig.tight_layout()
    return fig


def gap_table(dates: pd.Series, filled: pd.Series) -> pd.DataFrame:
    """Each run of interpolated steps: where it starts and how long it is."""
    runs = gap_runs(filled.to_numpy(bool))
    return pd.DataFrame(
        [{"from": dates.iloc[start], "steps": length} for start, length in runs],
        columns=["from", "steps"],
    )


def report(
    df: pd.DataFrame,
    features: dict[str, FeatureKind],
    target: str,
    out_dir: Path,
    dropped: dict[str, str] | None = None,
) -> Path:
    """Write out_dir/README.md with tables and figures of the training series."""
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    timestamp = next(iter(features))
    dates, values, filled = df[timestamp], df[target], df[FILLED]
    profile = seasonal_profile(dates, values)
    acf = autocorrelation(values.to_numpy())
    top = np.argsort(acf)[::-1][:3] + 1
    gaps = gap_table(dates, filled)
    summary = values.describe().to_frame().T
    lines = [
        "# Exploratory data analysis (training part of the series)",
        "",
        f"{len(df)} steps of `{target}` from {dates.iloc[0]} to {dates.iloc[-1]}; "
        f"{int(filled.sum())} missing steps were interpolated.",
        "",
        markdown(summary, index=False),
        "",
        "## The series",
        "",
        "Look for trend, level shifts, outliers and a changing spread: the candidate works "
        "relative to the level of the last season, so it follows a trend, but a level shift "
        "inside the test period shows up as error.",
        "",
        f"![series]({_save(series_figure(dates, values, filled), figures / 'series.png', out_dir)})",
        "",
        "## Seasonal profile",
        "",
        *profile_section(profile, out_dir),
        "## Autocorrelation",
        "",
        f"The strongest lags are {', '.join(str(int(lag)) for lag in top)} steps. A season "
        "shows as peaks at its length and its multiples, the `season_length` in "
        "configs/problem.yaml (1 for none); slowly decaying values mean that recent history "
        "predicts the next steps.",
        "",
        f"![autocorrelation]({_save(autocorrelation_figure(acf, len(values)), figures / 'autocorrelation.png', out_dir)})",
        "",
        "## Gaps",
        "",
        markdown(gaps, index=False) if len(gaps) else "No missing steps.",
        "",
    ]
    if dropped:
        lines += dropped_section(dropped)
    out = out_dir / "README.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    log.info("wrote the EDA report %s", out)
    return out
