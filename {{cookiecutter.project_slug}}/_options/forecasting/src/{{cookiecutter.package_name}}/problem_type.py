"""The problem type of this project, forecasting: the series, control, treatment, metrics.

A unit is a forecast origin: from the history up to it, both models forecast `horizon`
steps ahead (see forecasters.py). Stage 3 makes the raw rows a regular series and splits
it by time; stage 4 backtests the candidate on rolling origins (see series.py).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format
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
)
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import drift
from .contract import Metric, ProblemType, Recent, Trained
from .errors import DataError
from .forecasters import LagBoostingForecaster, SeasonalNaive, ThetaForecaster
{%- if cookiecutter.deep_learning == "yes" %}
from .networks import GRUForecaster
{%- endif %}

# Frequency aliases pandas 3 no longer reads, and what to write instead.
RENAMED = {
    "M": "ME",
    "Q": "QE",
    "Y": "YE",
    "A": "YE",
    "AS": "YS",
    "BM": "BME",
    "BQ": "BQE",
    "BY": "BYE",
    "BA": "BYE",
    "BAS": "BYS",
    "SM": "SME",
    "CBM": "CBME",
    "H": "h",
    "BH": "bh",
    "CBH": "cbh",
    "T": "min",
    "S": "s",
    "L": "ms",
    "U": "us",
    "N": "ns",
}


class TargetSpec(BaseModel):
    """The `target` section of configs/problem.yaml: the series and what to forecast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The value column.")
    timestamp: str | list[str] = Field(
        description="The column with each value's time, or a year column and a quarter or "
        "month column."
    )
    timestamp_format: str | None = Field(
        None, description="strftime format of the timestamp column, e.g. %d/%m/%Y."
    )
    frequency: str = Field(description="pandas frequency of the series: D, h, W, 15min…")
    horizon: int = Field(ge=1, description="How many steps ahead to forecast.")
    season_length: int = Field(ge=1, description="Steps in one season, e.g. 7 for weekly.")
    max_gap: int = Field(3, ge=0, description="Longest run of missing steps to interpolate.")
    series_id: str | list[str] | None = Field(
        None, description="The column, or columns, naming the series when a file holds many."
    )
    covariates: list[str] = Field(
        [], description="Columns known in advance (holidays, promotions, prices)."
    )
    interval: float = Field(
        0.9, gt=0, lt=1, description="Coverage of the prediction intervals, e.g. 0.9."
    )
    min: float | None = None
    max: float | None = None

    @field_validator("frequency")
    @classmethod
    def _known_frequency(cls, value: str) -> str:
        multiple, alias, anchor = re.fullmatch(r"(\d*)([A-Za-z]*)(.*)", value).groups()
        if alias in RENAMED:
            raise ValueError(
                f"{value!r} is an alias pandas 3 no longer reads: write "
                f"{multiple}{RENAMED[alias]}{anchor}"
            )
        try:
            to_offset(value)
        except ValueError as exc:
            raise ValueError(f"unknown frequency {value!r}; e.g. D, h, W-MON, MS or 15min") from exc
        return value

    @field_validator("timestamp_format")
    @classmethod
    def _known_directives(cls, value: str | None) -> str | None:
        try:
            pd.to_datetime(pd.Series([], dtype="string"), format=value)
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}; e.g. %d/%m/%Y or %b %d %Y") from exc
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

    @field_validator("series_id")
    @classmethod
    def _series_columns(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError(f"{value!r}: give one column, or a list of distinct columns")
        return value[0] if isinstance(value, list) and len(value) == 1 else value

    @model_validator(mode="after")
    def _parts_match_frequency(self) -> TargetSpec:
        if isinstance(self.timestamp, list) and self.part is None:
            raise ValueError(
                f"timestamp {self.timestamp!r}: a year and a quarter or month column needs a "
                f"quarterly (QE) or monthly (ME) frequency, not {self.frequency!r}"
            )
        shared = set(self.series_columns) & {self.name, *self.timestamp_columns}
        if shared:
            raise ValueError(
                f"series_id {self.series_id!r}: {', '.join(sorted(shared))} is also the value "
                "or the timestamp column"
            )
        taken = {self.name, *self.timestamp_columns, *self.series_columns}
        if len(set(self.covariates)) != len(self.covariates) or taken & set(self.covariates):
            raise ValueError(
                f"covariates {self.covariates!r}: list distinct columns other than the value, "
                "the timestamp and the series id"
            )
        return self

    @property
    def series_columns(self) -> list[str]:
        """The raw columns that name a series: none when the file holds one series."""
        if self.series_id is None:
            return []
        return [self.series_id] if isinstance(self.series_id, str) else list(self.series_id)

    @property
    def series_column(self) -> str | None:
        """The processed series id column: the raw column, or the columns joined with "_"
        (their values joined with "/"); None for a single series."""
        return "_".join(self.series_columns) or None

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


def parse_timestamps(written: pd.Series, frequency: str, timestamp_format: str | None) -> pd.Series:
    """Times as training and the API read them, NaT where a value is none of these forms.

    Years (1700 or 1700.0), quarters (1959Q1, 1959-Q1) and months (2001-03) are periods:
    each lands on the first step of the frequency grid inside it, e.g. 1959-03-31 for 1959Q1
    at frequency QE and 1959-01-01 at QS. Other values are read with `timestamp_format`
    when it is given; else as ISO 8601, and what is not ISO (and holds a four-digit year) in
    one format: of those pandas guesses for the first 100 distinct such values, the one
    that reads most of them; on a tie the most guessed, which is month first where values
    are ambiguous (01/02/2000 is 2 January). Times with a UTC offset are in UTC, without
    the offset."""
    is_datetime = pd.api.types.is_datetime64_any_dtype(written)
    text = written.astype("string") if is_datetime else _whole_numbers(written)
    is_period = text.str.fullmatch(PERIOD).fillna(False).astype(bool)
    offset = to_offset(frequency)
    grid = {
        value: offset.rollforward(pd.Period(value.split(".")[0]).start_time)
        for value in text[is_period].unique()
    }
    fraction = text.str.fullmatch(r"-?\d*\.\d*").fillna(False).astype(bool)  # 1700.5 is no date
    dates = text.mask(is_period | fraction)
    exact = None if is_datetime else timestamp_format
    stamps = pd.to_datetime(dates, format=exact or "ISO8601", errors="coerce", utc=True)
    rest = dates.notna() & stamps.isna() & dates.str.contains(r"\d{4}").fillna(False)
    if exact is None and rest.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pandas warns of a day-first guess
            guesses = Counter(guess_datetime_format(value) for value in dates[rest].unique()[:100])
            reads = [
                pd.to_datetime(dates[rest], format=guess, errors="coerce", utc=True)
                for guess, _ in guesses.most_common()  # a guess of None reads each date alone
            ]
        stamps[rest] = max(reads, key=lambda read: read.notna().sum())
    return stamps.dt.tz_localize(None).mask(is_period, text[is_period].map(grid))


def _unreadable(timestamp_format: str | None) -> str:
    """What a value `parse_timestamps` cannot read is not, and what to do about it."""
    periods = "a year, a quarter (1959Q1) or a month (2001-03)"
    if timestamp_format:
        return f"not in the format target.timestamp_format {timestamp_format!r}, nor {periods}"
    return (
        f"not an ISO 8601 date or time, a date in the format pandas infers from the column, "
        f"{periods}: set target.timestamp_format in configs/problem.yaml, e.g. '%d/%m/%Y'"
    )


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


class ForecastPoint(BaseModel):
    timestamp: str
    value: float
    lower: float = Field(description="Lower end of the prediction interval.")
    upper: float = Field(description="Upper end of the prediction interval.")


class PredictResponse(BaseModel):
    """What /v1/predict answers: one dated value per forecast step, with its interval."""

    model_version: str
    series_id: str | None = None
    coverage: float = Field(description="The share of actual values the intervals aim to hold.")
    forecast: list[ForecastPoint]


@dataclass(frozen=True)
class Predictions:
    """Forecasts, one row per origin and one column per step ahead.

    `scale` is MASE's yardstick, the in-sample mean absolute error of the seasonal-naive
    forecast of the series: one number, or one per origin when they come from several
    series. `lower` and `upper` bound the prediction intervals of `coverage`; `series` is
    the series id of each origin; `timestamps` are the times of the first origin's steps,
    which a response reports."""

    values: np.ndarray
    scale: float | np.ndarray
    timestamps: tuple[str, ...] = ()
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    coverage: float | None = None
    series: np.ndarray | None = None

    def rows(self, index: np.ndarray) -> Predictions:
        """The forecasts from the origins at `index`."""
        pick = {
            name: None if getattr(self, name) is None else getattr(self, name)[index]
            for name in ("lower", "upper", "series")
        }
        scale = self.scale[index] if np.ndim(self.scale) else self.scale
        return Predictions(self.values[index], scale, (), coverage=self.coverage, **pick)


class GateMinimums(BaseModel):
    """params.yaml `gate` minimum of the test period."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_blocks: int = Field(5, ge=2)  # blocks of `horizon` consecutive forecast origins


def _mase(y: np.ndarray, p: Predictions) -> float:
    return float((np.abs(y - p.values) / np.reshape(p.scale, (-1, 1))).mean())


def _smape(y: np.ndarray, p: Predictions) -> float:
    denominator = np.abs(y) + np.abs(p.values)
    ratio = np.divide(
        2 * np.abs(y - p.values), denominator, where=denominator > 0, out=np.zeros_like(y)
    )
    return float(100 * ratio.mean())


class Forecasting(ProblemType):
    """Forecast a regular series `horizon` steps ahead from its recent history."""

    name = "forecasting"
    prediction_metric_help = "Forecast steps by decile of the training forecasts."
    samples: ClassVar[dict[str, Callable[[], pd.DataFrame]]] = {"demand": _demand}
{%- if cookiecutter.deep_learning == "yes" %}
    candidates: ClassVar[dict[str, type]] = {
        "network": GRUForecaster,
        "lag_gradient_boosting": LagBoostingForecaster,
    }
{%- else %}
    candidates: ClassVar[dict[str, type]] = {"lag_gradient_boosting": LagBoostingForecaster}
{%- endif %}
    baseline_strategies = ("seasonal_naive", "naive", "theta")
    metrics: ClassVar[dict[str, Metric]] = {
        "mase": Metric(False, "", _mase),
        "mae": Metric(False, "", lambda y, p: float(np.abs(y - p.values).mean())),
        "rmse": Metric(False, "", lambda y, p: float(np.sqrt(((y - p.values) ** 2).mean()))),
        "smape": Metric(False, "", _smape),
    }
    TargetSpec = TargetSpec
    PredictResponse = PredictResponse
    Predictions = Predictions
    GateMinimums = GateMinimums
    unused_params = (
        "preprocessing",
        "split.stratify",
        "monitoring.max_unseen_share",
        "monitoring.max_outside_share",
        "monitoring.max_oov_change",
    )
    monitor_wording: ClassVar[dict[str, object]] = {
        "unit": "distinct values",
        "features": "The series",
        "feature": "check",
        "missing": "missing steps (train → recent)",
        "outputs": "forecasts",
        "performance": "forecast errors",
        "performance_title": "Forecast errors on {rows} steps with known actual values",
        "figures": "Shares per decile of the end of the training series, training against recent.",
        "every_figure": True,
        "widen": "widen the window with --since/--last, or pass a longer stretch with --data",
    }

    # --- stage 2: data -------------------------------------------------------------------

    def target_column(self, spec: TargetSpec):
        """The value's contract as a pandera column: numeric, within the configured range."""
        import pandera.pandas as pa

        checks = []
        if spec.min is not None:
            checks.append(pa.Check.ge(spec.min))
        if spec.max is not None:
            checks.append(pa.Check.le(spec.max))
        return pa.Column(float, coerce=True, nullable=True, checks=checks)

    def timestamps(self, raw: pd.DataFrame, spec: TargetSpec) -> pd.Series:
        """The time of each raw row, named `spec.time_column`, NaT where none is given (see
        `parse_timestamps`). Raises DataError naming the column(s) and examples of values
        that are no time."""
        columns, index = spec.timestamp_columns, raw.index
        raw = raw[columns].reset_index(drop=True)  # aligned by position, whatever the index
        written = _year_and_part(raw, spec) if len(columns) == 2 else raw[columns[0]]
        stamps = parse_timestamps(written, spec.frequency, spec.timestamp_format)
        bad = written[written.notna() & stamps.isna()].astype("string")
        if len(bad):
            examples = ", ".join(map(repr, bad.drop_duplicates().head(3)))
            raise DataError(
                f"column {' and '.join(map(repr, columns))}: {len(bad)} rows fail, e.g. "
                f"{examples}: {_unreadable(spec.timestamp_format)}"
            )
        return stamps.rename(spec.time_column).set_axis(index)

    def series_ids(self, raw: pd.DataFrame, spec: TargetSpec) -> pd.Series:
        """The series id of each raw row (see `TargetSpec.series_column`), NA where a part
        of it is missing; whole numbers are written without a fraction (7.0 is 7)."""
        parts = [_whole_numbers(raw[column]) for column in spec.series_columns]
        ids = parts[0]
        for part in parts[1:]:
            ids = ids + "/" + part
        return ids.rename(spec.series_column)

    # --- stage 3: the series and its split (series.py imports the configuration, and so
    # this module: it is imported when called) --------------------------------------------

    def resolve_features(self, raw: pd.DataFrame, problem) -> dict[str, str]:
        """The one input of a forecast: the time of each value (see `series.resolve_features`)."""
        from .series import resolve_features

        return resolve_features(raw, problem)

    def prepare(self, raw: pd.DataFrame, problem, params, processed_dir: Path) -> dict:
        """Validate the raw rows, make them a regular series and split it by time."""
        from .series import prepare

        return prepare(raw, problem, params, processed_dir)

    def check_disjoint(
        self, train: pd.DataFrame, test: pd.DataFrame, features: dict, processed_dir: Path
    ) -> None:
        """A step's timestamp is its identity: refuse a training part that reaches the test
        period."""
        from .series import check_disjoint

        check_disjoint(train, test, next(iter(features)), processed_dir)

    def holdout_frame(self, holdout: pd.DataFrame, spec: TargetSpec) -> pd.DataFrame:
        """Recent steps after the data (timestamp and value columns) as a regular series."""
        from .series import series_frame

        return series_frame(holdout, spec)

    def eda_report(
        self, train: pd.DataFrame, features: dict[str, str], target: str, out_dir: Path, **notes
    ) -> Path:
        """The series, its seasonal profile, autocorrelation and gaps (see `series_eda`)."""
        from .series_eda import report

        return report(train, features, target, out_dir, **notes)

    # --- stage 4: models -----------------------------------------------------------------

    def make_candidate(self, name: str, params: dict, seed: int, spec: TargetSpec):
{%- if cookiecutter.deep_learning == "yes" %}
        """The treatment over the season `spec` configures: the network, which forecasts the
        whole horizon at once, or a recursive forecaster."""
        candidate = self.candidates[name](season_length=spec.season_length, random_state=seed)
        if name == "network":
            candidate.set_params(horizon=spec.horizon)
{%- else %}
        """The treatment: a recursive forecaster over the season `spec` configures."""
        candidate = self.candidates[name](season_length=spec.season_length, random_state=seed)
{%- endif %}
        return candidate.set_params(**params)

    def make_baseline(
        self, strategy: str, seed: int, spec: TargetSpec
    ) -> SeasonalNaive | ThetaForecaster:
        """The control group: seasonal naive, naive (a season of one step) or Theta."""
        if strategy == "theta":
            return ThetaForecaster(spec.season_length)
        return SeasonalNaive(spec.season_length if strategy == "seasonal_naive" else 1)

    def fit(
        self, train: pd.DataFrame, test: pd.DataFrame, features: dict, problem, params
    ) -> Trained:
        """Backtest the candidate on rolling origins in the training part, then fit both
        models on all of it (see `series.fit`)."""
        from .series import fit

        return fit(train, len(test), problem, params)

    def score_candidate(self, train: pd.DataFrame, features: dict, problem, params) -> dict:
        """The candidate's rolling-origin backtest on the training part, as `fit` has it."""
        from .series import backtest_scores

        return backtest_scores(train, problem, params)

    def prediction_reference(self, predictions: Predictions) -> dict:
        """Decile edges and shares of forecasts on training data, for prediction-drift checks."""
        values = np.asarray(predictions.values, dtype=float).ravel()
        return {"kind": "value_bins", **drift.value_bins(values)}

    # --- stage 5: evaluation -------------------------------------------------------------

    def score(self, y: np.ndarray, predictions: Predictions) -> dict[str, float]:
        """Every error metric of the forecasts against the actual values."""
        return {name: metric.compute(y, predictions) for name, metric in self.metrics.items()}

    def subset(self, predictions: Predictions, index: np.ndarray) -> Predictions:
        """The forecasts from the origins at `index`, for the bootstrap."""
        return predictions.rows(index)

    def held_out(self, model_bundle, history: pd.DataFrame, period: pd.DataFrame, spec):
        """Actuals and both models' forecasts of `horizon` steps from every origin in
        `period`, each from the true history before it (rolling origins), as in service: one
        row per origin, series by series. None if the bundle forecasts another series or a
        shorter horizon (see `series.rolling_forecasts`)."""
        from .series import rolling_forecasts

        return rolling_forecasts(model_bundle, history, period, spec)

    def resampling_block(self, spec: TargetSpec) -> int:
        """How many consecutive forecast origins the bootstrap draws together: a horizon's
        worth, since neighbouring origins share most of their target steps."""
        return spec.horizon

    def too_small(self, y: np.ndarray, spec: TargetSpec, gate) -> str | None:
        """Why the test period is too short for a verdict (`gate`: params.gate), or None."""
        blocks = -(-len(y) // spec.horizon)
        if blocks < gate.min_blocks:
            return (
                f"{len(y)} forecast origins make {blocks} blocks of {spec.horizon} steps, the "
                f"gate needs {gate.min_blocks} (gate.min_blocks): use a longer series, a larger "
                "split.test_size or a shorter horizon"
            )
        return None

    def test_facts(self, spec: TargetSpec, y: np.ndarray) -> dict:
        """What the report records about the test period besides its length."""
        return {"origins": len(y), "horizon": spec.horizon}

    def describe_test(self, report: dict) -> list[str]:
        """Markdown lines about the test period (`test_facts`): the rolling origins, and what
        the metrics mean."""
        steps = report["origins"] + report["horizon"] - 1  # the last origin forecasts the end
        return [
            f"The test period is the last {steps} steps of the series. Both "
            f"models forecast {report['horizon']} steps from each of its {report['origins']} "
            "origins, from the true history before each origin; the intervals resample blocks "
            f"of {report['horizon']} consecutive origins, which share most of their target "
            "steps.",
            "All four metrics are errors: lower is better. MASE divides the MAE by the "
            "seasonal-naive forecast's mean absolute error on the training series; sMAPE is in "
            "percent.",
        ]

    def evaluation_figures(
        self,
        y: np.ndarray,
        candidate: Predictions,
        baseline: Predictions,
        history: pd.DataFrame,
        period: pd.DataFrame,
        spec: TargetSpec,
        out_dir: Path,
    ) -> list[Path]:
        """The test period with a forecast every horizon steps (up to four series), and the
        error by step ahead."""
        from .series import continuous_parts

        shown = [part for part, _ in continuous_parts(history, period, spec)]
        forecasts = {"candidate": candidate, "baseline": baseline}
        return [
            _forecasts_figure(shown, forecasts, spec.horizon, out_dir),
            _error_by_step_figure(forecasts, y, out_dir),
        ]

    def evaluation_tables(
        self, y: np.ndarray, candidate: Predictions, baseline: Predictions
    ) -> dict[str, pd.DataFrame]:
        """The coverage of the prediction intervals by step ahead, and with several series,
        the metrics of each."""
        inside = (y >= candidate.lower) & (y <= candidate.upper)
        widths = candidate.upper - candidate.lower
        steps = pd.DataFrame(
            {
                "steps ahead": [str(step) for step in range(1, y.shape[1] + 1)] + ["all"],
                "nominal coverage": candidate.coverage,
                "coverage": [*inside.mean(axis=0), inside.mean()],
                "mean width": [*widths.mean(axis=0), widths.mean()],
            }
        )
        tables = {f"Prediction intervals ({candidate.coverage:.0%}) on the test period": steps}
        if candidate.series is not None:
            tables["Metrics per series"] = pd.DataFrame(
                [
                    {
                        "series": key,
                        "origins": int(rows.sum()),
                        **{
                            f"{name} {model}": self.metrics[name].compute(
                                y[rows], predictions.rows(rows)
                            )
                            for name in ("mase", "mae")
                            for model, predictions in [
                                ("candidate", candidate),
                                ("baseline", baseline),
                            ]
                        },
                        "coverage": inside[rows].mean(),
                    }
                    for key in dict.fromkeys(candidate.series)
                    if (rows := candidate.series == key).any()
                ]
            )
        return tables

    # --- stage 6: serving (series_service.py imports this module: imported when called) --

    def request_model(self, schema: list[dict] | None, max_rows: int):
        """A history of up to `max_rows` steps and a horizon (see `series_service`)."""
        from .series_service import request_model

        return request_model(schema, max_rows)

    def predictor(self, model_bundle):
{%- if cookiecutter.deep_learning == "yes" %}
        """The candidate's own forecast: the network's by ONNX Runtime, a recursive
        forecaster's by scikit-learn (see `series_service`)."""
{%- else %}
        """The recursive forecaster, served by scikit-learn (see `series_service`)."""
{%- endif %}
        from .series_service import Predictor

        return Predictor(model_bundle)

    def response(self, predictions: Predictions, version: str) -> dict:
        """The JSON body of a forecast: dated values with their intervals."""
        steps = zip(
            predictions.timestamps,
            predictions.values[0].tolist(),
            predictions.lower[0].tolist(),
            predictions.upper[0].tolist(),
            strict=True,
        )
        series = None if predictions.series is None else predictions.series[0]
        return {
            "model_version": version,
            "series_id": series,
            "coverage": predictions.coverage,
            "forecast": [
                {"timestamp": stamp, "value": value, "lower": lower, "upper": upper}
                for stamp, value, lower, upper in steps
            ],
        }

    def prediction_counts(self, predictions: Predictions, reference: dict) -> dict[str, int]:
        """How many forecast steps fell in each decile of the training forecasts."""
        edges = reference["edges"][1:-1]
        deciles = np.searchsorted(edges, predictions.values.ravel(), side="right") + 1
        return dict(Counter(f"decile_{d}" for d in deciles.tolist()))

    def batch_columns(self, schema: list[dict]) -> list[str]:
        """The timestamp, the series id, the value and the covariates, as in training."""
        target = _batch_target(schema)
        return [*target.timestamp_columns, *target.series_columns, target.name, *target.covariates]

    def batch_groups(self, schema: list[dict]) -> list[str]:
        """A series is one unit: its rows must be together in the file."""
        return _batch_target(schema).series_columns

    def batch_scorer(self, model_bundle):
        """A forecast per series, its history validated as a request (see `series_batch`)."""
        from .series_batch import SeriesScorer

        return SeriesScorer(self.predictor(model_bundle))

    # --- stage 7: monitoring (recent_series.py imports series_service.py, which
    # imports this module: it is imported when called) -------------------------------------

    def parse_record(self, line: str) -> dict:
        """One line of the service's log: the history sent and the forecast sent back."""
        from .recent_series import parse_record

        return parse_record(line)

    def recent_from_file(self, served, path: Path, last: int | None) -> Recent:
        """A recent stretch of the series in a file, forecast from rolling origins."""
        from .recent_series import from_file

        return from_file(served, path, last)

    def recent_from_log(self, served, records: list[dict], log_path: Path) -> Recent:
        """The logged histories and forecasts (see `recent_series.from_log`)."""
        from .recent_series import from_log

        return from_log(served, records, log_path)


def _batch_target(schema: list[dict]) -> TargetSpec:
    """The served series' part of problem.yaml (see `recent_series`)."""
    from .recent_series import served_target

    return served_target(schema[0])


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


def _forecasts_figure(parts: list, forecasts: dict, horizon: int, out_dir: Path) -> Path:
    """One panel for each of the first four series with forecasts: the end of its history
    and its test period, a forecast from every horizon-th origin, the candidate's interval."""
    import matplotlib.pyplot as plt

    ids = forecasts["candidate"].series
    count = len(forecasts["candidate"].values)
    rows = [np.flatnonzero(ids == p.key) if ids is not None else np.arange(count) for p in parts]
    shown = [(part, index) for part, index in zip(parts, rows, strict=True) if len(index)][:4]
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 3.2 * len(shown)), squeeze=False)
    colours = {"candidate": "tab:orange", "baseline": "tab:blue"}
    for ax, (part, index) in zip(axes[:, 0], shown, strict=True):
        first = len(part.values) - horizon + 1 - len(index)  # the first origin
        start = max(first - 4 * horizon, 0)
        ax.plot(part.dates[start:], part.values[start:], color="black", linewidth=1, label="actual")
        for name, predictions in forecasts.items():
            for i in range(0, len(index), horizon):
                dates = part.dates[first + i : first + i + horizon]
                row = index[i]
                label = name if i == 0 else None
                ax.plot(dates, predictions.values[row], color=colours[name], label=label)
                if predictions.lower is not None:
                    ax.fill_between(
                        dates,
                        predictions.lower[row],
                        predictions.upper[row],
                        color=colours[name],
                        alpha=0.15,
                        linewidth=0,
                    )
        ax.axvline(part.dates[first], color="grey", linestyle="--", linewidth=1)
        every = "every origin" if horizon == 1 else f"origins {horizon} steps apart"
        name = "Test period" if part.key is None else f"{part.key}, test period"
        ax.set_title(f"{name}: {horizon}-step forecasts from {every}")
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
    for name, predictions in forecasts.items():
        ax.plot(
            steps,
            np.abs(predictions.values - actuals).mean(axis=0),
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


PROBLEM_TYPE = Forecasting()
