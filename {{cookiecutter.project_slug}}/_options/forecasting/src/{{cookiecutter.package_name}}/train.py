"""Stage 4: backtest the treatment (candidate) on the training part, fit it and the control
(baseline) on all of it, and write a bundle."""

from __future__ import annotations

import logging
import platform
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from . import bundle, drift, task
from .config import Params, ProblemConfig
from .data import sha256_file
from .errors import ConfigError, DataError
from .features import FILLED, TRAIN_FILE, read_processed

log = logging.getLogger(__name__)


def as_series(frame: pd.DataFrame, spec: task.TargetSpec):
    """Timestamps, values and season positions of a processed series."""
    dates = pd.DatetimeIndex(frame[spec.time_column])
    positions = task.season_positions(dates, spec.frequency, spec.season_length)
    return dates, frame[spec.name].to_numpy(float), positions


def cross_validate(
    model, series, positions, spec: task.TargetSpec, metric: str, params: Params
) -> dict:
    """Rolling-origin backtest: each fold fits on everything before its block of
    2 x horizon steps and forecasts the horizon from every origin in the block."""
    block, horizon = 2 * spec.horizon, spec.horizon
    compute = task.METRICS[metric].compute
    scores = []
    for fold in range(params.cv.folds, 0, -1):
        start = len(series) - fold * block
        fitted = clone(model).fit(series[:start], positions[:start])
        origins = np.arange(start, start + block - horizon + 1)
        forecasts, actuals = task.backtest(fitted, series, positions, origins, horizon)
        scale = task.seasonal_scale(series[:start], spec.season_length)
        scores.append(compute(actuals, task.Predictions(forecasts, scale)))
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


def reference_statistics(model, train: pd.DataFrame, spec: task.TargetSpec, steps: int) -> dict:
    """The end of the training series, the yardstick for drift: the level of its values,
    their step-to-step change, the share of interpolated steps, and the forecasts the
    candidate makes from origins in it."""
    _, series, positions = as_series(train, spec)
    steps = min(max(steps, 4 * spec.season_length), len(series) - model.window_)
    recent = series[-steps:]
    missing = float(train[FILLED].to_numpy()[-steps:].mean())
    origins = np.arange(len(series) - steps, len(series) - spec.horizon + 1)
    forecasts, _ = task.backtest(model, series, positions, origins, spec.horizon)
    return {
        "rows": steps,
        "features": {
            "level": _series_reference(recent, missing),
            "change": _series_reference(np.diff(recent), missing),
        },
        "predictions": task.prediction_reference(forecasts),
    }


def series_schema(train: pd.DataFrame, spec: task.TargetSpec, window: int) -> list[dict]:
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


def _versions() -> dict[str, str]:
    packages = ("scikit-learn", "pandas", "numpy", "skops")
    return {"python": platform.python_version(), **{name: version(name) for name in packages}}


def run(processed_dir: Path, models_dir: Path, problem: ProblemConfig, params: Params) -> str:
    """Train on data/processed, save a bundle, and point `models/candidate` at it."""
    train, test, _ = read_processed(processed_dir)
    spec = problem.target
    _, series, positions = as_series(train, spec)
    log.info("training %s on %d steps of %r", params.model.name, len(series), spec.name)
    try:
        candidate = task.make_candidate(
            params.model.name, params.model.params, params.split.seed, spec.season_length
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
    baseline = task.make_baseline(params.baseline.strategy, spec.season_length).fit(
        series, positions
    )
    window = max(candidate.window_, baseline.window_)
    metadata = {
        "problem_type": task.PROBLEM_TYPE,
        "target": spec.name,
        "features": series_schema(train, spec, window),
        "scale": task.seasonal_scale(series, spec.season_length),
        "model": params.model.model_dump(),
        "baseline": params.baseline.model_dump(),
        "params": params.model_dump(mode="json"),
        "train_rows": len(train),
        "train_data_sha256": sha256_file(processed_dir / TRAIN_FILE),
        "cv": cv,
        "library_versions": _versions(),
    }
    reference = reference_statistics(candidate, train, spec, len(test))
    version = bundle.save(models_dir, candidate, baseline, metadata, reference)
    bundle.set_pointer(models_dir, "candidate", version)
    bundle.log_event(models_dir, "trained", version, cv=cv)
    log.info("saved bundle %s", models_dir / version)
    return version
