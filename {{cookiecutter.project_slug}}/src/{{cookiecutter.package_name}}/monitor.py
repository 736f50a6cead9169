"""Stage 7: has the world moved away from the data the model was trained on?

Recent rows come from the service's prediction log, or from a CSV/Parquet file, and are
compared with the reference statistics that training stored in the model bundle, feature
by feature through the checks of its kind (see `drift`), and the model's outputs with its
outputs on the training data. When the file carries the target, every metric is compared
with the test-set evaluation too.

The verdict is one of three: drift (exit 1), no drift (exit 0), or not enough data (exit 3)
when fewer recent rows than `monitoring.min_rows` arrived. Writing the report is shared
with every problem type (`drift_report`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from . import bundle, drift, drift_report
from .config import MonitoringParams
from .drift_report import read_data
from .errors import DataError
from .predictor import to_frame
from .problem_type import PROBLEM_TYPE

DEFAULT_LOG = Path("logs/predictions.jsonl")  # where the service writes it by default
WORDING = drift_report.Wording()

__all__ = ["DEFAULT_LOG", "compare", "parse_record", "read_data", "read_log", "run"]


def parse_record(line: str) -> dict:
    """One line of the service's log: the request and response bodies as they were sent."""
    record = json.loads(line)
    request, response = record["request"], record["response"]
    inputs, outputs = request["instances"], response["predictions"]
    if not isinstance(inputs, list) or len(inputs) != len(outputs):
        raise ValueError("instances and predictions differ in length")
    return {
        "time": drift_report.as_utc(datetime.fromisoformat(record["time"])),
        "model_version": response["model_version"],
        "inputs": inputs,
        "outputs": outputs,
    }


def read_log(path: Path, last: int | None = None, since: datetime | None = None) -> list[dict]:
    """Records of the service's prediction log, optionally the last N or those since a time.

    Each comes back as {"time", "model_version", "inputs": rows, "outputs": predictions}."""
    return drift_report.read_log(path, parse_record, last, since)


def recent_frame(rows: list[dict], schema: list[dict]) -> pd.DataFrame:
    """Rows as the model's DataFrame, categories spelled as in training (3, 3.0 and "3" are
    one category), as the service reads them."""
    return to_frame(rows, schema)


def compare(
    reference: dict, frame: pd.DataFrame, outputs: Sequence, thresholds: MonitoringParams
) -> dict:
    """Recent feature rows and model outputs against the training reference.

    Returns per-feature results with a status (ok, warn or drift) and the reasons, the
    prediction drift, and the verdict. Nothing is written."""
    columns = {name: frame[name] for name in reference["features"]}
    return drift.compare_columns(reference, columns, outputs, thresholds)


def _from_file(path: Path, schema: list[dict], target: str | None, last: int | None):
    data = read_data(path)
    names = [f["name"] for f in schema]
    absent = [name for name in names if name not in data.columns]
    if absent:
        raise DataError(f"{path}: feature columns missing: {', '.join(absent)}")
    data = data.tail(last) if last else data
    if data.empty:
        raise DataError(f"{path}: no rows")
    frame = recent_frame(data[names].to_dict("records"), schema)
    labels = data[target].reset_index(drop=True) if target in data.columns else None
    source = {"kind": "file", "path": str(path), "description": f"{len(data)} rows"}
    return frame, labels, source


def _from_log(path: Path, schema: list[dict], version: str, last, since):
    records = read_log(path, last, since)
    frame = recent_frame([row for r in records for row in r["inputs"]], schema)
    # Logged outputs are comparable with this model's reference only if it made them all.
    same = {r["model_version"] for r in records} == {version}
    outputs = [o for r in records for o in r["outputs"]] if same else None
    return frame, outputs, drift_report.log_source(path, records)


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
    schema = served.metadata["features"]
    labels, outputs = None, None
    if data_path is not None:
        frame, labels, source = _from_file(data_path, schema, served.metadata["target"], last)
    else:
        frame, outputs, source = _from_log(log_path, schema, served.version, last, since)
    source["predictions"] = "the log"
    predictions = None
    if outputs is None:
        predictions = PROBLEM_TYPE.predict(served.model, frame)
        outputs = predictions.values.tolist()
        source["predictions"] = "the current model"
    comparison = compare(served.reference, frame, outputs, thresholds)
    labelled = None
    if labels is not None and labels.notna().any():
        known = labels.notna().to_numpy()
        labelled = (
            labels[known].to_numpy(),
            PROBLEM_TYPE.subset(predictions, np.flatnonzero(known)),
        )
    return drift_report.conclude(
        served, comparison, source, labelled, thresholds, reports_dir, WORDING
    )
