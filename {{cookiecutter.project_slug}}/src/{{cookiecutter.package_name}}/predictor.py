"""Stage 6: raw feature rows in, predictions out.

The reference path is the trained scikit-learn pipeline on a DataFrame. It costs
milliseconds per call, mostly fixed overhead, which would dominate a one-row request.
The fast path gives the same predictions in microseconds: the fitted preprocessing is
compiled into per-column lookups and affine maps by probing it (so it cannot drift from the
real transformers), and the estimator runs in ONNX Runtime from the bundle's model.onnx.
The compiled path is checked against the reference when it is built, and not used if any
probe disagrees. Models with text features have no fast path: TF-IDF is not a lookup or an
affine map, so training stores no ONNX for them and they are served by the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model

from . import drift
from .bundle import Bundle
from .features import category_text, parse_date
from .problem_type import PROBLEM_TYPE

log = logging.getLogger(__name__)

Row = dict[str, object]
PROBE_DATES = (date(2001, 2, 3), date(2010, 11, 28), date(2024, 7, 15))
UNSEEN = "\x00unseen category\x00"
# Beyond this, scaled values overflow the float32 the model computes in; no real feature
# gets near it, so such input is an error, not an outlier.
MAX_ABS = 1e15
# Text features: longer texts are refused (reviews, tickets and messages are far shorter;
# TF-IDF cost grows with length), and so are empty or whitespace-only ones.
MAX_TEXT_CHARS = 5000


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
    parsed = parse_date(value)
    if parsed is None:
        raise ValueError("not a date: write it year first, such as 2024-01-31 or 2024/01/31")
    return parsed.date()


def _as_category(value: object) -> object:
    """A category sent as text, number or boolean, spelled as training stored it."""
    return value if value is None or isinstance(value, dict | list) else category_text(value)


DateValue = Annotated[date, BeforeValidator(_as_date)]
Category = Annotated[str, BeforeValidator(_as_category)]


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
            value_type = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS, le=MAX_ABS)]
            example[name] = round((feature["min"] + feature["max"]) / 2, 4)
            note = f"number; seen in training from {feature['min']:g} to {feature['max']:g}"
        elif kind == "categorical":
            value_type = Category
            example[name] = feature["categories"][0]
            note = (
                f"one of {', '.join(feature['categories'][:20])}"
                f"{' …' if len(feature['categories']) > 20 else ''}; "
                "other values are accepted and treated as unseen; a number or true/false is "
                "read as its text"
            )
        else:
            value_type = DateValue
            example[name] = feature["min"]
            note = (
                "date, year first (2024-01-31, 2024/01/31, optionally with a time); "
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


class FastPathMismatch(Exception):
    """The compiled preprocessing does not reproduce the pipeline; use the reference path."""


def to_frame(rows: Sequence[Row], schema: list[dict]) -> pd.DataFrame:
    """Rows as the DataFrame the pipeline was trained on: numbers as floats, categories in
    their training spelling, dates as text."""
    frame = pd.DataFrame(list(rows), columns=[f["name"] for f in schema])
    for feature in schema:
        name = feature["name"]
        if feature["kind"] == "numeric":
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
        elif feature["kind"] == "categorical":
            frame[name] = frame[name].map(category_text, na_action="ignore").astype(object)
        elif feature["kind"] == "datetime":
            frame[name] = frame[name].map(lambda v: v.isoformat() if isinstance(v, date) else v)
    return frame


def _date_parts(value: object) -> tuple[float, float, float, float] | None:
    if isinstance(value, str):
        value = parse_date(value)
    if not isinstance(value, date):
        return None
    return float(value.year), float(value.month), float(value.day), float(value.weekday())


@dataclass
class _Column:
    name: str
    kind: str
    dims: np.ndarray
    missing: np.ndarray
    slope: np.ndarray | None = None  # numeric: output = slope * x + intercept
    intercept: np.ndarray | None = None
    table: dict[str, np.ndarray] | None = None  # categorical: value -> output block
    unseen: np.ndarray | None = None

    def fill(self, X: np.ndarray, values: list) -> None:
        if self.dims.size == 0:
            return
        if self.kind == "numeric":
            x = np.array([np.nan if v is None else v for v in values], dtype=float)[:, None]
            X[:, self.dims] = np.where(np.isnan(x), self.missing, x * self.slope + self.intercept)
        elif self.kind == "categorical":
            X[:, self.dims] = [
                self.missing if v is None else self.table.get(category_text(v), self.unseen)
                for v in values
            ]
        else:
            parts = [_date_parts(v) for v in values]
            X[:, self.dims] = [self.missing if p is None else p for p in parts]


class FastPath:
    """The fitted preprocessing compiled by probing, followed by the estimator in ONNX."""

    def __init__(self, pipeline, schema: list[dict], onnx: bytes) -> None:
        import onnxruntime as ort

        self.schema = schema
        self.classes = getattr(pipeline, "classes_", None)
        self._compile(pipeline[:-1], schema)
        options = ort.SessionOptions()
        # One request is microseconds of work: a thread pool would only add hand-offs, and
        # its idle threads spin on the cores that the event loop needs.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            onnx, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        self._check(pipeline)

    def _transform(self, preprocess, rows: list[Row]) -> np.ndarray:
        return np.asarray(preprocess.transform(to_frame(rows, self.schema)), dtype=float)

    def _compile(self, preprocess, schema: list[dict]) -> None:
        probes = {f["name"]: _probe_values(f) for f in schema}
        base_row = {name: values[0] for name, values in probes.items()}
        self.base = self._transform(preprocess, [base_row])[0]
        owned = np.zeros(self.base.size, dtype=bool)
        self.columns = []
        for feature in schema:
            name, kind, values = feature["name"], feature["kind"], probes[feature["name"]]
            out = self._transform(preprocess, [{**base_row, name: v} for v in [*values, None]])
            dims = np.flatnonzero((out != out[0]).any(axis=0))
            if owned[dims].any():
                raise FastPathMismatch(f"{name}: shares output columns with another feature")
            owned[dims] = True
            column = _Column(name, kind, dims, missing=out[-1, dims])
            if kind == "numeric":
                column.intercept, column.slope = out[0, dims], out[1, dims] - out[0, dims]
                if not np.allclose(out[2, dims], 2 * column.slope + column.intercept):
                    raise FastPathMismatch(f"{name}: preprocessing is not affine")
            elif kind == "categorical":
                column.table = {str(v): out[i, dims] for i, v in enumerate(values[:-1])}
                column.unseen = out[len(values) - 1, dims]
            elif not np.allclose(out[: len(values), dims], [_date_parts(d) for d in values]):
                raise FastPathMismatch(f"{name}: date parts do not match the pipeline")
            self.columns.append(column)
        scalars = [c for c in self.columns if c.kind == "numeric" and c.dims.size == 1]
        self.other_columns = [c for c in self.columns if c not in scalars]
        self.scalar_names = [c.name for c in scalars]
        self.scalar_dims = np.array([c.dims[0] for c in scalars], dtype=int)
        self.scalar_slope = np.array([c.slope[0] for c in scalars])
        self.scalar_intercept = np.array([c.intercept[0] for c in scalars])
        self.scalar_missing = np.array([c.missing[0] for c in scalars])

    def features(self, rows: Sequence[Row]) -> np.ndarray:
        X = np.tile(self.base, (len(rows), 1))
        if self.scalar_names:  # numeric features with one output each, in one array operation
            x = np.array([[row.get(n) for n in self.scalar_names] for row in rows], dtype=float)
            scaled = x * self.scalar_slope + self.scalar_intercept
            X[:, self.scalar_dims] = np.where(np.isnan(x), self.scalar_missing, scaled)
        for column in self.other_columns:
            column.fill(X, [row.get(column.name) for row in rows])
        return X

    def predict(self, rows: Sequence[Row]) -> PROBLEM_TYPE.Predictions:
        outputs = self.session.run(None, {self.input: self.features(rows).astype(np.float32)})
        return PROBLEM_TYPE.from_onnx(outputs, self.classes)

    def _check(self, pipeline) -> None:
        """Compare with the reference on rows that mix every probe value and gaps."""
        rows = _check_rows(self.schema)
        expected = PROBLEM_TYPE.predict(pipeline, to_frame(rows, self.schema))
        if not PROBLEM_TYPE.same_predictions(self.predict(rows), expected):
            raise FastPathMismatch("compiled predictions differ from the pipeline's")


def _probe_values(feature: dict) -> list:
    if feature["kind"] == "numeric":
        return [0.0, 1.0, 2.0]
    if feature["kind"] == "categorical":
        return [*feature["categories"], UNSEEN]
    return list(PROBE_DATES)


def _check_rows(schema: list[dict], count: int = 64) -> list[Row]:
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(count):
        row = {}
        for feature in schema:
            if feature["kind"] == "numeric":
                low, high = feature["min"], feature["max"]
                row[feature["name"]] = float(rng.uniform(low, high)) if rng.random() > 0.1 else None
            else:
                values = [*_probe_values(feature), None]
                row[feature["name"]] = values[rng.integers(len(values))]
        rows.append(row)
    return rows


class Predictor:
    """The served model: the fast path when the bundle allows it, else the reference."""

    def __init__(self, model_bundle: Bundle) -> None:
        self.version = model_bundle.version
        self.metadata = model_bundle.metadata
        self.schema = model_bundle.metadata["features"]
        self.pipeline = model_bundle.model
        self.prediction_reference = drift.prediction_reference(model_bundle.reference)
        self.fast: FastPath | None = None
        if model_bundle.onnx is not None:
            try:
                self.fast = FastPath(self.pipeline, self.schema, model_bundle.onnx)
            except FastPathMismatch as exc:
                log.warning("fast path disabled, serving with scikit-learn: %s", exc)

    def reference(self, rows: Sequence[Row]) -> PROBLEM_TYPE.Predictions:
        return PROBLEM_TYPE.predict(self.pipeline, to_frame(rows, self.schema))

    def predict(self, rows: Sequence[Row]) -> PROBLEM_TYPE.Predictions:
        return self.fast.predict(rows) if self.fast else self.reference(rows)

    def predict_request(self, body: BaseModel) -> PROBLEM_TYPE.Predictions:
        """Predictions for a validated request body (see `request_model`)."""
        return self.predict([row.model_dump(by_alias=True) for row in body.instances])
