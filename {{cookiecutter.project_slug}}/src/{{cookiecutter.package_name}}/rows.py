"""The base for problem types whose unit is a row judged on its own: tabular and text data.

A row type predicts each row from its features alone, splits and cross-validates by rows
(copies of a row stay together), and can compile its fitted estimator to ONNX.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import pandas as pd

from .contract import ProblemType


class RowProblemType(ProblemType):
    """A problem type whose units are independent rows with a target column."""

    @abstractmethod
    def strata(self, y: pd.Series) -> pd.Series | None:
        """What the train/test split stratifies on (None: a plain shuffled split)."""

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

    @abstractmethod
    def from_onnx(self, outputs: list, classes: np.ndarray | None):
        """`Predictions` from the outputs of the estimator compiled to ONNX (`classes`: the
        fitted estimator's classes, where it has them)."""

    @abstractmethod
    def same_predictions(self, a, b) -> bool:
        """Whether two `Predictions` agree to ONNX's float32 precision."""
