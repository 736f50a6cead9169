import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import edit_yaml, quick

from {{ cookiecutter.package_name }} import bundle, data, evaluate, forecasters, train
from {{ cookiecutter.package_name }}.config import load_params, load_problem
from {{ cookiecutter.package_name }}.errors import DataError
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE, Predictions, TargetSpec


def test_the_sample_is_deterministic_daily_and_has_gaps():
    first, second = PROBLEM_TYPE.samples["demand"](), PROBLEM_TYPE.samples["demand"]()
    pd.testing.assert_frame_equal(first, second)
    dates = pd.to_datetime(first["date"])
    assert dates.is_monotonic_increasing
    span = (dates.iloc[-1] - dates.iloc[0]).days + 1
    assert 2 * 365 <= span <= 3 * 366
    assert 0 < span - len(first) < 20  # a few missing days
    by_weekday = first.groupby(dates.dt.day_of_week)["demand"].mean()
    assert by_weekday.max() - by_weekday.min() > 10  # a weekly season


def test_season_positions_repeat_every_season():
    hours = pd.date_range("2024-03-01", periods=72, freq="h")
    positions = forecasters.season_positions(hours, "h", 24)
    assert positions.tolist() == hours.hour.tolist()  # the epoch starts at midnight
    days = pd.date_range("2024-03-04", periods=14, freq="D")  # a Monday
    assert len(set(forecasters.season_positions(days, "D", 7)[[0, 7]])) == 1


def seasons(length: int) -> TargetSpec:
    """A target whose season is `length` steps long."""
    return TargetSpec(
        name="demand", timestamp="date", frequency="D", horizon=1, season_length=length
    )


def test_seasonal_naive_repeats_the_last_season():
    model = PROBLEM_TYPE.make_baseline("seasonal_naive", 0, seasons(3)).fit(np.arange(10.0))
    forecast = model.forecast(np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([0]), horizon=5)
    assert forecast.tolist() == [[2.0, 3.0, 4.0, 2.0, 3.0]]
    naive = PROBLEM_TYPE.make_baseline("naive", 0, seasons(3)).fit(np.arange(10.0))
    assert naive.forecast(np.array([[1.0, 5.0]]), np.array([0]), 2).tolist() == [[5.0, 5.0]]


def test_the_candidate_learns_a_seasonal_pattern_the_baseline_gets_wrong():
    rng = np.random.default_rng(0)
    steps = np.arange(600)
    positions = steps % 7
    series = 50 + 10 * (positions == 5) + 0.05 * steps + rng.normal(0, 1, len(steps))
    candidate = PROBLEM_TYPE.make_candidate(
        "lag_gradient_boosting", {"max_iter": 100}, 0, seasons(7)
    )
    candidate.fit(series[:500], positions[:500])
    baseline = PROBLEM_TYPE.make_baseline("seasonal_naive", 0, seasons(7)).fit(series[:500])
    origins = np.arange(500, 586)
    scale = forecasters.seasonal_scale(series[:500], 7)
    scores = {}
    for name, model in {"candidate": candidate, "baseline": baseline}.items():
        forecasts, actuals = forecasters.backtest(model, series, positions, origins, 14)
        scores[name] = PROBLEM_TYPE.metrics["mase"].compute(actuals, Predictions(forecasts, scale))
    assert scores["candidate"] < scores["baseline"]


WEEK = np.array([0.8, 0.9, 1.0, 1.0, 1.1, 1.4, 0.8])  # a multiplicative weekly pattern


def theta(series, positions, length: int = 7) -> forecasters.ThetaForecaster:
    return PROBLEM_TYPE.make_baseline("theta", 0, seasons(length)).fit(series, positions)


