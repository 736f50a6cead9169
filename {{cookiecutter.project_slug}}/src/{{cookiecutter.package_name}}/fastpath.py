"""Stage 6's fast path: the trained pipeline compiled for one-row requests.

The reference path, the scikit-learn pipeline on a DataFrame (`predictor.py`), costs
milliseconds per call, mostly fixed overhead, which would dominate a one-row request.
The fast path gives the same predictions in microseconds: the fitted preprocessing is
compiled into per-column lookups and affine maps by probing it (so it cannot drift from the
real transformers), and the estimator runs in ONNX Runtime from the bundle's model.onnx,
which training exports with `export_onnx`. The compiled path is checked against the
reference when it is built, and not used if any probe disagrees. Models with text features
have no fast path: TF-IDF is not a lookup or an affine map, so training stores no ONNX for
them and they are served by the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from .bundle import Bundle
from .features import category_text, parse_date
{%- if cookiecutter.deep_learning == "yes" %}
from .neural import NetworkEstimator
{%- endif %}
from .predictor import Row, to_frame
from .problem_type import PROBLEM_TYPE

log = logging.getLogger(__name__)

PROBE_DATES = (date(2001, 2, 3), date(2010, 11, 28), date(2024, 7, 15))
UNSEEN = "\x00unseen category\x00"


class FastPathMismatch(Exception):
    """The compiled preprocessing does not reproduce the pipeline; use the reference path."""


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
        """The estimator's input for raw feature rows, as the preprocessing would give it."""
        X = np.tile(self.base, (len(rows), 1))
        if self.scalar_names:  # numeric features with one output each, in one array operation
            x = np.array([[row.get(n) for n in self.scalar_names] for row in rows], dtype=float)
            scaled = x * self.scalar_slope + self.scalar_intercept
            X[:, self.scalar_dims] = np.where(np.isnan(x), self.scalar_missing, scaled)
        for column in self.other_columns:
            column.fill(X, [row.get(column.name) for row in rows])
        return X

    def predict(self, rows: Sequence[Row]) -> PROBLEM_TYPE.Predictions:
        """The `Predictions` of raw feature rows, as the pipeline would make them."""
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


def compile_bundle(model_bundle: Bundle) -> FastPath | None:
    """The fast path for a loaded bundle, or None where it has no ONNX model or the compiled
    path disagrees with the pipeline: the pipeline then serves."""
    if model_bundle.onnx is None:
        return None
    try:
        return FastPath(model_bundle.model, model_bundle.metadata["features"], model_bundle.onnx)
    except FastPathMismatch as exc:
        log.warning("fast path disabled, serving with scikit-learn: %s", exc)
        return None


def export_onnx(pipeline) -> bytes | None:
    """The fitted estimator (after preprocessing) as ONNX for fast serving, if it converts."""
{%- if cookiecutter.deep_learning == "yes" %}
    estimator = pipeline[-1]
    if isinstance(estimator, NetworkEstimator):
        return estimator.exported_.onnx  # exported by torch and checked when it was trained
    from skl2onnx import to_onnx
{% else %}
    from skl2onnx import to_onnx

    estimator = pipeline[-1]
{%- endif %}
    sample = np.zeros((1, estimator.n_features_in_), dtype=np.float32)
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    try:
        return to_onnx(estimator, sample, options=options).SerializeToString()
    except Exception as exc:  # skl2onnx signals unsupported models with many error types
        name = type(estimator).__name__
        log.warning("%s does not convert to ONNX (%s); serving uses scikit-learn", name, exc)
        return None
