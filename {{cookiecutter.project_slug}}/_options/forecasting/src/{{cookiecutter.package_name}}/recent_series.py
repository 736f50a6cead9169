"""Stage 7 for a series: recent values and forecasts against the model and its training.

Recent histories come from the service's prediction log, or a stretch of the series from a
CSV/Parquet file, and are compared (by `monitor.py`) with the reference statistics that
training stored, through the series checks this type registers with `drift`:

- level: the distribution of the values (PSI over the deciles of the end of the training
  series, and a two-sample KS test against it), for a shifted level or a changed scale;
- change: the distribution of the step-to-step changes, for a changed volatility or season;
- gaps: the share of missing steps in the histories against the interpolated share in
  training;
- forecasts: PSI of the forecast values against forecasts on the training series;
- forecast intervals, when actual values are known (`interval_check`): the share of values
  outside the served model's prediction intervals against the nominal 1 - coverage, for
  every series, a one-sided binomial test; and the forecast errors (the primary metric)
  against the test evaluation.

From a file, every step after the model's window is forecast from rolling origins inside
each regular stretch of each series (a run of more than `max_gap` missing steps ends a
stretch), and the level and change checks read only the steps after the training period:
the training steps are the training distribution, and a trending series' early history
differs from its end by design. From the log, the forecasts are matched with the values
that later requests report for the same timestamps.

The sample size judged against `monitoring.min_rows` is the number of distinct recent
values; the interval check judges with fewer (see `interval_check`).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from scipy.stats import binom, norm

from . import drift_report
from .config import MonitoringParams
from .contract import Recent
from .drift_report import read_data
from .errors import CannotTell, DataError
from .forecasters import grid_steps, origin_units, season_positions
from .problem_type import PROBLEM_TYPE, Predictions, TargetSpec
from .series import Part, part_backtest, regularise
from .series_service import Predictor, history_times

INTERVALS = "forecast intervals"  # the name of the interval check in the report


def parse_record(line: str) -> dict:
    """One line of the service's log: the request and response bodies as they were sent."""
    record = json.loads(line)
    history, forecast = record["request"]["history"], record["response"]["forecast"]
    stamps, values = history["timestamps"], history["values"]
    version, series_id = record["response"]["model_version"], record["request"].get("series_id")
    if not isinstance(stamps, list) or not isinstance(values, list) or len(stamps) != len(values):
        raise ValueError("a history without timestamps and values of equal lengths")
    if not isinstance(forecast, list) or not forecast or not all(map(_is_point, forecast)):
        raise ValueError("an empty forecast, or points without a timestamp and a value")
    if not isinstance(version, str) or not isinstance(series_id, str | None):
        raise TypeError("model_version or series_id is not a string")
    return {
        "time": drift_report.as_utc(datetime.fromisoformat(record["time"])),
        "model_version": version,
        "series_id": series_id,
        "future": record["request"].get("future"),
        "history": history,
        "horizon": len(forecast),
        "forecast": forecast,
    }


def _is_point(point) -> bool:
    """Whether a logged forecast step has a timestamp and a numeric value."""
    return (
        isinstance(point, dict)
        and isinstance(point.get("timestamp"), str)
        and isinstance(point.get("value"), int | float)
    )


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


def realised(records: list[dict], actuals: dict, scales: dict, scale: float) -> pd.DataFrame:
    """Logged forecasts of timestamps that later histories report, with those values: one
    forecast per series and timestamp, the last one made (from the nearest origin), so that
    the points are close to independent. `scales`: MASE's scale of each series."""
    made = {}
    for record in records:
        for point in record["forecast"]:
            key = (record["series_id"], _stamp(point["timestamp"]))
            if key in actuals:
                made[key] = point
    return pd.DataFrame(
        [
            {
                "series": series,
                "actual": actuals[series, stamp],
                "forecast": point["value"],
                "lower": point.get("lower", np.nan),  # logs from before intervals lack them
                "upper": point.get("upper", np.nan),
                "scale": scales.get(str(series), scale),
                "recent": True,
            }
            for (series, stamp), point in made.items()
        ],
        columns=["series", "actual", "forecast", "lower", "upper", "scale", "recent"],
    )


