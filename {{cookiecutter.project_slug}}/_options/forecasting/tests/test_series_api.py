import json

import numpy as np
import pandas as pd
import pytest
from conftest import settings_for
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import bundle, forecasters
from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.config import load_problem
from {{ cookiecutter.package_name }}.data import read_processed
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE
from {{ cookiecutter.package_name }}.series import parts
from {{ cookiecutter.package_name }}.series_service import Predictor


@pytest.fixture(scope="module")
def client(trained_project, tmp_path_factory):
    """One test client for the tests that only read the service's answers."""
    settings = settings_for(trained_project, tmp_path_factory.mktemp("service"))
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def served(trained_project):
    """The trained project's current bundle, as the service loads it."""
    return bundle.load(bundle.resolve(trained_project.models, "current"))


@pytest.fixture
def series(card) -> dict:
    return card["features"][0]


@pytest.fixture
def body(trained_project, series) -> dict:
    """A valid request: the first weeks of the test period as history."""
    _, test, _ = read_processed(trained_project.processed)
    window = test.iloc[: series["min_history"] + 7]
    return {
        "history": {
            "timestamps": [stamp.isoformat() for stamp in window[series["timestamp"]]],
            "values": window[series["name"]].tolist(),
        },
        "horizon": series["horizon"],
    }


def history_with(body: dict, timestamps: list, values: list) -> dict:
    return {**body, "history": {"timestamps": timestamps, "values": values}}


def test_the_model_card_shows_the_series_metrics_and_type(card, trained_project):
    assert card["problem_type"] == PROBLEM_TYPE.name
    assert card["model_version"] == bundle.read_pointer(trained_project.models, "current")
    problem = load_problem(trained_project.problem)
    series = card["features"][0]
    assert series["name"] == problem.target.name
    assert series["horizon"] == problem.target.horizon
    assert series["frequency"] == problem.target.frequency
    assert card["metrics"]["gate"]["passed"] is True
    assert set(card["metrics"]["candidate"]) == set(PROBLEM_TYPE.metrics)


def test_the_openapi_example_comes_from_the_bundle_and_is_answered(client, series):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
    example = schema["examples"][0]
    assert len(example["history"]["values"]) == series["min_history"]
    assert example["horizon"] == series["horizon"]
    response = client.post("/v1/predict", json=example)
    assert response.status_code == 200, response.text


def test_a_forecast_is_dated_after_the_history(client, body, series):
    response = client.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    forecast = response.json()["forecast"]
    assert len(forecast) == series["horizon"]
    last = pd.Timestamp(body["history"]["timestamps"][-1])
    expected = pd.date_range(last, periods=series["horizon"] + 1, freq=series["frequency"])[1:]
    assert [pd.Timestamp(point["timestamp"]) for point in forecast] == list(expected)
    values = np.array([point["value"] for point in forecast])
    assert np.isfinite(values).all()
    assert series["min"] - 100 < values.mean() < series["max"] + 100


def test_a_shorter_horizon_returns_fewer_steps(client, body):
    response = client.post("/v1/predict", json={**body, "horizon": 3})
    assert [p["value"] for p in response.json()["forecast"]] == [
        p["value"] for p in client.post("/v1/predict", json=body).json()["forecast"][:3]
    ]


def test_the_service_forecasts_what_the_evaluation_backtest_forecasts(
    served, trained_project, body
):
    """The API path (validation, regularisation, window) and the backtest agree."""
    history = body["history"]
    made = Predictor(served).forecast(history["timestamps"], history["values"], body["horizon"])
    spec = load_problem(trained_project.problem).target
    stamps = pd.DatetimeIndex(history["timestamps"])
    positions = forecasters.season_positions(
        pd.date_range(stamps[0], periods=len(stamps) + 1, freq=spec.frequency),
        spec.frequency,
        spec.season_length,
    )
    values = np.array([*history["values"], 0.0])
    expected, _ = forecasters.backtest(
        served.model, values, positions, np.array([len(stamps)]), body["horizon"]
    )
    np.testing.assert_allclose(made.values, expected)


