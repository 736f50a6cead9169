"""The drift checks and the report, on made-up data: the same for every problem type."""

import json

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }} import drift, drift_report
from {{ cookiecutter.package_name }}.config import MonitoringParams
from {{ cookiecutter.package_name }}.errors import CannotTell

THRESHOLDS = MonitoringParams()


def through_json(reference: dict) -> dict:
    """As the bundle stores it and the monitor reads it back."""
    return json.loads(json.dumps(reference))


def reference_of(frame: pd.DataFrame, kinds: dict[str, str]) -> dict:
    outputs = {"kind": "value_bins", **drift.value_bins(np.linspace(0, 1, 50))}
    return through_json(drift.reference_statistics(frame, kinds, outputs))


def judge(reference: dict, frame: pd.DataFrame) -> dict:
    columns = {name: frame[name] for name in reference["features"]}
    outputs = np.random.default_rng(0).uniform(0, 1, len(frame))
    return drift.compare_columns(reference, columns, outputs, THRESHOLDS)


def test_psi_is_zero_for_equal_shares_and_large_for_a_new_bucket():
    assert drift.psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0
    assert drift.psi([0.5, 0.5, 0.0], [0.35, 0.35, 0.3]) > 1


def test_values_beyond_the_outer_edges_count_in_the_end_bins():
    shares = drift.bin_shares(np.array([-5.0, 0.5, 1.5, 9.0]), [0.0, 1.0, 2.0])
    assert shares.tolist() == [0.5, 0.5]


def test_repeated_long_decimals_compare_exactly_as_training_stored_them():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"ratio": np.log(rng.integers(1, 6, 2000) / 7)})
    reference = reference_of(frame, {"ratio": "numeric"})
    assert set(reference["features"]["ratio"]["sample"]) <= set(frame["ratio"])
    for seed in range(3):
        report = judge(reference, frame.sample(frac=0.5, random_state=seed))
        assert report["features"][0]["ks_statistic"] < 0.05
        assert report["verdict"] == "no drift"


@pytest.fixture(scope="module")
def dates() -> pd.DataFrame:
    days = pd.date_range("2021-01-01", "2023-12-31", freq="D")
    return pd.DataFrame({"day": days.strftime("%Y-%m-%d")})


def test_dates_like_training_are_no_drift(dates):
    reference = reference_of(dates, {"day": "datetime"})
    result = judge(reference, dates.sample(400, random_state=0))["features"][0]
    assert result["outside_share"] == 0
    assert result["status"] == "ok"


def test_a_reference_without_dates_checks_only_the_missing_rate(dates):
    reference = reference_of(dates, {"day": "datetime"})
    reference["features"]["day"] = {"kind": "datetime", "missing_rate": 0.0}  # an older bundle
    result = judge(reference, dates.head(200))["features"][0]
    assert result["status"] == "ok"
    assert result["psi"] is None


def test_dates_past_the_training_range_or_not_dates_drift(dates):
    reference = reference_of(dates, {"day": "datetime"})
    recent = dates.sample(400, random_state=1).reset_index(drop=True)
    recent.loc[:199, "day"] = "2025-06-01"
    recent.loc[200:219, "day"] = "not a date"
    result = judge(reference, recent)["features"][0]
    assert result["outside_share"] == pytest.approx(220 / 400)
    assert result["outside_examples"] == ["2025-06-01", "not a date"]
    assert result["status"] == "drift"
    assert any(
        "outside the training range 2021-01-01 to 2023-12-31" in r for r in result["reasons"]
    )


def test_dates_on_weekends_only_drift_by_the_weekday_shares(dates):
    reference = reference_of(dates, {"day": "datetime"})
    weekend = dates[pd.to_datetime(dates["day"]).dt.day_of_week >= 5]
    result = judge(reference, weekend.sample(300, random_state=2))["features"][0]
    assert result["outside_share"] == 0
    assert result["psi_part"] == "weekday"
    assert result["status"] == "drift"


def test_below_min_rows_the_verdict_is_not_enough_data_and_says_what_to_change():
    frame = pd.DataFrame({"x": np.random.default_rng(3).normal(0, 1, 1000)})
    reference = reference_of(frame, {"x": "numeric"})
    report = judge(reference, frame.head(30) + 5)  # a real shift, on 30 rows
    assert report["verdict"] == "not enough data"
    assert not report["drift"]
    assert report["features"][0]["status"] == "warn"
    report["summary"] = drift_report.summary(report, drift_report.Wording())
    assert report["summary"] == (
        f"not enough data: 30 rows, alarms need {THRESHOLDS.min_rows} (monitoring.min_rows); "
        "widen the window with --since/--last or wait for more traffic; already suspect: x"
    )
    with pytest.raises(CannotTell):
        drift_report.raise_verdict(report)
    assert judge(reference, frame.head(300) + 5)["verdict"] == "drift"


def test_a_registered_kind_is_checked_by_its_own_rules():
    def reasons(result, thresholds):
        return ["every value is new"] if result["new"] else []

    drift.register(
        "constant",
        drift.Check(
            reference=lambda values: {"value": float(values.iloc[0])},
            compare=lambda ref, values, rows: {"new": bool((values != ref["value"]).all())},
            reasons=reasons,
            rule=lambda thresholds: "A constant drifts when every value is new.",
        ),
    )
    try:
        reference = reference_of(pd.DataFrame({"c": [1.0] * 200}), {"c": "constant"})
        report = judge(reference, pd.DataFrame({"c": [2.0] * 200}))
        assert report["drifted"] == ["c"]
        assert drift.rules(report) == ["A constant drifts when every value is new."]
    finally:
        drift.CHECKS.pop("constant")


def test_an_undefined_metric_shows_as_undefined_with_its_reason():
    result = {
        "rows": 120,
        "metrics": {
            "score": {
                "reference": 0.9,
                "recent": None,
                "change": None,
                "undefined": "only one class present",
            }
        },
        "primary": {"metric": "score", "reference": 0.9, "recent": None},
        "reasons": [],
        "status": "undefined",
    }
    lines = "\n".join(drift_report._performance_lines(result, drift_report.Wording())).splitlines()
    [row] = [line for line in lines if line.startswith("| score")]
    assert row.split("|")[3].strip() == "undefined"
    assert "- score is undefined: only one class present." in lines
    assert "nan" not in "\n".join(lines).lower()
