"""Stage 6: raw feature rows in, predictions out.

The reference path is the trained scikit-learn pipeline on a DataFrame. Where the problem
type compiles its models (`RowProblemType.fast_path`), a compiled fast path gives the same
predictions in microseconds and serves instead; it is checked against the reference path
when it is built, and the reference path serves whenever there is none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Annotated, Any

import pandas as pd
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model

from . import drift
from .bundle import Bundle
from .features import category_text, parse_date
from .problem_type import PROBLEM_TYPE

Row = dict[str, object]
# Beyond this, scaled values overflow the float32 the model computes in; no real feature
# gets near it, so such input is an error, not an outlier.
MAX_ABS = 1e15
# Text features: longer texts are refused (reviews, tickets and messages are far shorter;
# TF-IDF cost grows with length), and so are empty or whitespace-only ones.
MAX_TEXT_CHARS = 5000
# Categories: up to 4 times the longest seen in training, and never less than this.
MIN_CATEGORY_CHARS = 256
MAX_DATE_CHARS = 64


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty or whitespace only")
    return text


Text = Annotated[
    str,
    Field(max_length=MAX_TEXT_CHARS, json_schema_extra={"pattern": r"\S"}),
    AfterValidator(_not_blank),
]


def _as_date(value: object) -> object:
    """A date in any form that training reads (`features.parse_dates`), as a date."""
    if not isinstance(value, str):
        return value
    if len(value) > MAX_DATE_CHARS:
        raise ValueError(f"a date has at most {MAX_DATE_CHARS} characters")
    parsed = parse_date(value)
    if parsed is None:
        raise ValueError("not a date: write it year first, such as 2024-01-31 or 2024/01/31")
    return parsed.date()


def _as_category(value: object) -> object:
    """A category sent as text, number or boolean, spelled as training stored it."""
    return value if value is None or isinstance(value, dict | list) else category_text(value)


DateValue = Annotated[
    date, BeforeValidator(_as_date), Field(json_schema_extra={"maxLength": MAX_DATE_CHARS})
]
# Strict: a number is a JSON number, never text or true/false.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-MAX_ABS, le=MAX_ABS)]


def category_chars(categories: list[str]) -> int:
    """The longest category a request may send for a feature with these categories."""
    return max(MIN_CATEGORY_CHARS, 4 * max(map(len, categories), default=0))


def row_model(schema: list[dict]) -> type[BaseModel]:
    """One request row: every feature required (null means missing, except for text),
    nothing else allowed."""
    fields: dict[str, Any] = {}
    example: dict[str, Any] = {}
    for i, feature in enumerate(schema):
        name, kind = feature["name"], feature["kind"]
        if kind == "text":
            example[name] = "Free text as it arrives, such as a review or a message."
            note = (
                f"free text, 1 to {MAX_TEXT_CHARS} characters, not blank; "
                f"training texts had up to {feature['max_chars']}"
            )
            fields[f"f{i}"] = (Text, Field(..., alias=name, description=note))
            continue
        if kind == "numeric":
            value_type = Number
            example[name] = round((feature["min"] + feature["max"]) / 2, 4)
            note = (
                "a JSON number, not text or true/false; "
                f"seen in training from {feature['min']:g} to {feature['max']:g}"
            )
        elif kind == "categorical":
            longest = category_chars(feature["categories"])
            value_type = Annotated[str, BeforeValidator(_as_category), Field(max_length=longest)]
            example[name] = feature["categories"][0]
            note = (
                f"one of {', '.join(feature['categories'][:20])}"
                f"{' …' if len(feature['categories']) > 20 else ''}; "
                f"other values of up to {longest} characters are accepted and treated as "
                "unseen; a number or true/false is read as its text, as training read the CSV"
            )
        else:
            value_type = DateValue
            example[name] = feature["min"]
            note = (
                "date, year first (2024-01-31, 2024/01/31, optionally with a time), up to "
                f"{MAX_DATE_CHARS} characters; "
                f"seen in training from {feature['min']} to {feature['max']}"
            )
        fields[f"f{i}"] = (
            value_type | None,
            Field(..., alias=name, description=f"{note}; null when missing"),
        )
    return create_model(
        "Row",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [example]}),
        **fields,
    )


def request_model(schema: list[dict] | None, max_rows: int) -> type[BaseModel]:
    """The body of POST /v1/predict; its docstring is the endpoint's OpenAPI description,
    and its example a request for the one example row."""
    if not schema:
        Row, extra = dict[str, Any], None
    else:
        Row = row_model(schema)
        extra = {"examples": [{"instances": Row.model_config["json_schema_extra"]["examples"]}]}
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid", json_schema_extra=extra),
        __doc__="Predict for 1 to SERVICE_MAX_BATCH_ROWS rows of raw features.",
        instances=(list[Row], Field(min_length=1, max_length=max_rows)),
    )


def to_frame(rows: Sequence[Row] | Mapping[str, list], schema: list[dict]) -> pd.DataFrame:
    """Rows, or columns by name, as the DataFrame the pipeline was trained on: numbers as
    floats, categories in their training spelling, dates as text."""
    columns = [f["name"] for f in schema]
    frame = pd.DataFrame(rows if isinstance(rows, Mapping) else list(rows), columns=columns)
    for feature in schema:
        name = feature["name"]
        if feature["kind"] == "numeric":
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
        elif feature["kind"] == "categorical":
            frame[name] = frame[name].map(category_text, na_action="ignore").astype(object)
        elif feature["kind"] == "datetime":
            frame[name] = frame[name].map(lambda v: v.isoformat() if isinstance(v, date) else v)
    return frame


class Predictor:
    """The served model: the type's fast path where it builds one, else the reference."""

    def __init__(self, model_bundle: Bundle) -> None:
        self.version = model_bundle.version
        self.metadata = model_bundle.metadata
        self.schema = model_bundle.metadata["features"]
        self.pipeline = model_bundle.model
        self.prediction_reference = drift.prediction_reference(model_bundle.reference)
        self.fast = PROBLEM_TYPE.fast_path(model_bundle)

    def reference(self, rows: Sequence[Row]) -> PROBLEM_TYPE.Predictions:
        return PROBLEM_TYPE.predict(self.pipeline, to_frame(rows, self.schema))

    def predict(self, rows: Sequence[Row]) -> PROBLEM_TYPE.Predictions:
        return self.fast.predict(rows) if self.fast else self.reference(rows)

    def predict_request(self, body: BaseModel) -> PROBLEM_TYPE.Predictions:
        """Predictions for a validated request body (see `request_model`)."""
        return self.predict([row.model_dump(by_alias=True) for row in body.instances])
