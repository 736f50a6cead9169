"""Stage 7: has the series moved away from the one the model was trained on?

Recent histories come from the service's prediction log, or a recent stretch of the series
from a CSV/Parquet file, and are compared with the reference statistics that training
stored in the model bundle, taken from the end of the training series:

- level: the distribution of the values (PSI over the training deciles, and a two-sample KS
  test against the training sample), for a shifted level or a changed scale;
- change: the distribution of the step-to-step changes, for a changed volatility or season;
- gaps: the share of missing steps in the histories against the interpolated share in
  training;
- forecasts: PSI of the forecast values against forecasts on the training series;
- forecast errors, when actual values are known: from a file, every step of the series
  after the model's window is forecast from rolling origins; from the log, the forecasts
  are matched with the values that later requests report for the same timestamps.

A check drifts when one of the rules in the `monitoring` section of configs/params.yaml
fires. They are set so that a sample of the reference itself fires none: PSI and KS count
only when they are large *and* significant after a Bonferroni correction (a chi-squared
test on the PSI bins, since small samples inflate PSI by chance), and with fewer than
`min_rows` recent values the numbers are reported but raise no alarm.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, ks_2samp

from . import bundle, task
from .config import MonitoringParams
from .data import write_json
from .errors import DataError
from .features import FILLED, series_frame
from .predictor import Predictor

log = logging.getLogger(__name__)

DEFAULT_LOG = Path("logs/predictions.jsonl")  # where the service writes it by default
EPSILON = 1e-4  # stands in for the share of an empty bin, so that PSI stays finite


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index: the sum of (actual - expected) * ln(actual / expected)."""
    e = np.clip(np.asarray(expected, dtype=float), EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=float), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """The share of values in each bin; values beyond the outer edges count in the end bins."""
    bins = max(len(edges) - 1, 1)
    index = np.searchsorted(np.asarray(edges, dtype=float)[1:-1], values, side="right")
    counts = np.bincount(index, minlength=bins)
    return counts / max(counts.sum(), 1)


def psi_pvalue(reference: Sequence[float], recent: Sequence[float], rows: int, reference_rows: int):
    """How often sampling alone gives bins this different: a chi-squared test on the counts.

    PSI itself grows large by chance in small samples (an empty bin alone adds about 0.7), so
    it counts as drift only when this test says the difference is real."""
    table = np.array([np.asarray(reference) * reference_rows, np.asarray(recent) * rows])
    table = table[:, table.sum(axis=0) > 0]
    if rows == 0 or table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table, correction=False).pvalue)


def _psi_test(distribution: dict, rows: int, reference_rows: int) -> dict:
    reference, recent = distribution["reference"], distribution["recent"]
    return {
        "psi": psi(reference, recent),
        "psi_pvalue": psi_pvalue(reference, recent, rows, reference_rows),
    }


def _bin_labels(edges: Sequence[float]) -> list[str]:
    if len(edges) < 2:
        return [f"{edges[0]:.4g}"] if len(edges) else ["all"]
    last = len(edges) - 2
    return [
        f"[{lo:.4g}, {hi:.4g}{']' if i == last else ')'}"
        for i, (lo, hi) in enumerate(pairwise(edges))
    ]


def _distribution(labels: list[str], reference, recent) -> dict:
    return {
        "labels": labels,
        "reference": [float(v) for v in reference],
        "recent": [float(v) for v in recent],
    }


def numeric_drift(reference: dict, values: pd.Series, reference_rows: int) -> dict:
    """PSI over the training deciles and the KS test against the training sample."""
    present = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    result: dict = {"mean_reference": reference["mean"], "mean_recent": None}
    result.update(psi=None, psi_pvalue=None, ks_statistic=None, ks_pvalue=None)
    result["distribution"] = None
    if present.size == 0:
        return result
    shares = bin_shares(present, reference["edges"])
    distribution = _distribution(_bin_labels(reference["edges"]), reference["shares"], shares)
    test = ks_2samp(present, np.asarray(reference["sample"], dtype=float))
    result.update(
        _psi_test(distribution, present.size, reference_rows),
        mean_recent=float(present.mean()),
        ks_statistic=float(test.statistic),
        ks_pvalue=float(test.pvalue),
        distribution=distribution,
    )
    return result


