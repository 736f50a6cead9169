import re
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import edit_yaml, quick

from {{ cookiecutter.package_name }} import bundle, data, recent_series, series, train
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import load_problem
from {{ cookiecutter.package_name }}.errors import DataError
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE, TargetSpec


def daily(days: int, start: str = "2024-01-01") -> tuple[list[str], list[float]]:
    stamps = pd.date_range(start, periods=days, freq="D").strftime("%Y-%m-%d").tolist()
    return stamps, [float(i) for i in range(days)]


def test_short_gaps_are_interpolated_and_marked():
    stamps, values = daily(10)
    index, filled, missing = series.regularise(
        stamps[:3] + stamps[5:], values[:3] + values[5:], "D", max_gap=2
    )
    assert len(index) == 10
    np.testing.assert_allclose(filled, values)  # a straight line is interpolated exactly
    assert missing.tolist() == [False] * 3 + [True] * 2 + [False] * 5


def test_unsorted_rows_are_sorted_and_missing_ends_dropped():
    stamps, values = daily(6)
    index, filled, _ = series.regularise(stamps[::-1], [None, *values[1:5], None][::-1], "D", 0)
    assert index[0] == pd.Timestamp(stamps[1])
    assert filled.tolist() == values[1:5]


def test_a_daylight_saving_change_is_no_gap():
    stamps = ["2024-03-31T00:00:00+01:00", "2024-03-31T01:00:00+01:00", "2024-03-31T03:00:00+02:00"]
    index, _, missing = series.regularise(stamps, [1.0, 2.0, 3.0], "h", max_gap=0)
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
        series.regularise(stamps, [1.0] * len(stamps), "D", max_gap=2)


def test_the_split_is_by_time_and_the_test_period_is_the_end(project, problem, params):
    data.collect(problem, project.raw, project.root)
    summary = PROBLEM_TYPE.prepare(data.read_raw(project.raw), problem, params, project.processed)
    train, test, schema = data.read_processed(project.processed)
    stamp = problem.target.timestamp
    assert schema == {stamp: "datetime"}
    assert train[stamp].is_monotonic_increasing and test[stamp].is_monotonic_increasing
    step = pd.Timedelta(1, unit="D")
    assert test[stamp].iloc[0] - train[stamp].iloc[-1] == step  # contiguous, no overlap
    assert len(test) == round((len(train) + len(test)) * params.split.test_size)
    assert summary["interpolated"] == int(train[series.FILLED].sum() + test[series.FILLED].sum())
    assert summary["interpolated"] > 0  # the sample has missing days


def test_a_gap_longer_than_max_gap_fails_prepare_with_its_dates(project, params):
    frame = PROBLEM_TYPE.samples["demand"]()
    frame = frame.drop(index=range(100, 110)).reset_index(drop=True)
    (project.root / "data" / "external").mkdir(parents=True)
    frame.to_csv(project.root / "data" / "external" / "gappy.csv", index=False)
    edit_yaml(project.problem, source={"kind": "file", "path": "data/external/gappy.csv"})
    problem = load_problem(project.problem)
    data.collect(problem, project.raw, project.root)
    with pytest.raises(DataError, match=r"gaps longer than max_gap=3 steps, the first \d+ steps"):
        PROBLEM_TYPE.prepare(data.read_raw(project.raw), problem, params, project.processed)


def test_a_test_period_shorter_than_the_horizon_is_refused(problem):
    stamps = pd.date_range("2024-01-01", periods=50, freq="D")
    frame = pd.DataFrame({problem.target.time_column: stamps, "value": range(50)})
    with pytest.raises(DataError, match="fewer than the horizon"):
        series.split(frame, problem.target, test_size=0.1)


def test_a_missing_timestamp_column_is_named(problem):
    frame = PROBLEM_TYPE.samples["demand"]().drop(columns=problem.target.timestamp)
    with pytest.raises(DataError, match=f"target.timestamp: '{problem.target.timestamp}'"):
        series.resolve_features(frame, problem)


