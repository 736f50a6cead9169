"""The train/test split follows raw row identities: no test row ever reaches training."""

import json
import logging

import pandas as pd
import pytest
from conftest import edit_yaml

from {{ cookiecutter.package_name }} import data, features, rows
from {{ cookiecutter.package_name }}.config import load_params, load_problem
from {{ cookiecutter.package_name }}.errors import DataError, exit_code
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


def use_file(project, frame: pd.DataFrame):
    """Make `frame` the project's source, as a user pointing problem.yaml at a file would."""
    path = project.root / "data" / "external" / "rows.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    edit_yaml(project.problem, source={"kind": "file", "path": "data/external/rows.parquet"})
    return load_problem(project.problem)


def with_repeats(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every fifth row repeated once or twice more, copies spread out."""
    copies = [frame.iloc[::5], frame.iloc[::10]]
    return pd.concat([frame, *copies]).sample(frac=1, random_state=3).reset_index(drop=True)


def prepare(project, problem, params, raw=None) -> dict:
    raw = data.read_raw(project.raw) if raw is None else raw
    return features.prepare(raw, problem, params, project.processed)


def identified(project) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test as written, indexed by row identity."""
    return (
        pd.read_parquet(project.processed / data.TRAIN_FILE),
        pd.read_parquet(project.processed / data.TEST_FILE),
    )


def recorded_test_ids(project) -> list[str]:
    return json.loads((project.processed / data.SPLIT_FILE).read_text())["test_ids"]


def assert_disjoint(train_rows: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    shared = set(data.row_content(train_rows.index)) & set(data.row_content(test_rows.index))
    assert not shared


def change_kinds(project, kinds):
    """Declare the first numeric (else first) feature categorical: 3.0 becomes "3.0"."""
    name = next((n for n, k in kinds.items() if k == "numeric"), next(iter(kinds)))
    edit_yaml(project.problem, features={**kinds, name: "categorical"})


def change_drop(project, kinds):
    edit_yaml(project.problem, drop=[*load_problem(project.problem).drop, list(kinds)[-1]])


def change_preprocessing(project, kinds):
    edit_yaml(
        project.params,
        preprocessing__scaler="robust",
        preprocessing__min_category_frequency=3,
        preprocessing__numeric_imputer="mean",
    )


@pytest.mark.parametrize("change", [change_kinds, change_drop, change_preprocessing])
def test_a_config_change_keeps_exactly_the_same_test_rows(project, problem, params, change):
    data.collect(problem, project.raw, project.root)
    prepare(project, problem, params)
    first_train, first_test = identified(project)
    recorded = recorded_test_ids(project)
    _, _, kinds = data.read_processed(project.processed)

    change(project, kinds)
    problem, params = load_problem(project.problem), load_params(project.params)
    prepare(project, problem, params)

    train_rows, test_rows = identified(project)
    assert recorded_test_ids(project) == recorded
    assert sorted(test_rows.index) == sorted(first_test.index) == sorted(recorded)
    assert list(train_rows.index) == list(first_train.index)
    assert_disjoint(train_rows, test_rows)
    _, _, new_kinds = data.read_processed(project.processed)
    assert set(test_rows.columns) == {*new_kinds, problem.target.name}


def test_new_rows_are_split_by_the_same_rule_and_recorded_rows_stay(project, problem, params):
    data.collect(problem, project.raw, project.root)
    raw = data.read_raw(project.raw)
    prepare(project, problem, params, raw.sample(frac=0.7, random_state=1))
    first_train, first_test = identified(project)

    prepare(project, problem, params, raw)  # more data arrives, in another order
    train_rows, test_rows = identified(project)
    prepare(project, problem, params, raw)  # and nothing more
    again_train, again_test = identified(project)

    assert set(first_test.index) <= set(test_rows.index)  # no recorded row changes side
    assert set(first_train.index) <= set(train_rows.index)
    new = len(raw) - len(first_train) - len(first_test)
    added = len(test_rows) - len(first_test)
    assert 0 < added < new  # the new rows are split too, so the gate sees some of them
    assert abs(added / new - params.split.test_size) < 0.1
    assert len(train_rows) + len(test_rows) == len(raw)
    assert_disjoint(train_rows, test_rows)
    assert sorted(again_test.index) == sorted(test_rows.index)
    assert list(again_train.index) == list(train_rows.index)


def test_repeated_rows_stay_on_one_side_of_the_split_and_in_one_fold(project, params):
    frame = with_repeats(PROBLEM_TYPE.samples[load_problem(project.problem).source.name]())
    problem = use_file(project, frame)
    data.collect(problem, project.raw, project.root)
    summary = prepare(project, problem, params)
    train_rows, test_rows = identified(project)

    assert summary["cleaning"]["duplicates"] == len(frame) - len(frame.drop_duplicates())
    assert summary["cleaning"]["duplicates_dropped"] == 0
    assert len(train_rows) + len(test_rows) == len(frame)  # kept by default
    assert_disjoint(train_rows, test_rows)

    target = problem.target.name
    X, y = train_rows.drop(columns=target), train_rows[target]
    groups = rows.cv_groups(X, y)
    assert len(set(groups)) < len(groups)  # the repeats are in training too
    for fit_idx, val_idx in PROBLEM_TYPE.cv_splitter(params.cv.folds, 0).split(X, y, groups=groups):
        assert not set(groups[fit_idx]) & set(groups[val_idx])


def test_dropping_repeated_rows_is_explicit_and_counted(project, params, caplog):
    sample = PROBLEM_TYPE.samples[load_problem(project.problem).source.name]()
    frame = with_repeats(sample)
    problem = use_file(project, frame)
    edit_yaml(project.params, preprocessing__drop_duplicates=True)
    params = load_params(project.params)
    data.collect(problem, project.raw, project.root)
    summary = prepare(project, problem, params)

    repeats = len(frame) - len(frame.drop_duplicates())
    cleaning = json.loads((project.processed / features.CLEANING_FILE).read_text())["cleaning"]
    assert cleaning == summary["cleaning"]
    assert cleaning["duplicates_dropped"] == repeats
    assert cleaning["duplicate_share"] == pytest.approx(repeats / len(frame), abs=1e-4)
    assert summary["train_rows"] + summary["test_rows"] == len(frame) - repeats
    assert f"dropped {repeats} repeated rows" in caplog.text


def test_rows_without_a_target_are_dropped_and_counted(project, params, caplog):
    caplog.set_level(logging.INFO)
    frame = PROBLEM_TYPE.samples[load_problem(project.problem).source.name]()
    target = load_problem(project.problem).target.name
    frame.loc[[3, 30, 60], target] = None
    problem = use_file(project, frame)
    data.collect(problem, project.raw, project.root)
    summary = prepare(project, problem, params)

    assert summary["cleaning"]["missing_target"] == 3
    assert summary["train_rows"] + summary["test_rows"] == len(frame) - 3
    assert "3 without a target removed" in caplog.text


def test_a_test_row_in_training_is_refused_before_evaluation(project, problem, params):
    data.collect(problem, project.raw, project.root)
    prepare(project, problem, params)
    train_rows, test_rows = identified(project)
    pd.concat([train_rows, test_rows.iloc[[0]]]).to_parquet(project.processed / "train.parquet")

    with pytest.raises(DataError, match="1 test rows are also in the training set") as caught:
        data.read_processed(project.processed)
    assert exit_code(caught.value) == 2

    prepare(project, problem, params)  # rebuilt from the recorded identities
    assert_disjoint(*identified(project))


def test_a_new_source_draws_a_new_split_and_archives_the_old_one(project, problem, params):
    data.collect(problem, project.raw, project.root)
    prepare(project, problem, params)
    first = recorded_test_ids(project)

    sample = data.read_raw(project.raw)
    problem = use_file(project, sample)  # the same rows from another source
    prepare(project, problem, params, sample)

    assert len(list((project.processed / "archive").glob("split-*.json"))) == 1
    assert sorted(recorded_test_ids(project)) == sorted(first)  # same seed, same identities


def test_a_source_whose_test_rows_are_all_gone_gets_a_new_split(project, params, caplog):
    sample = PROBLEM_TYPE.samples[load_problem(project.problem).source.name]()
    half = len(sample) // 2
    problem = use_file(project, sample.iloc[:half])
    data.collect(problem, project.raw, project.root)
    prepare(project, problem, params)

    use_file(project, sample.iloc[half:])  # the same file name, other rows
    data.collect(problem, project.raw, project.root, force=True)
    prepare(project, problem, params)

    _, test_rows = identified(project)
    assert sorted(recorded_test_ids(project)) == sorted(test_rows.index)
    assert set(test_rows.index) <= set(data.row_ids(data.read_raw(project.raw)))
    assert "none of the recorded test rows is left" in caplog.text
