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
{%- if cookiecutter.deep_learning == "yes" %}
from dataclasses import asdict, dataclass
{%- else %}
from dataclasses import dataclass
{%- endif %}
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
from .forecasters import (
    backtest,
    interval_widths,
    origin_units,
    season_positions,
    seasonal_scale,
)
{%- if cookiecutter.deep_learning == "yes" %}
from .neural import NetworkEstimator
{%- endif %}
from .problem_type import PROBLEM_TYPE, Predictions, TargetSpec

log = logging.getLogger(__name__)

FILLED = "interpolated"  # column of the processed series: True where a gap was filled
# The fewest steps the candidate learns from in the first backtest fold (pooled over the
# series); short series scale their folds and lags down to reach it (see `scaled_settings`).
MIN_SAMPLES = 6


def resolve_features(df: pd.DataFrame, problem: ProblemConfig) -> dict[str, FeatureKind]:
    """The inputs of a forecast: the time of each value (the values are the target), from
    the timestamp column or the year and quarter or month columns, and the covariates."""
    spec = problem.target
    named = [("name", spec.name)] + [("timestamp", c) for c in spec.timestamp_columns]
    named += [("series_id", c) for c in spec.series_columns]
    for key, column in named + [("covariates", c) for c in spec.covariates]:
        if column not in df.columns:
            raise DataError(
                f"problem.yaml target.{key}: {column!r} is not a column of the data; "
                f"columns are: {', '.join(map(str, df.columns))}"
            )
    return {spec.time_column: "datetime"} | dict.fromkeys(spec.covariates, "numeric")


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
    """The raw rows as regular series: (the series id,) timestamp, value and the
    interpolated mask, sorted by series and time. Rows without a time or a series id are
    left out, with a count in the log."""
    rows = pd.DataFrame({"time": PROBLEM_TYPE.timestamps(raw, spec), "value": raw[spec.name]})
    for column in spec.covariates:
        rows[column] = pd.to_numeric(raw[column], errors="coerce")
    if spec.series_column:
        rows["series"] = PROBLEM_TYPE.series_ids(raw, spec)
    for column, what in [("time", "a time"), ("series", "a series id")]:
        if column in rows and rows[column].isna().any():
            log.warning("%d rows without %s left out", rows[column].isna().sum(), what)
    rows = rows.dropna(subset=[c for c in ("time", "series") if c in rows])
    groups = rows.groupby("series", sort=True) if spec.series_column else [(None, rows)]
    frames = []
    for key, group in groups:
        which = f"{spec.name!r}" + (f" of {spec.series_column} {key!r}" if key is not None else "")
        try:
            index, values, filled = regularise(
                group["time"], group["value"], spec.frequency, spec.max_gap
            )
        except ValueError as exc:
            raise DataError(f"the series {which} over {spec.time_column!r}: {exc}") from exc
        frame = pd.DataFrame({spec.time_column: index, spec.name: values, FILLED: filled})
        if spec.covariates:  # on the same steps, gaps interpolated, ends held
            known = group.set_index("time")[spec.covariates].reindex(index)
            frame[spec.covariates] = known.interpolate(limit_direction="both").to_numpy()
        if key is not None:
            frame.insert(0, spec.series_column, key)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def split(series: pd.DataFrame, spec: TargetSpec, test_size: float):
    """The last test_size share of the timestamps is the test period, for every series at
    once (one series must not train on what another's test period knows); the rest trains."""
    times = series[spec.time_column].drop_duplicates().sort_values()
    test_steps = round(len(times) * test_size)
    if test_steps < spec.horizon:
        raise DataError(
            f"the test period has {test_steps} steps, fewer than the horizon {spec.horizon}: "
            "collect a longer series or raise split.test_size in params.yaml"
        )
    in_test = series[spec.time_column] >= times.iloc[-test_steps]
    return series[~in_test].reset_index(drop=True), series[in_test].reset_index(drop=True)


