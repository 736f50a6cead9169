"""The problem type of this project, classification: sample data, control, treatment, metrics."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from sklearn.datasets import load_wine
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

PROBLEM_TYPE = "classification"
PREDICTION_METRIC_HELP = "Predicted rows by class."


class TargetSpec(BaseModel):
    """The `target` section of configs/problem.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    labels: list[str | int] | None = None


def _load_wine() -> pd.DataFrame:
    bunch = load_wine(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame["cultivar"] = bunch.target_names[bunch.target]
    return frame


SAMPLES: dict[str, Callable[[], pd.DataFrame]] = {"wine": _load_wine}

CANDIDATES = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
}
BASELINE_STRATEGIES = ("most_frequent", "prior", "stratified", "uniform")


class PredictResponse(BaseModel):
    """What /v1/predict answers."""

    model_version: str
    predictions: list[str | int]
    probabilities: list[dict[str, float]]


@dataclass(frozen=True)
class Predictions:
    """What a model says about a set of rows."""

    values: np.ndarray
    proba: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class Metric:
    greater_is_better: bool
    scorer: str  # scikit-learn scorer name, used in cross-validation
    compute: Callable[[np.ndarray, Predictions], float]


def _roc_auc(y: np.ndarray, p: Predictions) -> float:
    if not np.isin(p.classes, y).all():
        return float("nan")  # undefined when a class has no row in the sample
    if len(p.classes) == 2:
        return float(roc_auc_score(y, p.proba[:, 1]))
    return float(roc_auc_score(y, p.proba, multi_class="ovr", labels=p.classes))


METRICS: dict[str, Metric] = {
    "accuracy": Metric(True, "accuracy", lambda y, p: float(accuracy_score(y, p.values))),
    "balanced_accuracy": Metric(
        True, "balanced_accuracy", lambda y, p: float(balanced_accuracy_score(y, p.values))
    ),
    "f1_macro": Metric(
        True,
        "f1_macro",
        lambda y, p: float(f1_score(y, p.values, average="macro", zero_division=0)),
    ),
    "log_loss": Metric(
        False, "neg_log_loss", lambda y, p: float(log_loss(y, p.proba, labels=p.classes))
    ),
    "roc_auc": Metric(True, "roc_auc_ovr", _roc_auc),
}


def make_baseline(strategy: str, seed: int) -> DummyClassifier:
    """The control group: a model that ignores the features."""
    return DummyClassifier(strategy=strategy, random_state=seed)


def make_candidate(name: str, params: dict, seed: int):
    estimator = CANDIDATES[name]()
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed)
    return estimator.set_params(**params)


def strata(y: pd.Series) -> pd.Series:
    """Stratify the split on the label itself, so rare classes reach the test set."""
    return y


def cv_splitter(folds: int, seed: int):
    """Stratified folds that keep each group of identical rows in one fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)


def predict(model, X: pd.DataFrame) -> Predictions:
    proba = model.predict_proba(X)
    classes = model.classes_
    return Predictions(values=classes[proba.argmax(axis=1)], proba=proba, classes=classes)


def from_onnx(outputs: list, classes: np.ndarray) -> Predictions:
    """Predictions from the ONNX estimator's outputs (labels, probabilities)."""
    proba = np.asarray(outputs[1], dtype=float)
    return Predictions(values=classes[proba.argmax(axis=1)], proba=proba, classes=classes)


def same_predictions(a: Predictions, b: Predictions) -> bool:
    """Same labels, and probabilities equal to ONNX's float32 precision."""
    return np.array_equal(a.values, b.values) and np.allclose(a.proba, b.proba, atol=1e-5)


def response(predictions: Predictions, version: str) -> dict:
    """The JSON body of a prediction: labels, and class probabilities per row."""
    classes = [str(c) for c in predictions.classes]
    return {
        "model_version": version,
        "predictions": predictions.values.tolist(),
        "probabilities": [
            dict(zip(classes, row, strict=True)) for row in predictions.proba.round(6).tolist()
        ],
    }


def prediction_counts(predictions: Predictions, reference: dict) -> dict[str, int]:
    """How many rows got each label, for the service's metrics."""
    return dict(Counter(map(str, predictions.values.tolist())))


