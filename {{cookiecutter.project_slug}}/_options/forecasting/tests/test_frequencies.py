"""Every pandas frequency, start or end anchored, from the raw rows to dated forecasts, and
the forms a timestamp may take in the data and in a request."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import edit_yaml, run_cli

from {{ cookiecutter.package_name }} import (
    forecasters,
    recent_series,
    series,
    series_eda,
    series_service,
)
from {{ cookiecutter.package_name }}.errors import DataError
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE, TargetSpec

SEASON, HORIZON = 4, 3
ALIASES = [
    "MS",
    "ME",
    "QS",
    "QE",
    "QS-FEB",
    "YS",
    "YE",
    "W-MON",
    "W-SUN",
    "B",
    "D",
    "h",
    "2h",
    "15min",
    "min",
    "SME",
    "BMS",
]
# One grid of each kind: month start, quarter end, weekly, business days, hours, half months.
EVERY_KIND = {"MS", "QE", "W-SUN", "B", "2h", "SME"}


def spec(frequency: str, timestamp_format: str | None = None) -> TargetSpec:
    return TargetSpec(
        name="value",
        timestamp="t",
        timestamp_format=timestamp_format,
        frequency=frequency,
        horizon=HORIZON,
        season_length=SEASON,
    )


def read(written: list, frequency: str = "D", timestamp_format: str | None = None) -> list:
    raw = pd.DataFrame({"t": written, "value": 1.0})
    return PROBLEM_TYPE.timestamps(raw, spec(frequency, timestamp_format)).tolist()


@pytest.mark.parametrize(
    "alias",
    [a if a in EVERY_KIND else pytest.param(a, marks=pytest.mark.slow) for a in ALIASES],
)
def test_a_series_on_any_grid_is_read_trained_and_forecast_on_that_grid(alias):
    stamps = pd.date_range("1990-01-01", periods=160, freq=alias)
    target = spec(alias)
    values = 10.0 + forecasters.season_positions(stamps, alias, SEASON)  # the season is all
    written = stamps.strftime("%d %b %Y %H:%M")  # not ISO: the format pandas infers
    raw = pd.DataFrame({"t": written, "value": values}).iloc[::-1]  # in no particular order
    frame = series.series_frame(raw, target)
    [part] = series.parts(frame, target)
    dates, y, positions = part.dates, part.values, part.positions
    assert dates.equals(stamps)
    assert (np.diff(positions) % SEASON == 1).all()
    for start, stop in [(0, 40), (37, 121), (150, 160)]:  # any stretch: the same places
        stretch = forecasters.season_positions(dates[start:stop], alias, SEASON)
        np.testing.assert_array_equal(stretch, positions[start:stop])

    model = {"lag_seasons": 2, "max_iter": 50, "min_samples_leaf": 5}
    candidate = PROBLEM_TYPE.make_candidate("lag_gradient_boosting", model, 0, target)
    baseline = PROBLEM_TYPE.make_baseline("seasonal_naive", 0, target)
    schema = series.series_schema(frame, target, candidate.fit(y, positions).window_)
    served = SimpleNamespace(
        version="v1",
        metadata={
            "features": schema,
            "scale": 1.0,
            "series": {},
            "interval": {"coverage": 0.9, "widths": [1.0] * HORIZON},
        },
        model=candidate,
        reference=series.reference_statistics(candidate, frame, target, 40),
    )
    history = {"timestamps": written[-20:].tolist(), "values": y[-20:].tolist()}
    request = series_service.request_model(schema, 1000).model_validate({"history": history})
    made = series_service.Predictor(served).predict_request(request)
    future = pd.date_range(stamps[-1], periods=HORIZON + 1, freq=alias)[1:]
    assert pd.DatetimeIndex(made.timestamps).equals(future)
    expected = 10.0 + (positions[-1] + np.arange(1, HORIZON + 1)) % SEASON
    np.testing.assert_allclose(made.values[0], expected, atol=0.5)
    windows = y[None, -baseline.fit(y).window_ :]
    np.testing.assert_allclose(baseline.forecast(windows, positions[-1:] + 1, HORIZON)[0], expected)


@pytest.mark.parametrize(
    ("alias", "written", "landing"),
    [
        ("MS", ["1990-01", "1990-02", "1991-12"], ["1990-01-01", "1990-02-01", "1991-12-01"]),
        ("ME", ["1990-01", "1990-02", "1991-12"], ["1990-01-31", "1990-02-28", "1991-12-31"]),
        ("QS", ["1990Q1", "1990Q2", "1991Q4"], ["1990-01-01", "1990-04-01", "1991-10-01"]),
        ("QS-FEB", ["1990Q1", "1990Q2"], ["1990-02-01", "1990-05-01"]),
        ("QE", ["1990Q1", "1990Q2", "1991Q4"], ["1990-03-31", "1990-06-30", "1991-12-31"]),
        ("YS", [1990, 1991.0, "1992"], ["1990-01-01", "1991-01-01", "1992-01-01"]),
        ("YE", [1990, 1991.0, "1992"], ["1990-12-31", "1991-12-31", "1992-12-31"]),
    ],
)
def test_a_period_lands_on_the_first_step_of_the_grid_inside_it(alias, written, landing):
    assert read(written, alias) == [pd.Timestamp(stamp) for stamp in landing]


@pytest.mark.parametrize(
    ("written", "timestamp_format", "expected"),
    [
        (["Jan 1 2000", "Feb 29 2000"], None, ["2000-01-01", "2000-02-29"]),
        (["2000.01.31", "2000.02.29"], None, ["2000-01-31", "2000-02-29"]),
        (["01/02/2000", "03/02/2000"], None, ["2000-01-02", "2000-03-02"]),  # month first
        (["01/02/2000", "13/02/2000"], None, ["2000-02-01", "2000-02-13"]),  # day first reads both
        (["2000-01-31", "Feb 29 2000"], None, ["2000-01-31", "2000-02-29"]),  # ISO, then inferred
        (["01/02/2000", "03/02/2000"], "%d/%m/%Y", ["2000-02-01", "2000-02-03"]),
        (["31.01.2000 14h", "2000"], "%d.%m.%Y %Hh", ["2000-01-31 14:00", "2000-01-01"]),
    ],
)
def test_dates_are_read_in_the_timestamp_format_or_the_one_pandas_infers(
    written, timestamp_format, expected
):
    assert read(written, "D", timestamp_format) == [pd.Timestamp(stamp) for stamp in expected]


@pytest.mark.parametrize(
    ("written", "timestamp_format", "message"),
    [
        (
            ["Jan 1 2000", "Jan 2 2000", "03/01/2000", "2000-01-04"],
            "%d/%m/%Y",
            r"column 't': 3 rows fail, e\.g\. 'Jan 1 2000', 'Jan 2 2000', '2000-01-04': not in the "
            r"format target\.timestamp_format '%d/%m/%Y'",
        ),
        (
            ["01/02/2000", "Jan 3 2000", "12:30"],  # one format: two forms cannot both be read
            None,
            r"column 't': 2 rows fail, e\.g\. 'Jan 3 2000', '12:30': .* set "
            r"target\.timestamp_format in configs/problem\.yaml",
        ),
    ],
)
def test_dates_that_cannot_be_read_are_one_error_naming_them(written, timestamp_format, message):
    with pytest.raises(DataError, match=message) as error:
        read(written, "D", timestamp_format)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"target__frequency": "M"}, "'M' is an alias pandas 3 no longer reads: write ME"),
        ({"target__frequency": "2H"}, "write 2h"),
        ({"target__frequency": "Q-NOV"}, "write QE-NOV"),
        ({"target__frequency": "W-FOO"}, "unknown frequency 'W-FOO'"),
        ({"target__timestamp_format": "%Y-%Q"}, "'%Y-%Q': 'Q' is a bad directive"),
    ],
)
def test_a_bad_frequency_or_format_is_one_error_exit_2(
    project, monkeypatch, capsys, setting, message
):
    edit_yaml(project.problem, **setting)
    assert run_cli(monkeypatch, "validate", "--root", str(project.root)) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: problem.yaml: target")
    assert message in error[0]


def test_a_timestamp_format_that_does_not_fit_the_data_fails_prepare(project, monkeypatch, capsys):
    edit_yaml(project.problem, target__timestamp_format="%d/%m/%Y")  # the sample is ISO
    assert run_cli(monkeypatch, "pipeline", "--root", str(project.root)) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "not in the format target.timestamp_format '%d/%m/%Y'" in error[0]


def test_a_request_and_the_monitor_read_the_dates_as_the_data_writes_them():
    stamps = pd.date_range("2000-01-01", periods=12, freq="MS")
    schema = {"frequency": "MS", "timestamp_format": "%d/%m/%Y"}
    written = stamps.strftime("%d/%m/%Y").tolist()
    assert series_service.history_times(written, schema).equals(stamps)
    assert series_service.history_times([*written[:11], "2000-12"], schema).equals(stamps)
    years = series_service.history_times([1990, 1991, "1992"], {**schema, "frequency": "YE"})
    assert years.equals(pd.date_range("1990-12-31", periods=3, freq="YE"))

    record = {
        "series_id": None,
        "future": None,
        "history": {"timestamps": written, "values": [1.0] * 11 + [None]},
    }
    _, missing, actuals = recent_series.recent_values([record], schema)
    assert missing == pytest.approx(1 / 12)
    assert list(actuals) == [(None, stamp) for stamp in stamps[:11]]

    for bad, message in [
        ([*written[:3], "2000-04-01T00:00"], r"timestamps\[3\] '2000-04-01T00:00' is no time"),
        ([*written[:3], written[1]], r"timestamps\[3\] '01/02/2000' comes before timestamps\[2\]"),
        ([*written[:3], written[2]], r"timestamps\[3\] '01/03/2000' is duplicated"),
    ]:
        with pytest.raises(ValueError, match=message):
            series_service.history_times(bad, schema)


def test_the_api_takes_the_files_own_dates(trained_project, client, card):
    series_entry = card["features"][0]
    example = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
    history = example["examples"][0]["history"]
    own = [pd.Timestamp(stamp).strftime("%b %d %Y") for stamp in history["timestamps"]]
    iso = client.post("/v1/predict", json={"history": history})
    written = client.post("/v1/predict", json={"history": {**history, "timestamps": own}})
    assert iso.status_code == written.status_code == 200, written.text
    assert written.json()["forecast"] == iso.json()["forecast"]
    assert len(written.json()["forecast"]) == series_entry["horizon"]
    own[4] = "Foo 1 2024"
    refused = client.post("/v1/predict", json={"history": {**history, "timestamps": own}})
    assert refused.status_code == 422
    assert "timestamps[4] 'Foo 1 2024' is no time" in refused.text


def test_a_yearly_series_has_no_one_row_seasonal_profile(tmp_path):
    dates = pd.Series(pd.date_range("1990-12-31", periods=30, freq="YE"))
    profile = series_eda.seasonal_profile(dates, pd.Series(np.arange(30.0), name="value"))
    assert series_eda.profile_section(profile, tmp_path) == [
        "Every step has the same month, 12: no profile to show.",
        "",
    ]
    assert not (tmp_path / "figures").exists()