def seasonal_series(seed: int, steps: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    positions = np.arange(steps) % 7
    trend = 100 + 0.2 * np.arange(steps) + rng.normal(0, 1, steps).cumsum()
    return trend * WEEK[positions] * rng.normal(1, 0.01, steps), positions


def test_a_straight_line_goes_on_at_half_its_slope():
    # The Theta method's known damping: the drift is half the slope of the line fit.
    steps = np.arange(200)
    line = 10 + 2 * steps
    model = theta(line, steps % 7)
    window = line[None, -model.window_ :]
    forecast = model.forecast(window, np.array([200 % 7]), 5)
    assert model.indices_ == pytest.approx(np.ones(7))
    np.testing.assert_allclose(forecast[0], line[-1] + np.arange(1, 6), rtol=1e-9)


def test_a_seasonal_pattern_is_found_and_put_back():
    series, positions = seasonal_series(0)
    model = theta(series[:380], positions[:380])
    assert model.indices_ == pytest.approx(WEEK / WEEK.mean(), abs=0.02)
    forecast, actual = forecasters.backtest(model, series, positions, np.arange(380, 387), 14)
    assert np.abs(forecast / actual - 1).mean() < 0.05
    assert (forecast.argmax(axis=1) % 7 == (5 - positions[380:387]) % 7).all()  # the peak day


def test_without_a_season_the_indices_are_ones():
    noise = 50 + np.random.default_rng(1).normal(0, 1, 300)
    assert theta(noise, np.arange(300) % 7).indices_.tolist() == [1.0] * 7
    yearly = theta(noise, np.zeros(300, dtype=int), length=1)
    assert yearly.window_ == 8 and yearly.indices_.tolist() == [1.0]


def test_one_fit_serves_series_of_any_scale():
    (small, positions), (other, _) = seasonal_series(2), seasonal_series(3)
    alone = theta(small, positions)
    together = theta([small, 1000 * small, other], [positions] * 3)
    assert together.alpha_ == alone.alpha_
    window = small[None, -together.window_ :]
    np.testing.assert_allclose(
        together.forecast(1000 * window, positions[:1], 14),
        1000 * together.forecast(window, positions[:1], 14),
    )


def test_the_window_fits_the_longest_series():
    short, shorter = np.arange(1.0, 13.0), np.arange(1.0, 6.0)
    model = theta([short, shorter], [np.arange(12) % 7, np.arange(5) % 7])
    assert model.window_ == 11
    with pytest.raises(ValueError, match="at least 3 steps"):
        theta(np.array([1.0, 2.0]), np.zeros(2, dtype=int))


@pytest.mark.slow
def test_a_pipeline_with_the_theta_baseline_saves_and_loads_it(project):
    edit_yaml(project.params, baseline__strategy="theta")
    problem, params = load_problem(project.problem), quick(load_params(project.params))
    data.collect(problem, project.raw, project.root)
    PROBLEM_TYPE.prepare(data.read_raw(project.raw), problem, params, project.processed)
    version = train.run(project.processed, project.models, problem, params)
    loaded = bundle.load(project.models / version)
    assert isinstance(loaded.baseline, forecasters.ThetaForecaster)
    assert loaded.metadata["features"][0]["min_history"] == loaded.baseline.window_ == 28
    report = evaluate.run(project.processed, project.models, project.reports, problem, params)
    assert report["baseline"]["mase"] < 1.1  # a stronger bar than seasonal naive's 1.09


def test_metrics_match_their_definitions():
    y = np.array([[100.0, 200.0]])
    predictions = Predictions(np.array([[110.0, 180.0]]), scale=5.0)
    scores = PROBLEM_TYPE.score(y, predictions)
    assert scores["mae"] == pytest.approx(15.0)
    assert scores["rmse"] == pytest.approx(np.sqrt((100 + 400) / 2))
    assert scores["mase"] == pytest.approx(3.0)
    assert scores["smape"] == pytest.approx(100 * (20 / 210 + 40 / 380) / 2)
    assert PROBLEM_TYPE.score(y, Predictions(y, 1.0))["smape"] == 0.0


def test_the_response_dates_every_step_with_its_interval():
    values, half = np.array([[1.5, 2.5]]), np.array([0.5, 1.0])
    predictions = Predictions(
        values, 1.0, ("2024-01-01", "2024-01-02"), values - half, values + half, 0.8
    )
    assert PROBLEM_TYPE.response(predictions, "v1") == {
        "model_version": "v1",
        "series_id": None,
        "coverage": 0.8,
        "forecast": [
            {"timestamp": "2024-01-01", "value": 1.5, "lower": 1.0, "upper": 2.0},
            {"timestamp": "2024-01-02", "value": 2.5, "lower": 1.5, "upper": 3.5},
        ],
    }


def test_the_bootstrap_resamples_blocks_of_consecutive_origins(problem, params):
    rng = np.random.default_rng(0)
    y = rng.normal(100, 5, (140, 14))
    candidate = Predictions(y + rng.normal(0, 1, y.shape), 5.0)
    baseline = Predictions(y + rng.normal(0, 3, y.shape), 5.0)
    params = quick(params)
    block = PROBLEM_TYPE.resampling_block(problem.target)
    assert block == problem.target.horizon
    ci = evaluate.bootstrap_primary(y, candidate, baseline, "mae", params, block=block)
    assert ci == evaluate.bootstrap_primary(y, candidate, baseline, "mae", params, block=block)
    low, high = ci["difference"]
    assert low < high < 0  # clearly better: the whole interval is below zero
    assert (
        ci["candidate"][0] < PROBLEM_TYPE.metrics["mae"].compute(y, candidate) < ci["candidate"][1]
    )
    # one block is nothing to resample: no interval, and the gate cannot tell
    assert evaluate.bootstrap_primary(y[:block], candidate, baseline, "mae", params, block) is None


def test_too_few_blocks_of_origins_cannot_be_judged(problem, params):
    horizon, needed = problem.target.horizon, params.gate.min_blocks
    enough = np.zeros((needed * horizon, horizon))
    assert PROBLEM_TYPE.too_small(enough, problem.target, params.gate) is None
    message = PROBLEM_TYPE.too_small(enough[: horizon * (needed - 1)], problem.target, params.gate)
    assert f"make {needed - 1} blocks" in message and "shorter horizon" in message


def test_a_holdout_that_does_not_continue_the_series_is_refused(trained_project, tmp_path):
    models = shutil.copytree(trained_project.models, tmp_path / "models")
    problem = load_problem(trained_project.problem)
    params = quick(load_params(trained_project.params))
    test = pd.read_parquet(trained_project.processed / "test.parquet")
    stamp, name = problem.target.timestamp, problem.target.name
    late = pd.DataFrame(
        {stamp: test[stamp] + pd.Timedelta(len(test) + 5, unit="D"), name: test[name]}
    )
    with pytest.raises(DataError, match="does not continue the history"):
        evaluate.run(
            trained_project.processed, models, tmp_path / "reports", problem, params, holdout=late
        )
