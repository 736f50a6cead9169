"""Covariates known in advance (target.covariates): the model reads their values at the
step it forecasts, backtests and evaluation take them from the data, requests send them."""

import numpy as np
import pandas as pd
import pytest
from conftest import edit_yaml, run_pipeline, scratch_project, settings_for
from fastapi.testclient import TestClient
from test_many_series import small_model

from {{ cookiecutter.package_name }} import forecasters
from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE, TargetSpec

DAYS = 700


def promotions() -> pd.DataFrame:
    """Daily sales with a weekly season, and promotion days, planned ahead, that add 25."""
    rng = np.random.default_rng(4)
    dates = pd.date_range("2023-01-02", periods=DAYS, freq="D")
    promo = (rng.random(DAYS) < 0.15).astype(int)
    weekly = np.array([0.0, 2.0, 4.0, 6.0, 12.0, 20.0, 8.0])[dates.day_of_week]
    sales = 100 + weekly + 25 * promo + rng.normal(0, 2, DAYS)
    return pd.DataFrame(
        {"day": dates.strftime("%Y-%m-%d"), "sales": sales.round(2), "promo": promo}
    )


def spec() -> TargetSpec:
    return TargetSpec(
        name="sales",
        timestamp="day",
        frequency="D",
        horizon=7,
        season_length=7,
        covariates=["promo"],
    )


def test_a_promotion_known_in_advance_is_forecast():
    frame = promotions()
    values, promo = frame["sales"].to_numpy(float), frame[["promo"]].to_numpy(float)
    positions = np.arange(DAYS) % 7
    origins = np.arange(600, DAYS - 7)
    errors = {}
    for name, covariates in [("with", promo), ("without", None)]:
        model = PROBLEM_TYPE.make_candidate("lag_gradient_boosting", {"max_iter": 100}, 0, spec())
        model.fit(values[:600], positions[:600], None if covariates is None else covariates[:600])
        forecast, actual = forecasters.backtest(model, values, positions, origins, 7, covariates)
        errors[name] = np.abs(forecast - actual).mean()
    assert errors["with"] < 0.6 * errors["without"], errors


@pytest.fixture(scope="module")
def promoted(tmp_path_factory):
    paths = scratch_project(tmp_path_factory, "promotions")
    (paths.root / "data" / "external").mkdir(parents=True)
    promotions().to_csv(paths.root / "data" / "external" / "sales.csv", index=False)
    edit_yaml(
        paths.problem,
        source={"kind": "file", "path": "data/external/sales.csv"},
        target=spec().model_dump(exclude_none=True),
    )
    small_model(paths)
    return run_pipeline(paths)


def test_requests_send_the_covariates_of_the_forecast_steps(promoted, tmp_path):
    with TestClient(create_app(settings_for(promoted, tmp_path))) as client:
        schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
        body = schema["examples"][0]
        assert len(body["future"]["promo"]) == 7
        answers = {}
        for planned in (0, 1):
            future = {"promo": [planned] * 7}
            answer = client.post("/v1/predict", json=body | {"future": future})
            assert answer.status_code == 200, answer.text
            answers[planned] = np.array([p["value"] for p in answer.json()["forecast"]])
        assert (answers[1] - answers[0] > 15).all()  # the promotion lifts every day

        without = {key: value for key, value in body.items() if key != "future"}
        refused = client.post("/v1/predict", json=without)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "future"]
        other = client.post("/v1/predict", json=body | {"future": {"price": [1.0] * 7}})
        assert other.status_code == 422
        assert "future: give exactly the covariates promo, not price" in other.text
        short = client.post("/v1/predict", json=body | {"future": {"promo": [0, 1]}})
        assert short.status_code == 422
        assert "future.promo: 2 values for a horizon of 7 steps" in short.text


def test_covariates_must_be_other_columns():
    with pytest.raises(ValueError, match="covariates"):
        TargetSpec(**spec().model_dump() | {"covariates": ["sales"]})
