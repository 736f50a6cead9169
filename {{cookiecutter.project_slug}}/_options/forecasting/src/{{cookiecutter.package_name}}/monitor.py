"""Stage 7: has the series moved away from the one the model was trained on?

Recent histories come from the service's prediction log, or a recent stretch of the series
from a CSV/Parquet file, and are compared with the reference statistics that training
stored in the model bundle, taken from the end of the training series, through the series
checks this type registers with `drift`:

- level: the distribution of the values (PSI over the training deciles, and a two-sample KS
  test against the training sample), for a shifted level or a changed scale;
- change: the distribution of the step-to-step changes, for a changed volatility or season;
- gaps: the share of missing steps in the histories against the interpolated share in
  training;
- forecasts: PSI of the forecast values against forecasts on the training series;
- forecast errors, when actual values are known: from a file, every step of the series
  after the model's window is forecast from rolling origins; from the log, the forecasts
  are matched with the values that later requests report for the same timestamps.

The verdict is one of three: drift (exit 1), no drift (exit 0), or not enough data (exit 3)
when fewer distinct recent values than `monitoring.min_rows` arrived. Writing the report is
shared with every problem type (`drift_report`).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from . import bundle, drift, drift_report
from .config import MonitoringParams
from .drift_report import read_data
from .errors import DataError
from .forecasters import backtest, season_positions
from .predictor import Predictor
from .problem_type import Predictions, TargetSpec
from .series import FILLED, series_frame

DEFAULT_LOG = Path("logs/predictions.jsonl")  # where the service writes it by default
WORDING = drift_report.Wording(
    unit="distinct values",
    features="The series",
    feature="check",
    missing="missing steps (train → recent)",
    outputs="forecasts",
    performance="forecast errors",
    performance_title="Forecast errors on {rows} steps with known actual values",
    figures="Shares per decile of the end of the training series, training against recent.",
    every_figure=True,
    widen="widen the window with --since/--last, or pass a longer stretch with --data",
)

__all__ = ["DEFAULT_LOG", "compare", "parse_record", "read_data", "read_log", "run"]


def parse_record(line: str) -> dict:
    """One line of the service's log: the request and response bodies as they were sent."""
    record = json.loads(line)
    history, forecast = record["request"]["history"], record["response"]["forecast"]
    if len(history["timestamps"]) != len(history["values"]) or not forecast:
        raise ValueError("a history of unequal lengths or an empty forecast")
    return {
        "time": drift_report.as_utc(datetime.fromisoformat(record["time"])),
        "model_version": record["response"]["model_version"],
        "history": history,
        "horizon": len(forecast),
        "forecast": forecast,
    }


def read_log(path: Path, last: int | None = None, since: datetime | None = None) -> list[dict]:
    """Records of the service's prediction log, optionally the last N or those since a time.

    Each comes back as {"time", "model_version", "history", "horizon", "forecast"}."""
    return drift_report.read_log(path, parse_record, last, since)


def compare(
    reference: dict,
    recent: dict[str, np.ndarray],
    missing_rate: float,
    outputs,
    forecasts: int,
    thresholds: MonitoringParams,
) -> dict:
    """Recent values, their changes and the forecasts against the training reference.

    `recent` holds the values ("level") and step-to-step changes ("change"); `missing_rate`
    is the share of missing steps in the recent histories; `outputs` are the values of
    `forecasts` forecasts (the steps of one forecast move together, so the test counts
    forecasts). Returns a result per check with a status (ok, warn or drift) and the
    reasons, and the verdict. Nothing is written."""
    columns = {name: pd.Series(values, dtype=float) for name, values in recent.items()}
    missing = dict.fromkeys(columns, missing_rate)
    return drift.compare_columns(reference, columns, outputs, thresholds, forecasts, missing)


def _stamp(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def recent_values(records: list[dict], frequency: str) -> tuple[dict[str, np.ndarray], float, dict]:
    """Distinct values and step-to-step changes in the logged histories, their share of
    missing steps, and the last value seen for each timestamp (the actuals)."""
    actuals: dict[pd.Timestamp, float] = {}
    changes: dict[pd.Timestamp, float] = {}
    expected = present = 0
    for record in records:
        stamps = [_stamp(t) for t in record["history"]["timestamps"]]
        series = pd.Series(record["history"]["values"], index=stamps, dtype=float)
        grid = series.reindex(pd.date_range(stamps[0], stamps[-1], freq=frequency))
        expected, present = expected + len(grid), present + int(grid.notna().sum())
        actuals.update(series.dropna().to_dict())
        changes.update(grid.diff().dropna().to_dict())
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
        if (stamp := _stamp(point["timestamp"])) in actuals
    ]
    if not pairs:
        return np.empty((0, 1)), np.empty((0, 1))
    y, forecast = zip(*pairs, strict=True)
    return np.array(y, dtype=float)[:, None], np.array(forecast, dtype=float)[:, None]


