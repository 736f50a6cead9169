import numpy as np
import pytest

from {{ cookiecutter.package_name }} import data
from {{ cookiecutter.package_name }}.errors import DataError
from {{ cookiecutter.package_name }}.features import resolve_features
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


def test_the_wine_sample_has_string_labels_for_three_cultivars():
    frame = PROBLEM_TYPE.samples["wine"]()
    assert sorted(frame["cultivar"].unique()) == ["class_0", "class_1", "class_2"]
    assert frame.drop(columns="cultivar").select_dtypes("number").shape[1] == 13


def test_a_label_outside_the_contract_is_counted(problem, params):
    frame = PROBLEM_TYPE.samples["wine"]()
    frame.loc[:4, "cultivar"] = "class_9"
    with pytest.raises(DataError, match=r"column 'cultivar': isin.*5 rows fail"):
        data.validate(frame, problem, params, resolve_features(frame, problem))


def test_an_unknown_hyper_parameter_is_named(problem):
    with pytest.raises(ValueError, match="n_estimator"):
        PROBLEM_TYPE.make_candidate("random_forest", {"n_estimator": 10}, 0, problem.target)


def test_roc_auc_without_a_row_of_some_class_is_undefined_with_the_reason():
    classes = np.array(["a", "b", "c"])
    y = np.array(["a", "b", "a"])
    predictions = PROBLEM_TYPE.Predictions(y, (y[:, None] == classes).astype(float), classes)
    assert PROBLEM_TYPE.undefined(y, predictions) == {"roc_auc": "no row of class c"}
    assert PROBLEM_TYPE.undefined(np.array(["a", "b", "c"]), predictions) == {}
