"""The problem-type contract: what every problem type provides to the shared stages.

`problem_type.py` holds this project's one implementation and exposes it as
`PROBLEM_TYPE`. The shared modules (config, data, cli, train, evaluate, monitor, the service)
call only the members below and never ask which type they serve. A new type subclasses
`ProblemType` (or a base for its kind of data, such as `rows.RowProblemType`), fills in the
abstract members, and overrides a default only where its data needs it.

Vocabulary:

- a *unit* is what one prediction is about: a row for tabular and text data, a forecast
  origin for a series;
- `Predictions` is the type's own frozen dataclass; `values` holds one prediction per unit
  (a label, a number, an anomaly flag, or a row of forecasts for every step ahead) and
  may carry more fields (probabilities, scores);
- `spec` is the validated `target` section of configs/problem.yaml, an instance of the
  type's `TargetSpec`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Metric:
    """A metric the gate, the report and the monitor can use."""

    greater_is_better: bool
    scorer: str  # scikit-learn scorer name for cross-validation ("" where the type backtests)
    compute: Callable[[np.ndarray, Any], float]


@dataclass(frozen=True)
class Trained:
    """What a type's stage 4 hands to the bundle: the fitted models and what to record."""

    model: Any  # the fitted candidate
    baseline: Any  # the fitted baseline
    cv: dict | None  # the candidate's scores on the training set alone; None if unscored
    schema: list[dict]  # the inputs the service accepts, the bundle's `features`
    reference: dict  # the yardstick of drift: statistics of the training data and outputs
    facts: dict = field(default_factory=dict)  # more metadata the type reads back later
    onnx: bytes | None = None  # the candidate compiled to ONNX, where it converts


@dataclass(frozen=True)
class Recent:
    """Recent data as stage 7 compares it with the bundle's training reference."""

    columns: dict[str, pd.Series]  # recent values of every feature the reference holds
    outputs: list  # the model's recent outputs, compared with its outputs on training
    source: dict  # where the data and the outputs came from, for the report
    output_rows: int | None = None  # the sample size behind `outputs`: one per output if None
    missing: dict[str, float] | None = None  # missing rates, where not the columns' own
    labelled: tuple | None = None  # the truth and the `Predictions` for it, where known
    # a type's own check of its outputs against the truth, run with the thresholds: a dict
    # with "name", "status" (ok or drift), "reasons", "enough" (whether it can judge),
    # "needs" (what it lacks, if not), "rule" and "rows" (a table for the report). It
    # alarms, and where it can judge it says "no drift", whatever `min_rows` says.
    decides: Callable[[Any], dict] | None = None


class Predictor(Protocol):
    """The served model, as `ProblemType.predictor` builds it from a loaded bundle."""

    version: str  # the bundle's version
    metadata: dict  # the bundle's metadata, shown by the model card
    prediction_reference: dict  # what `prediction_counts` compares with
    fast: Any  # the compiled fast path, or None where the model serves itself

    def predict_request(self, body: BaseModel) -> Any:
        """The `Predictions` for a request body validated by `request_model`."""


