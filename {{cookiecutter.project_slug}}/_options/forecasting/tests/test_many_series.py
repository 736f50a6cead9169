"""Many series in one file: one global model, per-series evaluation, the series id in the
API, prediction intervals, and short series that scale the backtests down."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
from conftest import edit_yaml, quick, run_pipeline, scratch_project, settings_for
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import bundle, data, evaluate, recent_series, series, train
from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.config import load_params, load_problem
from {{ cookiecutter.package_name }}.errors import CannotTell, DataError
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE, TargetSpec


def stores() -> pd.DataFrame:
    """Three stores in long format: the sample's demand, the same series in other units
    (10 x + 500), and a shorter, noisier one that starts later; rows in no order."""
    sample = PROBLEM_TYPE.samples["demand"]()
    rng = np.random.default_rng(1)
    later = sample.iloc[-500:].assign(demand=lambda f: f["demand"] + rng.normal(0, 4, len(f)))
    frame = pd.concat(
        [
            sample.assign(store="a"),
            sample.assign(store="b", demand=10 * sample["demand"] + 500),
            later.assign(store="c"),
        ]
    )
    return frame.sample(frac=1, random_state=0).reset_index(drop=True)


def use_file(paths, file: str, frame: pd.DataFrame, **target) -> None:
    (paths.root / "data" / "external").mkdir(parents=True, exist_ok=True)
    frame.to_csv(paths.root / "data" / "external" / file, index=False)
    spec = load_problem(paths.problem).target.model_dump(exclude_none=True)
    edit_yaml(
        paths.problem,
        source={"kind": "file", "path": f"data/external/{file}"},
        target=spec | target,
    )


def small_model(paths) -> None:
    """Lag boosting with fewer, larger steps: projects about the series, not the model or the
    score, train faster."""
    params = {
        "lag_seasons": 4,
        "max_iter": 40,
        "learning_rate": 0.15,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 20,
    }
    edit_yaml(paths.params, model={"name": "lag_gradient_boosting", "params": params})


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    paths = scratch_project(tmp_path_factory, "many")
    use_file(paths, "stores.csv", stores(), series_id="store")
    small_model(paths)
    return run_pipeline(paths)


@pytest.fixture(scope="module")
def report(many) -> dict:
    return json.loads((many.reports / "metrics.json").read_text())


def test_every_series_is_regular_and_all_split_at_one_date(many):
    train_part, test_part, _ = data.read_processed(many.processed)
    assert sorted(train_part["store"].unique()) == ["a", "b", "c"]
    assert sorted(test_part["store"].unique()) == ["a", "b", "c"]
    assert train_part["date"].max() < test_part["date"].min()  # no series trains on the test period
    for _, part in pd.concat([train_part, test_part]).groupby("store"):
        steps = pd.DatetimeIndex(part["date"]).to_series().diff().dropna()
        assert (steps == pd.Timedelta(days=1)).all()


def test_one_global_model_forecasts_a_series_in_any_unit_alike(report):
    """Features and targets are in units of the window's changes: 10 x + 500 is no other
    series to the model, so its scale-free errors are the same."""
    rows = {row["series"]: row for row in report["tables"]["Metrics per series"]}
    assert set(rows) == {"a", "b", "c"}
    assert rows["b"]["mase candidate"] == pytest.approx(rows["a"]["mase candidate"], rel=1e-6)
    assert rows["b"]["mae candidate"] == pytest.approx(10 * rows["a"]["mae candidate"], rel=1e-6)
    assert rows["c"]["origins"] == rows["a"]["origins"]  # the same test period for every series


def test_the_intervals_hold_about_their_coverage_on_the_test_period(report):
    table = next(v for k, v in report["tables"].items() if k.startswith("Prediction intervals"))
    overall = table[-1]
    assert overall["steps ahead"] == "all"
    assert overall["nominal coverage"] == 0.9
    assert abs(overall["coverage"] - 0.9) < 0.1, overall
    assert all(row["mean width"] > 0 for row in table)


def test_the_api_takes_the_series_id_and_answers_with_intervals(many, tmp_path):
    with TestClient(create_app(settings_for(many, tmp_path))) as client:
        schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
        body = schema["examples"][0]
        assert body["series_id"] == "a"
        answer = client.post("/v1/predict", json=body | {"series_id": "b"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["series_id"] == "b"
        assert answer.json()["coverage"] == 0.9
        for point in answer.json()["forecast"]:
            assert point["lower"] < point["value"] < point["upper"]
        missing = {key: value for key, value in body.items() if key != "series_id"}
        refused = client.post("/v1/predict", json=missing)
        assert refused.status_code == 422
        assert "series_id" in refused.text


def test_a_series_that_cannot_be_made_regular_is_named(problem):
    frame = stores()
    frame = pd.concat([frame, frame[frame["store"] == "b"].head(2)])  # two repeated days in b
    spec = problem.target.model_copy(update={"series_id": "store"})
    with pytest.raises(DataError, match=r"of store 'b' over 'date': 2 duplicated timestamps"):
        series.series_frame(frame, spec)


def test_the_monitor_forecasts_every_series_of_a_file(many, tmp_path):
    served = bundle.load(bundle.resolve(many.models, "current"))
    stores().to_csv(tmp_path / "recent.csv", index=False)
    recent = recent_series.from_file(served, tmp_path / "recent.csv", last=None)
    window, horizon = served.model.window_, served.metadata["features"][0]["horizon"]
    spans = stores().groupby("store")["date"].agg(lambda d: np.ptp(pd.to_datetime(d)).days + 1)
    assert recent.output_rows == sum(spans - window - horizon + 1)  # missing days interpolated


def yearly(spec: dict | None = None) -> TargetSpec:
    return TargetSpec(
        **{"name": "x", "timestamp": "year", "frequency": "YE", "horizon": 2, "season_length": 1}
        | (spec or {})
    )


def test_short_series_scale_folds_lags_and_leaves_down():
    candidate = PROBLEM_TYPE.make_candidate("lag_gradient_boosting", {}, 0, yearly())
    settings = series.scaled_settings([14, 14, 14], yearly(), 3, candidate)
    assert settings["cv.folds"] < 3
    assert settings["min_samples_leaf"] < candidate.min_samples_leaf
    assert series.scaled_settings([5000], yearly(), 3, candidate) == {
        "cv.folds": 3,
        "lag_seasons": candidate.lag_seasons,
        "min_samples_leaf": candidate.min_samples_leaf,
    }


def test_a_series_below_the_minimum_names_the_settings_to_change():
    candidate = PROBLEM_TYPE.make_candidate("lag_gradient_boosting", {}, 0, yearly())
    with pytest.raises(DataError) as error:
        series.scaled_settings([9], yearly(), 3, candidate)
    message = str(error.value)
    assert "\n" not in message
    for setting in ("target.horizon", "target.season_length", "split.test_size"):
        assert setting in message


def energy() -> pd.DataFrame:
    """Seventeen years of generation from three sources: one declines, two grow."""
    rng = np.random.default_rng(7)
    years = np.arange(2001, 2018)
    frame = pd.concat(
        pd.DataFrame({"source": name, "year": years, "generation": start + slope * (years - 2001)})
        for name, start, slope in [("coal", 2000, -60), ("gas", 600, 45), ("wind", 100, 40)]
    )
    frame["generation"] += rng.normal(0, 30, len(frame))
    return frame


def use_energy(paths) -> None:
    target = {"name": "generation", "timestamp": "year", "series_id": "source"}
    use_file(paths, "energy.csv", energy(), **target, frequency="YE", horizon=2, season_length=1)


@pytest.mark.slow
def test_seventeen_years_of_three_sources_train_and_cannot_be_judged(tmp_path_factory, caplog):
    paths = scratch_project(tmp_path_factory, "yearly")
    use_energy(paths)
    small_model(paths)  # the leaves of lag boosting shrink for short series
    problem, params = load_problem(paths.problem), quick(load_params(paths.params))
    data.collect(problem, paths.raw, paths.root)
    PROBLEM_TYPE.prepare(data.read_raw(paths.raw), problem, params, paths.processed)
    with caplog.at_level(logging.WARNING):
        version = train.run(paths.processed, paths.models, problem, params)
    assert "short series" in caplog.text
    scaled = bundle.load(paths.models / version).metadata["scaled"]
    assert scaled["min_samples_leaf"] < 20
    with pytest.raises(CannotTell, match="forecast origins make"):
        evaluate.run(paths.processed, paths.models, paths.reports, problem, params)
    assert (paths.reports / "evaluation.md").exists()
