"""The problem type of this project, anomaly detection: sample data, control, treatment, metrics.

A model gives each sensor reading an anomaly score (higher is more abnormal) and flags the
readings at or above a threshold chosen on validation data (see detectors.py). Labels are
optional: the detectors train without them; with them, the threshold is tuned and the test
set measures precision, recall, F1 and PR-AUC.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest
from sklearn.metrics import (
    PrecisionRecallDisplay,
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
)
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import Pipeline

from .compiled import CompiledRowProblemType
from .contract import Metric, MinTestRows
from .detectors import Detector, RobustZScore
{%- if cookiecutter.deep_learning == "yes" %}
from .networks import AutoencoderDetector
{%- endif %}

log = logging.getLogger(__name__)


class TargetSpec(BaseModel):
    """The `target` section of configs/problem.yaml: the optional label column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(description="0/1 label column (1 = anomaly), or null without labels")


SENSORS = ("temperature", "vibration", "pressure", "motor_current", "rpm")
MACHINES = ("press-01", "press-02", "press-03")
ANOMALY_KINDS = ("spike", "stuck", "broken_correlation", "overheating")


def _normal_readings(rng: np.random.Generator, steps: int, start: str, load_shift: float):
    """One reading per machine per minute. A slowly varying load drives every sensor, so
    they move together; each adds its own measurement noise."""
    frames = []
    for number, machine in enumerate(MACHINES):
        load = np.zeros(steps)
        for t in range(1, steps):
            load[t] = 0.97 * load[t - 1] + rng.normal(0, 0.25)
        load = load / load.std() + load_shift
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": pd.date_range(start, periods=steps, freq="min"),
                    "machine_id": machine,
                    "temperature": 65 + 5 * load + 1.5 * load**2 + rng.normal(0, 1.2, steps),
                    "vibration": 1.2 + 0.15 * load + rng.normal(0, 0.05, steps),
                    "pressure": 6 + 0.6 * load + rng.normal(0, 0.12, steps),
                    "motor_current": 12 + 2.5 * load + rng.normal(0, 0.5, steps),
                    "rpm": 1500 + 10 * (number - 1) - 40 * load + rng.normal(0, 6, steps),
                    "anomaly": 0,
                }
            )
        )
    return frames


def _inject(frame: pd.DataFrame, rng: np.random.Generator, share: float) -> None:
    """Label about `share` of one machine's rows with the four kinds of fault, in place."""
    budget, used = int(share * len(frame)), 0
    while used < budget:
        kind = rng.choice(ANOMALY_KINDS, p=[0.3, 0.2, 0.3, 0.2])
        start = int(rng.integers(40, len(frame) - 40))
        if frame["anomaly"].iloc[start - 2 : start + 30].any():
            continue
        sensor = str(rng.choice(SENSORS))
        if kind == "spike":  # one sensor jumps far outside its range for one reading
            jump = rng.choice([-1, 1]) * rng.uniform(4, 7) * frame[sensor].std()
            frame.loc[start, sensor] += jump
            rows = [start]
        elif kind == "stuck":  # a sensor repeats a reading from half an hour earlier
            rows = list(range(start, start + 10))
            frame.loc[rows, sensor] = frame.loc[start - 30, sensor]
        elif kind == "broken_correlation":  # current too high for the load: friction
            frame.loc[start, "motor_current"] += rng.uniform(1.5, 3.0)
            rows = [start]
        else:  # slow overheating: abnormal once it is 4 degrees above normal
            run = np.arange(start, start + 25)
            offset = np.linspace(0, 14, len(run))
            frame.loc[run, "temperature"] += offset
            frame.loc[run, "vibration"] += offset / 30
            rows = run[offset > 4].tolist()
        frame.loc[rows, "anomaly"] = 1
        used += len(rows)


