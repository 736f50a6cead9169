"""Batch scoring of series: histories in the layout of the training data in, forecasts out.

A batch file holds rows as configs/problem.yaml describes them: the timestamp, the series id
(where the model learnt from several series), the value and the covariates. Each series is
one unit: its rows are read into a request body as the API takes it (`series_service`) and
validated by the same request model, so a history is refused for the same reasons. With
covariates, the rows after the last known value are the forecast steps, and their covariates
the known future. The output has a row per series and step ahead: the series, the step, its
timestamp, the forecast and its interval. A refused series goes to the side file, once, at
its first input row.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from pydantic import ValidationError

from .batch import ROW, numbers, refusals
from .errors import DataError
from .problem_type import PROBLEM_TYPE
from .recent_series import served_target
from .series_service import request_model

COLUMNS = ["series", "step", "timestamp", "forecast", "lower", "upper"]


class SeriesScorer:
    """Forecasts for each whole series in a chunk (a chunk never splits one)."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.series = predictor.series
        self.target = served_target(self.series)
        self.request = request_model(predictor.metadata["features"], sys.maxsize)

    def body(self, rows: pd.DataFrame, key: str | None) -> dict:
        """A request body for the rows of one series, as a client of the API would send."""
        target, series = self.target, self.series
        times = PROBLEM_TYPE.timestamps(rows, target)
        rows = rows.assign(_time=times).sort_values("_time", kind="stable")
        if series["timestamp_format"] is not None and len(target.timestamp_columns) == 1:
            stamps = rows[target.timestamp_columns[0]].tolist()
        else:
            stamps = [t.isoformat() for t in rows["_time"]]
        values = numbers(rows[target.name])
        known = np.flatnonzero(values.notna().to_numpy())
        end = known[-1] + 1 if target.covariates and len(known) else len(rows)
        body = {
            "history": {"timestamps": stamps[:end], "values": values.iloc[:end].tolist()},
            "horizon": series["horizon"],
        }
        if key is not None:
            body["series_id"] = key
        if target.covariates:
            future = rows.iloc[end:]
            body["future"] = {c: numbers(future[c]).tolist() for c in target.covariates}
            body["horizon"] = max(1, min(series["horizon"], len(future)))
        return _nulls(body)

    def forecast(self, rows: pd.DataFrame, key: str | None) -> pd.DataFrame:
        """The forecast of one series; ValueError or ValidationError says why it is refused."""
        validated = self.request.model_validate(self.body(rows, key))
        predictions = self.predictor.predict_request(validated)
        steps = len(predictions.timestamps)
        return pd.DataFrame(
            {"series": [key] * steps}
            if key is not None
            else {}
            | {
                "step": np.arange(1, steps + 1),
                "timestamp": list(predictions.timestamps),
                "forecast": predictions.values[0],
                "lower": predictions.lower[0],
                "upper": predictions.upper[0],
            }
        )

    def __call__(self, chunk: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        target = self.target
        if target.series_columns:
            ids = PROBLEM_TYPE.series_ids(chunk, target)
            unnamed = chunk[ids.isna()]
            missing = refusals(
                unnamed[ROW], [target.series_column] * len(unnamed), ["no series id"] * len(unnamed)
            )
            groups = chunk[ids.notna()].groupby(ids[ids.notna()], sort=False)
        else:
            missing, groups = refusals([], [], []), [(None, chunk)]
        outputs, refused = [], [missing]
        for key, rows in groups:
            try:
                outputs.append(self.forecast(rows, key))
            except (ValidationError, ValueError, DataError) as exc:
                field, message = _reason(exc)
                which = "the series" if key is None else f"series {key!r}"
                refused.append(refusals([rows[ROW].iloc[0]], [field], [f"{which}: {message}"]))
        frames = [frame for frame in refused if not frame.empty]
        return (
            pd.concat(outputs, ignore_index=True) if outputs else pd.DataFrame(columns=COLUMNS),
            pd.concat(frames, ignore_index=True) if frames else refusals([], [], []),
        )


def _nulls(body: dict) -> dict:
    """Missing values (NaN) as null, as JSON sends them."""
    history = body["history"]
    history["values"] = [None if pd.isna(v) else v for v in history["values"]]
    if "future" in body:
        body["future"] = {
            k: [None if pd.isna(v) else v for v in vs] for k, vs in body["future"].items()
        }
    return body


def _reason(exc: Exception) -> tuple[str, str]:
    """The field and the message of the first thing wrong with a series."""
    if isinstance(exc, ValidationError):
        error = exc.errors(include_input=False, include_url=False)[0]
        return ".".join(map(str, error["loc"])), error["msg"]
    return "", str(exc)