class MinTestRows(BaseModel):
    """The gate's minimum test set for most types: a number of labelled test rows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_test_rows: int = Field(30, ge=2)


class ProblemType(ABC):
    """One kind of machine-learning problem, end to end.

    Class attributes describe the choices configs/problem.yaml and params.yaml offer;
    methods turn models and data into predictions, scores and report sections.
    """

    #: the `problem_type` answer this implementation serves, e.g. "regression"
    name: ClassVar[str]
    #: help text of the service's prediction counter
    prediction_metric_help: ClassVar[str]
    #: bundled sample data sets by name (`source.name` with `source.kind: sample`)
    samples: ClassVar[dict[str, Callable[[], pd.DataFrame]]]
    #: candidate models by the name params.yaml `model.name` uses
    candidates: ClassVar[dict[str, type]]
    #: the baseline strategies params.yaml `baseline.strategy` may name
    baseline_strategies: ClassVar[tuple[str, ...]]
    #: metrics by the name problem.yaml `metric` may name
    metrics: ClassVar[dict[str, Metric]]
    #: the pydantic model of problem.yaml's `target` section
    TargetSpec: ClassVar[type[BaseModel]]
    #: the pydantic model of a /v1/predict answer, for the OpenAPI schema
    PredictResponse: ClassVar[type[BaseModel]]
    #: the frozen dataclass of a model's predictions
    Predictions: ClassVar[type]
    #: how the drift report names what it counts and compares, as fields of
    #: `drift_report.Wording` that differ from its defaults (rows, features, predictions)
    monitor_wording: ClassVar[dict[str, Any]] = {}
    #: params.yaml `gate` fields that say when the test set is too small to judge (see
    #: `too_small`): a frozen pydantic model that forbids extra keys
    GateMinimums: ClassVar[type[BaseModel]] = MinTestRows
    #: params.yaml keys this type never reads, as "section" or "section.key": loading a
    #: params.yaml that sets one is a ConfigError rather than a setting silently ignored
    unused_params: ClassVar[tuple[str, ...]] = ()

    # --- stage 2: data -------------------------------------------------------------------

    @abstractmethod
    def target_column(self, spec):
        """The target's contract as a pandera column, checked when data is validated."""

    def target_columns(self, spec) -> list[str]:
        """The columns of the data that hold the truth, each checked as `target_column`
        says: the target's, `spec.name`. A type whose labels are optional names none when
        problem.yaml gives no target column."""
        return [spec.name]

    @abstractmethod
    def resolve_features(self, raw: pd.DataFrame, problem) -> dict[str, str]:
        """The model's inputs and their kinds (numeric, categorical, datetime, text), from
        problem.yaml and the raw columns. DataError names a configured column that is missing.
        Stage 2 validates each input by its kind (`data.validate`); stage 3 models them."""

    def timestamps(self, raw: pd.DataFrame, spec) -> pd.Series | None:
        """The time of each raw row, when the type orders data in time; None otherwise."""
        return None

    # --- stage 3: features and split ------------------------------------------------------

    @abstractmethod
    def prepare(self, raw: pd.DataFrame, problem, params, processed_dir: Path) -> dict:
        """Validate and clean the raw data, split it into a training and a test set and write
        both with `data.write_processed`. Returns a summary for the log."""

    @abstractmethod
    def check_disjoint(
        self, train: pd.DataFrame, test: pd.DataFrame, features: dict, processed_dir: Path
    ) -> None:
        """Raise DataError when a test unit is also in the training set: evaluation refused."""

    # --- stage 3: exploratory report -----------------------------------------------------

    #: the feature kinds the models read, as the EDA report counts them
    feature_kinds: ClassVar[tuple[str, ...]] = ("numeric", "categorical", "text", "datetime")
    #: what the EDA report calls the target column, e.g. "label" where it is optional
    target_noun: ClassVar[str] = "target"
    #: a paragraph the EDA report adds under one of its generic sections, by its title
    eda_notes: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def eda_report(
        self,
        train: pd.DataFrame,
        features: dict[str, str],
        target: str,
        out_dir: Path,
        **notes: Any,
    ) -> Path:
        """Write `out_dir`/README.md, the exploratory report on the training set, with its
        figures in `out_dir`/figures, and return its path. `notes` are what preparation
        recorded (`tables.preparation`): the columns left out and, where the type cleans
        rows, what happened to them."""

    def eda_sections(
        self, frame: pd.DataFrame, features: dict[str, str], target: str | None, out_dir: Path
    ) -> list[str] | None:
        """Markdown sections about the target that the EDA report shows after the rows kept
        and the columns left out (figures go in `out_dir`/figures). They replace the generic
        `## Target` section and keep the target out of the correlations. None, the default:
        the generic target section."""
        return None

    # --- stage 4: models -----------------------------------------------------------------

    @abstractmethod
    def make_candidate(self, name: str, params: dict, seed: int, spec):
        """The treatment: an unfitted candidate model. ValueError names a bad parameter."""

    @abstractmethod
    def make_baseline(self, strategy: str, seed: int, spec):
        """The control: an unfitted model that ignores what the candidate learns from."""

    @abstractmethod
    def fit(
        self, train: pd.DataFrame, test: pd.DataFrame, features: dict, problem, params
    ) -> Trained:
        """Score the candidate on the training set alone (cross-validation or a backtest),
        fit it and the baseline on the whole training set, and describe what to record.
        `test` is never fitted on; a type may use its size. ConfigError names a bad
        parameter; DataError or CannotTell says why the data cannot train the models."""

    @abstractmethod
    def score_candidate(self, train: pd.DataFrame, features: dict, problem, params) -> dict | None:
        """The candidate's scores on the training set alone, as `fit` records them in
        `Trained.cv` (cross-validation or a backtest), without fitting the final models: what
        `tune` compares parameters by. None where the type has nothing to score it against."""

    @abstractmethod
    def prediction_reference(self, predictions) -> dict:
        """A JSON summary of the training predictions, the yardstick of prediction drift
        and of `prediction_counts`."""

    # --- stage 5: evaluation -------------------------------------------------------------

    @abstractmethod
    def score(self, y: np.ndarray, predictions) -> dict[str, float]:
        """Every metric in `metrics`; one that `undefined` names may be NaN here."""

    @abstractmethod
    def subset(self, predictions, index: np.ndarray):
        """The predictions of the units at `index`, for the bootstrap."""

    @abstractmethod
    def held_out(self, model_bundle, history: pd.DataFrame, period: pd.DataFrame, spec):
        """Truth, candidate predictions and baseline predictions on `period` (`history` is
        the data before it), or None when `period` lacks the columns to judge."""

    def holdout_frame(self, holdout: pd.DataFrame, spec) -> pd.DataFrame:
        """Recent labelled data, in the form `held_out` takes as its `period`."""
        return holdout

    def resampling_block(self, spec) -> int:
        """How many consecutive units the bootstrap draws together: 1 for independent units."""
        return 1

    def too_small(self, y: np.ndarray, spec, gate) -> str | None:
        """Why the test units are too few for a verdict (`gate`: params.gate), or None."""
        if len(y) < gate.min_test_rows:
            return (
                f"{len(y)} labelled test rows, the gate needs {gate.min_test_rows} "
                "(gate.min_test_rows): add data or raise split.test_size"
            )
        return None

    def no_verdict(self, y: np.ndarray, spec, gate, metric: str) -> str | None:
        """Why the test set cannot support a verdict on the primary `metric` whatever the
        scores, or None: by default, too few units (see `too_small`). A type whose labels
        are optional says so here when the test set has none (`y` is then None)."""
        return self.too_small(y, spec, gate)

    def measure(self, metric: str, y: np.ndarray, predictions) -> float | None:
        """`metric` for `predictions` against the truth `y`, as the champion and the holdout
        are compared; None where `y` holds no truth (see `no_verdict`)."""
        return self.metrics[metric].compute(y, predictions)

    def undefined(self, y: np.ndarray, predictions) -> dict[str, str]:
        """Metrics this sample cannot define, with the reason: reported so, never as NaN."""
        return {}

    def test_facts(self, spec, y: np.ndarray | None) -> dict:
        """What the report records about the test set besides its size."""
        return {}

    def describe_test(self, report: dict) -> list[str]:
        """Markdown lines about the test set besides its size."""
        return []

    def evaluation_tables(self, y: np.ndarray, candidate, baseline) -> dict[str, pd.DataFrame]:
        """Extra tables for the evaluation report, by heading."""
        return {}

    @abstractmethod
    def evaluation_figures(
        self, y: np.ndarray, candidate, baseline, history, period, spec, out_dir: Path
    ) -> list[Path]:
        """The candidate's figures on the test set, saved in `out_dir`."""

    # --- stage 6: serving ----------------------------------------------------------------

    @abstractmethod
    def request_model(self, schema: list[dict] | None, max_rows: int) -> type[BaseModel]:
        """The pydantic model of a /v1/predict body for a bundle's feature schema (None when
        the service starts without a readable bundle). Its docstring is the endpoint's
        OpenAPI description, its `examples` a valid body; it refuses more than `max_rows`
        units or steps (SERVICE_MAX_BATCH_ROWS)."""

    @abstractmethod
    def predictor(self, model_bundle) -> Predictor:
        """The served model for a loaded bundle, built once per load so that a request
        pays only for `predict_request`."""

    @abstractmethod
    def response(self, predictions, version: str) -> dict:
        """The JSON body of a /v1/predict answer; it validates against `PredictResponse`."""

    @abstractmethod
    def prediction_counts(self, predictions, reference: dict) -> dict[str, int]:
        """Predictions counted by bucket (class, decile, flag) for the service's metrics;
        `reference` is what `prediction_reference` returned at training."""

    # --- stage 6: batch scoring (batch.py) ----------------------------------------------

    @abstractmethod
    def batch_columns(self, schema: list[dict]) -> list[str]:
        """The columns a file scored by `predict` must have, for a bundle's feature schema."""

    def batch_groups(self, schema: list[dict]) -> list[str] | None:
        """The columns whose values identify a unit spanning several rows of a batch file,
        which a chunk must not split ([]: the whole file is one unit); None, the default:
        every row is a unit."""
        return None

    @abstractmethod
    def batch_scorer(self, model_bundle) -> Callable[[pd.DataFrame], tuple]:
        """For a loaded bundle, a function of a chunk of a batch file (its columns as read, text for a CSV, and
        the input row numbers in `row`) that returns the output rows of its valid units and
        the refused rows with the field and the reason (see `batch.refusals`), both with
        `row`, validated as `request_model` validates a request."""

    # --- stage 7: monitoring -------------------------------------------------------------

    @abstractmethod
    def parse_record(self, line: str) -> dict:
        """One line of the service's prediction log, with its "time" (UTC) and
        "model_version"; ValueError if the line is malformed."""

    @abstractmethod
    def recent_from_file(self, served, path: Path, last: int | None) -> Recent:
        """The recent data in a CSV or Parquet file (its last `last` rows) and the served
        bundle's outputs for it. DataError names what the file lacks."""

    @abstractmethod
    def recent_from_log(self, served, records: list[dict], log_path: Path) -> Recent:
        """The recent data in records of the prediction log (see `parse_record`) and the
        outputs the served bundle makes for it."""
