"""What every label type shares (labels.py), tested on this project's own kind of label."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from {{ cookiecutter.package_name }} import rows
from {{ cookiecutter.package_name }}.errors import CannotTell
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


@pytest.fixture
def labels(problem) -> tuple:
    """A common, a less common and a rare class of the configured labels, in that order."""
    return tuple(reversed(problem.target.labels[-3:]))


def one_hot(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return (values[:, None] == classes).astype(float)


def test_perfect_predictions_score_perfectly(labels):
    y = np.array([*labels, labels[0]])
    classes = np.array(sorted(labels))  # as a model orders its classes_
    scores = PROBLEM_TYPE.score(y, PROBLEM_TYPE.Predictions(y, one_hot(y, classes), classes))
    for name, metric in PROBLEM_TYPE.metrics.items():
        best = 1.0 if metric.greater_is_better else 0.0
        assert scores[name] == pytest.approx(best, abs=1e-6), name


def test_macro_f1_matches_scikit_learn_on_random_and_one_sided_labels(problem):
    rng = np.random.default_rng(0)
    classes = np.array(problem.target.labels)
    for size in (1, 7, 200):
        y = rng.choice(classes, size)
        for predicted in (rng.choice(classes, size), np.full(size, classes[-1])):
            assert PROBLEM_TYPE.metrics["f1_macro"].compute(
                y, PROBLEM_TYPE.Predictions(predicted, np.empty((size, 0)), classes)
            ) == pytest.approx(f1_score(y, predicted, average="macro"))


def test_the_baseline_predicts_the_majority_class(labels):
    X = np.zeros((5, 1))
    y = np.array([labels[0]] * 3 + [labels[1], labels[2]])
    baseline = PROBLEM_TYPE.make_baseline("most_frequent", seed=0, spec=None).fit(X, y)
    assert set(baseline.predict(X)) == {labels[0]}


def test_the_configured_baseline_log_loss_is_at_most_the_label_entropy(problem, params):
    y = PROBLEM_TYPE.samples[problem.source.name]()[problem.target.name]
    X = np.zeros((len(y), 1))
    baseline = PROBLEM_TYPE.make_baseline(params.baseline.strategy, 0, problem.target).fit(X, y)
    shares = y.value_counts(normalize=True).to_numpy()
    entropy = float(-(shares * np.log(shares)).sum())
    loss = PROBLEM_TYPE.metrics["log_loss"].compute(y.to_numpy(), PROBLEM_TYPE.predict(baseline, X))
    assert loss <= entropy + 1e-9  # equal on the labels it was fitted to, up to rounding
    assert set(baseline.predict(X)) == {y.mode()[0]}  # the class most_frequent would predict


def test_the_per_class_table_shows_a_rare_class_the_candidate_misses(labels):
    common, less, rare = labels
    classes = np.array(sorted(labels))
    y = np.array([common] * 8 + [less] * 3 + [rare])
    guess = np.array([common] * 8 + [less] * 3 + [common])
    candidate = PROBLEM_TYPE.Predictions(guess, one_hot(guess, classes), classes)
    majority = np.full(len(y), common)
    baseline = PROBLEM_TYPE.Predictions(majority, one_hot(majority, classes), classes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing undefined leaks a library warning
        table = PROBLEM_TYPE.evaluation_tables(y, candidate, baseline)["Per class"]
        PROBLEM_TYPE.score(y, baseline)
        present = y != rare  # a sample without the rare class, and one guess of it
        guess = np.where(np.arange(present.sum()) == 0, rare, common)
        PROBLEM_TYPE.score(
            y[present], PROBLEM_TYPE.Predictions(guess, one_hot(guess, classes), classes)
        )
    assert len(table) == 2 * len(classes)
    missed = table[(table["class"] == str(rare)) & (table["model"] == "candidate")]
    assert missed[["recall", "support"]].to_numpy().tolist() == [[0.0, 1]]
    ignored = table[(table["class"] == str(less)) & (table["model"] == "baseline")]
    assert ignored[["precision", "recall", "f1"]].to_numpy().tolist() == [[0.0, 0.0, 0.0]]


def test_cross_validation_with_fewer_distinct_rows_of_a_class_than_folds_cannot_tell():
    y = pd.Series(["a"] * 10 + ["b"] * 4)
    groups = np.r_[np.arange(10), [10, 10, 11, 11]]  # class b: two rows, each of them twice
    with pytest.raises(CannotTell, match=r"class 'b' has 2: use fewer cv\.folds"):
        rows._enough_for_folds(PROBLEM_TYPE.cv_splitter(3, seed=0), y, groups, 3)
    rows._enough_for_folds(PROBLEM_TYPE.cv_splitter(2, seed=0), y, groups, 2)
