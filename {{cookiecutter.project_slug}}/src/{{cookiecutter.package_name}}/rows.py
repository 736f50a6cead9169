"""The base for problem types whose unit is a row judged on its own: tabular and text data.

A row type predicts each row from its features alone, splits and cross-validates by rows
(copies of a row stay together). Stage 3 is `features.py`; stage 4 is here. A row type
whose models compile to a fast path for serving says so through `onnx_model` and
`fast_path`.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import StratifiedGroupKFold

from . import drift
from .contract import ProblemType, Recent, Trained
from .errors import CannotTell, ConfigError, DataError

log = logging.getLogger(__name__)


class RowProblemType(ProblemType):
    """A problem type whose units are independent rows with a target column."""

    @abstractmethod
    def predict(self, model, X: pd.DataFrame):
        """A fitted model's `Predictions` for the rows of `X`."""

    @abstractmethod
    def plot_target(self, ax, y: pd.Series) -> None:
        """The target's distribution, drawn on a matplotlib axis for the EDA report."""

    def make_candidate(self, name: str, params: dict, seed: int, spec):
        """The treatment: the scikit-learn estimator `candidates` names, seeded where it
        takes a seed, with these parameters (ValueError names one it does not take)."""
        estimator = self.candidates[name]()
        if "random_state" in estimator.get_params():
            estimator.set_params(random_state=seed)
        return estimator.set_params(**params)

    def truth(self, rows: pd.DataFrame, spec) -> pd.Series:
        """What the models learn to predict for `rows`: their target column."""
        return rows[spec.name]

    @abstractmethod
    def strata(self, y: pd.Series) -> pd.Series | None:
        """What the train/test split stratifies on, given the `truth` of the rows (None: a
        plain shuffled split)."""

    @abstractmethod
    def cv_splitter(self, folds: int, seed: int):
        """A scikit-learn group splitter: cross-validation passes one group per distinct
        row, so copies of a row never sit on both sides of a fold."""

    def held_out(self, model_bundle, history: pd.DataFrame, period: pd.DataFrame, spec):
        """Truth and both models' predictions on the labelled rows of `period`, or None if
        it lacks the model's features or the target. Rows are judged alone: `history` is
        unused."""
        names = [f["name"] for f in model_bundle.metadata["features"]]
        if not {*names, spec.name} <= set(period.columns):
            return None
        rows = period[period[spec.name].notna()]
        y, X = rows[spec.name].to_numpy(), rows[names]
        return y, self.predict(model_bundle.model, X), self.predict(model_bundle.baseline, X)

    def onnx_model(self, pipeline, features: dict[str, str]) -> bytes | None:
        """The fitted candidate `pipeline` compiled to ONNX for the service's fast path, or
        None where the type has no fast path: the default, where the pipeline serves."""
        return None

    def fast_path(self, model_bundle):
        """The fast path built from a loaded bundle, whose `predict(rows)` gives the
        `Predictions` of raw feature rows as the pipeline would, or None where the pipeline
        serves: the default, for a type that stores no ONNX model (see `onnx_model`)."""
        return None

    # The row stages live in features.py, which imports the configuration and so this
    # module's type: they are imported when called.

    def resolve_features(self, raw: pd.DataFrame, problem) -> dict[str, str]:
        """The configured features, or every column but the target and `drop`, with kinds
        inferred where problem.yaml gives none (see `features.resolve_features`)."""
        from .features import resolve_features

        return resolve_features(raw, problem)

    def prepare(self, raw: pd.DataFrame, problem, params, processed_dir: Path) -> dict:
        """Validate, clean and split the raw rows by row identity (see `features.prepare`)."""
        from .features import prepare

        return prepare(raw, problem, params, processed_dir)

    def check_disjoint(
        self, train: pd.DataFrame, test: pd.DataFrame, features: dict, processed_dir: Path
    ) -> None:
        """Refuse a training set that holds a test row, or a copy of one."""
        from .features import check_disjoint

        check_disjoint(train, test, processed_dir)

    def eda_report(
        self, train: pd.DataFrame, features: dict[str, str], target: str, out_dir: Path, **notes
    ) -> Path:
        """Summaries and figures of every feature kind and the target (see `eda.report`)."""
        from .eda import report

        return report(train, features, target, out_dir, **notes)

    # Stage 6 serves rows from predictor.py, which imports this module's type too.

    def request_model(self, schema: list[dict] | None, max_rows: int):
        """A batch of 1 to `max_rows` rows of raw features (see `predictor.request_model`)."""
        from .predictor import request_model

        return request_model(schema, max_rows)

    def predictor(self, model_bundle):
        """The fitted pipeline, compiled to a fast path where it allows (see `predictor`)."""
        from .predictor import Predictor

        return Predictor(model_bundle)

    @abstractmethod
    def batch_outputs(self, predictions) -> dict[str, np.ndarray]:
        """The output columns of batch scoring, by name, for `Predictions` of rows."""

    def batch_columns(self, schema: list[dict]) -> list[str]:
        """Every feature the model reads."""
        return [feature["name"] for feature in schema]

    def batch_scorer(self, model_bundle):
        """Each row validated as a request row, the valid ones predicted by the pipeline a
        chunk at a time (see `batch.RowScorer`)."""
        from .batch import RowScorer

        return RowScorer(model_bundle)

    def fit(
        self, train: pd.DataFrame, test: pd.DataFrame, features: dict, problem, params
    ) -> Trained:
        """Cross-validate the candidate pipeline, then fit it and the baseline on the whole
        training set."""
        X, y = train[list(features)], self.truth(train, problem.target)
        log.info("training %s on %d rows, %d features", params.model.name, len(X), len(features))
        candidate = self._candidate(features, problem, params)
        cv = self.cross_validate(candidate, X, y, problem.metric, params)
        candidate.fit(X, y)
        baseline = self.make_baseline(params.baseline.strategy, params.split.seed, problem.target)
        baseline.fit(X, y)
        outputs = self.prediction_reference(self.predict(candidate, X))
        return Trained(
            model=candidate,
            baseline=baseline,
            cv=cv,
            schema=feature_schema(X, features),
            reference=drift.reference_statistics(X, features, outputs),
            onnx=self.onnx_model(candidate, features),
        )

    def _candidate(self, features: dict, problem, params):
        """The unfitted candidate pipeline params.yaml describes."""
        from .features import model_pipeline

        try:
            estimator = self.make_candidate(
                params.model.name, params.model.params, params.split.seed, problem.target
            )
        except ValueError as exc:
            raise ConfigError(f"params.yaml model.params: {exc}") from exc
        return model_pipeline(features, params.preprocessing, estimator)

    def score_candidate(self, train: pd.DataFrame, features: dict, problem, params) -> dict | None:
        """The candidate's cross-validation scores on the training rows, as `fit` has them."""
        X, y = train[list(features)], self.truth(train, problem.target)
        candidate = self._candidate(features, problem, params)
        return self.cross_validate(candidate, X, y, problem.metric, params)

    def cross_validate(self, pipeline, X: pd.DataFrame, y: pd.Series, metric: str, params) -> dict:
        """Score the primary metric fold by fold on the training set only, with every copy
        of a repeated row in the same fold, so no fold is scored on rows it was fitted on."""
        spec = self.metrics[metric]
        scorer = get_scorer(spec.scorer)
        sign = -1.0 if spec.scorer.startswith("neg_") else 1.0
        splitter = self.cv_splitter(params.cv.folds, params.split.seed)
        groups = cv_groups(X, y)
        _enough_for_folds(splitter, y, groups, params.cv.folds)
        scores = []
        folds = splitter.split(X, y, groups=groups)
        for fold, (fit_idx, val_idx) in enumerate(folds, start=1):
            fitted = clone(pipeline).fit(X.iloc[fit_idx], y.iloc[fit_idx])
            scores.append(sign * float(scorer(fitted, X.iloc[val_idx], y.iloc[val_idx])))
            log.info("cv fold %d/%d: %s = %.4f", fold, params.cv.folds, metric, scores[-1])
        mean, std = float(np.mean(scores)), float(np.std(scores))
        log.info("cv %s: %.4f ± %.4f", metric, mean, std)
        return {"metric": metric, "folds": scores, "mean": mean, "std": std}

    # Stage 7 reads recent rows as the service does (predictor.py and drift_report.py
    # import the configuration too: imported when called).

    def parse_record(self, line: str) -> dict:
        """One line of the service's log: the request's rows and the predictions sent back,
        as {"time", "model_version", "inputs", "outputs"}."""
        from .drift_report import as_utc

        record = json.loads(line)
        request, response = record["request"], record["response"]
        inputs, outputs = request["instances"], response["predictions"]
        version = response["model_version"]
        if not isinstance(inputs, list) or not isinstance(outputs, list):
            raise TypeError("instances or predictions are not lists")
        if len(inputs) != len(outputs):
            raise ValueError("instances and predictions differ in length")
        if not all(isinstance(row, dict) for row in inputs):
            raise TypeError("instances are not all objects")
        if not all(isinstance(value, str | int | float) for value in outputs):
            raise TypeError("predictions are not all labels or numbers")
        if not isinstance(version, str):
            raise TypeError("model_version is not a string")
        return {
            "time": as_utc(datetime.fromisoformat(record["time"])),
            "model_version": version,
            "inputs": inputs,
            "outputs": outputs,
        }

    def recent_from_file(self, served, path: Path, last: int | None) -> Recent:
        """The feature rows of a file, the current model's predictions for them, and the
        truth where the file has the target."""
        from .drift_report import read_data
        from .predictor import to_frame

        schema, target = served.metadata["features"], served.metadata["target"]
        data = read_data(path)
        names = [f["name"] for f in schema]
        absent = [name for name in names if name not in data.columns]
        if absent:
            raise DataError(f"{path}: feature columns missing: {', '.join(absent)}")
        data = data.tail(last) if last else data
        if data.empty:
            raise DataError(f"{path}: no rows")
        frame = to_frame(data[names].to_dict("records"), schema)
        predictions = self.predict(served.model, frame)
        labelled = None
        if target in data.columns and data[target].notna().any():
            known = data[target].notna().to_numpy()
            labels = data[target].to_numpy()[known]
            labelled = labels, self.subset(predictions, np.flatnonzero(known))
        return Recent(
            columns={name: frame[name] for name in drift.feature_references(served.reference)},
            outputs=predictions.values.tolist(),
            source={
                "kind": "file",
                "path": str(path),
                "description": f"{len(data)} rows",
                "predictions": "the current model",
            },
            labelled=labelled,
        )

    def recent_from_log(self, served, records: list[dict], log_path: Path) -> Recent:
        """The logged rows, categories spelled as in training, and the logged predictions if
        the served model made them all (else its own)."""
        from .drift_report import log_source
        from .predictor import to_frame

        rows = [row for record in records for row in record["inputs"]]
        frame = to_frame(rows, served.metadata["features"])
        # Logged outputs are comparable with this model's reference only if it made them all.
        if {record["model_version"] for record in records} == {served.version}:
            outputs, made_by = [o for record in records for o in record["outputs"]], "the log"
        else:
            outputs = self.predict(served.model, frame).values.tolist()
            made_by = "the current model"
        return Recent(
            columns={name: frame[name] for name in drift.feature_references(served.reference)},
            outputs=outputs,
            source=log_source(log_path, records) | {"predictions": made_by},
        )


