import warnings

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }} import data, task, train
from {{ cookiecutter.package_name }}.errors import CannotTell, DataError
from {{ cookiecutter.package_name }}.features import resolve_features

LABELS = ("a", "b", "rare")  # a common, a less common and a rare class


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


def test_the_configured_baseline_log_loss_is_at_most_the_label_entropy(problem, params):
    y = task.SAMPLES[problem.source.name]()[problem.target.name]
    X = np.zeros((len(y), 1))
    baseline = task.make_baseline(params.baseline.strategy, seed=0).fit(X, y)
    shares = y.value_counts(normalize=True).to_numpy()
    entropy = float(-(shares * np.log(shares)).sum())
    loss = task.METRICS["log_loss"].compute(y.to_numpy(), task.predict(baseline, X))
    assert loss <= entropy + 1e-9  # equal on the labels it was fitted to, up to rounding
    assert set(baseline.predict(X)) == {y.mode()[0]}  # the class most_frequent would predict


def test_the_per_class_table_shows_a_rare_class_the_candidate_misses():
    classes = np.array(sorted(LABELS))  # as a model orders its classes_
    y = np.array([LABELS[0]] * 8 + [LABELS[1]] * 3 + [LABELS[2]])
    guess = np.array([LABELS[0]] * 8 + [LABELS[1]] * 3 + [LABELS[0]])
    candidate = task.Predictions(guess, (guess[:, None] == classes).astype(float), classes)
    majority = np.full(len(y), LABELS[0])
    baseline = task.Predictions(majority, (majority[:, None] == classes) * 1.0, classes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing undefined leaks a library warning
        table = task.evaluation_tables(y, candidate, baseline)["Per class"]
        task.score(y, baseline)
        present = y != LABELS[2]  # a sample without the rare class, and one guess of it
        guess = np.where(np.arange(present.sum()) == 0, LABELS[2], LABELS[0])
        task.score(y[present], task.Predictions(guess, (guess[:, None] == classes) * 1.0, classes))
    assert len(table) == 2 * len(classes)
    rare = table[(table["class"] == str(LABELS[2])) & (table["model"] == "candidate")]
    assert rare[["recall", "support"]].to_numpy().tolist() == [[0.0, 1]]
    common = table[(table["class"] == str(LABELS[1])) & (table["model"] == "baseline")]
    assert common[["precision", "recall", "f1"]].to_numpy().tolist() == [[0.0, 0.0, 0.0]]


def test_roc_auc_without_a_row_of_some_class_is_undefined_with_the_reason():
    classes = np.array(["a", "b", "c"])
    y = np.array(["a", "b", "a"])
    predictions = task.Predictions(y, (y[:, None] == classes).astype(float), classes)
    assert task.undefined(y, predictions) == {"roc_auc": "no row of class c"}
    assert task.undefined(np.array(["a", "b", "c"]), predictions) == {}


def test_cross_validation_with_fewer_distinct_rows_of_a_class_than_folds_cannot_tell():
    y = pd.Series(["a"] * 10 + ["b"] * 4)
    groups = np.r_[np.arange(10), [10, 10, 11, 11]]  # class b: two rows, each of them twice
    with pytest.raises(CannotTell, match=r"class 'b' has 2: use fewer cv\.folds"):
        train._enough_for_folds(task.cv_splitter(3, seed=0), y, groups, 3)
    train._enough_for_folds(task.cv_splitter(2, seed=0), y, groups, 2)
