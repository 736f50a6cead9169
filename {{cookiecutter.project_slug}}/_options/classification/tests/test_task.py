import numpy as np
import pytest

from {{ cookiecutter.package_name }} import data, task
from {{ cookiecutter.package_name }}.errors import DataError
from {{ cookiecutter.package_name }}.features import resolve_features


def test_the_wine_sample_has_string_labels_for_three_cultivars():
    frame = task.SAMPLES["wine"]()
    assert sorted(frame["cultivar"].unique()) == ["class_0", "class_1", "class_2"]
    assert frame.drop(columns="cultivar").select_dtypes("number").shape[1] == 13


def test_perfect_predictions_score_perfectly():
    y = np.array(["a", "b", "c", "a"])
    classes = np.array(["a", "b", "c"])
    proba = (y[:, None] == classes).astype(float)
    scores = task.score(y, task.Predictions(y, proba, classes))
    assert scores["accuracy"] == scores["f1_macro"] == scores["roc_auc"] == 1.0
    assert scores["log_loss"] < 1e-6


def test_the_baseline_predicts_the_majority_class():
    X = np.zeros((5, 1))
    y = np.array(["a", "a", "a", "b", "c"])
    baseline = task.make_baseline("most_frequent", seed=0).fit(X, y)
    assert set(baseline.predict(X)) == {"a"}


def test_a_label_outside_the_contract_is_counted(problem, params):
    frame = task.SAMPLES["wine"]()
    frame.loc[:4, "cultivar"] = "class_9"
    with pytest.raises(DataError, match=r"column 'cultivar': isin.*5 rows fail"):
        data.validate(frame, problem, params, resolve_features(frame, problem))


def test_an_unknown_hyper_parameter_is_named():
    with pytest.raises(ValueError, match="n_estimator"):
        task.make_candidate("random_forest", {"n_estimator": 10}, seed=0)