def cv_groups(X: pd.DataFrame, y: pd.Series) -> np.ndarray:
    """One group per distinct (features, target) row: identical rows share a fold."""
    rows = pd.concat([X, y], axis=1).astype(str)
    return pd.util.hash_pandas_object(rows, index=False).to_numpy()


def _enough_for_folds(splitter, y: pd.Series, groups: np.ndarray, folds: int) -> None:
    """Too few distinct training rows (of some class, for a stratified splitter) to fill
    every fold: the scores could not be trusted, so cross-validation cannot tell (exit 3).
    Copies of a repeated row count once, since they share a fold."""
    distinct = pd.Series(y.to_numpy(), index=groups)
    distinct = distinct[~distinct.index.duplicated()]
    if isinstance(splitter, StratifiedGroupKFold):
        counts = distinct.value_counts()
        short = f"distinct rows of every class; class {counts.idxmin()!r} has {counts.min()}"
        enough = counts.min() >= folds
    else:
        short = f"distinct rows; the training set has {len(distinct)}"
        enough = len(distinct) >= folds
    if not enough:
        raise CannotTell(
            f"cross-validation in {folds} folds needs {folds} training {short}: use fewer "
            "cv.folds (at least 2) or more data"
        )


def feature_schema(X: pd.DataFrame, features: dict[str, str]) -> list[dict]:
    """Names, kinds, dtypes, categories and observed ranges: the contract the API serves."""
    from .features import parse_dates

    schema = []
    for name, kind in features.items():
        column = X[name]
        entry = {"name": name, "kind": kind, "dtype": str(column.dtype)}
        if kind == "numeric":
            entry.update(min=float(column.min()), max=float(column.max()))
        elif kind == "categorical":
            entry["categories"] = sorted(map(str, column.dropna().unique()))
        elif kind == "text":
            chars = column.dropna().str.len()
            entry.update(max_chars=int(chars.max()), median_chars=int(chars.median()))
        else:
            dates = parse_dates(column)
            entry.update(min=str(dates.min().date()), max=str(dates.max().date()))
        schema.append(entry)
    return schema
