"""The time split: the test period stays the same on every rerun and never reaches training."""

import pandas as pd
import pytest

from {{ cookiecutter.package_name }} import data
from {{ cookiecutter.package_name }}.errors import DataError, exit_code
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


def test_a_rerun_keeps_exactly_the_same_test_period(project, problem, params):
    data.collect(problem, project.raw, project.root)
    PROBLEM_TYPE.prepare(data.read_raw(project.raw), problem, params, project.processed)
    first_train, first_test, _ = data.read_processed(project.processed)

    PROBLEM_TYPE.prepare(data.read_raw(project.raw), problem, params, project.processed)
    train, test, _ = data.read_processed(project.processed)

    pd.testing.assert_frame_equal(test, first_test)
    pd.testing.assert_frame_equal(train, first_train)
    stamp = problem.target.timestamp
    assert not set(train[stamp]) & set(test[stamp])


def test_a_test_step_in_training_is_refused_before_evaluation(project, problem, params):
    data.collect(problem, project.raw, project.root)
    PROBLEM_TYPE.prepare(data.read_raw(project.raw), problem, params, project.processed)
    train, test, _ = data.read_processed(project.processed)
    leaked = pd.concat([train, test.iloc[:3]], ignore_index=True)
    leaked.to_parquet(project.processed / data.TRAIN_FILE, index=False)

    with pytest.raises(DataError, match="3 test steps are also in the training part") as caught:
        data.read_processed(project.processed)
    assert exit_code(caught.value) == 2