def test_a_short_gap_is_interpolated(client, body):
    stamps, values = body["history"]["timestamps"], body["history"]["values"]
    gapped = history_with(body, stamps[:10] + stamps[12:], values[:10] + values[12:])
    nulls = history_with(body, stamps, [*values[:10], None, None, *values[12:]])
    first, second = client.post("/v1/predict", json=gapped), client.post("/v1/predict", json=nulls)
    assert first.status_code == second.status_code == 200
    assert first.json()["forecast"] == second.json()["forecast"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("short", "the model needs at least"),
        ("unsorted", "timestamps must ascend"),
        ("duplicated", "is duplicated"),
        ("long_gap", "gaps longer than max_gap"),
        ("off_grid", "not on the"),
        ("lengths", "give one value per timestamp"),
        ("mixed_offsets", "with and without a UTC offset"),
    ],
)
def test_a_bad_history_gets_a_422_that_says_why(client, body, series, change, message):
    stamps, values = body["history"]["timestamps"], body["history"]["values"]
    gap = series["max_gap"] + 1
    bad = {
        "short": (stamps[-5:], values[-5:]),
        "unsorted": (stamps[1:2] + stamps[:1] + stamps[2:], values),
        "duplicated": (stamps[:5] + stamps[4:], values[:5] + values[4:]),
        "long_gap": (stamps[:5] + stamps[5 + gap :], values[:5] + values[5 + gap :]),
        "off_grid": ([*stamps[:-1], stamps[-1][:10] + "T06:30:00"], values),
        "lengths": (stamps, values[:-1]),
        "mixed_offsets": ([*stamps[:-1], stamps[-1][:10] + "T00:00:00+00:00"], values),
    }[change]
    response = client.post("/v1/predict", json=history_with(body, *bad))
    assert response.status_code == 422
    assert message in json.dumps(response.json()["detail"])


@pytest.mark.parametrize("horizon", [0, 10_000])
def test_a_horizon_beyond_training_gets_a_422(client, body, horizon):
    response = client.post("/v1/predict", json={**body, "horizon": horizon})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "horizon"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "1e300"])
def test_non_finite_values_are_rejected(client, body, token):
    raw = json.dumps(body).replace(json.dumps(body["history"]["values"][0]), token, 1)
    response = client.post(
        "/v1/predict", content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:3] == ["body", "history", "values"]


@pytest.mark.parametrize(
    ("raw", "where"),
    [(b'{"history": {"timestamps": [], "values": []}}', "history"), (b'{"history": [', "body")],
)
def test_malformed_bodies_get_a_4xx(client, raw, where):
    response = client.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert where in json.dumps(response.json()["detail"])


def test_a_history_over_the_limit_is_rejected(trained_project, tmp_path, body):
    settings = settings_for(trained_project, tmp_path, max_batch_rows=30)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/predict", json=body)
    assert response.status_code == 422
    assert "more than the limit 30" in json.dumps(response.json()["detail"])


def test_a_forecast_is_logged_and_counted_step_by_step(trained_project, tmp_path, body):
    settings = settings_for(trained_project, tmp_path)
    with TestClient(create_app(settings)) as client:
        client.post("/v1/predict", json=body)
        metrics = client.get("/metrics").text
    record = json.loads(settings.prediction_log_path.read_text())
    assert record["request"] == body
    assert len(record["response"]["forecast"]) == body["horizon"]
    counted = [line for line in metrics.splitlines() if line.startswith("predictions_total{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) == body["horizon"]


def test_the_bundle_holds_the_window_and_the_series_reference(served, trained_project):
    spec = load_problem(trained_project.problem).target
    train_part, _, _ = read_processed(trained_project.processed)
    [part] = parts(train_part, spec)
    history, positions = part.values, part.positions
    values, origins = np.append(history, 0.0), np.array([len(history)])
    forecast, _ = forecasters.backtest(served.model, values, np.append(positions, 0), origins, 1)
    assert np.isfinite(forecast).all()
    assert served.metadata["features"][0]["min_history"] == served.model.window_
    assert set(served.reference["features"]) == {"level", "change"}
