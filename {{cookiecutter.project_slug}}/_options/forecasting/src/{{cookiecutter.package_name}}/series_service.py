"""Stage 6: a recent history in, dated forecasts out.

A request carries the last values of the series with their timestamps and asks for up to
the trained horizon. The history is checked before the model sees it: at least the model's
window of steps, every timestamp on the frequency grid, in ascending order and unique. Short
gaps (at most `max_gap` missing steps in a row, as absent timestamps or null values) are
interpolated as in training; anything else is a 422 that says what is wrong.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from . import drift
from .bundle import Bundle
from .forecasters import season_positions, window_unit
from .problem_type import Predictions, parse_timestamps
from .series import regularise

log = logging.getLogger(__name__)

# Beyond this, values are an error, not an outlier: no real series gets near it.
MAX_ABS = 1e15
# Strict: numbers are JSON numbers, never text or true/false.
Value = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-MAX_ABS, le=MAX_ABS)]
Year = Annotated[int, Field(strict=True, ge=1, le=9999)]  # a year written as a number
Stamp = Annotated[str, Field(min_length=1, max_length=64)]


class History(BaseModel):
    """The recent series: timestamps written as in the training data (ISO 8601, years,
    quarters, months or the configured timestamp_format) and their values (null when
    missing)."""

    model_config = ConfigDict(extra="forbid")

    timestamps: list[Stamp | Year]
    values: list[Value | None]

    @model_validator(mode="after")
    def _same_length(self) -> History:
        if len(self.timestamps) != len(self.values):
            raise ValueError(
                f"{len(self.timestamps)} timestamps but {len(self.values)} values; "
                "give one value per timestamp"
            )
        if len({_utc_offset(stamp) is None for stamp in self.timestamps}) > 1:
            raise ValueError("timestamps mix times with and without a UTC offset")
        return self


def _utc_offset(stamp: str | int) -> timedelta | None:
    """The UTC offset an ISO 8601 time carries (Z is +00:00); None for other forms."""
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).utcoffset()
    except ValueError:
        return None


def _iso_dates(timestamps: list[str | int]) -> pd.Series | None:
    """ISO 8601 dates or times (2024-01-31, 2024-01-31T10:00+01:00), as clients mostly send
    them, read on the fast path; None if any value has another form."""
    if not all(isinstance(t, str) and len(t) >= 10 and t[4] == t[7] == "-" for t in timestamps):
        return None
    try:
        stamps = pd.to_datetime(pd.Series(timestamps), format="ISO8601", utc=True)
    except ValueError:
        return None
    return stamps.dt.tz_localize(None)


def history_times(timestamps: list[str | int], series: dict) -> pd.DatetimeIndex:
    """A history's timestamps read as training reads the series' own (`parse_timestamps`).
    Raises ValueError naming the first that is no time, duplicated or out of order."""
    written = pd.Series(timestamps, dtype=object)
    stamps = _iso_dates(timestamps) if series["timestamp_format"] is None else None
    if stamps is None:
        stamps = parse_timestamps(written, series["frequency"], series["timestamp_format"])
    unread = np.flatnonzero(stamps.isna())
    if len(unread):
        i, form = unread[0], series["timestamp_format"]
        dates = f"dates in the format {form!r}" if form else "ISO 8601 or dates pandas reads"
        raise ValueError(
            f"timestamps[{i}] {written[i]!r} is no time: write {dates}, years, quarters "
            "(1959Q1) or months (2001-03), as the training data does"
        )
    back = np.flatnonzero(stamps.diff() <= pd.Timedelta(0))
    if len(back):
        i = back[0]
        problem = (
            "is duplicated"
            if stamps[i] == stamps[i - 1]
            else f"comes before timestamps[{i - 1}] {written[i - 1]!r}: timestamps must ascend"
        )
        raise ValueError(f"timestamps[{i}] {written[i]!r} {problem}")
    return pd.DatetimeIndex(stamps)


def request_model(schema: list[dict] | None, max_rows: int) -> type[BaseModel]:
    """The body of POST /v1/predict; its docstring is the endpoint's OpenAPI description."""
    if not schema:
        return create_model(
            "PredictRequest", __config__=ConfigDict(extra="forbid"), history=(History, ...)
        )
    series = schema[0]
    window, horizon, frequency = series["min_history"], series["horizon"], series["frequency"]

    def _enough_history(body: BaseModel) -> BaseModel:
        if len(body.history.timestamps) > max_rows:
            raise ValueError(
                f"history: {len(body.history.timestamps)} steps, more than the limit {max_rows}"
            )
        try:
            stamps = history_times(body.history.timestamps, series)
            index, _, _ = regularise(stamps, body.history.values, frequency, series["max_gap"])
        except ValueError as exc:
            raise ValueError(f"history: {exc}") from None
        if len(index) < window:
            raise ValueError(
                f"history: {len(index)} steps after dropping missing values at the ends; "
                f"the model needs at least {window}"
            )
        return body

    return create_model(
        "PredictRequest",
        __config__=ConfigDict(
            extra="forbid",
            json_schema_extra={"examples": [series["example"] | {"horizon": horizon}]},
        ),
        __doc__=(
            f"Forecast up to {horizon} steps ({frequency}) of {series['name']!r} after the "
            f"last timestamp of a history of {window} to SERVICE_MAX_BATCH_ROWS steps. Runs of "
            f"up to {series['max_gap']} missing steps are interpolated."
        ),
        __validators__={
            "enough_history": model_validator(mode="after")(_enough_history),
            "known_future": model_validator(mode="after")(_known_future(series["covariates"])),
        },
        **_series_field(series),
        **_future_field(series),
        history=(History, Field(description=f"at least {window} recent steps of the series")),
        horizon=(
            int,
            Field(
                horizon,
                strict=True,
                ge=1,
                le=horizon,
                description=f"steps to forecast, 1 to {horizon}: a whole JSON number",
            ),
        ),
    )


