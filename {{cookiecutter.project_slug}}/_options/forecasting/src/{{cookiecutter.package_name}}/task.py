"""The problem type of this project, forecasting: the series, control, treatment, metrics.

Both models forecast from a window of the most recent values. The candidate is recursive:
one gradient-boosting model predicts the next step from lags, the level and spread of the
last season and the position in the season, then feeds its forecast back as the newest lag
until the horizon is reached. Values enter relative to the level of the last season, so
the trees, which cannot extrapolate, follow a trend or a level shift.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import (
    BMonthBegin,
    BMonthEnd,
    BQuarterBegin,
    BQuarterEnd,
    MonthBegin,
    MonthEnd,
    QuarterBegin,
    QuarterEnd,
    Tick,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from . import drift
from .errors import DataError

PROBLEM_TYPE = "forecasting"
PREDICTION_METRIC_HELP = "Forecast steps by decile of the training forecasts."


class TargetSpec(BaseModel):
    """The `target` section of configs/problem.yaml: the series and what to forecast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The value column.")
    timestamp: str | list[str] = Field(
        description="The column with each value's time, or a year column and a quarter or "
        "month column."
    )
    frequency: str = Field(description="pandas frequency of the series: D, h, W, 15min…")
    horizon: int = Field(ge=1, description="How many steps ahead to forecast.")
    season_length: int = Field(ge=1, description="Steps in one season, e.g. 7 for weekly.")
    max_gap: int = Field(3, ge=0, description="Longest run of missing steps to interpolate.")
    min: float | None = None
    max: float | None = None

    @field_validator("frequency")
    @classmethod
    def _known_frequency(cls, value: str) -> str:
        try:
            to_offset(value)
        except ValueError as exc:
            raise ValueError(f"unknown frequency {value!r}; e.g. D, h, W or 15min") from exc
        return value

    @field_validator("timestamp")
    @classmethod
    def _one_or_two_columns(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) == 1:
            return value[0]
        if isinstance(value, list) and (len(value) != 2 or value[0] == value[1]):
            raise ValueError(
                f"{value!r}: give one column, or two: a year column and a quarter or month column"
            )
        return value

    @model_validator(mode="after")
    def _parts_match_frequency(self) -> TargetSpec:
        if isinstance(self.timestamp, list) and self.part is None:
            raise ValueError(
                f"timestamp {self.timestamp!r}: a year and a quarter or month column needs a "
                f"quarterly (QE) or monthly (ME) frequency, not {self.frequency!r}"
            )
        return self

    @property
    def timestamp_columns(self) -> list[str]:
        """The raw columns that make the time: one, or a year and a quarter or month."""
        return [self.timestamp] if isinstance(self.timestamp, str) else list(self.timestamp)

    @property
    def time_column(self) -> str:
        """The series' timestamp column: the raw column, or the two joined with "_"."""
        return "_".join(self.timestamp_columns)

    @property
    def part(self) -> str | None:
        """What the second column of a year counts at this frequency: quarter, month or None."""
        offset = to_offset(self.frequency)
        if isinstance(offset, QuarterBegin | QuarterEnd | BQuarterBegin | BQuarterEnd):
            return "quarter"
        if isinstance(offset, MonthBegin | MonthEnd | BMonthBegin | BMonthEnd):
            return "month"
        return None


# A year (also written 1700.0), a quarter (1959Q1, 1959-Q1) or a month (2001-03).
PERIOD = re.compile(r"\d{4}(?:\.0*)?|\d{4}-?[Qq][1-4]|\d{4}-(?:0?[1-9]|1[0-2])")


def _whole_numbers(column: pd.Series) -> pd.Series:
    """Numbers as text without a fraction (1700.0 is 1700); others stay as written."""
    numbers = pd.to_numeric(column, errors="coerce")
    whole = numbers.notna() & (numbers == numbers.round())
    text = column.astype("string").str.strip()
    return text.mask(whole, numbers[whole].round().astype("Int64").astype("string"))


def _year_and_part(raw: pd.DataFrame, spec: TargetSpec) -> pd.Series:
    """A year column and a quarter or month column (numbers, or Q1 to Q4) as period text;
    other pairs as "year part", which is no period."""
    year, part = (_whole_numbers(raw[column]) for column in spec.timestamp_columns)
    part = part.str.upper().str.removeprefix("Q")
    last, joint, width = (4, "Q", 1) if spec.part == "quarter" else (12, "-", 2)
    valid = pd.to_numeric(part, errors="coerce").between(1, last) & year.str.fullmatch(r"\d{4}")
    return (year + joint + part.str.zfill(width)).where(valid.fillna(False), year + " " + part)


