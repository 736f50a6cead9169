"""The problem type of this project, regression: sample data, control, treatment, metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from sklearn.datasets import load_diabetes
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import (
    PredictionErrorDisplay,
    mean_absolute_error,
    r2_score,
    root_mean_squared_error,
)

from . import drift
from .compiled import CompiledRowProblemType
from .contract import Metric
{%- if cookiecutter.deep_learning == "yes" %}
from .row_networks import NetworkRegressor
{%- endif %}


class TargetSpec(BaseModel):
    """The `target` section of configs/problem.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    min: float | None = None
    max: float | None = None


class PredictResponse(BaseModel):
    """What /v1/predict answers."""

    model_version: str
    predictions: list[float]


@dataclass(frozen=True)
class Predictions:
    """What a model says about a set of rows: one number per row."""

    values: np.ndarray


def _load_diabetes() -> pd.DataFrame:
    frame = load_diabetes(as_frame=True, scaled=False).frame
    return frame.rename(columns={"target": "progression"})


class Regression(CompiledRowProblemType):
    """A number per row, judged against a model that predicts the mean or the median."""

    name = "regression"
    prediction_metric_help = "Predicted rows by decile of the training predictions."
    samples: ClassVar = {"diabetes": _load_diabetes}
    candidates: ClassVar = {
{%- if cookiecutter.deep_learning == "yes" %}
        "network": NetworkRegressor,
{%- endif %}
        "ridge": Ridge,
        "random_forest": RandomForestRegressor,
        "hist_gradient_boosting": HistGradientBoostingRegressor,
    }
    baseline_strategies = ("mean", "median")
    metrics: ClassVar = {
        "mae": Metric(
            False, "neg_mean_absolute_error", lambda y, p: float(mean_absolute_error(y, p.values))
        ),
        "rmse": Metric(
            False,
            "neg_root_mean_squared_error",
            lambda y, p: float(root_mean_squared_error(y, p.values)),
        ),
        "r2": Metric(True, "r2", lambda y, p: float(r2_score(y, p.values))),
    }
    TargetSpec = TargetSpec
    PredictResponse = PredictResponse
    Predictions = Predictions

    def make_baseline(self, strategy: str, seed: int, spec: TargetSpec) -> DummyRegressor:
        """The control group: a model that ignores the features."""
        return DummyRegressor(strategy=strategy)

    def strata(self, y: pd.Series) -> pd.Series:
        """Stratify the split on target quintiles, so both sets cover the whole range."""
        return pd.qcut(y, q=5, labels=False, duplicates="drop")

    def cv_splitter(self, folds: int, seed: int):
        """Shuffled folds that keep each group of identical rows in one fold."""
        from sklearn.model_selection import GroupKFold

        return GroupKFold(n_splits=folds, shuffle=True, random_state=seed)

    def predict(self, model, X: pd.DataFrame) -> Predictions:
        """The model's number for each row of `X`."""
        return Predictions(values=np.asarray(model.predict(X), dtype=float))

    def from_onnx(self, outputs: list, classes: None = None) -> Predictions:
        """Predictions from the ONNX estimator's output."""
        return Predictions(values=np.asarray(outputs[0], dtype=float).ravel())

    def same_predictions(self, a: Predictions, b: Predictions) -> bool:
        """Equal to ONNX's float32 precision."""
        return np.allclose(a.values, b.values, rtol=1e-5, atol=1e-6)

    def response(self, predictions: Predictions, version: str) -> dict:
        """The JSON body of a prediction."""
        return {"model_version": version, "predictions": predictions.values.tolist()}

    def batch_outputs(self, predictions: Predictions) -> dict[str, np.ndarray]:
        """The predicted number."""
        return {"prediction": predictions.values}

    def prediction_counts(self, predictions: Predictions, reference: dict) -> dict[str, int]:
        """How many rows fell in each decile of the training predictions, for the metrics."""
        deciles = np.searchsorted(reference["edges"][1:-1], predictions.values, side="right") + 1
        return dict(Counter(f"decile_{d}" for d in deciles.tolist()))

    def score(self, y: np.ndarray, predictions: Predictions) -> dict[str, float]:
        """Every metric; each is defined on any non-empty sample."""
        return {name: metric.compute(y, predictions) for name, metric in self.metrics.items()}

    def subset(self, predictions: Predictions, index: np.ndarray) -> Predictions:
        """The predictions of the rows at `index`."""
        return Predictions(predictions.values[index])

    def target_column(self, spec: TargetSpec):
        """The target's contract as a pandera column: numeric, within the configured range."""
        import pandera.pandas as pa

        checks = []
        if spec.min is not None:
            checks.append(pa.Check.ge(spec.min))
        if spec.max is not None:
            checks.append(pa.Check.le(spec.max))
        return pa.Column(float, coerce=True, nullable=True, checks=checks)

    def prediction_reference(self, predictions: Predictions) -> dict:
        """Decile edges and shares of training predictions, for prediction-drift checks."""
        values = np.asarray(predictions.values, dtype=float)
        return {"kind": "value_bins", **drift.value_bins(values)}

    def plot_target(self, ax, y: pd.Series) -> None:
        """A histogram of the target."""
        pd.to_numeric(y, errors="coerce").plot.hist(ax=ax, bins=30, color="tab:blue")
        ax.set_ylabel("rows")

    def evaluation_figures(
        self, y, candidate: Predictions, baseline, history, period, spec, out_dir: Path
    ) -> list[Path]:
        """Predicted against actual values, and the residuals, of the candidate on the test
        set (`baseline`, `history`, `period` and `spec` are unused here)."""
        import matplotlib.pyplot as plt

        paths = []
        for kind, name in (
            ("actual_vs_predicted", "predicted_vs_actual"),
            ("residual_vs_predicted", "residuals"),
        ):
            fig, ax = plt.subplots(figsize=(5, 4.5))
            PredictionErrorDisplay.from_predictions(
                y, candidate.values, kind=kind, ax=ax, scatter_kwargs={"alpha": 0.6}
            )
            ax.set_title("Candidate on the test set")
            fig.tight_layout()
            path = out_dir / f"{name}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
        return paths


PROBLEM_TYPE = Regression()