def prediction_drift(reference: dict, outputs: Sequence, forecasts: int, reference_rows: int):
    """PSI of the forecast values against the forecasts on the training series. The steps
    of one forecast move together, so the test counts forecasts, not steps."""
    shares = bin_shares(np.asarray(outputs, dtype=float), reference["edges"])
    distribution = _distribution(_bin_labels(reference["edges"]), reference["shares"], shares)
    return {
        "kind": reference["kind"],
        **_psi_test(distribution, forecasts, reference_rows),
        "distribution": distribution,
    }


def _finite(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def performance(
    y: np.ndarray, predictions: task.Predictions, evaluation: dict, thresholds: MonitoringParams
) -> dict:
    """Every metric on forecasts with known actuals against the test-period evaluation."""
    scores = task.score(y, predictions)
    metrics = {}
    for name, value in scores.items():
        reference = _finite(evaluation["candidate"].get(name))
        recent = _finite(value)
        change = None if reference is None or recent is None else recent - reference
        metrics[name] = {"reference": reference, "recent": recent, "change": change}
    primary = evaluation["primary"]
    name = primary["metric"]
    reference, recent = metrics[name]["reference"], metrics[name]["recent"]
    drop = None
    if reference is not None and recent is not None:
        worse = (reference - recent) if primary["greater_is_better"] else (recent - reference)
        drop = worse / (abs(reference) or 1.0)
    return {
        "rows": int(y.size),
        "metrics": metrics,
        "primary": {
            "metric": name,
            "greater_is_better": primary["greater_is_better"],
            "reference": reference,
            "recent": recent,
            "relative_drop": drop,
        },
    }


def _psi_significant(result: dict, level: float, alpha: float) -> bool:
    return (
        result.get("psi") is not None
        and result["psi"] >= level
        and result["psi_pvalue_adjusted"] < alpha
    )


def _psi_reasons(result: dict, thresholds: MonitoringParams) -> list[str]:
    if not _psi_significant(result, thresholds.psi_alarm, thresholds.alpha):
        return []
    return [
        f"PSI {result['psi']:.2f} ≥ {thresholds.psi_alarm:g} "
        f"(adjusted p {result['psi_pvalue_adjusted']:.1e})"
    ]


def _feature_reasons(result: dict, thresholds: MonitoringParams) -> list[str]:
    reasons = _psi_reasons(result, thresholds)
    p_adjusted = result.get("ks_pvalue_adjusted")
    if (
        p_adjusted is not None
        and p_adjusted < thresholds.alpha
        and result["ks_statistic"] >= thresholds.ks_min_statistic
    ):
        reasons.append(f"KS distance {result['ks_statistic']:.2f}, adjusted p {p_adjusted:.1e}")
    if abs(result["missing_rate_change"]) > thresholds.max_missing_change:
        reasons.append(
            f"missing rate {result['missing_rate_reference']:.0%} → "
            f"{result['missing_rate_recent']:.0%}"
        )
    return reasons


def _status(reasons: list[str], result: dict, enough: bool, thresholds: MonitoringParams) -> str:
    if reasons:
        return "drift" if enough else "warn"
    return "warn" if _psi_significant(result, thresholds.psi_warn, thresholds.alpha) else "ok"


def compare(
    reference: dict,
    recent: dict[str, np.ndarray],
    missing_rate: float,
    outputs: Sequence,
    forecasts: int,
    thresholds: MonitoringParams,
) -> dict:
    """Recent values, their changes and the forecasts against the training reference.

    `recent` holds the values ("level") and step-to-step changes ("change"); `missing_rate`
    is the share of missing steps in the recent histories; `outputs` are the values of
    `forecasts` forecasts. Returns a result per check with
    a status (ok, warn or drift) and the reasons, and the verdict. Nothing is written."""
    rows = len(recent["level"])
    enough = rows >= thresholds.min_rows
    features = []
    for name, ref in reference["features"].items():
        result = {
            "name": name,
            "kind": "series",
            "missing_rate_reference": ref["missing_rate"],
            "missing_rate_recent": missing_rate,
            "missing_rate_change": missing_rate - ref["missing_rate"],
        }
        result.update(numeric_drift(ref, pd.Series(recent[name], dtype=float), reference["rows"]))
        features.append(result)
    predictions = prediction_drift(reference["predictions"], outputs, forecasts, reference["rows"])

    # Bonferroni: the PSI tests (checks and forecasts) are one family, the KS tests another.
    for test in ("psi", "ks"):
        family = [r for r in [*features, predictions] if r.get(f"{test}_pvalue") is not None]
        for result in family:
            result[f"{test}_pvalue_adjusted"] = min(1.0, result[f"{test}_pvalue"] * len(family))
    for result in features:
        result["reasons"] = _feature_reasons(result, thresholds)
        result["status"] = _status(result["reasons"], result, enough, thresholds)
    predictions["reasons"] = _psi_reasons(predictions, thresholds)
    predictions["status"] = _status(predictions["reasons"], predictions, enough, thresholds)
    drifted = [r["name"] for r in features if r["status"] == "drift"]
    return {
        "rows": rows,
        "enough_rows": enough,
        "thresholds": thresholds.model_dump(),
        "features": features,
        "predictions": predictions,
        "performance": None,
        "drifted": drifted,
        "drift": bool(drifted) or predictions["status"] == "drift",
    }


def add_performance(report: dict, result: dict, thresholds: MonitoringParams) -> None:
    """Attach a performance result to a report; alarm when the primary metric drops too far."""
    drop = result["primary"]["relative_drop"]
    enough = result["rows"] >= thresholds.min_rows
    result["reasons"] = []
    if drop is not None and drop > thresholds.max_metric_drop:
        primary = result["primary"]
        result["reasons"].append(
            f"{primary['metric']} {primary['reference']:.4f} → {primary['recent']:.4f} "
            f"({drop:.0%} worse, more than {thresholds.max_metric_drop:.0%})"
        )
    result["status"] = ("drift" if enough else "warn") if result["reasons"] else "ok"
    report["performance"] = result
    report["drift"] = report["drift"] or result["status"] == "drift"


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_record(line: str) -> dict:
    """One line of the service's log: the request and response bodies as they were sent."""
    record = json.loads(line)
    history, forecast = record["request"]["history"], record["response"]["forecast"]
    if len(history["timestamps"]) != len(history["values"]) or not forecast:
        raise ValueError("a history of unequal lengths or an empty forecast")
    return {
        "time": _as_utc(datetime.fromisoformat(record["time"])),
        "model_version": record["response"]["model_version"],
        "history": history,
        "horizon": len(forecast),
        "forecast": forecast,
    }


def read_log(path: Path, last: int | None = None, since: datetime | None = None) -> list[dict]:
    """Records of the service's prediction log, optionally the last N or those since a time.

    Each comes back as {"time", "model_version", "history", "horizon", "forecast"}."""
    if not path.exists():
        raise DataError(
            f"{path}: no prediction log; serve the model (`make serve`) or pass --data FILE"
        )
    records: deque[dict] = deque(maxlen=last)
    skipped = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = parse_record(line)
            except (ValueError, KeyError, TypeError):
                skipped += 1  # e.g. a line cut short while the service was writing it
                continue
            if since is None or record["time"] >= _as_utc(since):
                records.append(record)
    if skipped:
        log.warning("%s: skipped %d unreadable lines", path, skipped)
    if not records:
        window = f" since {since.isoformat()}" if since else ""
        raise DataError(f"{path}: no prediction records{window}")
    return list(records)


def read_data(path: Path) -> pd.DataFrame:
    """A recent stretch of the series from a CSV or Parquet file."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    raise DataError(f"{path}: unsupported file type {suffix!r}; valid choices: .csv, .parquet")


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


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "feature"


def figures(report: dict, figures_dir: Path, stamp: str) -> list[tuple[str, Path]]:
    """Training against recent shares for the level, the changes and the forecasts."""
    import matplotlib.pyplot as plt

    figures_dir.mkdir(parents=True, exist_ok=True)
    items = [
        (f"{r['name']} ({r['status']})", r["name"], r["distribution"])
        for r in report["features"]
        if r.get("distribution")
    ]
    items.append(("forecasts", "forecasts", report["predictions"]["distribution"]))
    written = []
    for title, name, distribution in items:
        x = np.arange(len(distribution["labels"]))
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        ax.bar(x - 0.2, distribution["reference"], width=0.4, label="training", color="tab:blue")
        ax.bar(x + 0.2, distribution["recent"], width=0.4, label="recent", color="tab:orange")
        ax.set_xticks(x, distribution["labels"], rotation=40, ha="right", fontsize=7)
        ax.set_ylabel("share of rows")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        path = figures_dir / f"{stamp}-{_slug(name)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append((title, path))
    return written


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: dict, figure_paths: list[tuple[str, Path]], reports_dir: Path) -> str:
    """The report for people: verdict, one row per check, forecasts, errors, rules."""
    t = report["thresholds"]
    source = report["source"]
    if report["drift"]:
        verdict = f"**DRIFT** — {_cell(report['summary'])}"
    elif not report["enough_rows"]:
        verdict = (
            f"**Not enough data** — {report['rows']} values, the alarms need {t['min_rows']}; "
            "the numbers below are for information only."
        )
    else:
        verdict = "**No drift** past the thresholds in configs/params.yaml."
    rows = [
        {
            "check": _cell(r["name"]),
            "kind": r["kind"],
            "status": r["status"],
            "PSI": _fmt(r.get("psi"), ".3f"),
            "PSI p (adjusted)": _fmt(r.get("psi_pvalue_adjusted"), ".2g"),
            "KS distance": _fmt(r.get("ks_statistic"), ".3f"),
            "KS p (adjusted)": _fmt(r.get("ks_pvalue_adjusted"), ".2g"),
            "missing steps (train → recent)": (
                f"{r['missing_rate_reference']:.1%} → {r['missing_rate_recent']:.1%}"
            ),
            "why": _cell("; ".join(r["reasons"])),
        }
        for r in report["features"]
    ]
    prediction = report["predictions"]
    lines = [
        f"# Drift report {report['created_at']}",
        "",
        f"Model `{report['model_version']}` against its training data. Recent data: "
        f"{report['rows']} distinct values from `{source['path']}` ({source['description']}).",
        "",
        f"Verdict: {verdict}",
        "",
        "## The series",
        "",
        pd.DataFrame(rows).to_markdown(index=False),
        "",
        "## Forecasts",
        "",
        f"PSI of the forecast values (from {report['predictions_source']}): "
        f"{prediction['psi']:.3f}, **{prediction['status']}**.",
        "",
    ]
    result = report["performance"]
    if result is not None:
        table = pd.DataFrame(
            [
                {"metric": name, "test set": m["reference"], "recent": m["recent"]}
                | {"change": m["change"]}
                for name, m in result["metrics"].items()
            ]
        ).to_markdown(index=False, floatfmt=".4f", missingval="—")
        primary = result["primary"]
        lines += [
            f"## Forecast errors on {result['rows']} steps with known actual values",
            "",
            table,
            "",
            f"Primary metric {primary['metric']}: {_fmt(primary['reference'], '.4f')} on the "
            f"test set, {_fmt(primary['recent'], '.4f')} now, **{result['status']}**"
            f"{': ' + _cell('; '.join(result['reasons'])) if result['reasons'] else '.'}",
            "",
        ]
    lines += [
        "## Alarm rules (configs/params.yaml, `monitoring`)",
        "",
        f"- Nothing alarms below {t['min_rows']} recent values.",
        f"- The level, the changes or the forecasts drift at PSI ≥ {t['psi_alarm']:g} (a "
        f"warning from {t['psi_warn']:g}), if sampling alone is unlikely to explain it: a "
        f"chi-squared p below {t['alpha']:g} after a Bonferroni correction.",
        f"- The level or the changes drift when the KS p-value, Bonferroni-corrected, is "
        f"below {t['alpha']:g} and the KS distance is at least {t['ks_min_statistic']:g}.",
        f"- Both drift when the share of missing steps moves by more than "
        f"{t['max_missing_change']:.0%} (absolute).",
        f"- With actual values, the forecast errors drift when the primary metric is more "
        f"than {t['max_metric_drop']:.0%} worse than on the test period.",
        "",
        "## Figures",
        "",
        "Shares per decile of the end of the training series, training against recent.",
        "",
        *[
            f"![{_cell(title)}]({path.relative_to(reports_dir).as_posix()})"
            for title, path in figure_paths
        ],
        "",
    ]
    return "\n".join(lines)


def _summary(report: dict) -> str:
    parts = [
        f"{r['name']}: {'; '.join(r['reasons'])}"
        for r in report["features"]
        if r["status"] == "drift"
    ]
    if report["predictions"]["status"] == "drift":
        parts.append(f"forecasts: {'; '.join(report['predictions']['reasons'])}")
    if report["performance"] and report["performance"]["status"] == "drift":
        parts.append(f"forecast errors: {'; '.join(report['performance']['reasons'])}")
    return "drift in " + " | ".join(parts) if parts else "no drift"


def _from_file(served, path: Path, last: int | None):
    """Values, changes, gaps, forecasts and errors of a recent stretch of the series."""
    series = served.metadata["features"][0]
    data = read_data(path)
    absent = [c for c in (series["timestamp"], series["name"]) if c not in data.columns]
    if absent:
        raise DataError(f"{path}: columns missing: {', '.join(absent)}")
    data = data.tail(last) if last else data
    if data.empty:
        raise DataError(f"{path}: no rows")
    target = task.TargetSpec(
        name=series["name"],
        timestamp=series["timestamp"],
        frequency=series["frequency"],
        horizon=series["horizon"],
        season_length=series["season_length"],
        max_gap=series["max_gap"],
    )
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
    dates = pd.DatetimeIndex(frame[target.timestamp])
    positions = task.season_positions(dates, target.frequency, target.season_length)
    forecasts, actuals = task.backtest(served.model, values, positions, origins, horizon)
    predictions = task.Predictions(forecasts, served.metadata["scale"])
    source = {"kind": "file", "path": str(path), "description": f"{len(data)} rows"}
    return recent, float(filled.mean()), predictions, actuals, source


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
    `report["drift"]` is the verdict."""
    served = bundle.load(bundle.resolve(models_dir, "current"))
    if data_path is not None:
        recent, missing_rate, predictions, actuals, source = _from_file(served, data_path, last)
        outputs, predictions_source = predictions.values.ravel(), "the current model"
        forecasts = len(predictions.values)
    else:
        records = read_log(log_path, last, since)
        frequency = served.metadata["features"][0]["frequency"]
        recent, missing_rate, seen = recent_values(records, frequency)
        first, final = (r["time"].isoformat(timespec="seconds") for r in (records[0], records[-1]))
        description = f"{len(records)} requests, {first} to {final}"
        source = {"kind": "log", "path": str(log_path), "description": description}
        source.update(requests=len(records), first=first, last=final)
        if {r["model_version"] for r in records} != {served.version}:
            # Logged forecasts compare with this model's reference only if it made them all.
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
            predictions_source = "the current model"
        else:
            predictions_source = "the log"
        outputs = [point["value"] for r in records for point in r["forecast"]]
        forecasts = len(records)
        actuals, realised = realised_errors(records, seen)
        predictions = task.Predictions(realised, served.metadata["scale"])
    report = compare(served.reference, recent, missing_rate, outputs, forecasts, thresholds)
    now = datetime.now(timezone.utc)
    report = {
        "created_at": now.isoformat(timespec="seconds"),
        "model_version": served.version,
        "source": source,
        "predictions_source": predictions_source,
        **report,
    }
    evaluation_path = served.path / "evaluation.json"
    if not evaluation_path.exists():
        log.warning("%s missing: forecast errors not checked", evaluation_path)
    elif actuals.size:
        evaluation = json.loads(evaluation_path.read_text(encoding="utf-8"))
        add_performance(
            report, performance(actuals, predictions, evaluation, thresholds), thresholds
        )
    report["summary"] = _summary(report)

    stamp = f"{now:%Y%m%dT%H%M%SZ}"
    reports_dir.mkdir(parents=True, exist_ok=True)
    figure_paths = figures(report, reports_dir / "figures", stamp)
    report["figures"] = [path.relative_to(reports_dir).as_posix() for _, path in figure_paths]
    write_json(reports_dir / f"{stamp}.json", report)
    shutil.copyfile(reports_dir / f"{stamp}.json", reports_dir / "latest.json")
    (reports_dir / f"{stamp}.md").write_text(
        markdown(report, figure_paths, reports_dir), encoding="utf-8"
    )
    level = logging.WARNING if report["drift"] else logging.INFO
    log.log(level, "%s; wrote %s", report["summary"], reports_dir / f"{stamp}.md")
    return report