def expected_coverage(served) -> float:
    """The coverage the served intervals reach: the nominal one, or the one-step coverage
    measured on the test period when lower (the intervals the gate accepted)."""
    nominal = served.metadata["interval"]["coverage"]
    tables = (drift_report.evaluation_of(served) or {}).get("tables", {})
    steps = next((t for name, t in tables.items() if name.startswith("Prediction interv")), [])
    return min([nominal, *(row["coverage"] for row in steps if row["steps ahead"] == "1")])


def interval_check(
    points: pd.DataFrame, values: dict, coverage: float, thresholds: MonitoringParams
) -> dict:
    """Realised values against the served model's prediction intervals, series by series
    (and all together when there are several): a one-sided binomial test of the share
    outside them against 1 - `coverage` (see `expected_coverage`), Bonferroni-corrected
    over the tests.

    `points`: one forecast step per row (series, actual, forecast, lower, upper, scale);
    `values`: how many recent values each series has. A test can judge when even all
    points outside could be significant, (1 - coverage) ** n below the corrected alpha:
    3 points at 90% intervals and alpha 0.01, where `min_rows` would ask for 100."""
    expected, alpha = 1 - coverage, thresholds.alpha
    points = points.dropna(subset=["lower", "upper"])
    points = points.assign(
        series=points["series"].map(lambda key: "the series" if key is None else str(key)),
        miss=~points["actual"].between(points["lower"], points["upper"]),
        error=(points["actual"] - points["forecast"]).abs() / points["scale"],
    )
    jumps = _jumps(points, coverage, alpha)
    groups = list(points.groupby("series", sort=True))
    groups += [("all", points)] if len(groups) > 1 else []
    tests = len(groups)
    # the fewest points whose all being outside is significant: expected ** n < alpha / tests
    fewest = math.ceil(math.log(alpha / max(tests, 1)) / math.log(expected) + 1e-9)
    rows, reasons = [], []
    for key, group in groups:
        n, k = len(group), int(group["miss"].sum())
        p = min(1.0, float(binom.sf(k - 1, n, expected)) * tests)
        far = jumps.get(key, 0)
        status = (
            "drift" if far or (n >= fewest and p < alpha) else "ok" if n >= fewest else "too few"
        )
        rows.append(
            {"series": key, "values": values.get(key, sum(values.values())), "forecasts": n}
            | {"coverage": 1 - k / n, "misses": k, "MASE": group["error"].mean()}
            | {"p (adjusted)": p, "far outside": far, "status": status}
        )
        if n >= fewest and p < alpha:
            reasons.append(
                f"{key}: {k} of {n} values outside the intervals (expected "
                f"{expected:.0%}), adjusted p {p:.1e}"
            )
        if far and key != "all":
            reasons.append(f"{key}: {far} recent values far outside the intervals (a jump)")
    most = max((row["forecasts"] for row in rows), default=0)
    return {
        "name": INTERVALS,
        "status": "drift" if reasons else "ok",
        "reasons": reasons,
        "enough": most >= fewest,
        "needs": f"the interval check needs {fewest} forecasts with known actual values in a "
        f"series, the most are {most}",
        "rule": _interval_rule(coverage, alpha, tests, fewest),
        "rows": rows,
    }


def _interval_rule(coverage: float, alpha: float, tests: int, fewest: int) -> str:
    return (
        f"A series drifts when more of its values fall outside the served model's "
        f"prediction intervals (of {coverage:.0%} coverage, nominal or on the test period if "
        f"lower) than {1 - coverage:.0%} explains: a one-sided binomial p below {alpha:g}, "
        f"Bonferroni-corrected over the {tests} tests. {fewest} one-step forecasts in a "
        "series can alarm. One recent value (after the training period) alarms alone when "
        "it lies so far outside its interval that a normal error of the interval's spread "
        f"would reach it with a probability below {alpha:g}, Bonferroni-corrected over the "
        "recent values: a jump."
    )


