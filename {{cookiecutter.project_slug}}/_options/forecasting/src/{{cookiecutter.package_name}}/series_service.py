"""Stage 6: a recent history in, dated forecasts out.

A request carries the last values of the series with their timestamps and asks for up to
the trained horizon. The history is checked before the model sees it: at least the model's
window of steps, every timestamp on the frequency grid, in ascending order and unique. Short
gaps (at most `max_gap` missing steps in a row, as absent timestamps or null values) are
interpolated as in training; anything else is a 422 that says what is wrong.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from . import drift
from .bundle import Bundle
from .forecasters import season_positions, window_unit
from .problem_type import Predictions
from .series import regularise

log = logging.getLogger(__name__)

# Beyond this, values are an error, not an outlier: no real series gets near it.
MAX_ABS = 1e15
Value = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS, le=MAX_ABS)]


class History(BaseModel):
    """The recent series: timestamps (ISO 8601) and their values (null when missing)."""

    model_config = ConfigDict(extra="forbid")

    timestamps: list[datetime]
    values: list[Value | None]

    @model_validator(mode="after")
    def _same_length(self) -> History:
        if len(self.timestamps) != len(self.values):
            raise ValueError(
                f"{len(self.timestamps)} timestamps but {len(self.values)} values; "
                "give one value per timestamp"
            )
        if len({stamp.utcoffset() is None for stamp in self.timestamps}) > 1:
            raise ValueError("timestamps mix times with and without a UTC offset")
        for i, (earlier, later) in enumerate(
            zip(self.timestamps, self.timestamps[1:], strict=False)
        ):
            if later == earlier:
                raise ValueError(f"timestamps[{i + 1}] {later.isoformat()} is duplicated")
            if later < earlier:
                raise ValueError(
                    f"timestamps must ascend: timestamps[{i + 1}] {later.isoformat()} comes "
                    f"before timestamps[{i}] {earlier.isoformat()}"
                )
        return self


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
            index, _, _ = regularise(
                body.history.timestamps, body.history.values, frequency, series["max_gap"]
            )
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
        __validators__={"enough_history": model_validator(mode="after")(_enough_history)},
        **_series_field(series),
        history=(History, Field(description=f"at least {window} recent steps of the series")),
        horizon=(
            int,
            Field(horizon, ge=1, le=horizon, description=f"steps to forecast, 1 to {horizon}"),
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
        self.fast = None  # the recursive forecast has no ONNX export; scikit-learn serves it

    def forecast(self, timestamps, values, horizon: int, series_id: str | None = None):
        """The next `horizon` steps after a history, with their timestamps and intervals."""
        series = self.series
        index, filled, _ = regularise(timestamps, values, series["frequency"], series["max_gap"])
        future = pd.date_range(index[-1], periods=horizon + 1, freq=series["frequency"])[1:]
        positions = season_positions(future[:1], series["frequency"], series["season_length"])
        window = filled[None, -self.model.window_ :]
        forecast = np.asarray(self.model.forecast(window, positions, horizon), dtype=float)
        half = np.asarray(self.interval["widths"][:horizon]) * window_unit(window)[:, None]
        return Predictions(
            forecast,
            self.scales.get(series_id, self.scale),
            tuple(stamp.isoformat() for stamp in future),
            forecast - half,
            forecast + half,
            self.interval["coverage"],
            None if series_id is None else np.array([series_id], dtype=object),
        )

    def predict_request(self, body: BaseModel) -> Predictions:
        """Forecasts for a validated request body (see `request_model`)."""
        history = body.history
        series_id = getattr(body, "series_id", None)
        return self.forecast(history.timestamps, history.values, body.horizon, series_id)
