"""The base for problem types that give each row a label: classes of tabular rows or of texts.

A label type predicts one class per row with a probability for every class, is judged
against a scikit-learn `DummyClassifier`, splits and cross-validates stratified on the
label, and reports per-class precision and recall beside a confusion matrix.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    accuracy_score,
    balanced_accuracy_score,
    log_loss,
    precision_recall_fscore_support,
)

from .contract import Metric
from .rows import RowProblemType


class LabelTargetSpec(BaseModel):
    """The `target` section of configs/problem.yaml: the label column and, optionally, every
    label it may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    labels: list[str | int] | None = None


@dataclass(frozen=True)
class Predictions:
    """What a model says about a set of rows: a label each, and each class's probability."""

    values: np.ndarray
    proba: np.ndarray
    classes: np.ndarray


def f1_macro(y: np.ndarray, predicted: np.ndarray) -> float:
    """Macro F1 over the labels present in either array, as scikit-learn's f1_score
    computes it, in a fraction of the time: the bootstrap calls it thousands of times."""
    labels, index = np.unique(np.concatenate([y, predicted]), return_inverse=True)
    truth, guess = index[: len(y)], index[len(y) :]
    hits = np.bincount(truth[truth == guess], minlength=len(labels))
    actual = np.bincount(truth, minlength=len(labels))
    claimed = np.bincount(guess, minlength=len(labels))
    return float(np.mean(2 * hits / np.maximum(actual + claimed, 1)))


#: the metrics of every label type; a type adds its own (e.g. `{**METRICS, "mae": ...}`)
METRICS: dict[str, Metric] = {
    "accuracy": Metric(True, "accuracy", lambda y, p: float(accuracy_score(y, p.values))),
    "balanced_accuracy": Metric(
        True, "balanced_accuracy", lambda y, p: float(balanced_accuracy_score(y, p.values))
    ),
    "f1_macro": Metric(True, "f1_macro", lambda y, p: f1_macro(y, p.values)),
    "log_loss": Metric(
        False, "neg_log_loss", lambda y, p: float(log_loss(y, p.proba, labels=p.classes))
    ),
}


class LabelProblemType(RowProblemType):
    """A class per row, judged against a model that ignores the features."""

    baseline_strategies = ("most_frequent", "prior", "stratified", "uniform")
    TargetSpec = LabelTargetSpec
    Predictions = Predictions
    #: what the target's bar chart counts, e.g. "rows" or "reviews"
    row_noun: ClassVar[str] = "rows"

    def make_baseline(self, strategy: str, seed: int, spec: LabelTargetSpec) -> DummyClassifier:
        """The control group: a model that ignores the features."""
        return DummyClassifier(strategy=strategy, random_state=seed)

    def strata(self, y: pd.Series) -> pd.Series:
        """Stratify the split on the label itself, so rare classes reach the test set."""
        return y

    def cv_splitter(self, folds: int, seed: int):
        """Stratified folds that keep each group of identical rows in one fold."""
        from sklearn.model_selection import StratifiedGroupKFold

        return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)

    def predict(self, model, X: pd.DataFrame) -> Predictions:
        """The most probable class of each row of `X`, and every class's probability."""
        proba = model.predict_proba(X)
        classes = model.classes_
        return Predictions(values=classes[proba.argmax(axis=1)], proba=proba, classes=classes)

    def response(self, predictions: Predictions, version: str) -> dict:
        """The JSON body of a prediction: labels, and the class probabilities of each row."""
        classes = [str(c) for c in predictions.classes]
        return {
            "model_version": version,
            "predictions": predictions.values.tolist(),
            "probabilities": [
                dict(zip(classes, row, strict=True)) for row in predictions.proba.round(6).tolist()
            ],
        }

    def batch_outputs(self, predictions: Predictions) -> dict[str, np.ndarray]:
        """The label, then each class's probability (`proba_<class>`)."""
        columns = {"prediction": predictions.values}
        for i, label in enumerate(predictions.classes):
            columns[f"proba_{label}"] = predictions.proba[:, i]
        return columns

    def prediction_counts(self, predictions: Predictions, reference: dict) -> dict[str, int]:
        """How many rows got each label, for the service's metrics."""
        return dict(Counter(map(str, predictions.values.tolist())))

    def score(self, y: np.ndarray, predictions: Predictions) -> dict[str, float]:
        """Every metric; one that `undefined` names is NaN here, reported as undefined."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)  # `undefined` says why
            warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
            return {name: metric.compute(y, predictions) for name, metric in self.metrics.items()}

    def subset(self, predictions: Predictions, index: np.ndarray) -> Predictions:
        """The predictions of the rows at `index`, with every class still listed."""
        values, proba = predictions.values[index], predictions.proba[index]
        return Predictions(values, proba, predictions.classes)

    def evaluation_tables(
        self, y: np.ndarray, candidate: Predictions, baseline: Predictions
    ) -> dict[str, pd.DataFrame]:
        """Precision, recall, F1 and support per class for both models: a rare class the
        candidate misses shows here, not only in the confusion matrix."""
        frames = []
        for model, p in (("baseline", baseline), ("candidate", candidate)):
            columns = precision_recall_fscore_support(
                y, p.values, labels=p.classes, zero_division=0
            )
            names = ("precision", "recall", "f1", "support")
            table = pd.DataFrame(dict(zip(names, columns, strict=True)))
            frames.append(table.assign(model=model, **{"class": p.classes.astype(str)}))
        table = pd.concat(frames, ignore_index=True)
        return {"Per class": table[["class", "model", "precision", "recall", "f1", "support"]]}

    def target_column(self, spec: LabelTargetSpec):
        """The label's contract as a pandera column: the type's own `label_checks`, at
        least two classes, and within the label set when problem.yaml names one."""
        import pandera.pandas as pa

        checks = [
            *self.label_checks(),
            pa.Check(lambda s: s.nunique() >= 2, name="at_least_two_classes"),
        ]
        if spec.labels is not None:
            checks.append(pa.Check.isin(spec.labels))
        return pa.Column(nullable=True, checks=checks)

    def label_checks(self) -> list:
        """Pandera checks of the labels besides their number and set: none by default."""
        return []

    def prediction_reference(self, predictions: Predictions) -> dict:
        """Class shares on the training data, for prediction-drift checks."""
        shares = pd.Series(predictions.values).value_counts(normalize=True)
        return {"kind": "class_shares", "shares": {str(k): float(v) for k, v in shares.items()}}

    def plot_target(self, ax, y: pd.Series) -> None:
        """The count of each label as bars, in label order (numbers as numbers)."""
        labels = y if pd.api.types.is_numeric_dtype(y) else y.astype(str)
        labels.value_counts().sort_index().plot.bar(ax=ax, color="tab:blue")
        ax.set_ylabel(self.row_noun)

    def evaluation_figures(
        self, y, candidate: Predictions, baseline, history, period, spec, out_dir: Path
    ) -> list[Path]:
        """The candidate's confusion matrix on the test set (`baseline`, `history`, `period`
        and `spec` are unused here)."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4.5))
        ConfusionMatrixDisplay.from_predictions(
            y, candidate.values, labels=candidate.classes, ax=ax, colorbar=False
        )
        ax.set_title("Candidate on the test set")
        fig.tight_layout()
        path = out_dir / "confusion_matrix.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return [path]