def prepare(raw: pd.DataFrame, problem: ProblemConfig, params: Params, processed_dir: Path) -> dict:
    """Validate the raw rows, make them regular series and split them by time."""
    features = resolve_features(raw, problem)
    validate(raw, problem, params, features)
    spec = problem.target
    series = series_frame(raw, spec)
    filled = int(series[FILLED].sum())
    count = series[spec.series_column].nunique() if spec.series_column else 1
    log.info(
        "series: %d rows in, %d series of %d regular %s steps from %s to %s, "
        "%d missing steps interpolated",
        len(raw),
        count,
        len(series),
        spec.frequency,
        series[spec.time_column].min(),
        series[spec.time_column].max(),
        filled,
    )
    train, test = split(series, spec, params.split.test_size)
    kept = (*spec.timestamp_columns, *spec.series_columns, *spec.covariates, spec.name)
    dropped = {
        name: "a forecast reads only the series id, the timestamp, the target and covariates"
        for name in raw.columns
        if name not in kept
    }
    write_processed(processed_dir, train, test, features, spec.name, dropped)
    write_json(
        processed_dir / SPLIT_FILE,
        {
            "source": problem.source.model_dump(mode="json"),
            "series": count,
            "train_steps": len(train),
            "test_steps": len(test),
            "test_from": str(test[spec.time_column].min()),
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    log.info(
        "time split: %d training steps, test period of %d steps from %s",
        len(train),
        len(test),
        test[spec.time_column].min(),
    )
    return {
        "series": count,
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


@dataclass(frozen=True)
class Part:
    """One series of a processed frame: its id (None when the file holds one series),
    timestamps, values and season positions."""

    key: str | None
    dates: pd.DatetimeIndex
    values: np.ndarray
    positions: np.ndarray
    covariates: np.ndarray | None = None  # one row per step, one column per covariate

    def head(self, stop: int) -> Part:
        """The first `stop` steps."""
        known = None if self.covariates is None else self.covariates[:stop]
        return Part(self.key, self.dates[:stop], self.values[:stop], self.positions[:stop], known)

    def then(self, later: Part) -> Part:
        """This series followed by `later`."""
        known = None
        if self.covariates is not None:
            known = np.concatenate([self.covariates, later.covariates])
        return Part(
            self.key,
            self.dates.append(later.dates),
            np.concatenate([self.values, later.values]),
            np.concatenate([self.positions, later.positions]),
            known,
        )


def parts(frame: pd.DataFrame, spec: TargetSpec) -> list[Part]:
    """The series of a processed frame, by id."""
    groups = frame.groupby(spec.series_column, sort=True) if spec.series_column else [(None, frame)]
    result = []
    for key, group in groups:
        dates = pd.DatetimeIndex(group[spec.time_column])
        positions = season_positions(dates, spec.frequency, spec.season_length)
        known = group[spec.covariates].to_numpy(float) if spec.covariates else None
        result.append(Part(key, dates, group[spec.name].to_numpy(float), positions, known))
    return result


def continuous_parts(history: pd.DataFrame, period: pd.DataFrame, spec: TargetSpec):
    """Each series of `period` after its `history` as (Part, steps of history); the period
    must continue the history step by step."""
    before = {part.key: part for part in parts(history, spec)} if len(history) else {}
    result = []
    for part in parts(period, spec):
        known = before.get(part.key)
        if known is not None:
            dates = known.dates.append(part.dates)
            if not pd.date_range(dates[0], periods=len(dates), freq=spec.frequency).equals(dates):
                raise DataError(
                    f"the period from {part.dates[0]} does not continue the history that "
                    f"ends {known.dates[-1]} step by step"
                    + (f" (series {part.key!r})" if part.key is not None else "")
                )
            part = known.then(part)
        result.append((part, 0 if known is None else len(known.values)))
    return result


{% if cookiecutter.deep_learning == "yes" -%}
def fit_model(model, series: list[Part], **options):
    """`model` fitted on every series, with their covariates if there are any; `options`
    go to its `fit`."""
    covariates = [part.covariates for part in series]
    return model.fit(
        [part.values for part in series],
        [part.positions for part in series],
        None if covariates[0] is None else covariates,
        **options,
    )
{%- else -%}
def fit_model(model, series: list[Part]):
    """`model` fitted on every series, with their covariates if there are any."""
    covariates = [part.covariates for part in series]
    return model.fit(
        [part.values for part in series],
        [part.positions for part in series],
        None if covariates[0] is None else covariates,
    )
{%- endif %}


def part_backtest(model, part: Part, origins: np.ndarray, horizon: int):
    """`backtest` on one series, with the covariates of its forecast steps."""
    return backtest(model, part.values, part.positions, origins, horizon, part.covariates)


def scaled_settings(lengths: list[int], spec: TargetSpec, folds: int, candidate) -> dict:
    """Backtest folds, lag seasons and leaf size that series this short can support.

    The first backtest fold trains on each series up to `folds` blocks of 2 x horizon
    steps before its end, and the candidate learns from every step after its window of
    `lag_seasons` seasons: together at least MIN_SAMPLES steps. Folds shrink to 2, then lag
    seasons to 2, then folds to 1; the leaf size to a fifth of the samples. Below that,
    one line names the settings to change."""
    block, season = 2 * spec.horizon, spec.season_length

    def samples(f: int, lags: int) -> int:
        return sum(max(0, n - f * block - lags * season) for n in lengths)

    settings = {"cv.folds": folds, "lag_seasons": candidate.lag_seasons}
    for key, floor in [("cv.folds", 2), ("lag_seasons", 2), ("cv.folds", 1)]:
        while samples(settings["cv.folds"], settings["lag_seasons"]) < MIN_SAMPLES and (
            settings[key] > floor
        ):
            settings[key] -= 1
    pooled = samples(settings["cv.folds"], settings["lag_seasons"])
    if pooled < MIN_SAMPLES:
        needed = block + 2 * season + MIN_SAMPLES
        raise DataError(
            f"the training part is too short: its longest series has {max(lengths)} steps, "
            f"and even 1 backtest fold of 2 x {spec.horizon} steps and 2 lag seasons of "
            f"{spec.season_length} need {needed} (with {MIN_SAMPLES} to learn from): lower "
            "target.horizon or target.season_length in problem.yaml, lower split.test_size "
            "in params.yaml, or collect a longer series"
        )
{%- if cookiecutter.deep_learning == "yes" %}
    if hasattr(candidate, "min_samples_leaf"):  # the trees; the network has no leaves
        settings["min_samples_leaf"] = min(candidate.min_samples_leaf, max(1, pooled // 5))
{%- else %}
    settings["min_samples_leaf"] = min(candidate.min_samples_leaf, max(1, pooled // 5))
{%- endif %}
    return settings


def cross_validate(
    model, series: list[Part], spec: TargetSpec, metric: str, folds: int
) -> tuple[dict, np.ndarray]:
    """Rolling-origin backtest: each fold fits on everything before its block of
    2 x horizon steps (the same dates for every series) and forecasts the horizon from
    every origin in the block. Returns the scores and the errors of every forecast, in
    units of its window (rows: origins; columns: steps ahead), for the intervals."""
    horizon = spec.horizon
    times = np.unique(np.concatenate([part.dates.asi8 for part in series]))
    compute = PROBLEM_TYPE.metrics[metric].compute
    scores, errors = [], []
    for fold in range(folds, 0, -1):
        cutoff = times[len(times) - fold * 2 * horizon]
        starts = [int(np.searchsorted(part.dates.asi8, cutoff)) for part in series]
{%- if cookiecutter.deep_learning == "yes" %}
        # A fold's network forecasts with torch and is thrown away: no ONNX export (seconds).
        options = {"export": False} if isinstance(model, NetworkEstimator) else {}
        fitted = fit_model(
            clone(model),
            [part.head(start) for part, start in zip(series, starts, strict=True)],
            **options,
        )
{%- else %}
        fitted = fit_model(
            clone(model), [part.head(start) for part, start in zip(series, starts, strict=True)]
        )
{%- endif %}
        forecasts, actuals, scales, units = [], [], [], []
        for part, start in zip(series, starts, strict=True):
            first = max(start, fitted.window_)
            origins = np.arange(first, min(start + horizon + 1, len(part.values) - horizon + 1))
            if len(origins) == 0:
                continue
            forecast, actual = part_backtest(fitted, part, origins, horizon)
            forecasts.append(forecast)
            actuals.append(actual)
            scale = seasonal_scale(part.values[:start], spec.season_length)
            scales.append(np.full(len(origins), scale))
            units.append(origin_units(part.values, origins, fitted.window_))
        if not forecasts:
            continue  # every series ended before this fold
        forecast, actual = np.concatenate(forecasts), np.concatenate(actuals)
        scores.append(compute(actual, Predictions(forecast, np.concatenate(scales))))
        errors.append((actual - forecast) / np.concatenate(units)[:, None])
        log.info("backtest fold %d/%d: %s = %.4f", len(scores), folds, metric, scores[-1])
    cv = {"metric": metric, "folds": scores, "mean": float(np.mean(scores))}
    return cv | {"std": float(np.std(scores))}, np.concatenate(errors)


def _series_reference(values: np.ndarray, missing: float) -> dict:
    return drift.feature_reference("series", pd.Series(values, dtype=float)) | {
        "missing_rate": missing
    }


def reference_statistics(model, train: pd.DataFrame, spec: TargetSpec, steps: int) -> dict:
    """The end of the training series, the yardstick for drift: the level of its values,
    their step-to-step change, the share of interpolated steps, and the forecasts the
    candidate makes from origins in it (the last `steps` steps of each series)."""
    levels, changes, missing, forecasts, scales = [], [], [], [], []
    filled = train[FILLED].to_numpy(bool)
    end = 0
    for part in parts(train, spec):
        end += len(part.values)
        count = min(max(steps, 4 * spec.season_length), len(part.values) - model.window_)
        if count <= spec.horizon:
            continue  # too short to forecast from: the other series make the reference
        recent = part.values[-count:]
        levels.append(recent)
        changes.append(np.diff(recent))
        missing.append(filled[end - count : end])
        origins = np.arange(len(part.values) - count, len(part.values) - spec.horizon + 1)
        forecasts.append(part_backtest(model, part, origins, spec.horizon)[0])
        scales.append(seasonal_scale(part.values, spec.season_length))
    if not levels:
        raise DataError(
            f"no series has {model.window_ + spec.horizon + 1} training steps, enough to "
            "forecast from for the drift reference: collect longer series"
        )
    rate = float(np.concatenate(missing).mean())
    features = {
        "level": _series_reference(np.concatenate(levels), rate),
        "change": _series_reference(np.concatenate(changes), rate),
    }
    reference = Predictions(np.concatenate(forecasts), float(np.mean(scales)))
    predictions = PROBLEM_TYPE.prediction_reference(reference)
    return drift.build_reference(sum(map(len, levels)), features, predictions)


def series_schema(train: pd.DataFrame, spec: TargetSpec, window: int) -> list[dict]:
    """The contract the API serves: the series, its frequency, the longest horizon, the
    shortest history, and an example request taken from the end of the first series."""
    first = parts(train, spec)[0]
    values = train[spec.name]
    # with covariates, the history ends a horizon early: their example future is known
    end = len(first.values) - (spec.horizon if spec.covariates else 0)
    example = {
        "timestamps": [stamp.isoformat() for stamp in first.dates[end - window : end]],
        "values": np.round(first.values[end - window : end], 4).tolist(),
    }
    future = {
        name: np.round(first.covariates[end:, i], 4).tolist()
        for i, name in enumerate(spec.covariates)
    }
    return [
        {
            "name": spec.name,
            "kind": "series",
            "timestamp": spec.time_column,
            "source_timestamp": spec.timestamp,
            "series_id": spec.series_id,
            "timestamp_format": spec.timestamp_format,
            "frequency": spec.frequency,
            "horizon": spec.horizon,
            "season_length": spec.season_length,
            "max_gap": spec.max_gap,
            "interval": spec.interval,
            "covariates": spec.covariates,
            "min_history": window,
            "min": float(values.min()),
            "max": float(values.max()),
            "first": train[spec.time_column].min().isoformat(),
            "last": train[spec.time_column].max().isoformat(),
            "example": ({"series_id": first.key} if first.key is not None else {})
            | {"history": example}
            | ({"future": future} if future else {}),
        }
    ]


def _scaled_candidate(series: list[Part], problem: ProblemConfig, params: Params):
    """The candidate params.yaml describes, with the settings a short series scales down
    (logged), the settings, and those that changed."""
    spec = problem.target
    try:
        candidate = PROBLEM_TYPE.make_candidate(
            params.model.name, params.model.params, params.split.seed, spec
        )
    except ValueError as exc:
        raise ConfigError(f"params.yaml model.params: {exc}") from exc
    lengths = [len(part.values) for part in series]
    settings = scaled_settings(lengths, spec, params.cv.folds, candidate)
    configured = {"cv.folds": params.cv.folds, **candidate.get_params()}
    scaled = {key: value for key, value in settings.items() if configured[key] != value}
    if scaled:
        log.warning(
            "short series (longest %d training steps): %s",
            max(lengths),
            ", ".join(f"{key} {configured[key]} -> {value}" for key, value in scaled.items()),
        )
    candidate.set_params(**{k: v for k, v in settings.items() if k != "cv.folds"})
    return candidate, settings, scaled


def backtest_scores(train: pd.DataFrame, problem: ProblemConfig, params: Params) -> dict:
    """The candidate's backtest scores on the training part alone, as `fit` records them."""
    series = parts(train, problem.target)
    candidate, settings, _ = _scaled_candidate(series, problem, params)
    spec, folds = problem.target, settings["cv.folds"]
    return cross_validate(candidate, series, spec, problem.metric, folds)[0]


{% if cookiecutter.deep_learning == "yes" -%}
def training_facts(candidate) -> dict:
    """What the model card records of a network's training: epochs, the epoch kept, its
    losses and the device; nothing for the other candidates."""
    history = getattr(candidate, "history_", None)
    return {} if history is None else {"training": asdict(history)}


{% endif -%}
def fit(train: pd.DataFrame, test_steps: int, problem: ProblemConfig, params: Params) -> Trained:
    """Backtest the candidate on the training part, then fit it and the baseline on all of
    it; a short series gets fewer folds, lags and a smaller leaf size (logged and recorded).
    The backtest errors make the prediction intervals; the drift reference covers as many
    recent steps as the test period."""
    spec = problem.target
    series = parts(train, spec)
    log.info(
        "training %s on %d steps of %r in %d series",
        params.model.name,
        len(train),
        spec.name,
        len(series),
    )
    candidate, settings, scaled = _scaled_candidate(series, problem, params)
    cv, errors = cross_validate(candidate, series, spec, problem.metric, settings["cv.folds"])
    log.info("backtest %s: %.4f ± %.4f", problem.metric, cv["mean"], cv["std"])
    widths, level = interval_widths(errors, spec.interval)
    try:
        fit_model(candidate, series)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    baseline = PROBLEM_TYPE.make_baseline(params.baseline.strategy, params.split.seed, spec)
    fit_model(baseline, series)
    scales = {part.key: seasonal_scale(part.values, spec.season_length) for part in series}
    interval = {"coverage": spec.interval, "level": level, "errors": len(errors)}
    return Trained(
        model=candidate,
        baseline=baseline,
        cv=cv,
        schema=series_schema(train, spec, max(candidate.window_, baseline.window_)),
        reference=reference_statistics(candidate, train, spec, test_steps),
        facts={
            "scale": float(np.mean(list(scales.values()))),
            "series": {str(key): scale for key, scale in scales.items() if key is not None},
            "interval": interval | {"widths": widths},
            "scaled": scaled,
{%- if cookiecutter.deep_learning == "yes" %}
            **training_facts(candidate),
{%- endif %}
        },
    )


def rolling_forecasts(model_bundle, history: pd.DataFrame, period: pd.DataFrame, spec):
    """Actuals and both models' forecasts of `horizon` steps from every origin in
    `period`, each from the true history before it, series by series; the candidate's with
    prediction intervals. None if the bundle forecasts another series or a shorter horizon."""
    meta = model_bundle.metadata
    schema = meta["features"][0]
    if (meta["target"], schema["series_id"]) != (spec.name, spec.series_id) or (
        schema["horizon"] < spec.horizon
    ):
        return None
    model, baseline, horizon = model_bundle.model, model_bundle.baseline, spec.horizon
    window = max(model.window_, baseline.window_)
    rows: dict[str, list] = {name: [] for name in ("y", "candidate", "baseline", "scale", "unit")}
    keys, stamps = [], ()
    for part, known in continuous_parts(history, period, spec):
        origins = np.arange(max(known, window), len(part.values) - horizon + 1)
        if len(origins) == 0:
            continue
        candidate, actuals = part_backtest(model, part, origins, horizon)
        rows["y"].append(actuals)
        rows["candidate"].append(candidate)
        rows["baseline"].append(part_backtest(baseline, part, origins, horizon)[0])
        scale = meta["series"].get(str(part.key), meta["scale"])
        rows["scale"].append(np.full(len(origins), scale))
        rows["unit"].append(origin_units(part.values, origins, model.window_))
        keys += [part.key] * len(origins)
        stamps = stamps or tuple(s.isoformat() for s in part.dates[origins[0] :][:horizon])
    if not keys:
        raise DataError(
            f"{len(period)} steps after {len(history)} of history: too short for one "
            f"{horizon}-step forecast with {window} steps of history"
        )
    y, candidate, baseline_values, scale, unit = (np.concatenate(rows[n]) for n in rows)
    half = np.asarray(meta["interval"]["widths"][:horizon]) * unit[:, None]
    series = np.array(keys, dtype=object) if spec.series_column else None
    coverage = meta["interval"]["coverage"]
    return (
        y,
        Predictions(candidate, scale, stamps, candidate - half, candidate + half, coverage, series),
        Predictions(baseline_values, scale, stamps, series=series),
    )