def spec(timestamp, frequency: str) -> TargetSpec:
    return TargetSpec(
        name="value", timestamp=timestamp, frequency=frequency, horizon=1, season_length=1
    )


@pytest.mark.parametrize(
    ("written", "frequency", "periods"),
    [
        ([1700.0, 1701.0, np.nan, 1703.0], "YE", ["1700", "1701", None, "1703"]),
        ([1700, 1701, 1702, 1703], "YE", ["1700", "1701", "1702", "1703"]),
        (["1959Q1", "1959-Q2", "1959q3", "1960Q1"], "QE", ["1959Q1", "1959Q2", "1959Q3", "1960Q1"]),
        (
            ["2001-03", "2001-04", "2001-12", "2002-01"],
            "ME",
            ["2001-03", "2001-04", "2001-12", "2002-01"],
        ),
        (["1959Q1", "1959Q2", "1959Q3", "1959Q4"], "D", ["1959Q1", "1959Q2", "1959Q3", "1959Q4"]),
    ],
)
def test_years_and_period_strings_land_on_the_grid_inside_their_period(written, frequency, periods):
    stamps = PROBLEM_TYPE.timestamps(
        pd.DataFrame({"t": written, "value": 1.0}), spec("t", frequency)
    )
    offset = pd.tseries.frequencies.to_offset(frequency)
    for stamp, period in zip(stamps, periods, strict=True):
        if period is None:
            assert pd.isna(stamp)
            continue
        period = pd.Period(period)
        assert period.start_time <= stamp <= period.end_time
        assert offset.is_on_offset(stamp)


def test_iso_dates_and_times_are_read_as_written():
    written = ["2024-01-05", "2024-01-05T10:30:00", "2024-03-31T03:00:00+02:00"]
    stamps = PROBLEM_TYPE.timestamps(pd.DataFrame({"t": written, "value": 1.0}), spec("t", "D"))
    assert stamps.name == "t"
    assert stamps.tolist() == [
        pd.Timestamp("2024-01-05"),
        pd.Timestamp("2024-01-05 10:30"),
        pd.Timestamp("2024-03-31 01:00"),  # in UTC
    ]


@pytest.mark.parametrize(
    ("part", "frequency", "written", "expected"),
    [
        ("quarter", "QE", [1, "Q2", 4.0], ["1990Q1", "1990Q2", "1990Q4"]),
        ("month", "ME", [1, 7.0, 12], ["1990-01", "1990-07", "1990-12"]),
    ],
)
def test_a_year_and_a_quarter_or_month_column_make_one_time(part, frequency, written, expected):
    raw = pd.DataFrame({"year": [1990.0] * 3, part: written, "value": 1.0})
    stamps = PROBLEM_TYPE.timestamps(raw, spec(["year", part], frequency))
    assert stamps.name == f"year_{part}"
    assert stamps.tolist() == [pd.Period(p).end_time.normalize() for p in expected]


@pytest.mark.parametrize(
    ("written", "frequency", "bad"),
    [
        (["2024-01-01", "n/a", "1700.5"], "D", r"2 rows fail, e\.g\. 'n/a', '1700\.5'"),
        (["1959Q5", "1959Q1", "1959Q2"], "QE", r"1 rows fail, e\.g\. '1959Q5'"),
        (["2001-13", "2001-12", "2001-11"], "ME", r"1 rows fail, e\.g\. '2001-13'"),
    ],
)
def test_values_that_are_no_time_are_named(written, frequency, bad):
    with pytest.raises(DataError, match=f"column 't': {bad}"):
        PROBLEM_TYPE.timestamps(pd.DataFrame({"t": written, "value": 1.0}), spec("t", frequency))
    raw = pd.DataFrame({"year": [1990, 1990], "month": [12, 13], "value": 1.0})
    with pytest.raises(DataError, match=r"column 'year' and 'month': 1 rows fail, e.g\. '1990 13'"):
        PROBLEM_TYPE.timestamps(raw, spec(["year", "month"], "ME"))