def sensor_readings(
    steps: int = 1500,
    seed: int = 7,
    start: str = "2024-03-04",
    load_shift: float = 0.0,
    anomaly_share: float = 0.04,
) -> pd.DataFrame:
    """Deterministic readings of three presses with labelled injected anomalies."""
    rng = np.random.default_rng(seed)
    frames = _normal_readings(rng, steps, start, load_shift)
    for frame in frames:
        _inject(frame, rng, anomaly_share)
    readings = pd.concat(frames).sort_values(["timestamp", "machine_id"], ignore_index=True)
    readings["timestamp"] = readings["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return readings.round({s: 3 for s in SENSORS})


def new_product_line() -> pd.DataFrame:
    """Three months on, a heavier product runs on the same presses: higher load shifts every
    sensor's normal level. For the drift demo: the monitor must raise an alarm on it."""
    return sensor_readings(steps=400, seed=11, start="2024-06-03", load_shift=1.0)


THRESHOLD_KEYS = ("expected_share", "min_precision", "validation_share")


class GateMinimums(MinTestRows):
    """params.yaml `gate` minimums: labelled test rows, and labelled anomalies among them,
    since precision and recall rest on the anomalies."""

    min_positives: int = Field(10, ge=1)


class PredictResponse(BaseModel):
    """What /v1/predict answers."""

    model_version: str
    threshold: float = Field(description="scores at or above it are flagged")
    predictions: list[float] = Field(description="anomaly score per row; higher is more abnormal")
    anomalies: list[bool] = Field(description="per row: is the score at or above the threshold")


@dataclass(frozen=True)
class Predictions:
    """What a model says about a set of rows."""

    values: np.ndarray  # anomaly scores
    flags: np.ndarray
    threshold: float


def _truth(y: np.ndarray) -> np.ndarray:
    return np.asarray(y, dtype=float).astype(int)


def _pr_auc(y: np.ndarray, p: Predictions) -> float:
    truth = _truth(y)
    if truth.sum() == 0:
        return float("nan")  # undefined without a single anomaly in the sample
    return float(average_precision_score(truth, p.values))


def _on_flags(function) -> Callable[[np.ndarray, Predictions], float]:
    return lambda y, p: float(function(_truth(y), p.flags.astype(int), zero_division=0))


def _detector(model) -> Detector | RobustZScore:
    return model[-1] if isinstance(model, Pipeline) else model


class AnomalyDetection(CompiledRowProblemType):
    """An anomaly score and a flag per row, against a control that judges each sensor alone.

    The label is optional (`TargetSpec.name` may be None): the detectors train without it,
    and a test set without labels, which cannot be scored, is described by its flags and
    scores.
    """

    name = "anomaly_detection"
    prediction_metric_help = "Predicted rows flagged as anomalies or not."
    samples: ClassVar = {"sensors": sensor_readings, "sensors_new_line": new_product_line}
    candidates: ClassVar = {
{%- if cookiecutter.deep_learning == "yes" %}
        "network": AutoencoderDetector,
{%- endif %}
        "robust_covariance": EllipticEnvelope,
        "local_outlier_factor": LocalOutlierFactor,
        "isolation_forest": IsolationForest,
    }
    baseline_strategies = ("robust_zscore", "quantile")
    metrics: ClassVar = {
        "pr_auc": Metric(True, "average_precision", _pr_auc),
        "f1": Metric(True, "f1", _on_flags(f1_score)),
        "precision": Metric(True, "precision", _on_flags(precision_score)),
        "recall": Metric(True, "recall", _on_flags(recall_score)),
    }
    TargetSpec = TargetSpec
    GateMinimums = GateMinimums
    PredictResponse = PredictResponse
    Predictions = Predictions
    feature_kinds = ("numeric", "categorical", "datetime")
    unused_params = (
        "preprocessing.text_ngram_max",
        "preprocessing.text_min_df",
        "monitoring.max_oov_change",
    )
    target_noun = "label"
    eda_notes: ClassVar = {
        "Missing values": "A sensor that goes silent shows up here first; the monitor "
        "watches its missing rate.",
        "Correlations": "Sensors driven by the same process move together. A reading that "
        "breaks such a relation is abnormal even when each value looks usual on its own.",
    }

    def make_baseline(self, strategy: str, seed: int, spec: TargetSpec) -> RobustZScore:
        """The control group: each sensor judged on its own, with the same threshold rule."""
        return RobustZScore(strategy=strategy, random_state=seed)
{%- if cookiecutter.deep_learning == "yes" %}

    def make_candidate(
        self, name: str, params: dict, seed: int, spec: TargetSpec
    ) -> Detector | AutoencoderDetector:
        """The detector `name` with `params`; the threshold keys go to the wrapper, except
        for the network, which applies the threshold rule to its own scores."""
        if name == "network":
            return super().make_candidate(name, params, seed, spec)
{%- else %}

    def make_candidate(self, name: str, params: dict, seed: int, spec: TargetSpec) -> Detector:
        """The detector `name` with `params`; the threshold keys go to the wrapper."""
{%- endif %}
        settings = {k: v for k, v in params.items() if k not in THRESHOLD_KEYS}
        if name == "local_outlier_factor":
            settings = {"novelty": True, **settings}  # score new rows, not only training rows
        detector = super().make_candidate(name, settings, seed, spec)
        own = {k: v for k, v in params.items() if k in THRESHOLD_KEYS}
        return Detector(detector, random_state=seed, **own)

    def target_columns(self, spec: TargetSpec) -> list[str]:
        """The label column, or none when problem.yaml names no label."""
        return [] if spec.name is None else [spec.name]

    def truth(self, rows: pd.DataFrame, spec: TargetSpec) -> pd.Series | None:
        """The labels of `rows`, or None without a label column: the detectors train on the
        features alone."""
        return None if spec.name is None else rows[spec.name]

    def strata(self, y: pd.Series | None) -> pd.Series | None:
        """Stratify the split on the label, so the rare anomalies reach the test set; without
        labels, a plain shuffled split."""
        return y

    def cross_validate(
        self, pipeline, X: pd.DataFrame, y: pd.Series | None, metric: str, params
    ) -> dict | None:
        """As for any row type; without labels there is nothing to score: None."""
        if y is None:
            log.info("no target column: cross-validation skipped")
            return None
        return super().cross_validate(pipeline, X, y, metric, params)

    def cv_splitter(self, folds: int, seed: int):
        """Stratified folds that keep each group of identical rows in one fold."""
        from sklearn.model_selection import StratifiedGroupKFold

        return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)

    def predict(self, model, X: pd.DataFrame) -> Predictions:
        """The model's score for each row of `X`, flagged at the model's threshold."""
        scores = np.asarray(model.score_samples(X), dtype=float)
        threshold = _detector(model).threshold_
        return Predictions(values=scores, flags=scores >= threshold, threshold=threshold)

    def from_onnx(self, outputs: list, classes: np.ndarray | None = None) -> Predictions:
        """Predictions from the ONNX graph's outputs: the scores and the threshold."""
        scores = np.asarray(outputs[0], dtype=float).ravel()
        threshold = float(outputs[1][0])
        return Predictions(values=scores, flags=scores >= threshold, threshold=threshold)

    def same_predictions(self, a: Predictions, b: Predictions) -> bool:
        """Same threshold and flags, and scores equal to ONNX's float32 precision."""
        return (
            a.threshold == b.threshold
            and np.array_equal(a.flags, b.flags)
            and np.allclose(a.values, b.values, rtol=1e-5, atol=1e-6)
        )

    def response(self, predictions: Predictions, version: str) -> dict:
        """The JSON body of a prediction: score and flag per row, and the threshold."""
        return {
            "model_version": version,
            "threshold": round(predictions.threshold, 6),
            "predictions": predictions.values.round(6).tolist(),
            "anomalies": predictions.flags.tolist(),
        }

    def batch_outputs(self, predictions: Predictions) -> dict[str, np.ndarray]:
        """The anomaly score, then the flag at the model's threshold."""
        return {"score": predictions.values, "anomaly": predictions.flags}

    def prediction_counts(self, predictions: Predictions, reference: dict) -> dict[str, int]:
        """How many rows were flagged, for the service's metrics."""
        flagged = int(predictions.flags.sum())
        return {"anomaly": flagged, "normal": len(predictions.flags) - flagged}

    def score(self, y: np.ndarray | None, predictions: Predictions) -> dict[str, float]:
        """Every metric against the labels; without labels, what can be known: the flagged
        share and the score distribution."""
        if y is None:
            q50, q90, q99 = np.quantile(predictions.values, [0.5, 0.9, 0.99])
            return {
                "flagged_share": float(predictions.flags.mean()),
                "score_median": float(q50),
                "score_p90": float(q90),
                "score_p99": float(q99),
            }
        return {name: metric.compute(y, predictions) for name, metric in self.metrics.items()}

    def subset(self, predictions: Predictions, index: np.ndarray) -> Predictions:
        """The predictions of the rows at `index`."""
        values, flags = predictions.values[index], predictions.flags[index]
        return Predictions(values, flags, predictions.threshold)

    def held_out(self, model_bundle, history: pd.DataFrame, period: pd.DataFrame, spec):
        """As for any row type; without a label, the truth is None and every row of `period`
        is judged, or None if it lacks a feature."""
        if spec.name is not None:
            return super().held_out(model_bundle, history, period, spec)
        names = [f["name"] for f in model_bundle.metadata["features"]]
        if not set(names) <= set(period.columns):
            return None
        X = period[names]
        return None, self.predict(model_bundle.model, X), self.predict(model_bundle.baseline, X)

    def test_facts(self, spec: TargetSpec, y: np.ndarray | None) -> dict:
        """What the report records about the test set besides its size: its anomalies."""
        return {} if y is None else {"test_anomalies": int(_truth(y).sum())}

    def describe_test(self, report: dict) -> list[str]:
        """Markdown lines about the test set besides its size: how many anomalies it holds."""
        if "test_anomalies" not in report:
            return ["The test set has no labels: the scores describe the flags only."]
        return [f"It holds {report['test_anomalies']} labelled anomalies."]

    def no_verdict(self, y: np.ndarray | None, spec: TargetSpec, gate, metric: str) -> str | None:
        """Without labels the metrics cannot be measured: a person reviews the flags instead.
        With labels, as for any type (see `too_small`)."""
        if y is None:
            return (
                f"no labels: {metric} cannot be measured without a target column; review the "
                "flagged test rows, then promote by hand with `models promote --force`"
            )
        return super().no_verdict(y, spec, gate, metric)

    def measure(self, metric: str, y: np.ndarray | None, predictions: Predictions) -> float | None:
        """`metric` against the labels; None without labels."""
        return None if y is None else super().measure(metric, y, predictions)

    def too_small(self, y: np.ndarray, spec: TargetSpec, gate) -> str | None:
        """Why the labelled test rows are too few for a verdict (`gate`: params.gate), or
        None: precision and recall rest on the anomalies, so they need a minimum of their
        own."""
        reason = super().too_small(y, spec, gate)
        anomalies = int(_truth(y).sum())
        if reason is None and anomalies < gate.min_positives:
            return (
                f"{anomalies} labelled anomalies in the test set, the gate needs "
                f"{gate.min_positives} (gate.min_positives): add labelled anomalies or raise "
                "split.test_size"
            )
        return reason

    def undefined(self, y: np.ndarray | None, predictions: Predictions) -> dict[str, str]:
        """Metrics this sample cannot define, with the reason: reported so, never as NaN."""
        if y is None or _truth(y).sum() > 0:
            return {}
        return {"pr_auc": "no anomaly in the sample", "recall": "no anomaly in the sample"}

    def target_column(self, spec: TargetSpec):
        """The label's contract as a pandera column: 0 (normal) or 1 (anomaly), gaps allowed."""
        import pandera.pandas as pa

        return pa.Column(nullable=True, checks=[pa.Check.isin([0, 1])])

    def prediction_reference(self, predictions: Predictions) -> dict:
        """Training scores in deciles plus one bin from the threshold up, whose share is the
        flagged share: prediction drift sees both the score distribution and the flag rate."""
        scores = predictions.values
        deciles = np.quantile(scores, np.linspace(0, 1, 11))
        threshold = min(max(predictions.threshold, deciles[0]), deciles[-1])
        edges = np.unique(np.append(deciles[deciles < threshold], [threshold, deciles[-1]]))
        counts, _ = np.histogram(scores, bins=edges)
        return {
            "kind": "value_bins",
            "edges": edges.tolist(),
            "shares": (counts / counts.sum()).tolist(),
            "threshold": predictions.threshold,
            "flagged_share": float(predictions.flags.mean()),
        }

    def plot_target(self, ax, y: pd.Series) -> None:
        """Normal and anomalous rows, as bars labelled with the anomaly rate."""
        counts = pd.to_numeric(y, errors="coerce").map({0: "normal", 1: "anomaly"}).value_counts()
        counts.reindex(["normal", "anomaly"], fill_value=0).plot.bar(
            ax=ax, color=["tab:blue", "tab:red"]
        )
        ax.set_ylabel("rows")
        ax.set_xlabel(f"anomaly rate {counts.get('anomaly', 0) / max(counts.sum(), 1):.1%}")

    def eda_sections(
        self, frame: pd.DataFrame, features: dict[str, str], target: str | None, out_dir: Path
    ) -> list[str]:
        """With labels, the anomaly rate, each feature for normal and anomalous readings and
        the rate per category (see anomaly_eda.py); without labels, nothing."""
        from . import anomaly_eda

        if target is None:
            return []
        return anomaly_eda.labels_section(frame, features, target, out_dir)

    def evaluation_figures(
        self,
        y: np.ndarray | None,
        candidate: Predictions,
        baseline,
        history,
        period,
        spec,
        out_dir: Path,
    ) -> list[Path]:
        """Score histogram with the threshold (by label when known), and the PR curve, of the
        candidate on the test set (`baseline`, `history`, `period`, `spec` unused here)."""
        paths = [_score_histogram(y, candidate, out_dir / "score_distribution.png")]
        if y is not None:
            paths.append(_precision_recall(y, candidate, out_dir / "precision_recall.png"))
        return paths