def score(y: np.ndarray, predictions: Predictions) -> dict[str, float]:
    """Every metric; one that `undefined` names is NaN here, reported as undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # `undefined` says why
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        return {name: metric.compute(y, predictions) for name, metric in METRICS.items()}


def subset(predictions: Predictions, index: np.ndarray) -> Predictions:
    return Predictions(predictions.values[index], predictions.proba[index], predictions.classes)


# Stage 5's contract: evaluate.py calls these for every problem type.


def held_out(model_bundle, history: pd.DataFrame, period: pd.DataFrame, spec: TargetSpec):
    """Truth and both models' predictions on the labelled rows of `period`, or None if it
    lacks the model's features or the target. Rows are judged alone: `history` is unused."""
    names = [f["name"] for f in model_bundle.metadata["features"]]
    if not {*names, spec.name} <= set(period.columns):
        return None
    rows = period[period[spec.name].notna()]
    y, X = rows[spec.name].to_numpy(), rows[names]
    return y, predict(model_bundle.model, X), predict(model_bundle.baseline, X)


def holdout_frame(holdout: pd.DataFrame, spec: TargetSpec) -> pd.DataFrame:
    """Recent labelled rows, as `held_out` takes them: unchanged."""
    return holdout


def resampling_block(spec: TargetSpec) -> int:
    """How many consecutive test units the bootstrap draws together: rows are independent."""
    return 1


def test_facts(spec: TargetSpec, y: np.ndarray | None) -> dict:
    """What the report records about the test set besides its size: nothing more here."""
    return {}


def describe_test(report: dict) -> list[str]:
    """Markdown lines about the test set besides its size: none here."""
    return []


def too_small(y: np.ndarray, spec: TargetSpec, gate) -> str | None:
    """Why the labelled test rows are too few for a verdict (`gate`: params.gate), or None."""
    if len(y) < gate.min_test_rows:
        return (
            f"{len(y)} labelled test rows, the gate needs {gate.min_test_rows} "
            "(gate.min_test_rows): add data or raise split.test_size"
        )
    return None


def undefined(y: np.ndarray, predictions: Predictions) -> dict[str, str]:
    """Metrics this sample cannot define, with the reason: reported so, never as NaN."""
    absent = [str(c) for c in predictions.classes[~np.isin(predictions.classes, y)]]
    return {"roc_auc": f"no row of class {', '.join(absent)}"} if absent else {}


def evaluation_tables(y: np.ndarray, candidate: Predictions, baseline: Predictions) -> dict:
    """Precision, recall, F1 and support per class for both models: a rare class the
    candidate misses shows here, not only in the confusion matrix."""
    frames = []
    for model, p in (("baseline", baseline), ("candidate", candidate)):
        columns = precision_recall_fscore_support(y, p.values, labels=p.classes, zero_division=0)
        names = ("precision", "recall", "f1", "support")
        table = pd.DataFrame(dict(zip(names, columns, strict=True)))
        frames.append(table.assign(model=model, **{"class": p.classes.astype(str)}))
    table = pd.concat(frames, ignore_index=True)
    return {"Per class": table[["class", "model", "precision", "recall", "f1", "support"]]}


def target_column(spec: TargetSpec):
    """The label's contract as a pandera column: at least two classes, within the label set."""
    import pandera.pandas as pa

    checks = [pa.Check(lambda s: s.nunique() >= 2, name="at_least_two_classes")]
    if spec.labels is not None:
        checks.append(pa.Check.isin(spec.labels))
    return pa.Column(nullable=True, checks=checks)


def prediction_reference(predictions: Predictions) -> dict:
    """Class shares on the training data, for prediction-drift checks."""
    shares = pd.Series(predictions.values).value_counts(normalize=True)
    return {"kind": "class_shares", "shares": {str(k): float(v) for k, v in shares.items()}}


def plot_target(ax, y: pd.Series) -> None:
    y.astype(str).value_counts().sort_index().plot.bar(ax=ax, color="tab:blue")
    ax.set_ylabel("rows")


def evaluation_figures(
    y: np.ndarray,
    candidate: Predictions,
    baseline: Predictions,
    history,
    period,
    spec,
    out_dir: Path,
) -> list[Path]:
    """The candidate's figures on the test set (`history`, `period`, `spec` unused here)."""
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
