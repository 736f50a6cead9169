"""Stage 7 for a series: what the monitor compares with the end of the training series.

Recent histories come from the service's prediction log, or a recent stretch of the series
from a CSV/Parquet file, and are compared (by `monitor.py`) with the reference statistics
that training stored, through the series checks this type registers with `drift`:

- level: the distribution of the values (PSI over the training deciles, and a two-sample KS
  test against the training sample), for a shifted level or a changed scale;
- change: the distribution of the step-to-step changes, for a changed volatility or season;
- gaps: the share of missing steps in the histories against the interpolated share in
  training;
- forecasts: PSI of the forecast values against forecasts on the training series;
- forecast errors, when actual values are known: from a file, every step of the series
  after the model's window is forecast from rolling origins; from the log, the forecasts
  are matched with the values that later requests report for the same timestamps.

The sample size judged against `monitoring.min_rows` is the number of distinct recent values.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from . import drift_report
from .contract import Recent
from .drift_report import read_data
from .errors import DataError
from .problem_type import Predictions, TargetSpec
from .series import FILLED, part_backtest, parts, series_frame
from .series_service import Predictor, history_times


def parse_record(line: str) -> dict:
    """One line of the service's log: the request and response bodies as they were sent."""
    record = json.loads(line)
    history, forecast = record["request"]["history"], record["response"]["forecast"]
    if len(history["timestamps"]) != len(history["values"]) or not forecast:
        raise ValueError("a history of unequal lengths or an empty forecast")
    return {
        "time": drift_report.as_utc(datetime.fromisoformat(record["time"])),
        "model_version": record["response"]["model_version"],
        "series_id": record["request"].get("series_id"),
        "future": record["request"].get("future"),
        "history": history,
        "horizon": len(forecast),
        "forecast": forecast,
    }


