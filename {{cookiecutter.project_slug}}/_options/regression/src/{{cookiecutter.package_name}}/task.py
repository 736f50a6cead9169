"""The problem type of this project, regression: sample data, control, treatment, metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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

PROBLEM_TYPE = "regression"
PREDICTION_METRIC_HELP = "Predicted rows by decile of the training predictions."


class TargetSpec(BaseModel):
    """The `target` section of configs/problem.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    min: float | None = None
    max: float | None = None


def _load_diabetes() -> pd.DataFrame:
    frame = load_diabetes(as_frame=True, scaled=False).frame
    return frame.rename(columns={"target": "progression"})


SAMPLES: dict[str, Callable[[], pd.DataFrame]] = {"diabetes": _load_diabetes}

CANDIDATES = {
    "ridge": Ridge,
    "random_forest": RandomForestRegressor,
    "hist_gradient_boosting": HistGradientBoostingRegressor,
}
BASELINE_STRATEGIES = ("mean", "median")


class PredictResponse(BaseModel):
    """What /v1/predict answers."""

    model_version: str
    predictions: list[float]


@dataclass(frozen=True)
class Predictions:
    """What a model says about a set of rows."""

    values: np.ndarray


@dataclass(frozen=True)
class Metric:
    greater_is_better: bool
    scorer: str  # scikit-learn scorer name, used in cross-validation
    compute: Callable[[np.ndarray, Predictions], float]


METRICS: dict[str, Metric] = {
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


def make_baseline(strategy: str, seed: int) -> DummyRegressor:
    """The control group: a model that ignores the features."""
    return DummyRegressor(strategy=strategy)


def make_candidate(name: str, params: dict, seed: int):
    estimator = CANDIDATES[name]()
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed)
    return estimator.set_params(**params)


def strata(y: pd.Series) -> pd.Series:
    """Stratify the split on target quintiles, so both sets cover the whole range."""
    return pd.qcut(y, q=5, labels=False, duplicates="drop")


def cv_splitter(folds: int, seed: int):
    """Shuffled folds that keep each group of identical rows in one fold."""
    from sklearn.model_selection import GroupKFold

    return GroupKFold(n_splits=folds, shuffle=True, random_state=seed)


def predict(model, X: pd.DataFrame) -> Predictions:
    return Predictions(values=np.asarray(model.predict(X), dtype=float))


def from_onnx(outputs: list, classes: None = None) -> Predictions:
    """Predictions from the ONNX estimator's output."""
    return Predictions(values=np.asarray(outputs[0], dtype=float).ravel())


def same_predictions(a: Predictions, b: Predictions) -> bool:
    """Equal to ONNX's float32 precision."""
    return np.allclose(a.values, b.values, rtol=1e-5, atol=1e-6)


def response(predictions: Predictions, version: str) -> dict:
    """The JSON body of a prediction."""
    return {"model_version": version, "predictions": predictions.values.tolist()}


def prediction_counts(predictions: Predictions, reference: dict) -> dict[str, int]:
    """How many rows fell in each decile of the training predictions, for the metrics."""
    deciles = np.searchsorted(reference["edges"][1:-1], predictions.values, side="right") + 1
    return dict(Counter(f"decile_{d}" for d in deciles.tolist()))


def score(y: np.ndarray, predictions: Predictions) -> dict[str, float]:
    return {name: metric.compute(y, predictions) for name, metric in METRICS.items()}


def subset(predictions: Predictions, index: np.ndarray) -> Predictions:
    return Predictions(predictions.values[index])


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
    """Metrics this sample cannot define, with the reason: every metric here is defined."""
    return {}


def evaluation_tables(y: np.ndarray, candidate: Predictions, baseline: Predictions) -> dict:
    """Tables the evaluation report adds for this type: none."""
    return {}


def target_column(spec: TargetSpec):
    """The target's contract as a pandera column: numeric, within the configured range."""
    import pandera.pandas as pa

    checks = []
    if spec.min is not None:
        checks.append(pa.Check.ge(spec.min))
    if spec.max is not None:
        checks.append(pa.Check.le(spec.max))
    return pa.Column(float, coerce=True, nullable=True, checks=checks)


def prediction_reference(predictions: Predictions) -> dict:
    """Decile edges and shares of training predictions, for prediction-drift checks."""
    return {"kind": "value_bins", **drift.value_bins(np.asarray(predictions.values, dtype=float))}


def plot_target(ax, y: pd.Series) -> None:
    pd.to_numeric(y, errors="coerce").plot.hist(ax=ax, bins=30, color="tab:blue")
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