def _jumps(points: pd.DataFrame, coverage: float, alpha: float) -> dict[str, int]:
    """Recent values far outside their intervals, by series ("all" for every series): the
    half-width of an interval of `coverage` is that many standard errors of a normal error
    (1.64 at 90%), and a value counts when its two-sided p-value, Bonferroni-corrected over
    the recent values, is below `alpha`. A level that jumps by many times the spread shows
    on its first value, before the forecasts catch up and before any distribution test
    has enough values."""
    recent = points[points["recent"].astype(bool)]
    if recent.empty:
        return {}
    spread = (recent["upper"] - recent["lower"]) / 2 / norm.ppf((1 + coverage) / 2)
    z = (recent["actual"] - recent["forecast"]).abs() / spread.where(spread > 0)
    far = recent[2 * norm.sf(z) * len(recent) < alpha]
    counts = far["series"].value_counts().to_dict()
    return counts | ({"all": len(far)} if len(far) else {})


def served_target(series: dict) -> TargetSpec:
    """The series' part of problem.yaml as the served model was trained on it."""
    return TargetSpec(
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


def stretches(data: pd.DataFrame, target: TargetSpec) -> list[tuple[Part, np.ndarray]]:
    """The regular stretches of every series in the rows, each with its mask of
    interpolated steps: a run of more than `max_gap` missing steps (absent rows or empty
    values) ends a stretch, shorter runs are interpolated as in training. A random sample
    of the rows is so a set of short stretches, not an error."""
    rows = pd.DataFrame(
        {
            "time": PROBLEM_TYPE.timestamps(data, target),
            "value": pd.to_numeric(data[target.name], errors="coerce"),
            "series": PROBLEM_TYPE.series_ids(data, target) if target.series_column else "",
        }
    ).dropna()
    for column in target.covariates:
        rows[column] = pd.to_numeric(data[column], errors="coerce")
    offset, result = to_offset(target.frequency), []
    for key, group in rows.groupby("series", sort=True):
        group = group.sort_values("time", kind="stable")
        steps = grid_steps(pd.DatetimeIndex(group["time"]), offset)
        breaks = np.flatnonzero(np.diff(steps) > target.max_gap + 1) + 1
        for chunk in np.split(np.arange(len(group)), breaks):
            stretch = group.iloc[chunk]
            try:
                index, values, filled = regularise(
                    stretch["time"], stretch["value"], target.frequency, target.max_gap
                )
            except ValueError as exc:
                which = f" of {target.series_column} {key!r}" if key else ""
                raise DataError(f"the series {target.name!r}{which}: {exc}") from exc
            positions = season_positions(index, target.frequency, target.season_length)
            known = None
            if target.covariates:  # on the same steps, as training reads them
                known = stretch.set_index("time")[target.covariates].reindex(index)
                known = known.interpolate(limit_direction="both").to_numpy()
            result.append((Part(key or None, index, values, positions, known), filled))
    return result


def _forecasts(served, part: Part, horizon: int) -> dict:
    """Forecasts of `horizon` steps from every origin of a stretch after the model's window,
    with the actual values and the half-widths of the served intervals."""
    window = served.model.window_
    origins = np.arange(window, len(part.values) - horizon + 1)
    forecast, actual = part_backtest(served.model, part, origins, horizon)
    widths = np.asarray(served.metadata["interval"]["widths"][:horizon])
    scale = served.metadata["series"].get(str(part.key), served.metadata["scale"])
    return {
        "forecast": forecast,
        "actual": actual,
        "half": widths * origin_units(part.values, origins, window)[:, None],
        "scale": np.full(len(origins), scale),
        "series": [part.key] * len(origins),
        "dates": part.dates[origins],  # of each first forecast step
    }


def _steps_after_training(parts: list[tuple[Part, np.ndarray]], last: str) -> tuple[dict, float]:
    """The values and step-to-step changes after the training period, and their share of
    interpolated steps: what the level and change checks compare with training."""
    levels, changes, filled = [], [], []
    for part, interpolated in parts:
        after = part.dates > pd.Timestamp(last)
        levels.append(part.values[after & ~interpolated])
        changes.append(np.diff(part.values)[after[1:]])
        filled.append(interpolated[after])
    missing = np.concatenate(filled)
    values = {"level": np.concatenate(levels), "change": np.concatenate(changes)}
    return values, float(missing.mean()) if missing.size else 0.0


def from_file(served, path: Path, last: int | None) -> Recent:
    """Forecasts from every origin after the model's window inside each regular stretch of
    every series, scored against the actual values; and the values, changes and gaps of the
    steps after the training period. CannotTell when no stretch is long enough."""
    schema = served.metadata["features"][0]
    target, data = served_target(schema), read_data(path)
    columns = (*target.timestamp_columns, *target.series_columns, *target.covariates, target.name)
    absent = [c for c in columns if c not in data.columns]
    if absent:
        raise DataError(f"{path}: columns missing: {', '.join(absent)}")
    data = data.tail(last) if last else data
    if data.empty:
        raise DataError(f"{path}: no rows")
    parts = stretches(data, target)
    if not parts:
        raise DataError(f"{path}: no row has both a time and a number in {target.name!r}")
    steps = served.model.window_ + target.horizon
    made = [_forecasts(served, p, target.horizon) for p, _ in parts if len(p.values) >= steps]
    if not made:
        raise CannotTell(
            f"{path}: no stretch of a series has {steps} regular steps to forecast from (the "
            f"model's window and the horizon), the longest has "
            f"{max(len(p.values) for p, _ in parts)}: pass a longer stretch, with at most "
            f"{target.max_gap} missing steps in a row"
        )
    forecast, actual, half, scale = (
        np.concatenate([m[name] for m in made]) for name in ("forecast", "actual", "half", "scale")
    )
    series = [key for m in made for key in m["series"]]
    dates = pd.DatetimeIndex(np.concatenate([m["dates"] for m in made]))
    points = pd.DataFrame(
        {"series": series, "actual": actual[:, 0], "forecast": forecast[:, 0]}
        | {"lower": forecast[:, 0] - half[:, 0], "upper": forecast[:, 0] + half[:, 0]}
        | {"scale": scale, "recent": dates > pd.Timestamp(schema["last"])}
    )
    counts = {"the series" if p.key is None else str(p.key): len(p.values) for p, _ in parts}
    recent, missing = _steps_after_training(parts, schema["last"])
    source = {"kind": "file", "path": str(path), "description": f"{len(data)} rows"}
    return _recent(
        recent,
        missing,
        forecast.ravel().tolist(),
        len(forecast),
        source | {"predictions": "the current model"},
        (actual, Predictions(forecast, scale)),
        partial(interval_check, points, counts, expected_coverage(served)),
    )


def _recent(values, missing_rate, outputs, forecasts, source, labelled, decides) -> Recent:
    """The recent values ("level") and changes ("change") with the share of missing steps,
    the values of `forecasts` forecasts (the steps of one forecast move together, so the
    test counts forecasts), the errors where actual values are known, and the interval
    check, where they are."""
    columns = {name: pd.Series(series, dtype=float) for name, series in values.items()}
    return Recent(
        columns=columns,
        outputs=outputs,
        source=source,
        output_rows=forecasts,
        missing=dict.fromkeys(columns, missing_rate),
        labelled=labelled if labelled[0].size else None,
        decides=decides,
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
        steps = zip(made.timestamps, made.values[0], made.lower[0], made.upper[0], strict=True)
        record["forecast"] = [
            {"timestamp": stamp, "value": float(value), "lower": float(low), "upper": float(up)}
            for stamp, value, low, up in steps
        ]


def from_log(served, records: list[dict], log_path: Path) -> Recent:
    """Values, changes and gaps of the logged histories, the logged forecasts if the served
    model made them all (else its own), and their errors and interval check where later
    histories tell the actual values."""
    recent, missing_rate, seen = recent_values(records, served.metadata["features"][0])
    made_by = "the log"
    if {r["model_version"] for r in records} != {served.version}:
        _forecast_again(served, records, log_path)
        made_by = "the current model"
    outputs = [point["value"] for r in records for point in r["forecast"]]
    points = realised(records, seen, served.metadata["series"], served.metadata["scale"])
    predictions = Predictions(points[["forecast"]].to_numpy(float), points["scale"].to_numpy(float))
    labelled = (points[["actual"]].to_numpy(float), predictions)
    counts = pd.Series([series for series, _ in seen]).value_counts()
    counts.index = ["the series" if key is None else str(key) for key in counts.index]
    coverage = expected_coverage(served)
    decides = partial(interval_check, points, counts.to_dict(), coverage) if len(points) else None
    source = drift_report.log_source(log_path, records) | {"predictions": made_by}
    return _recent(recent, missing_rate, outputs, len(records), source, labelled, decides)