@pytest.mark.parametrize(
    ("timestamp", "frequency", "message"),
    [
        (["year", "quarter", "month"], "QE", "give one column, or two"),
        (["year", "year"], "QE", "give one column, or two"),
        (["year", "quarter"], "D", r"needs a quarterly \(QE\) or monthly \(ME\) frequency"),
    ],
)
def test_a_bad_timestamp_setting_is_one_error_exit_2(
    project, monkeypatch, capsys, timestamp, frequency, message
):
    edit_yaml(project.problem, target__timestamp=timestamp, target__frequency=frequency)
    monkeypatch.setattr(sys, "argv", ["cli", "validate", "--root", str(project.root)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: problem.yaml: target")
    assert "timestamp" in error[0] and re.search(message, error[0])


@pytest.mark.parametrize(
    ("anchor", "frequency"), [("W-SAT", "W"), ("W-WED", "W-SUN"), ("QE-NOV", "QE"), ("MS", "ME")]
)
def test_the_off_grid_error_names_the_anchor_the_data_is_on(anchor, frequency):
    stamps = pd.date_range("2023-01-01", periods=12, freq=anchor).delete([3, 7])
    with pytest.raises(ValueError, match=r"use frequency: \S+$") as error:
        series.regularise(stamps.strftime("%Y-%m-%d"), [1.0] * 10, frequency, max_gap=1)
    suggested = str(error.value).rsplit(" ", 1)[-1]
    assert stamps.isin(pd.date_range(stamps[0], stamps[-1], freq=suggested)).all()
    if anchor.startswith("W"):
        assert suggested == anchor  # one weekday: one weekly anchor


def test_no_frequency_is_suggested_for_irregular_times():
    stamps = ["2024-01-06", "2024-01-13", "2024-01-17", "2024-01-27"]
    with pytest.raises(ValueError, match="not on the 'W' grid") as error:
        series.regularise(stamps, [1.0] * 4, "W", max_gap=1)
    assert "use frequency" not in str(error.value)


def test_year_and_quarter_columns_give_a_quarterly_series_that_trains(project, params):
    quarters = pd.period_range("1960Q1", periods=120, freq="Q")
    rng = np.random.default_rng(3)
    values = 100 + 0.2 * np.arange(120) + 6 * (quarters.quarter == 4) + rng.normal(0, 1, 120)
    raw = pd.DataFrame(
        {"year": quarters.year.astype(float), "quarter": quarters.quarter, "gdp": values}
    )
    path = project.root / "data" / "external" / "gdp.csv"
    path.parent.mkdir(parents=True)
    raw.sample(frac=1, random_state=0).to_csv(path, index=False)  # in no particular order
    edit_yaml(
        project.problem,
        source={"kind": "file", "path": "data/external/gdp.csv"},
        target={
            "name": "gdp",
            "timestamp": ["year", "quarter"],
            "frequency": "QE",
            "horizon": 4,
            "season_length": 4,
        },
    )
    problem = load_problem(project.problem)
    data.collect(problem, project.raw, project.root)
    PROBLEM_TYPE.prepare(data.read_raw(project.raw), problem, params, project.processed)
    train_part, test_part, schema = data.read_processed(project.processed)
    assert schema == {"year_quarter": "datetime"}
    stamps = pd.concat([train_part, test_part])["year_quarter"]
    assert stamps.tolist() == [q.end_time.normalize() for q in quarters]

    model = {"lag_seasons": 2, "max_iter": 20, "min_samples_leaf": 10}
    fast = quick(params).model_copy(
        update={
            "model": params.model.model_copy(
                update={"name": "lag_gradient_boosting", "params": model}
            )
        }
    )
    served = bundle.load(
        project.models / train.run(project.processed, project.models, problem, fast)
    )
    assert served.metadata["features"][0]["timestamp"] == "year_quarter"
    raw.tail(40).to_csv(project.root / "recent.csv", index=False)  # year and quarter columns
    recent = recent_series.from_file(served, project.root / "recent.csv", last=None)
    # The level check reads the steps after the training period: the test period.
    np.testing.assert_allclose(recent.columns["level"], raw["gdp"].tail(len(test_part)))
    assert recent.output_rows == 40 - served.model.window_ - problem.target.horizon + 1