def _score_histogram(y: np.ndarray | None, candidate: Predictions, path: Path) -> Path:
    """The candidate's scores on the test set, by label when known, and its threshold."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    bins = np.histogram_bin_edges(candidate.values, bins=40)
    if y is None:
        ax.hist(candidate.values, bins=bins, color="tab:blue", label="test rows")
    else:
        truth = _truth(y)
        for value, name, colour in ((0, "normal", "tab:blue"), (1, "anomaly", "tab:red")):
            ax.hist(
                candidate.values[truth == value], bins=bins, alpha=0.6, color=colour, label=name
            )
    ax.axvline(candidate.threshold, color="black", linestyle="--", label="threshold")
    ax.set_yscale("log")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("rows")
    ax.set_title("Candidate scores on the test set")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _precision_recall(y: np.ndarray, candidate: Predictions, path: Path) -> Path:
    """The candidate's precision-recall curve on the test set, marked at its threshold."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    truth, flags = _truth(y), candidate.flags
    PrecisionRecallDisplay.from_predictions(truth, candidate.values, ax=ax)
    ax.plot(
        recall_score(truth, flags, zero_division=0),
        precision_score(truth, flags, zero_division=0),
        "o",
        color="tab:red",
        label="at the threshold",
    )
    ax.legend()
    ax.set_title("Candidate on the test set")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


PROBLEM_TYPE = AnomalyDetection()