def _stamp(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def recent_values(records: list[dict], schema: dict) -> tuple[dict[str, np.ndarray], float, dict]:
    """Distinct values and step-to-step changes in the logged histories, their share of
    missing steps, and the last value seen for each timestamp (the actuals). `schema`: the
    series' entry of the model's schema, whose timestamp format the histories use."""
    actuals: dict[tuple, float] = {}
    changes: dict[tuple, float] = {}
    expected = present = 0
    for record in records:
        stamps = history_times(record["history"]["timestamps"], schema)
        series = pd.Series(record["history"]["values"], index=stamps, dtype=float)
        grid = series.reindex(pd.date_range(stamps[0], stamps[-1], freq=schema["frequency"]))
        expected, present = expected + len(grid), present + int(grid.notna().sum())
        key = record["series_id"]
        actuals.update({(key, stamp): value for stamp, value in series.dropna().items()})
        changes.update({(key, stamp): value for stamp, value in grid.diff().dropna().items()})
    values = {
        "level": np.array(list(actuals.values())),
        "change": np.array(list(changes.values())),
    }
    return values, 1 - present / max(expected, 1), actuals


def realised_errors(records: list[dict], actuals: dict) -> tuple[np.ndarray, np.ndarray]:
    """Logged forecasts for timestamps that later histories report, with those values."""
    pairs = [
        (actuals[stamp], point["value"])
        for record in records
        for point in record["forecast"]
        if (stamp := (record["series_id"], _stamp(point["timestamp"]))) in actuals
    ]
    if not pairs:
        return np.empty((0, 1)), np.empty((0, 1))
    y, forecast = zip(*pairs, strict=True)
    return np.array(y, dtype=float)[:, None], np.array(forecast, dtype=float)[:, None]


def _recent(
    values: dict[str, np.ndarray],
    missing_rate: float,
    outputs: list,
    forecasts: int,
    source: dict,
    actuals: np.ndarray,
    predictions: Predictions,
) -> Recent:
    """The recent values ("level") and changes ("change") with the share of missing steps,
    and the values of `forecasts` forecasts (the steps of one forecast move together, so
    the test counts forecasts), and the errors where actual values are known."""
    columns = {name: pd.Series(series, dtype=float) for name, series in values.items()}
    return Recent(
        columns=columns,
        outputs=outputs,
        source=source,
        output_rows=forecasts,
        missing=dict.fromkeys(columns, missing_rate),
        labelled=(actuals, predictions) if actuals.size else None,
    )


def from_file(served, path: Path, last: int | None) -> Recent:
    """Values, changes, gaps, forecasts and errors of a recent stretch of the series: every
    step after the model's window is forecast from rolling origins, series by series."""
    series = served.metadata["features"][0]
    data = read_data(path)
    target = TargetSpec(
        name=series["name"],
        timestamp=series["source_timestamp"],
        series_id=series["series_id"],
        frequency=series["frequency"],
        horizon=series["horizon"],
        season_length=series["season_length"],
        max_gap=series["max_gap"],
        timestamp_format=series["timestamp_format"],
        covariates=series["covariates"],
    )
    columns = (*target.timestamp_columns, *target.series_columns, *target.covariates, target.name)
    absent = [c for c in columns if c not in data.columns]
    if absent:
        raise DataError(f"{path}: columns missing: {', '.join(absent)}")
    data = data.tail(last) if last else data
    if data.empty:
        raise DataError(f"{path}: no rows")
    frame = series_frame(data, target)
    filled = frame[FILLED].to_numpy(bool)
    window, horizon = served.model.window_, target.horizon
    levels, changes, forecasts, actuals, scales = [], [], [], [], []
    for part in parts(frame, target):
        levels.append(part.values)
        changes.append(np.diff(part.values))
        origins = np.arange(window, len(part.values) - horizon + 1)
        if len(origins):
            forecast, actual = part_backtest(served.model, part, origins, horizon)
            forecasts.append(forecast)
            actuals.append(actual)
            scale = served.metadata["series"].get(str(part.key), served.metadata["scale"])
            scales.append(np.full(len(origins), scale))
    if not forecasts:
        raise DataError(
            f"{path}: no series has {window + horizon} steps, enough to forecast from "
            f"({window} of history and a horizon of {horizon})"
        )
    recent = {"level": np.concatenate(levels)[~filled], "change": np.concatenate(changes)}
    forecast, actual = np.concatenate(forecasts), np.concatenate(actuals)
    source = {
        "kind": "file",
        "path": str(path),
        "description": f"{len(data)} rows",
        "predictions": "the current model",
    }
    predictions = Predictions(forecast, np.concatenate(scales))
    return _recent(
        recent,
        float(filled.mean()),
        forecast.ravel().tolist(),
        len(forecast),
        source,
        actual,
        predictions,
    )


def _forecast_again(served, records: list[dict], log_path: Path) -> None:
    """Logged forecasts compare with this model's reference only if it made them all."""
    predictor, longest = Predictor(served), served.metadata["features"][0]["horizon"]
    for record in records:
        history, horizon = record["history"], min(record["horizon"], longest)
        try:
            made = predictor.forecast(
                history["timestamps"],
                history["values"],
                horizon,
                record["series_id"],
                record["future"],
            )
        except ValueError as exc:
            raise DataError(
                f"{log_path}: a history logged at {record['time']} does not fit the "
                f"current model {served.version}: {exc}"
            ) from exc
        record["forecast"] = [
            {"timestamp": stamp, "value": value}
            for stamp, value in zip(made.timestamps, made.values[0].tolist(), strict=True)
        ]


def from_log(served, records: list[dict], log_path: Path) -> Recent:
    """Values, changes and gaps of the logged histories, the logged forecasts if the served
    model made them all (else its own), and their errors where later histories tell."""
    recent, missing_rate, seen = recent_values(records, served.metadata["features"][0])
    made_by = "the log"
    if {r["model_version"] for r in records} != {served.version}:
        _forecast_again(served, records, log_path)
        made_by = "the current model"
    outputs = [point["value"] for r in records for point in r["forecast"]]
    actuals, realised = realised_errors(records, seen)
    predictions = Predictions(realised, served.metadata["scale"])
    source = drift_report.log_source(log_path, records) | {"predictions": made_by}
    return _recent(recent, missing_rate, outputs, len(records), source, actuals, predictions)
