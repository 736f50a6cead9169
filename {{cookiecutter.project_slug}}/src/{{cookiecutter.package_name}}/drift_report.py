"""Stage 7, shared by every problem type: recent data in, a drift report and a verdict out.

Reads the service's prediction log or a file of recent rows, scores labelled rows against
the test-set evaluation, and writes the report (JSON for machines, Markdown and figures for
people). The checks themselves are in `drift`; what a type reads from its log is in
`monitor`.
"""

from __future__ import annotations

import logging
import re
import shutil
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from . import drift
from .bundle import read_evaluation, write_json
from .config import MonitoringParams
from .data import read_csv
from .errors import CannotTell, DataError, DriftDetected
from .problem_type import PROBLEM_TYPE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wording:
    """How a type names the parts of its report."""

    unit: str = "rows"  # what `rows` counts
    features: str = "Features"
    feature: str = "feature"
    missing: str = "missing (train → recent)"
    outputs: str = "predictions"
    performance: str = "performance"
    performance_title: str = "Performance on {rows} labelled rows"
    figures: str = (
        "Shares per training decile (numeric), category, month or weekday (dates), or top "
        "word (text), training against recent."
    )
    every_figure: bool = False  # a figure for every check, not only those that are not ok
    widen: str = "widen the window with --since/--last or wait for more traffic"


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def log_files(path: Path) -> list[Path]:
    """The prediction log and the files rotation made of it, oldest first: `path.N` (the
    oldest kept) down to `path.1`, then `path` itself."""
    rotated = {}
    for candidate in path.parent.glob(f"{path.name}.*"):
        number = candidate.name.removeprefix(f"{path.name}.")
        if number.isdigit() and candidate.is_file():
            rotated[int(number)] = candidate
    current = [path] if path.is_file() else []
    return [rotated[number] for number in sorted(rotated, reverse=True)] + current


def _open_all(files: list[Path], stack: ExitStack) -> list[tuple[Path, TextIO]]:
    """Every file opened before any is read, so that a rotation while reading moves no
    lines out of reach. Bytes that are not UTF-8 are replaced, so that such a line fails to
    parse like any other bad line. A file gone since the listing (rotated away) is left
    out."""
    opened = []
    for file in files:
        try:
            handle = file.open(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DataError(f"{file}: cannot be read: {exc.strerror or exc}") from exc
        opened.append((file, stack.enter_context(handle)))
    return opened


def _lines(opened: list[tuple[Path, TextIO]]) -> Iterator[tuple[Path, int, str]]:
    """The lines that are not blank, with their file and line number."""
    for file, handle in opened:
        try:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield file, number, line
        except OSError as exc:
            raise DataError(f"{file}: cannot be read: {exc.strerror or exc}") from exc


def read_log(
    path: Path, parse: Callable[[str], dict], last: int | None = None, since: datetime | None = None
) -> list[dict]:
    """Records of the service's prediction log, optionally the last N or those since a time,
    read across the rotated files (`log_files`) so that a window may span a rotation.

    `parse` turns one line into a record with at least its "time", and raises ValueError,
    KeyError or TypeError on a line that is not one."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory; --log takes the prediction log file")
    records: deque[dict] = deque(maxlen=last)
    lines, skipped, problem = 0, 0, ""
    with ExitStack() as stack:
        opened = _open_all(log_files(path), stack)
        if not opened:
            raise DataError(
                f"{path}: no prediction log; serve the model (`make serve`) or pass --data FILE"
            )
        for file, number, line in _lines(opened):
            lines += 1
            try:
                record = parse(line)
            except (ValueError, KeyError, TypeError) as exc:
                skipped += 1  # e.g. a line cut short while the service was writing it
                problem = problem or f"{file.name} line {number}: {type(exc).__name__} {exc}"
                continue
            if since is None or record["time"] >= as_utc(since):
                records.append(record)
    if lines and skipped == lines:
        raise DataError(
            f"{path}: none of its {lines} lines is a prediction record of this service "
            f"(first: {problem}); pass the log the service writes, or --data FILE"
        )
    if skipped:
        log.warning("%s: skipped %d unreadable lines (first: %s)", path, skipped, problem)
    if not records:
        window = f" since {since.isoformat()}" if since else ""
        raise DataError(f"{path}: no prediction records{window}")
    return list(records)


def log_source(path: Path, records: list[dict]) -> dict:
    first, final = (r["time"].isoformat(timespec="seconds") for r in (records[0], records[-1]))
    description = f"{len(records)} requests, {first} to {final}"
    return {"kind": "log", "path": str(path), "description": description} | {
        "requests": len(records),
        "first": first,
        "last": final,
    }


def read_data(path: Path) -> pd.DataFrame:
    """Recent rows from a CSV or Parquet file; with the target column for performance."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; pass a CSV or Parquet file")
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".parquet"}:
        raise DataError(f"{path}: unsupported file type {suffix!r}; valid choices: .csv, .parquet")
    try:
        return read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (ValueError, OSError) as exc:  # empty, binary, cut short: pandas and pyarrow say why
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DataError(f"{path}: not a readable {suffix[1:]} file: {reason}") from exc