def timestamps(raw: pd.DataFrame, spec: TargetSpec) -> pd.Series:
    """The time of each raw row, named `spec.time_column`, NaT where none is given.

    ISO 8601 dates and times are read as written (in UTC, without the offset, when they
    carry one). Years (1700 or 1700.0), quarters (1959Q1, 1959-Q1) and months (2001-03),
    or a year column with a quarter or month column, are periods: each lands on the first
    step of the frequency grid inside it, e.g. 1959-03-31 for 1959Q1 at frequency QE.
    Raises DataError naming the column(s) and examples of values that are none of these."""
    columns, index = spec.timestamp_columns, raw.index
    raw = raw[columns].reset_index(drop=True)  # aligned by position, whatever the index
    if len(columns) == 2:
        text = _year_and_part(raw, spec)
    elif pd.api.types.is_datetime64_any_dtype(raw[columns[0]]):
        text = raw[columns[0]].astype("string")
    else:
        text = _whole_numbers(raw[columns[0]])
    is_period = text.str.fullmatch(PERIOD).fillna(False).astype(bool)
    offset = to_offset(spec.frequency)
    grid = {
        value: offset.rollforward(pd.Period(value.split(".")[0]).start_time)
        for value in text[is_period].unique()
    }
    fraction = text.str.fullmatch(r"-?\d*\.\d*").fillna(False).astype(bool)  # 1700.5 is no date
    stamps = pd.to_datetime(
        text.mask(is_period | fraction), format="ISO8601", errors="coerce", utc=True
    )
    stamps = stamps.dt.tz_localize(None).mask(is_period, text[is_period].map(grid))
    bad = text[text.notna() & stamps.isna()]
    if len(bad):
        examples = ", ".join(map(repr, bad.drop_duplicates().head(3)))
        raise DataError(
            f"column {' and '.join(map(repr, columns))}: {len(bad)} rows fail, e.g. {examples}: "
            "not an ISO date or time, a year, a quarter (1959Q1) or a month (2001-03)"
        )
    return stamps.rename(spec.time_column).set_axis(index)


def _demand() -> pd.DataFrame:
    """Three years of daily demand: a slow trend, a weekly season, autocorrelated noise and
    nine missing days. Generated, so the same on every machine."""
    rng = np.random.default_rng(6)
    dates = pd.date_range("2022-01-03", periods=1096, freq="D")
    t = np.arange(len(dates))
    weekly = np.array([-10.0, -4.0, 0.0, 3.0, 8.0, 18.0, 6.0])[dates.day_of_week]
    noise = np.zeros(len(t))
    shocks = rng.normal(0.0, 5.0, len(t))
    for i in range(1, len(t)):
        noise[i] = 0.7 * noise[i - 1] + shocks[i]
    demand = 120.0 + 0.01 * t + weekly + noise
    frame = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "demand": demand.round(1)})
    missing = [*rng.choice(np.arange(30, len(t) - 30), size=7, replace=False), 500, 501]
    return frame.drop(index=missing).reset_index(drop=True)


SAMPLES: dict[str, Callable[[], pd.DataFrame]] = {"demand": _demand}


def season_positions(timestamps: pd.DatetimeIndex, frequency: str, season_length: int):
    """Each timestamp's place in the season (0 to season_length - 1), the same for any
    stretch of the series: steps since the Unix epoch, modulo the season length."""
    offset = to_offset(frequency)
    if isinstance(offset, Tick):
        steps = (timestamps - pd.Timestamp(0)) // pd.Timedelta(offset)
    else:
        steps = timestamps.to_period(offset).asi8
    return np.asarray(steps, dtype=np.int64) % season_length


def _windows(series: np.ndarray, width: int, origins: np.ndarray) -> np.ndarray:
    """The `width` values before each origin, one row per origin."""
    return (
        np.stack([series[o - width : o] for o in origins]) if len(origins) else np.empty((0, width))
    )


