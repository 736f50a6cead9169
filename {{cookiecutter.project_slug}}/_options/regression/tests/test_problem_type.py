import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }} import data
from {{ cookiecutter.package_name }}.errors import DataError
from {{ cookiecutter.package_name }}.features import resolve_features
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


def test_the_diabetes_sample_has_a_numeric_target_and_ten_features():
    frame = PROBLEM_TYPE.samples["diabetes"]()
    assert pd.api.types.is_float_dtype(frame["progression"])
    assert frame.drop(columns="progression").shape[1] == 10


def test_perfect_predictions_score_perfectly():
    y = np.array([1.0, 2.5, 4.0, 8.0])
    scores = PROBLEM_TYPE.score(y, PROBLEM_TYPE.Predictions(y.copy()))
    assert scores["mae"] == scores["rmse"] == 0.0
    assert scores["r2"] == 1.0


def test_the_baseline_predicts_the_mean():
    X = np.zeros((4, 1))
    y = np.array([1.0, 2.0, 3.0, 10.0])
    assert (
        PROBLEM_TYPE.make_baseline("mean", seed=0, spec=None).fit(X, y).predict(X).tolist()
        == [4.0] * 4
    )


def test_strata_spread_the_target_range():
    y = pd.Series(np.arange(100.0))
    assert PROBLEM_TYPE.strata(y).value_counts().tolist() == [20] * 5


def test_a_target_outside_the_range_is_counted(problem, params):
    frame = PROBLEM_TYPE.samples["diabetes"]()
    frame.loc[:2, "progression"] = 10_000.0
    with pytest.raises(
        DataError, match=r"column 'progression': less_than_or_equal_to.*3 rows fail"
    ):
        data.validate(frame, problem, params, resolve_features(frame, problem))


def test_an_unknown_hyper_parameter_is_named():
    with pytest.raises(ValueError, match="max_iters"):
        PROBLEM_TYPE.make_candidate("hist_gradient_boosting", {"max_iters": 10}, seed=0, spec=None)
