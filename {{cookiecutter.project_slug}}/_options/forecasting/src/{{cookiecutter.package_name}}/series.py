"""The series: stage 3 makes it regular and splits it by time; stage 4 backtests on it.

The raw rows are sorted by time and put on the grid of the configured frequency. Missing
steps (absent rows or empty values) are filled by linear interpolation when a run of them
is at most `max_gap` steps long; a longer run is an error that names its dates, because
inventing a long stretch of data would mislead both training and evaluation. Leading and
trailing missing steps are dropped. The test set is the last `test_size` share of the
series: never shuffled, and the model never sees it before the evaluation.

Training backtests the candidate on rolling origins in the training part, fits both models
on all of it, and records the end of the series as the yardstick of drift.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from sklearn.base import clone

from . import drift
from .bundle import write_json
from .config import FeatureKind, Params, ProblemConfig
from .contract import Trained
from .data import SPLIT_FILE, validate, write_processed
from .errors import ConfigError, DataError
from .forecasters import backtest, season_positions, seasonal_scale
from .problem_type import PROBLEM_TYPE, Predictions, TargetSpec

log = logging.getLogger(__name__)

FILLED = "interpolated"  # column of the processed series: True where a gap was filled


def resolve_features(df: pd.DataFrame, problem: ProblemConfig) -> dict[str, FeatureKind]:
    """The one input of a forecast: the time of each value (the values are the target),
    from the timestamp column or the year and quarter or month columns."""
    spec = problem.target
    for key, column in [("name", spec.name)] + [("timestamp", c) for c in spec.timestamp_columns]:
        if column not in df.columns:
            raise DataError(
                f"problem.yaml target.{key}: {column!r} is not a column of the data; "
                f"columns are: {', '.join(map(str, df.columns))}"
            )
    return {spec.time_column: "datetime"}


def regularise(
    timestamps, values, frequency: str, max_gap: int
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Sorted, unique timestamps on the frequency grid with short gaps interpolated.

    Returns the regular index (in UTC when the timestamps carry an offset), the values and
    a mask of the filled steps. Raises ValueError naming the first offending timestamps for
    duplicates, off-grid times and long gaps."""
    if len(timestamps) == 0:
        raise ValueError("no timestamps")
    # Times with a UTC offset are compared in UTC, so a daylight-saving change is no gap.
    stamps = pd.DatetimeIndex(pd.to_datetime(pd.Series(timestamps), format="ISO8601", utc=True))
    stamps = stamps.tz_localize(None)
    values = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(float)
    order = np.argsort(stamps.asi8, kind="stable")
    stamps, values = stamps[order], values[order]
    duplicated = stamps[stamps.duplicated()]
    if len(duplicated):
        examples = ", ".join(str(s) for s in duplicated.unique()[:3])
        raise ValueError(f"{len(duplicated)} duplicated timestamps, e.g. {examples}")
    grid = pd.date_range(stamps[0], stamps[-1], freq=frequency)
    off_grid = stamps.difference(grid)
    if len(off_grid):
        examples = ", ".join(str(s) for s in off_grid[:3])
        match = matching_frequency(stamps, frequency)
        raise ValueError(
            f"{len(off_grid)} timestamps are not on the {frequency!r} grid that starts at "
            f"{stamps[0]}, e.g. {examples}"
            + (f"; all are on the {match!r} grid: use frequency: {match}" if match else "")
        )
    series = pd.Series(values, index=stamps).reindex(grid)
    missing = series.isna().to_numpy()
    present = np.flatnonzero(~missing)
    if present.size == 0:
        raise ValueError("no values")
    keep = slice(present[0], present[-1] + 1)  # leading and trailing gaps are dropped
    series, missing = series.iloc[keep], missing[keep]
    runs = gap_runs(missing)
    long = [(start, length) for start, length in runs if length > max_gap]
    if long:
        start, length = long[0]
        raise ValueError(
            f"{len(long)} gaps longer than max_gap={max_gap} steps, the first {length} steps "
            f"from {series.index[start]} to {series.index[start + length - 1]}"
        )
    filled = series.interpolate(method="linear") if missing.any() else series
    return series.index, filled.to_numpy(float), missing


WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def matching_frequency(stamps: pd.DatetimeIndex, frequency: str) -> str | None:
    """Another anchor of the same frequency that every timestamp is on, or None: W-SAT for
    weekly data on Saturdays, QE-FEB for quarters that end in February, May, August and
    November, MS for month starts."""
    rule = to_offset(frequency).rule_code  # W is W-SUN, QE is QE-DEC, YE is YE-DEC
    base, _, anchor = rule.partition("-")
    ends = {"ME": "MS", "QE": "QS", "YE": "YS", "BME": "BMS", "BQE": "BQS", "BYE": "BYS"}
    swap = ends | {start: end for end, start in ends.items()}
    anchors = WEEKDAYS if base == "W" else MONTHS if anchor in MONTHS else (anchor,)
    candidates = [
        f"{b}-{a}" if a else b for b in dict.fromkeys([base, swap.get(base, base)]) for a in anchors
    ]
    for candidate in candidates:
        grid = pd.date_range(stamps[0], stamps[-1], freq=candidate)
        if candidate != rule and len(grid) and grid[0] == stamps[0] and stamps.isin(grid).all():
            return candidate
    return None


def gap_runs(missing: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    edges = np.diff(np.concatenate([[0], missing.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), (ends - starts).tolist(), strict=True))


def series_frame(raw: pd.DataFrame, spec: TargetSpec) -> pd.DataFrame:
    """The raw rows as a regular series: timestamp, value and the interpolated mask. Rows
    without a time are left out, with a count in the log."""
    stamps = PROBLEM_TYPE.timestamps(raw, spec)
    if stamps.isna().any():
        log.warning("%d rows without a time in %s left out", stamps.isna().sum(), spec.time_column)
    rows = pd.DataFrame({"time": stamps, "value": raw[spec.name]}).dropna(subset="time")
    try:
        index, values, filled = regularise(
            rows["time"], rows["value"], spec.frequency, spec.max_gap
        )
    except ValueError as exc:
        raise DataError(f"the series {spec.name!r} over {spec.time_column!r}: {exc}") from exc
    return pd.DataFrame({spec.time_column: index, spec.name: values, FILLED: filled})


def split(series: pd.DataFrame, spec: TargetSpec, test_size: float):
    """The last test_size share of the series is the test period; the rest trains."""
    test_steps = round(len(series) * test_size)
    if test_steps < spec.horizon:
        raise DataError(
            f"the test period has {test_steps} steps, fewer than the horizon {spec.horizon}: "
            "collect a longer series or raise split.test_size in params.yaml"
        )
    train, test = series.iloc[:-test_steps], series.iloc[-test_steps:]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def prepare(raw: pd.DataFrame, problem: ProblemConfig, params: Params, processed_dir: Path) -> dict:
    """Validate the raw rows, make them a regular series and split it by time."""
    features = resolve_features(raw, problem)
    validate(raw, problem, params, features)
    spec = problem.target
    series = series_frame(raw, spec)
    filled = int(series[FILLED].sum())
    log.info(
        "series: %d rows in, %d regular %s steps from %s to %s, %d missing steps interpolated",
        len(raw),
        len(series),
        spec.frequency,
        series[spec.time_column].iloc[0],
        series[spec.time_column].iloc[-1],
        filled,
    )
    train, test = split(series, spec, params.split.test_size)
    dropped = {
        name: "a forecast reads only the timestamp and the target"
        for name in raw.columns
        if name not in (*spec.timestamp_columns, spec.name)
    }
    write_processed(processed_dir, train, test, features, spec.name, dropped)
    write_json(
        processed_dir / SPLIT_FILE,
        {
            "source": problem.source.model_dump(mode="json"),
            "train_steps": len(train),
            "test_steps": len(test),
            "test_from": str(test[spec.time_column].iloc[0]),
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    log.info(
        "time split: %d training steps, test period of %d steps from %s",
        len(train),
        len(test),
        test[spec.time_column].iloc[0],
    )
    return {
        "steps": len(series),
        "interpolated": filled,
        "train_rows": len(train),
        "test_rows": len(test),
    }


def check_disjoint(train: pd.DataFrame, test: pd.DataFrame, stamp: str, processed_dir: Path):
    """A step's timestamp is its identity: refuse a training part that reaches the test period."""
    if len(train) and len(test) and train[stamp].max() >= test[stamp].min():
        leaked = int((test[stamp] <= train[stamp].max()).sum())
        raise DataError(
            f"{processed_dir}: {leaked} test steps are also in the training part (it ends "
            f"{train[stamp].max()}, the test period starts {test[stamp].min()}); "
            "evaluation refused: run `prepare` again"
        )


def as_series(frame: pd.DataFrame, spec: TargetSpec):
    """Timestamps, values and season positions of a processed series."""
    dates = pd.DatetimeIndex(frame[spec.time_column])
    positions = season_positions(dates, spec.frequency, spec.season_length)
    return dates, frame[spec.name].to_numpy(float), positions


def cross_validate(model, series, positions, spec: TargetSpec, metric: str, params: Params) -> dict:
    """Rolling-origin backtest: each fold fits on everything before its block of
    2 x horizon steps and forecasts the horizon from every origin in the block."""
    block, horizon = 2 * spec.horizon, spec.horizon
    compute = PROBLEM_TYPE.metrics[metric].compute
    scores = []
    for fold in range(params.cv.folds, 0, -1):
        start = len(series) - fold * block
        fitted = clone(model).fit(series[:start], positions[:start])
        origins = np.arange(start, start + block - horizon + 1)
        forecasts, actuals = backtest(fitted, series, positions, origins, horizon)
        scale = seasonal_scale(series[:start], spec.season_length)
        scores.append(compute(actuals, Predictions(forecasts, scale)))
        log.info("backtest fold %d/%d: %s = %.4f", len(scores), params.cv.folds, metric, scores[-1])
    return {
        "metric": metric,
        "folds": scores,
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
    }


def _series_reference(values: np.ndarray, missing: float) -> dict:
    return drift.feature_reference("series", pd.Series(values, dtype=float)) | {
        "missing_rate": missing
    }


def reference_statistics(model, train: pd.DataFrame, spec: TargetSpec, steps: int) -> dict:
    """The end of the training series, the yardstick for drift: the level of its values,
    their step-to-step change, the share of interpolated steps, and the forecasts the
    candidate makes from origins in it."""
    _, series, positions = as_series(train, spec)
    steps = min(max(steps, 4 * spec.season_length), len(series) - model.window_)
    recent = series[-steps:]
    missing = float(train[FILLED].to_numpy()[-steps:].mean())
    origins = np.arange(len(series) - steps, len(series) - spec.horizon + 1)
    forecasts, _ = backtest(model, series, positions, origins, spec.horizon)
    scale = seasonal_scale(series, spec.season_length)
    features = {
        "level": _series_reference(recent, missing),
        "change": _series_reference(np.diff(recent), missing),
    }
    predictions = PROBLEM_TYPE.prediction_reference(Predictions(forecasts, scale))
    return drift.build_reference(steps, features, predictions)


def series_schema(train: pd.DataFrame, spec: TargetSpec, window: int) -> list[dict]:
    """The contract the API serves: the series, its frequency, the longest horizon, the
    shortest history, and an example request taken from the end of the training part."""
    example = train.iloc[-window:]
    values = train[spec.name]
    return [
        {
            "name": spec.name,
            "kind": "series",
            "timestamp": spec.time_column,
            "source_timestamp": spec.timestamp,
            "timestamp_format": spec.timestamp_format,
            "frequency": spec.frequency,
            "horizon": spec.horizon,
            "season_length": spec.season_length,
            "max_gap": spec.max_gap,
            "min_history": window,
            "min": float(values.min()),
            "max": float(values.max()),
            "first": train[spec.time_column].iloc[0].isoformat(),
            "last": train[spec.time_column].iloc[-1].isoformat(),
            "example": {
                "timestamps": [stamp.isoformat() for stamp in example[spec.time_column]],
                "values": example[spec.name].round(4).tolist(),
            },
        }
    ]


def fit(train: pd.DataFrame, test_steps: int, problem: ProblemConfig, params: Params) -> Trained:
    """Backtest the candidate on the training part, then fit it and the baseline on all of
    it; the drift reference covers as many recent steps as the test period."""
    spec = problem.target
    _, series, positions = as_series(train, spec)
    log.info("training %s on %d steps of %r", params.model.name, len(series), spec.name)
    try:
        candidate = PROBLEM_TYPE.make_candidate(
            params.model.name, params.model.params, params.split.seed, spec
        )
    except ValueError as exc:
        raise ConfigError(f"params.yaml model.params: {exc}") from exc
    needed = 2 * spec.horizon * params.cv.folds + candidate.lag_seasons * spec.season_length
    if len(series) < needed + 2 * candidate.min_samples_leaf:
        raise DataError(
            f"the training part has {len(series)} steps; backtesting {params.cv.folds} folds "
            f"needs at least {needed + 2 * candidate.min_samples_leaf}"
        )
    cv = cross_validate(candidate, series, positions, spec, problem.metric, params)
    log.info("backtest %s: %.4f ± %.4f", problem.metric, cv["mean"], cv["std"])
    try:
        candidate.fit(series, positions)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    baseline = PROBLEM_TYPE.make_baseline(params.baseline.strategy, params.split.seed, spec)
    baseline.fit(series, positions)
    return Trained(
        model=candidate,
        baseline=baseline,
        cv=cv,
        schema=series_schema(train, spec, max(candidate.window_, baseline.window_)),
        reference=reference_statistics(candidate, train, spec, test_steps),
        facts={"scale": seasonal_scale(series, spec.season_length)},
    )