def _series_field(series: dict) -> dict:
    """The series id field of a request, when the model learnt from several series."""
    if series["series_id"] is None:
        return {}
    columns = (
        series["series_id"] if isinstance(series["series_id"], list) else [series["series_id"]]
    )
    return {
        "series_id": (
            str,
            Field(
                min_length=1,
                max_length=200,
                description=f"the series the history belongs to: its {' / '.join(columns)}",
            ),
        )
    }


def _future_field(series: dict) -> dict:
    """The covariates' values for the forecast steps, when the model learnt from some."""
    if not series["covariates"]:
        return {}
    names = ", ".join(series["covariates"])
    description = f"the known values of {names} for each forecast step, from the first"
    return {"future": (dict[str, list[Value]], Field(description=description))}


def _known_future(covariates: list[str]):
    """A validator: the request's `future` gives every covariate the model reads, for at
    least every forecast step."""

    def check(body: BaseModel) -> BaseModel:
        future = getattr(body, "future", {})
        if set(future) != set(covariates):
            raise ValueError(
                f"future: give exactly the covariates {', '.join(covariates)}, "
                f"not {', '.join(future) or 'none'}"
            )
        for name, values in future.items():
            if len(values) < body.horizon:
                raise ValueError(
                    f"future.{name}: {len(values)} values for a horizon of {body.horizon} steps"
                )
        return body

    return check


class Predictor:
    """The served model: forecasts from a validated history."""

    def __init__(self, model_bundle: Bundle) -> None:
        self.version = model_bundle.version
        self.metadata = model_bundle.metadata
        self.series = model_bundle.metadata["features"][0]
        self.model = model_bundle.model
        self.scale = model_bundle.metadata["scale"]
        self.scales = model_bundle.metadata["series"]
        self.interval = model_bundle.metadata["interval"]
        self.prediction_reference = drift.prediction_reference(model_bundle.reference)
{%- if cookiecutter.deep_learning == "yes" %}
        # No fast path: the model's own forecast serves, the network's by its ONNX export.
        self.fast = None
{%- else %}
        self.fast = None  # the recursive forecast has no ONNX export; scikit-learn serves it
{%- endif %}

    def forecast(
        self,
        timestamps,
        values,
        horizon: int,
        series_id: str | None = None,
        future: dict[str, list[float]] | None = None,
    ) -> Predictions:
        """The next `horizon` steps after a history, with their timestamps and intervals;
        `future`: the covariates' values for the forecast steps, by name."""
        series = self.series
        stamps = history_times(timestamps, series)
        index, filled, _ = regularise(stamps, values, series["frequency"], series["max_gap"])
        ahead = pd.date_range(index[-1], periods=horizon + 1, freq=series["frequency"])[1:]
        positions = season_positions(ahead[:1], series["frequency"], series["season_length"])
        window = filled[None, -self.model.window_ :]
        known = None
        if series["covariates"]:
            known = np.array([future[name][:horizon] for name in series["covariates"]]).T[None]
        forecast = np.asarray(self.model.forecast(window, positions, horizon, known), dtype=float)
        half = np.asarray(self.interval["widths"][:horizon]) * window_unit(window)[:, None]
        return Predictions(
            forecast,
            self.scales.get(series_id, self.scale),
            tuple(stamp.isoformat() for stamp in ahead),
            forecast - half,
            forecast + half,
            self.interval["coverage"],
            None if series_id is None else np.array([series_id], dtype=object),
        )

    def predict_request(self, body: BaseModel) -> Predictions:
        """Forecasts for a validated request body (see `request_model`)."""
        history = body.history
        series_id, future = getattr(body, "series_id", None), getattr(body, "future", None)
        return self.forecast(history.timestamps, history.values, body.horizon, series_id, future)
