"""The problem type of this project, text classification: star ratings from review text.

The ratings are classes (1 to 5 stars) but also ordered, so besides macro F1 and accuracy
the metrics include the mean absolute error in stars: predicting 4 for a 5 is a smaller
mistake than predicting 1.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mean_absolute_error
from sklearn.naive_bayes import ComplementNB

from . import reviews
from .contract import Metric
from .errors import DataError
from .labels import METRICS, LabelProblemType, LabelTargetSpec, Predictions
{%- if cookiecutter.deep_learning == "yes" %}
from .row_networks import NetworkClassifier
{%- endif %}


class TargetSpec(LabelTargetSpec):
    """The `target` section of configs/problem.yaml: ratings are whole numbers."""

    labels: list[int] | None = None


class PredictResponse(BaseModel):
    """What /v1/predict answers."""

    model_version: str
    predictions: list[int] = Field(description="Predicted star rating per text")
    probabilities: list[dict[str, float]] = Field(
        description="Probability of each star rating per text, keyed by the rating"
    )


def _stars_off(y: np.ndarray, p: Predictions) -> float:
    """How many stars off the predictions are, on average: the scale is ordered."""
    return float(mean_absolute_error(np.asarray(y, float), np.asarray(p.values, float)))


class TextClassification(LabelProblemType):
    """A star rating per text, judged against a model that ignores the words."""

    name = "text_classification"
    prediction_metric_help = "Predicted texts by star rating."
    samples: ClassVar = {"reviews": reviews.generate}
    # Linear models on TF-IDF features (built in features.py for every `text` column): fast,
    # strong on short texts, and their coefficients show which words drive each rating.
    candidates: ClassVar = {
{%- if cookiecutter.deep_learning == "yes" %}
        "network": NetworkClassifier,
{%- endif %}
        "logistic_regression": LogisticRegression,
        "naive_bayes": ComplementNB,
    }
    metrics: ClassVar = {**METRICS, "mae": Metric(False, "neg_mean_absolute_error", _stars_off)}
    TargetSpec = TargetSpec
    PredictResponse = PredictResponse
    row_noun = "reviews"

    def resolve_features(self, raw: pd.DataFrame, problem) -> dict[str, str]:
        """The row features (see `RowProblemType.resolve_features`), of which at least one
        must be text: without one, the project is a classification project."""
        features = super().resolve_features(raw, problem)
        if "text" not in features.values():
            kinds = ", ".join(f"{name}={kind}" for name, kind in features.items())
            raise DataError(
                f"problem.yaml features: text classification needs at least one feature of "
                f"kind text, and these are {kinds or 'none'}: declare the text column as "
                "`text`, or generate a classification project for data without text"
            )
        return features

    def label_checks(self) -> list:
        """Ratings are whole numbers of stars: 4.5 is not on the scale."""
        import pandera.pandas as pa

        whole = pa.Check(
            lambda s: pd.to_numeric(s, errors="coerce").mod(1).eq(0), name="is_whole_number"
        )
        return [whole]


PROBLEM_TYPE = TextClassification()