class SeasonalNaive(RegressorMixin, BaseEstimator):
    """The control: every step repeats the value one season earlier (season_length=1 is
    the plain naive forecast, the last value)."""

    def __init__(self, season_length: int = 7) -> None:
        self.season_length = season_length

    def fit(self, series: np.ndarray, positions: np.ndarray | None = None):
        self.window_ = self.season_length
        self.n_train_ = len(series)
        return self

    def forecast(self, windows: np.ndarray, positions: np.ndarray, horizon: int) -> np.ndarray:
        last = np.asarray(windows, dtype=float)[:, -self.season_length :]
        repeats = -(-horizon // self.season_length)
        return np.tile(last, (1, repeats))[:, :horizon]


class LagBoostingForecaster(RegressorMixin, BaseEstimator):
    """The treatment: a recursive one-step HistGradientBoostingRegressor on lag features.

    Features for the next step: the last `lag_seasons * season_length` values minus the
    mean of the last season (the level), the change of that level from the season before,
    the spread of the last season, and the next step's place in the season. Target: the
    next value minus the level."""

    def __init__(
        self,
        season_length: int = 7,
        lag_seasons: int = 2,
        max_iter: int = 200,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 20,
        l2_regularization: float = 0.0,
        random_state: int | None = None,
    ) -> None:
        self.season_length = season_length
        self.lag_seasons = lag_seasons
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def _features(
        self, windows: np.ndarray, positions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        s = self.season_length
        level = windows[:, -s:].mean(axis=1)
        previous = windows[:, -2 * s : -s].mean(axis=1)
        spread = windows[:, -s:].std(axis=1)
        X = np.column_stack([windows - level[:, None], level - previous, spread, positions])
        return X, level

    def fit(self, series: np.ndarray, positions: np.ndarray):
        if self.lag_seasons < 2:
            raise ValueError(f"lag_seasons must be at least 2, got {self.lag_seasons}")
        series = np.asarray(series, dtype=float)
        self.window_ = self.lag_seasons * self.season_length
        origins = np.arange(self.window_, len(series))
        if len(origins) < 2 * self.min_samples_leaf:
            raise ValueError(
                f"the training series has {len(series)} steps; the candidate needs at least "
                f"{self.window_ + 2 * self.min_samples_leaf}"
            )
        X, level = self._features(_windows(series, self.window_, origins), positions[origins])
        model = HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            random_state=self.random_state,
        )
        # A series is small: OpenMP threads cost more to coordinate than they save.
        with threadpool_limits(limits=1, user_api="openmp"):
            self.model_ = model.fit(X, series[origins] - level)
        self.n_train_ = len(series)
        return self

    def forecast(self, windows: np.ndarray, positions: np.ndarray, horizon: int) -> np.ndarray:
        """`positions`: the place in the season of each window's first forecast step."""
        current = np.asarray(windows, dtype=float)[:, -self.window_ :].copy()
        out = np.empty((len(current), horizon))
        with threadpool_limits(limits=1, user_api="openmp"):
            for step in range(horizon):
                X, level = self._features(current, (positions + step) % self.season_length)
                out[:, step] = level + self.model_.predict(X)
                current = np.column_stack([current[:, 1:], out[:, step]])
        return out


CANDIDATES = {"lag_gradient_boosting": LagBoostingForecaster}
BASELINE_STRATEGIES = ("seasonal_naive", "naive")


class ForecastPoint(BaseModel):
    timestamp: str
    value: float


class PredictResponse(BaseModel):
    """What /v1/predict answers: one dated value per forecast step."""

    model_version: str
    forecast: list[ForecastPoint]


@dataclass(frozen=True)
class Predictions:
    """Forecasts, one row per origin and one column per step ahead. `scale` is the
    in-sample mean absolute error of the seasonal-naive forecast, MASE's yardstick."""

    values: np.ndarray
    scale: float
    timestamps: tuple[str, ...] = ()


@dataclass(frozen=True)
class Metric:
    greater_is_better: bool
    compute: Callable[[np.ndarray, Predictions], float]


def _smape(y: np.ndarray, p: Predictions) -> float:
    denominator = np.abs(y) + np.abs(p.values)
    ratio = np.divide(
        2 * np.abs(y - p.values), denominator, where=denominator > 0, out=np.zeros_like(y)
    )
    return float(100 * ratio.mean())


METRICS: dict[str, Metric] = {
    "mase": Metric(False, lambda y, p: float(np.abs(y - p.values).mean() / p.scale)),
    "mae": Metric(False, lambda y, p: float(np.abs(y - p.values).mean())),
    "rmse": Metric(False, lambda y, p: float(np.sqrt(((y - p.values) ** 2).mean()))),
    "smape": Metric(False, _smape),
}


def seasonal_scale(series: np.ndarray, season_length: int) -> float:
    """MASE's denominator: the in-sample mean absolute seasonal difference."""
    series = np.asarray(series, dtype=float)
    scale = float(np.abs(series[season_length:] - series[:-season_length]).mean())
    return scale if scale > 0 else 1.0


def make_baseline(strategy: str, season_length: int) -> SeasonalNaive:
    """The control group: seasonal naive, or naive (a season of one step)."""
    return SeasonalNaive(season_length if strategy == "seasonal_naive" else 1)


def make_candidate(name: str, params: dict, seed: int, season_length: int):
    return CANDIDATES[name](season_length=season_length, random_state=seed).set_params(**params)


def backtest(
    model, series: np.ndarray, positions: np.ndarray, origins: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Forecast `horizon` steps from each origin with the true history before it.

    Returns the forecasts and the actual values, both one row per origin."""
    series = np.asarray(series, dtype=float)
    forecasts = model.forecast(
        _windows(series, model.window_, origins), positions[origins], horizon
    )
    actuals = np.stack([series[o : o + horizon] for o in origins])
    return forecasts, actuals


def response(predictions: Predictions, version: str) -> dict:
    """The JSON body of a forecast."""
    values = predictions.values[0].tolist()
    return {
        "model_version": version,
        "forecast": [
            {"timestamp": stamp, "value": value}
            for stamp, value in zip(predictions.timestamps, values, strict=True)
        ],
    }


def prediction_counts(predictions: Predictions, reference: dict) -> dict[str, int]:
    """How many forecast steps fell in each decile of the training forecasts."""
    deciles = (
        np.searchsorted(reference["edges"][1:-1], predictions.values.ravel(), side="right") + 1
    )
    return dict(Counter(f"decile_{d}" for d in deciles.tolist()))


def score(y: np.ndarray, predictions: Predictions) -> dict[str, float]:
    return {name: metric.compute(y, predictions) for name, metric in METRICS.items()}


def subset(predictions: Predictions, index: np.ndarray) -> Predictions:
    return Predictions(predictions.values[index], predictions.scale)


# Stage 5's contract: evaluate.py calls these for every problem type.


def _continuous_series(history: pd.DataFrame, period: pd.DataFrame, spec: TargetSpec):
    """Dates, values and season positions of `history` followed by `period`, which must
    continue it step by step."""
    frame = pd.concat([history, period], ignore_index=True)
    dates = pd.DatetimeIndex(frame[spec.time_column])
    if not pd.date_range(dates[0], periods=len(dates), freq=spec.frequency).equals(dates):
        raise DataError(
            f"the period from {period[spec.time_column].iloc[0]} does not continue the history "
            f"that ends {history[spec.time_column].iloc[-1]} step by step"
        )
    positions = season_positions(dates, spec.frequency, spec.season_length)
    return dates, frame[spec.name].to_numpy(float), positions


def held_out(model_bundle, history: pd.DataFrame, period: pd.DataFrame, spec: TargetSpec):
    """Actuals and both models' forecasts of `horizon` steps from every origin in `period`,
    each from the true history before it (rolling origins), as in service: one row per
    origin. None if the bundle forecasts another series or a shorter horizon."""
    meta = model_bundle.metadata
    if meta["target"] != spec.name or meta["features"][0]["horizon"] < spec.horizon:
        return None
    _, series, positions = _continuous_series(history, period, spec)
    window = max(model_bundle.model.window_, model_bundle.baseline.window_)
    origins = np.arange(max(len(history), window), len(series) - spec.horizon + 1)
    if len(origins) == 0:
        raise DataError(
            f"{len(period)} steps after {len(history)} of history: too short for one "
            f"{spec.horizon}-step forecast with {window} steps of history"
        )
    candidate, actuals = backtest(model_bundle.model, series, positions, origins, spec.horizon)
    baseline, _ = backtest(model_bundle.baseline, series, positions, origins, spec.horizon)
    return actuals, Predictions(candidate, meta["scale"]), Predictions(baseline, meta["scale"])


def holdout_frame(holdout: pd.DataFrame, spec: TargetSpec) -> pd.DataFrame:
    """Recent steps after the data (timestamp and value columns) as a regular series."""
    from .features import series_frame

    return series_frame(holdout, spec)


def resampling_block(spec: TargetSpec) -> int:
    """How many consecutive forecast origins the bootstrap draws together: a horizon's
    worth, since neighbouring origins share most of their target steps."""
    return spec.horizon


def test_facts(spec: TargetSpec, y: np.ndarray) -> dict:
    """What the report records about the test period besides its length."""
    return {"origins": len(y), "horizon": spec.horizon}


def describe_test(report: dict) -> list[str]:
    """Markdown lines about the test period: the rolling origins, and what the metrics mean."""
    return [
        f"The test period is the last {report['test_rows']} steps of the series. Both models "
        f"forecast {report['horizon']} steps from each of its {report['origins']} origins, "
        "from the true history before each origin; the intervals resample blocks of "
        f"{report['horizon']} consecutive origins, which share most of their target steps.",
        "All four metrics are errors: lower is better. MASE divides the MAE by the "
        "seasonal-naive forecast's mean absolute error on the training series; sMAPE is in "
        "percent.",
    ]


def too_small(y: np.ndarray, spec: TargetSpec, gate) -> str | None:
    """Why the test period is too short for a verdict (`gate`: params.gate), or None."""
    blocks = -(-len(y) // spec.horizon)
    if blocks < gate.min_blocks:
        return (
            f"{len(y)} forecast origins make {blocks} blocks of {spec.horizon} steps, the gate "
            f"needs {gate.min_blocks} (gate.min_blocks): use a longer series, a larger "
            "split.test_size or a shorter horizon"
        )
    return None


def undefined(y: np.ndarray, predictions: Predictions) -> dict[str, str]:
    """Metrics this sample cannot define, with the reason: every error here is defined."""
    return {}


def evaluation_tables(y: np.ndarray, candidate: Predictions, baseline: Predictions) -> dict:
    """Tables the evaluation report adds for this type: none (see the figures by step)."""
    return {}


def target_column(spec: TargetSpec):
    """The value's contract as a pandera column: numeric, within the configured range."""
    import pandera.pandas as pa

    checks = []
    if spec.min is not None:
        checks.append(pa.Check.ge(spec.min))
    if spec.max is not None:
        checks.append(pa.Check.le(spec.max))
    return pa.Column(float, coerce=True, nullable=True, checks=checks)


def prediction_reference(values: np.ndarray) -> dict:
    """Decile edges and shares of forecasts on training data, for prediction-drift checks."""
    return {"kind": "value_bins", **drift.value_bins(np.asarray(values, dtype=float).ravel())}


def _series_rule(thresholds: dict) -> str:
    return (
        f"The level or the changes drift when the KS p-value, Bonferroni-corrected, is below "
        f"{thresholds['alpha']:g} and the KS distance is at least "
        f"{thresholds['ks_min_statistic']:g}."
    )


# The series checks: the level of the values and their step-to-step changes compare like
# numbers (PSI over deciles, KS); their missing rate is the share of missing steps.
drift.register(
    "series",
    drift.Check(drift.numeric_reference, drift.numeric_drift, drift.ks_reasons, _series_rule),
)


def evaluation_figures(
    y: np.ndarray,
    candidate: Predictions,
    baseline: Predictions,
    history: pd.DataFrame,
    period: pd.DataFrame,
    spec: TargetSpec,
    out_dir: Path,
) -> list[Path]:
    """The test period with a forecast every horizon steps, and the error by step ahead."""
    dates, series, _ = _continuous_series(history, period, spec)
    first_test = len(series) - spec.horizon + 1 - len(y)  # the first origin
    forecasts = {"candidate": candidate.values, "baseline": baseline.values}
    return [
        _forecasts_figure(dates, series, first_test, forecasts, spec.horizon, out_dir),
        _error_by_step_figure(forecasts, y, out_dir),
    ]


def _forecasts_figure(dates, series, first_test, forecasts, horizon, out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6))
    start = max(first_test - 4 * horizon, 0)
    ax.plot(dates[start:], series[start:], color="black", linewidth=1, label="actual")
    colours = {"candidate": "tab:orange", "baseline": "tab:blue"}
    for name, values in forecasts.items():
        for i in range(0, len(values), horizon):
            origin = first_test + i
            label = name if i == 0 else None
            ax.plot(dates[origin : origin + horizon], values[i], color=colours[name], label=label)
    ax.axvline(dates[first_test], color="grey", linestyle="--", linewidth=1)
    ax.set_title(f"Test period: a {horizon}-step forecast from every {horizon}th origin")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "forecasts.png", dpi=110)
    plt.close(fig)
    return out_dir / "forecasts.png"


def _error_by_step_figure(forecasts: dict, actuals: np.ndarray, out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    horizon = actuals.shape[1]
    colours = {"candidate": "tab:orange", "baseline": "tab:blue"}
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    steps = np.arange(1, horizon + 1)
    for name, values in forecasts.items():
        ax.plot(
            steps,
            np.abs(values - actuals).mean(axis=0),
            marker="o",
            color=colours[name],
            label=name,
        )
    ax.set_xlabel("steps ahead")
    ax.set_ylabel("mean absolute error")
    ax.set_title("Error by step ahead on the test period")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "error_by_step.png", dpi=110)
    plt.close(fig)
    return out_dir / "error_by_step.png"
