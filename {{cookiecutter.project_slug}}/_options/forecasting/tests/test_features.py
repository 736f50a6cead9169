import numpy as np
import pandas as pd
import pytest
from conftest import edit_yaml

from {{ cookiecutter.package_name }} import data, features, task
from {{ cookiecutter.package_name }}.config import load_problem
from {{ cookiecutter.package_name }}.errors import DataError


def daily(days: int, start: str = "2024-01-01") -> tuple[list[str], list[float]]:
    stamps = pd.date_range(start, periods=days, freq="D").strftime("%Y-%m-%d").tolist()
    return stamps, [float(i) for i in range(days)]


def test_short_gaps_are_interpolated_and_marked():
    stamps, values = daily(10)
    index, filled, missing = features.regularise(
        stamps[:3] + stamps[5:], values[:3] + values[5:], "D", max_gap=2
    )
    assert len(index) == 10
    np.testing.assert_allclose(filled, values)  # a straight line is interpolated exactly
    assert missing.tolist() == [False] * 3 + [True] * 2 + [False] * 5


def test_unsorted_rows_are_sorted_and_missing_ends_dropped():
    stamps, values = daily(6)
    index, filled, _ = features.regularise(stamps[::-1], [None, *values[1:5], None][::-1], "D", 0)
    assert index[0] == pd.Timestamp(stamps[1])
    assert filled.tolist() == values[1:5]


def test_a_daylight_saving_change_is_no_gap():
    stamps = ["2024-03-31T00:00:00+01:00", "2024-03-31T01:00:00+01:00", "2024-03-31T03:00:00+02:00"]
    index, _, missing = features.regularise(stamps, [1.0, 2.0, 3.0], "h", max_gap=0)
    assert len(index) == 3
    assert not missing.any()


@pytest.mark.parametrize(
    ("stamps", "message"),
    [
        (["2024-01-01", "2024-01-02", "2024-01-02"], "duplicated timestamps"),
        (["2024-01-01", "2024-01-02", "2024-01-03T12:00"], "not on the 'D' grid"),
        (["2024-01-01", "2024-01-02", "2024-01-06"], "gaps longer than max_gap=2"),
    ],
)
def test_series_that_cannot_be_made_regular_are_refused(stamps, message):
    with pytest.raises(ValueError, match=message):
        features.regularise(stamps, [1.0] * len(stamps), "D", max_gap=2)


def test_the_split_is_by_time_and_the_test_period_is_the_end(project, problem, params):
    data.collect(problem, project.raw, project.root)
    summary = features.prepare(data.read_raw(project.raw), problem, params, project.processed)
    train, test, schema = features.read_processed(project.processed)
    stamp = problem.target.timestamp
    assert schema == {stamp: "datetime"}
    assert train[stamp].is_monotonic_increasing and test[stamp].is_monotonic_increasing
    step = pd.Timedelta(1, unit="D")
    assert test[stamp].iloc[0] - train[stamp].iloc[-1] == step  # contiguous, no overlap
    assert len(test) == round((len(train) + len(test)) * params.split.test_size)
    assert summary["interpolated"] == int(
        train[features.FILLED].sum() + test[features.FILLED].sum()
    )
    assert summary["interpolated"] > 0  # the sample has missing days


def test_a_gap_longer_than_max_gap_fails_prepare_with_its_dates(project, params):
    frame = task.SAMPLES["demand"]()
    frame = frame.drop(index=range(100, 110)).reset_index(drop=True)
    (project.root / "data" / "external").mkdir(parents=True)
    frame.to_csv(project.root / "data" / "external" / "gappy.csv", index=False)
    edit_yaml(project.problem, source={"kind": "file", "path": "data/external/gappy.csv"})
    problem = load_problem(project.problem)
    data.collect(problem, project.raw, project.root)
    with pytest.raises(DataError, match=r"gaps longer than max_gap=3 steps, the first \d+ steps"):
        features.prepare(data.read_raw(project.raw), problem, params, project.processed)


def test_a_test_period_shorter_than_the_horizon_is_refused(problem):
    series = pd.DataFrame({"value": range(50)})
    with pytest.raises(DataError, match="fewer than the horizon"):
        features.split(series, problem.target, test_size=0.1)


def test_a_missing_timestamp_column_is_named(problem):
    frame = task.SAMPLES["demand"]().drop(columns=problem.target.timestamp)
    with pytest.raises(DataError, match=f"target.timestamp: '{problem.target.timestamp}'"):
        features.resolve_features(frame, problem)