def _metric(name: str, y: np.ndarray, predictions, reference) -> dict:
    """One metric on the recent rows; "undefined" with the reason where it has no value."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # kept out of the console: the report says why
        try:
            value = drift.finite(PROBLEM_TYPE.metrics[name].compute(y, predictions))
            problem = None
        except ValueError as exc:
            value, problem = None, str(exc)
    reference = drift.finite(reference)
    entry = {"reference": reference, "recent": value}
    entry["change"] = None if reference is None or value is None else value - reference
    notes = problem or "; ".join(dict.fromkeys(str(w.message).strip() for w in caught))
    if value is not None and notes:
        entry["note"] = notes  # a value with a caveat, e.g. recall without any positive row
    if value is None:
        present = len(np.unique(y.astype(str))) if y.ndim == 1 else None
        entry["undefined"] = notes or f"not defined on these {len(y)} rows"
        if present is not None and hasattr(predictions, "classes"):
            entry["undefined"] += f" ({present} of {len(predictions.classes)} classes present)"
    return entry


def performance(y: np.ndarray, predictions, evaluation: dict) -> dict:
    """Every metric on the labelled recent rows against the test-set evaluation."""
    metrics = {
        name: _metric(name, y, predictions, evaluation["candidate"].get(name))
        for name in PROBLEM_TYPE.metrics
    }
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


def add_performance(report: dict, result: dict, thresholds: MonitoringParams) -> None:
    """Attach a performance result; alarm when the primary metric drops too far.

    Its status is undefined when the primary metric has no value on these rows."""
    drop = result["primary"]["relative_drop"]
    enough = result["rows"] >= thresholds.min_rows
    result["reasons"] = []
    if drop is not None and drop > thresholds.max_metric_drop:
        primary = result["primary"]
        result["reasons"].append(
            f"{primary['metric']} {primary['reference']:.4f} → {primary['recent']:.4f} "
            f"({drop:.0%} worse, more than {thresholds.max_metric_drop:.0%})"
        )
    result["status"] = drift.status(result["reasons"], {}, enough, thresholds)
    if result["primary"]["recent"] is None:
        result["status"] = "undefined"
    report["performance"] = result
    report["verdict"] = drift.verdict(report)
    report["drift"] = report["verdict"] == drift.DRIFT


def summary(report: dict, wording: Wording) -> str:
    """The verdict in one line: what drifted, or why there is not enough data to judge."""
    decides = report.get("decides") or {}
    if report["verdict"] == drift.NOT_ENOUGH:
        t = report["thresholds"]
        warned = [r["name"] for r in report["features"] if r["status"] == "warn"]
        hint = f"; already suspect: {', '.join(warned)}" if warned else ""
        from_file = report.get("source", {}).get("kind") == "file"
        widen = "pass a file with more recent rows (--data)" if from_file else wording.widen
        needs = f"; {decides['needs']}" if decides.get("needs") else ""
        return (
            f"not enough data: {report['rows']} {wording.unit}, alarms need {t['min_rows']} "
            f"(monitoring.min_rows){needs}; {widen}{hint}"
        )
    parts = [
        f"{r['name']}: {'; '.join(r['reasons'])}"
        for r in report["features"]
        if r["status"] == "drift"
    ]
    if report["predictions"]["status"] == "drift":
        parts.append(f"{wording.outputs}: {'; '.join(report['predictions']['reasons'])}")
    if decides.get("status") == "drift":
        parts.append(f"{decides['name']}: {'; '.join(decides['reasons'])}")
    if report["performance"] and report["performance"]["status"] == "drift":
        parts.append(f"{wording.performance}: {'; '.join(report['performance']['reasons'])}")
    return "drift in " + " | ".join(parts) if parts else "no drift"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "feature"


def figures(report: dict, figures_dir: Path, stamp: str, wording: Wording):
    """Training against recent shares for the checks not ok (or all), and for the outputs."""
    import matplotlib.pyplot as plt

    figures_dir.mkdir(parents=True, exist_ok=True)
    items = [
        (f"{r['name']} ({r['status']})", r["name"], r["distribution"])
        for r in report["features"]
        if (wording.every_figure or r["status"] != "ok") and r.get("distribution")
    ]
    items.append((wording.outputs, wording.outputs, report["predictions"]["distribution"]))
    written = []
    for title, name, shares in items:
        x = np.arange(len(shares["labels"]))
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        ax.bar(x - 0.2, shares["reference"], width=0.4, label="training", color="tab:blue")
        ax.bar(x + 0.2, shares["recent"], width=0.4, label="recent", color="tab:orange")
        ax.set_xticks(x, shares["labels"], rotation=40, ha="right", fontsize=7)
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


def _unseen(result: dict) -> str:
    for key in ("unseen_share", "oov_rate_recent", "outside_share"):
        if result.get(key) is not None:
            return format(result[key], ".1%")
    return "—"


def _feature_rows(report: dict, wording: Wording) -> str:
    rows = [
        {
            wording.feature: _cell(r["name"]),
            "kind": r["kind"],
            "status": r["status"],
            "PSI": _fmt(r.get("psi"), ".3f"),
            "PSI p (adjusted)": _fmt(r.get("psi_pvalue_adjusted"), ".2g"),
            "KS distance": _fmt(r.get("ks_statistic"), ".3f"),
            "KS p (adjusted)": _fmt(r.get("ks_pvalue_adjusted"), ".2g"),
            wording.missing: (
                f"{r['missing_rate_reference']:.1%} → {r['missing_rate_recent']:.1%}"
            ),
            "unseen / outside": _unseen(r),
            "why": _cell("; ".join(r["reasons"])),
        }
        for r in report["features"]
    ]
    return pd.DataFrame(rows).to_markdown(index=False)


def _verdict_line(report: dict) -> str:
    if report["verdict"] == drift.DRIFT:
        return f"**DRIFT** (exit 1) — {_cell(report['summary'])}"
    if report["verdict"] == drift.NOT_ENOUGH:
        return (
            f"**Not enough data** (exit 3) — {_cell(report['summary']).split(': ', 1)[-1]}. "
            "The numbers below are for information only."
        )
    return "**No drift** (exit 0) past the thresholds in configs/params.yaml."


def _performance_lines(result: dict, wording: Wording) -> list[str]:
    def shown(metric: dict) -> str:
        return "undefined" if "undefined" in metric else _fmt(metric["recent"], ".4f")

    table = pd.DataFrame(
        [
            {"metric": name, "test set": _fmt(m["reference"], ".4f"), "recent": shown(m)}
            | {"change": _fmt(m["change"], "+.4f")}
            for name, m in result["metrics"].items()
        ]
    ).to_markdown(index=False, disable_numparse=True)
    undefined = [
        f"- {name} is undefined: {_cell(m['undefined'])}."
        if "undefined" in m
        else f"- {name}: {_cell(m['note'])}"
        for name, m in result["metrics"].items()
        if "undefined" in m or "note" in m
    ]
    primary = result["primary"]
    why = f": {_cell('; '.join(result['reasons']))}" if result["reasons"] else "."
    return [
        f"## {wording.performance_title.format(rows=result['rows'])}",
        "",
        table,
        "",
        *undefined,
        *([""] if undefined else []),
        f"Primary metric {primary['metric']}: {_fmt(primary['reference'], '.4f')} on the "
        f"test set, {_fmt(primary['recent'], '.4f')} now, **{result['status']}**{why}",
        "",
    ]


def _decides_lines(check: dict) -> list[str]:
    why = f": {_cell('; '.join(check['reasons']))}" if check["reasons"] else "."
    table = pd.DataFrame(check["rows"]).to_markdown(index=False, floatfmt=".3g")
    return [
        f"## {check['name'].capitalize()}",
        "",
        check["rule"],
        "",
        table,
        "",
        f"**{check['status']}**{why}",
        "",
    ]


def _rule_lines(report: dict, wording: Wording) -> list[str]:
    t = report["thresholds"]
    return [
        "## Alarm rules (configs/params.yaml, `monitoring`)",
        "",
        f"- Below {t['min_rows']} recent {wording.unit} nothing alarms: the verdict is "
        '"not enough data" (exit 3), and what would alarm shows as a warning.',
        f"- A {wording.feature} or the {wording.outputs} drift at PSI ≥ {t['psi_alarm']:g} (a "
        f"warning from {t['psi_warn']:g}), if sampling alone is unlikely to explain it: a "
        f"chi-squared p below {t['alpha']:g} after a Bonferroni correction.",
        *[f"- {rule}" for rule in drift.rules(report)],
        f"- Any {wording.feature} drifts when its missing rate moves by more than "
        f"{t['max_missing_change']:.0%} (absolute).",
        f"- With known outcomes, the check of {wording.performance} alarms when the primary "
        f"metric is more than {t['max_metric_drop']:.0%} worse than on the test set.",
        "",
    ]


def markdown(report: dict, figure_paths, reports_dir: Path, wording: Wording) -> str:
    """The report for people: verdict, one row per check, outputs, performance, rules."""
    source, prediction = report["source"], report["predictions"]
    lines = [
        f"# Drift report {report['created_at']}",
        "",
        f"Model `{report['model_version']}` against its training data. Recent data: "
        f"{report['rows']} {wording.unit} from `{source['path']}` ({source['description']}).",
        "",
        f"Verdict: {_verdict_line(report)}",
        "",
        f"## {wording.features}",
        "",
        _feature_rows(report, wording),
        "",
        f"## {wording.outputs.capitalize()}",
        "",
        f"PSI of the {wording.outputs} ({prediction['kind']}, from "
        f"{report['predictions_source']}): {prediction['psi']:.3f}, **{prediction['status']}**.",
        "",
    ]
    if report.get("decides"):
        lines += _decides_lines(report["decides"])
    if report["performance"] is not None:
        lines += _performance_lines(report["performance"], wording)
    lines += _rule_lines(report, wording)
    lines += ["## Figures", "", wording.figures, ""]
    lines += [
        f"![{_cell(title)}]({path.relative_to(reports_dir).as_posix()})"
        for title, path in figure_paths
    ]
    return "\n".join([*lines, ""])


def write(report: dict, reports_dir: Path, now: datetime, wording: Wording) -> None:
    """reports_dir/<UTC time>.json and .md, the figures, and latest.json, a copy of the JSON."""
    stamp = f"{now:%Y%m%dT%H%M%SZ}"
    reports_dir.mkdir(parents=True, exist_ok=True)
    figure_paths = figures(report, reports_dir / "figures", stamp, wording)
    report["figures"] = [path.relative_to(reports_dir).as_posix() for _, path in figure_paths]
    write_json(reports_dir / f"{stamp}.json", report)
    shutil.copyfile(reports_dir / f"{stamp}.json", reports_dir / "latest.json")
    (reports_dir / f"{stamp}.md").write_text(
        markdown(report, figure_paths, reports_dir, wording), encoding="utf-8"
    )
    level = logging.INFO if report["verdict"] == drift.NO_DRIFT else logging.WARNING
    log.log(level, "%s; wrote %s", report["summary"], reports_dir / f"{stamp}.md")


def conclude(
    served,
    comparison: dict,
    source: dict,
    labelled: tuple | None,
    thresholds: MonitoringParams,
    reports_dir: Path,
    wording: Wording,
) -> dict:
    """The report of one run: the comparison, performance on the labelled rows if any
    (`labelled` is (y, predictions)), the verdict in one line; written to reports_dir."""
    now = datetime.now(timezone.utc)
    report = {
        "created_at": now.isoformat(timespec="seconds"),
        "model_version": served.version,
        "source": {key: value for key, value in source.items() if key != "predictions"},
        "predictions_source": source["predictions"],
        **comparison,
    }
    evaluation = evaluation_of(served) if labelled is not None else None
    if evaluation is not None:
        add_performance(report, performance(*labelled, evaluation), thresholds)
    report["summary"] = summary(report, wording)
    write(report, reports_dir, now, wording)
    return report


def raise_verdict(report: dict) -> None:
    """Exit codes for the command line: DriftDetected (1), CannotTell (3), else 0."""
    if report["verdict"] == drift.DRIFT:
        raise DriftDetected(report["summary"])
    if report["verdict"] == drift.NOT_ENOUGH:
        raise CannotTell(report["summary"])


def evaluation_of(served) -> dict | None:
    """The served bundle's test-set evaluation, the yardstick for recent performance."""
    report = read_evaluation(served.path)
    if report is None:
        log.warning("%s has no signed evaluation: performance not checked", served.path)
    return report
