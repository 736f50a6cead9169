"""Anomaly detectors as scikit-learn estimators: a score per row and a flag at a threshold.

Every detector is trained without labels. The threshold that turns scores into flags is
chosen on a validation part of the training rows, held out from fitting the detector:

- with labels, the threshold with the best F1 there, or, when `min_precision` is set, the
  lowest threshold whose precision reaches it (more caught anomalies at a bounded false-alarm
  rate);
- without labels (or with no anomaly among them), the `1 - expected_share` quantile of the
  validation scores: the share of readings you expect to be abnormal gets flagged.

They follow scikit-learn's binary-classifier conventions with class 1 = anomaly, so the
usual scorers (`average_precision`, `f1`, ...) work: `predict` gives 0/1 flags and
`decision_function` the score minus the threshold (positive means flagged).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted


def choose_threshold(
    scores: np.ndarray, y: np.ndarray | None, expected_share: float, min_precision: float | None
) -> tuple[float, str]:
    """The flagging threshold for validation `scores`, and the rule that chose it."""
    if y is None or y.sum() == 0:
        return float(np.quantile(scores, 1 - expected_share)), f"expected_share {expected_share:g}"
    precision, recall, thresholds = precision_recall_curve(y, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    if min_precision is None:
        f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
        return float(thresholds[np.argmax(f1)]), "best F1 on validation"
    reaching = np.flatnonzero(precision >= min_precision)
    if reaching.size == 0:  # no threshold is that precise: flag only the top score
        return float(thresholds[-1]), f"min_precision {min_precision:g} not reachable"
    return float(thresholds[reaching[0]]), f"min_precision {min_precision:g} on validation"


class _Thresholded(ClassifierMixin, BaseEstimator):
    """Fit the scorer on part of the rows, choose the threshold on the rest."""

    def _fit_scorer(self, X) -> None:
        raise NotImplementedError

    def score_samples(self, X) -> np.ndarray:
        raise NotImplementedError

    def fit(self, X, y=None):
        # The same rows must give the same model in any order (a rerun writes the training
        # set in another order), and both the split below and some detectors draw rows by
        # position: put the rows in an order given by their content first, rounded so that
        # float noise from scaling the rows in another order does not change it.
        content = pd.util.hash_pandas_object(pd.DataFrame(X).round(6), index=False)
        order = np.argsort(content.to_numpy(), kind="stable")
        X = _rows(X, order)
        labels = None if y is None else np.asarray(y, dtype=float).astype(int)[order]
        stratify = labels if labels is not None and np.bincount(labels).min() >= 2 else None
        index = np.arange(len(X))
        fit_rows, validation_rows = train_test_split(
            index,
            test_size=self.validation_share,
            random_state=self.random_state,
            stratify=stratify,
        )
        self._fit_scorer(_rows(X, fit_rows))
        scores = self.score_samples(_rows(X, validation_rows))
        truth = None if labels is None else labels[validation_rows]
        self.threshold_, self.threshold_rule_ = choose_threshold(
            scores, truth, self.expected_share, self.min_precision
        )
        self.validation_flagged_share_ = float(np.mean(scores >= self.threshold_))
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X) -> np.ndarray:
        return self.score_samples(X) - self.threshold_

    def predict(self, X) -> np.ndarray:
        return (self.score_samples(X) >= self.threshold_).astype(int)


def _rows(X, index: np.ndarray):
    return X.iloc[index] if isinstance(X, pd.DataFrame) else np.asarray(X)[index]


class Detector(_Thresholded):
    """An unsupervised scikit-learn detector (IsolationForest, EllipticEnvelope, ...) whose
    anomaly score is minus its `score_samples`, with a validated threshold."""

    def __init__(
        self,
        detector=None,
        expected_share: float = 0.05,
        min_precision: float | None = None,
        validation_share: float = 0.25,
        random_state: int | None = None,
    ) -> None:
        self.detector = detector
        self.expected_share = expected_share
        self.min_precision = min_precision
        self.validation_share = validation_share
        self.random_state = random_state

    def _fit_scorer(self, X) -> None:
        with warnings.catch_warnings():
            # One-hot columns sum to one, so the covariance is singular and MinCovDet's
            # determinant moves at rounding level between steps; the estimate is still used.
            warnings.filterwarnings("ignore", "Determinant has increased", RuntimeWarning)
            self.detector_ = clone(self.detector).fit(X)
        self.n_features_in_ = self.detector_.n_features_in_

    def score_samples(self, X) -> np.ndarray:
        check_is_fitted(self, "detector_")
        return -np.asarray(self.detector_.score_samples(X), dtype=float)

    # ONNX export (skl2onnx calls these three): the robust covariance's score is a
    # Mahalanobis distance, four tensor operations; the graph also returns the threshold.
    # The other detectors have no converter and are served by scikit-learn.

    def onnx_parser(self):
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

        def parser(scope=None, inputs=None) -> list:
            return [("score", FloatTensorType([None, 1])), ("threshold", DoubleTensorType([1]))]

        return parser

    def onnx_shape_calculator(self):
        return lambda operator: None  # the parser declared the output types

    def onnx_converter(self):
        from onnx import TensorProto
        from sklearn.covariance import EllipticEnvelope

        if not isinstance(self.detector_, EllipticEnvelope):
            raise NotImplementedError(f"no converter for {type(self.detector_).__name__}")
        location = self.detector_.location_.astype(np.float32)
        precision = self.detector_.get_precision().astype(np.float32)

        def convert(scope, operator, container) -> None:
            name = scope.get_unique_variable_name

            def constant(kind, values: np.ndarray) -> str:
                tensor = name("constant")
                container.add_initializer(tensor, kind, list(values.shape), values.ravel().tolist())
                return tensor

            def node(op: str, inputs: list[str], output: str | None = None, **attrs) -> str:
                output = output or name(op.lower())
                container.add_node(
                    op, inputs, [output], name=scope.get_unique_operator_name(op), **attrs
                )
                return output

            centred = node(
                "Sub", [operator.inputs[0].full_name, constant(TensorProto.FLOAT, location)]
            )
            projected = node("MatMul", [centred, constant(TensorProto.FLOAT, precision)])
            product = node("Mul", [projected, centred])
            axes = constant(TensorProto.INT64, np.array([1]))
            node(
                "ReduceSum",
                [product, axes],
                operator.outputs[0].full_name,
                keepdims=1,
                op_version=13,
            )
            threshold = constant(TensorProto.DOUBLE, np.array([self.threshold_]))
            node("Identity", [threshold], operator.outputs[1].full_name)

        return convert


class RobustZScore(_Thresholded):
    """The control group: a reading is as abnormal as its most extreme sensor on its own.

    Each numeric column is scaled by the training rows' robust spread; the score is the
    largest absolute distance over the columns. `strategy`:

    - `robust_zscore`: distance from the median in units of the scaled MAD;
    - `quantile`: distance outside the 1 % to 99 % band, in units of the band's width.

    Non-numeric columns are ignored, and a missing value counts as no evidence (distance 0).
    It cannot see a broken relation between sensors that are each within their usual range.
    """

    def __init__(
        self,
        strategy: str = "robust_zscore",
        expected_share: float = 0.05,
        min_precision: float | None = None,
        validation_share: float = 0.25,
        random_state: int | None = None,
    ) -> None:
        self.strategy = strategy
        self.expected_share = expected_share
        self.min_precision = min_precision
        self.validation_share = validation_share
        self.random_state = random_state

    def _fit_scorer(self, X) -> None:
        frame = pd.DataFrame(X)
        self.columns_ = frame.select_dtypes("number").columns.tolist()
        values = frame[self.columns_].to_numpy(dtype=float)
        if self.strategy == "robust_zscore":
            self.low_ = self.high_ = np.nanmedian(values, axis=0)
            spread = 1.4826 * np.nanmedian(np.abs(values - self.low_), axis=0)
        else:
            self.low_, self.high_ = np.nanquantile(values, [0.01, 0.99], axis=0)
            spread = self.high_ - self.low_
        fallback = np.nanstd(values, axis=0)
        self.scale_ = np.where(spread > 0, spread, np.where(fallback > 0, fallback, 1.0))

    def score_samples(self, X) -> np.ndarray:
        check_is_fitted(self, "scale_")
        values = pd.DataFrame(X)[self.columns_].to_numpy(dtype=float)
        outside = np.maximum(self.low_ - values, values - self.high_).clip(min=0)
        distance = np.nan_to_num(outside / self.scale_, nan=0.0)
        return distance.max(axis=1) if distance.shape[1] else np.zeros(len(values))
