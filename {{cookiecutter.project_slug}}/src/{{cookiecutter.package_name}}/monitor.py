"""Stage 7: has the world moved away from the data the model was trained on?

Recent data come from the service's prediction log (with the files its rotation keeps,
oldest first), or from a CSV/Parquet file, and are
compared with the reference statistics that training stored in the model bundle, check by
check through the checks of each kind (see `drift`), and the model's outputs with its
outputs on the training data. Where the truth is known, every metric is compared with the
test-set evaluation too. What the recent data are (rows, or the values, changes and gaps
of a series) is the problem type's (`PROBLEM_TYPE.recent_from_file`, `recent_from_log`).

The verdict is one of three: drift (exit 1), no drift (exit 0), or not enough data (exit 3)
when fewer recent units than `monitoring.min_rows` arrived and no check of the type's own
(`Recent.decides`) can judge. Input that cannot be read (a missing, empty or corrupt file,
a log with no prediction record) is an error, exit 2, never a verdict. Writing the report
is shared with every problem type (`drift_report`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from . import bundle, drift, drift_report
from .config import MonitoringParams
from .contract import Recent
from .drift_report import read_data
from .problem_type import PROBLEM_TYPE

DEFAULT_LOG = Path("logs/predictions.jsonl")  # where the service writes it by default
WORDING = drift_report.Wording(**PROBLEM_TYPE.monitor_wording)

__all__ = ["DEFAULT_LOG", "compare", "read_data", "read_log", "run"]


def read_log(path: Path, last: int | None = None, since: datetime | None = None) -> list[dict]:
    """Records of the service's prediction log and its rotated files, optionally the last N
    or those since a time, each as `PROBLEM_TYPE.parse_record` reads it."""
    return drift_report.read_log(path, PROBLEM_TYPE.parse_record, last, since)


def compare(reference: dict, recent: Recent, thresholds: MonitoringParams) -> dict:
    """Recent data and model outputs against the training reference.

    Returns per-check results with a status (ok, warn or drift) and the reasons, the
    output drift, and the verdict. Nothing is written."""
    report = drift.compare_columns(
        reference, recent.columns, recent.outputs, thresholds, recent.output_rows, recent.missing
    )
    if recent.decides is not None:
        drift.decide(report, recent.decides(thresholds))
    return report


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

    Reads the prediction log at `log_path`, or the file at `data_path` when given. Writes
    reports_dir/<UTC time>.json and .md, figures under reports_dir/figures/, and a copy of
    the JSON as reports_dir/latest.json. Returns the report; `report["verdict"]` is drift,
    no drift or not enough data."""
    served = bundle.load(bundle.resolve(models_dir, "current"))
    if data_path is not None:
        recent = PROBLEM_TYPE.recent_from_file(served, data_path, last)
    else:
        recent = PROBLEM_TYPE.recent_from_log(served, read_log(log_path, last, since), log_path)
    comparison = compare(served.reference, recent, thresholds)
    return drift_report.conclude(
        served, comparison, recent.source, recent.labelled, thresholds, reports_dir, WORDING
    )