def _from_file(served, path: Path, last: int | None):
    """Values, changes, gaps, forecasts and errors of a recent stretch of the series."""
    series = served.metadata["features"][0]
    data = read_data(path)
    target = TargetSpec(
        name=series["name"],
        timestamp=series["source_timestamp"],
        frequency=series["frequency"],
        horizon=series["horizon"],
        season_length=series["season_length"],
        max_gap=series["max_gap"],
    )
    absent = [c for c in (*target.timestamp_columns, target.name) if c not in data.columns]
    if absent:
        raise DataError(f"{path}: columns missing: {', '.join(absent)}")
    data = data.tail(last) if last else data
    if data.empty:
        raise DataError(f"{path}: no rows")
    frame = series_frame(data, target)
    values = frame[target.name].to_numpy(float)
    filled = frame[FILLED].to_numpy(bool)
    recent = {"level": values[~filled], "change": np.diff(values)}
    window, horizon = served.model.window_, target.horizon
    origins = np.arange(window, len(values) - horizon + 1)
    if len(origins) == 0:
        raise DataError(
            f"{path}: {len(values)} steps; forecasting needs at least {window + horizon} "
            f"({window} of history and a horizon of {horizon})"
        )
    dates = pd.DatetimeIndex(frame[target.time_column])
    positions = season_positions(dates, target.frequency, target.season_length)
    forecasts, actuals = backtest(served.model, values, positions, origins, horizon)
    predictions = Predictions(forecasts, served.metadata["scale"])
    source = {"kind": "file", "path": str(path), "description": f"{len(data)} rows"}
    return recent, float(filled.mean()), predictions, actuals, source


def _forecast_again(served, records: list[dict], log_path: Path) -> None:
    """Logged forecasts compare with this model's reference only if it made them all."""
    predictor, longest = Predictor(served), served.metadata["features"][0]["horizon"]
    for record in records:
        history, horizon = record["history"], min(record["horizon"], longest)
        try:
            made = predictor.forecast(history["timestamps"], history["values"], horizon)
        except ValueError as exc:
            raise DataError(
                f"{log_path}: a history logged at {record['time']} does not fit the "
                f"current model {served.version}: {exc}"
            ) from exc
        record["forecast"] = [
            {"timestamp": stamp, "value": value}
            for stamp, value in zip(made.timestamps, made.values[0].tolist(), strict=True)
        ]


def _from_log(served, log_path: Path, last: int | None, since: datetime | None):
    records = read_log(log_path, last, since)
    frequency = served.metadata["features"][0]["frequency"]
    recent, missing_rate, seen = recent_values(records, frequency)
    predictions_source = "the log"
    if {r["model_version"] for r in records} != {served.version}:
        _forecast_again(served, records, log_path)
        predictions_source = "the current model"
    outputs = [point["value"] for r in records for point in r["forecast"]]
    actuals, realised = realised_errors(records, seen)
    predictions = Predictions(realised, served.metadata["scale"])
    source = drift_report.log_source(log_path, records) | {"predictions": predictions_source}
    return (recent, missing_rate, outputs, len(records)), predictions, actuals, source


def run(
    models_dir: Path,
    reports_dir: Path,
    thresholds: MonitoringParams,
    log_path: Path = DEFAULT_LOG,
    data_path: Path | None = None,
    last: int | None = None,
    since: datetime | None = None,
) -> dict:
    """Compare recent data with the current model's reference; write the reports.

    Reads the prediction log at `log_path`, or the series in the file at `data_path` when
    given. Writes reports_dir/<UTC time>.json and .md, figures under reports_dir/figures/,
    and a copy of the JSON as reports_dir/latest.json. Returns the report;
    `report["verdict"]` is drift, no drift or not enough data."""
    served = bundle.load(bundle.resolve(models_dir, "current"))
    if data_path is not None:
        recent, missing_rate, predictions, actuals, source = _from_file(served, data_path, last)
        inputs = (recent, missing_rate, predictions.values.ravel(), len(predictions.values))
        source["predictions"] = "the current model"
    else:
        inputs, predictions, actuals, source = _from_log(served, log_path, last, since)
    comparison = compare(served.reference, *inputs, thresholds)
    labelled = (actuals, predictions) if actuals.size else None
    return drift_report.conclude(
        served, comparison, source, labelled, thresholds, reports_dir, WORDING
    )
