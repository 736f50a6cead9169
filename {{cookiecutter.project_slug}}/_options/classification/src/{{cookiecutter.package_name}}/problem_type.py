"""The problem type of this project, classification: sample data, control, treatment, metrics."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.datasets import load_wine
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from .compiled import CompiledRowProblemType
from .contract import Metric
from .labels import METRICS, LabelProblemType, Predictions
{%- if cookiecutter.deep_learning == "yes" %}
from .row_networks import NetworkClassifier
{%- endif %}


class PredictResponse(BaseModel):
    """What /v1/predict answers."""

    model_version: str
    predictions: list[str | int]
    probabilities: list[dict[str, float]]


def _load_wine() -> pd.DataFrame:
    bunch = load_wine(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame["cultivar"] = bunch.target_names[bunch.target]
    return frame


def _roc_auc(y: np.ndarray, p: Predictions) -> float:
    if not np.isin(p.classes, y).all():
        return float("nan")  # undefined when a class has no row in the sample
    if len(p.classes) == 2:
        return float(roc_auc_score(y, p.proba[:, 1]))
    return float(roc_auc_score(y, p.proba, multi_class="ovr", labels=p.classes))


class Classification(CompiledRowProblemType, LabelProblemType):
    """A class per row of features, judged against a model that ignores them."""

    name = "classification"
    prediction_metric_help = "Predicted rows by class."
    samples: ClassVar = {"wine": _load_wine}
    candidates: ClassVar = {
{%- if cookiecutter.deep_learning == "yes" %}
        "network": NetworkClassifier,
{%- endif %}
        "logistic_regression": LogisticRegression,
        "random_forest": RandomForestClassifier,
        "hist_gradient_boosting": HistGradientBoostingClassifier,
    }
    metrics: ClassVar = {**METRICS, "roc_auc": Metric(True, "roc_auc_ovr", _roc_auc)}
    PredictResponse = PredictResponse

    def undefined(self, y: np.ndarray, predictions: Predictions) -> dict[str, str]:
        """ROC AUC when a class has no row in the sample, with the reason."""
        absent = [str(c) for c in predictions.classes[~np.isin(predictions.classes, y)]]
        return {"roc_auc": f"no row of class {', '.join(absent)}"} if absent else {}

    def from_onnx(self, outputs: list, classes: np.ndarray) -> Predictions:
        """Predictions from the ONNX estimator's outputs (labels, probabilities)."""
        proba = np.asarray(outputs[1], dtype=float)
        return Predictions(values=classes[proba.argmax(axis=1)], proba=proba, classes=classes)

    def same_predictions(self, a: Predictions, b: Predictions) -> bool:
        """Same labels, and probabilities equal to ONNX's float32 precision."""
        return np.array_equal(a.values, b.values) and np.allclose(a.proba, b.proba, atol=1e-5)


PROBLEM_TYPE = Classification()
