import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import schemathesis
from conftest import quick
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from {{ cookiecutter.package_name }} import bundle, evaluate, forecasters, registry, train
from {{ cookiecutter.package_name }}.api import Settings, create_app
from {{ cookiecutter.package_name }}.config import load_params, load_problem
from {{ cookiecutter.package_name }}.data import read_processed
from {{ cookiecutter.package_name }}.predictor import Predictor
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


def settings_for(paths, tmp_path: Path, **changes) -> Settings:
    defaults = {"models_dir": paths.models, "prediction_log_path": tmp_path / "predictions.jsonl"}
    return Settings(**{**defaults, **changes})


@pytest.fixture
def client(trained_project, tmp_path):
    with TestClient(create_app(settings_for(trained_project, tmp_path))) as client:
        yield client


@pytest.fixture(scope="module")
def card(trained_project, tmp_path_factory) -> dict:
    settings = settings_for(trained_project, tmp_path_factory.mktemp("card"))
    with TestClient(create_app(settings)) as client:
        return client.get("/v1/model").json()


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


def test_health_and_readiness(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == client.get("/v1/model").json()["model_version"]


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


def test_the_service_forecasts_what_the_evaluation_backtest_forecasts(trained_project, body):
    """The API path (validation, regularisation, window) and the backtest agree."""
    served = bundle.load(bundle.resolve(trained_project.models, "current"))
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


def test_an_oversized_body_gets_a_413(trained_project, tmp_path, body):
    settings = settings_for(trained_project, tmp_path, max_body_bytes=1024)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/predict", json=body).status_code == 413


def test_the_api_key_guards_v1_but_not_health(trained_project, tmp_path, body):
    settings = settings_for(trained_project, tmp_path, api_key="s3cret")
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/predict", json=body).status_code == 401
        assert client.get("/v1/model", headers={"X-API-Key": "guess"}).status_code == 401
        ok = client.post("/v1/predict", json=body, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200
        assert client.get("/health").status_code == 200


def test_without_a_model_the_service_stays_up_and_not_ready(tmp_path, body):
    settings = Settings(models_dir=tmp_path / "models", prediction_log=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "does not exist" in ready.json()["reason"]
        assert client.post("/v1/predict", json=body).status_code == 503


def test_a_corrupt_model_is_refused_with_the_reason(trained_project, tmp_path):
    models = tmp_path / "models"
    version = bundle.read_pointer(trained_project.models, "current")
    shutil.copytree(trained_project.models / version, models / version)
    bundle.set_pointer(models, "current", version)
    with (models / version / bundle.MODEL).open("ab") as handle:
        handle.write(b"tampered")
    with TestClient(create_app(Settings(models_dir=models, prediction_log=False))) as client:
        ready = client.get("/ready")
    assert ready.status_code == 503
    assert "sha256" in ready.json()["reason"]


def test_forecasts_are_logged_and_counted(trained_project, tmp_path, body):
    settings = settings_for(trained_project, tmp_path)
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            client.post("/v1/predict", json=body)
        metrics = client.get("/metrics").text
    records = [json.loads(line) for line in settings.prediction_log_path.read_text().splitlines()]
    assert len(records) == 3
    assert records[0]["request"] == body
    assert len(records[0]["response"]["forecast"]) == body["horizon"]
    assert 'http_requests_total{route="/v1/predict",status="200"} 3.0' in metrics
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("predictions_total{")
    )
    assert counted == 3 * body["horizon"]


@pytest.fixture
def api_schema(trained_project, tmp_path):
    app = create_app(settings_for(trained_project, tmp_path))
    with TestClient(app):  # runs the lifespan, so the model is loaded
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def test_generated_requests_never_get_a_5xx_and_match_the_schema(api_schema):
    checks = [not_a_server_error, response_schema_conformance]
    for operation in api_schema.get_all_operations():

        @given(case=operation.ok().as_strategy())
        @settings(
            max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def exchange(case):
            case.call_and_validate(checks=checks)

        exchange()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_real_server_answers_on_loopback(trained_project, body):
    port = free_port()
    env = {
        **os.environ,
        "SERVICE_MODELS_DIR": str(trained_project.models),
        "SERVICE_PREDICTION_LOG": "false",
    }
    command = [sys.executable, "-m", "uvicorn", "{{ cookiecutter.package_name }}.api:create_app", "--factory"]
    server = subprocess.Popen([*command, "--host", "127.0.0.1", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready within 60 s"
            time.sleep(0.2)
        request = urllib.request.Request(
            f"{base}/v1/predict",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        assert len(answer["forecast"]) == body["horizon"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_promotion_and_rollback_reach_the_running_service(trained_project, tmp_path, body):
    models = tmp_path / "models"
    shutil.copytree(trained_project.models, models)
    problem, params = (
        load_problem(trained_project.problem),
        quick(load_params(trained_project.params)),
    )
    settings = settings_for(trained_project, tmp_path, models_dir=models, reload_interval=0.2)
    with TestClient(create_app(settings)) as client:
        first = client.get("/v1/model").json()["model_version"]
        time.sleep(1)  # a new version name: versions carry the time to the second
        new = train.run(trained_project.processed, models, problem, params)
        evaluate.run(trained_project.processed, models, tmp_path / "reports", problem, params)

        assert client.post("/v1/reload").json() == {"model_version": new, "changed": True}
        answer = client.post("/v1/predict", json=body).json()
        assert answer["model_version"] == new

        assert registry.rollback(models, reason="test") == first
        deadline = time.monotonic() + 10
        while client.get("/ready").json()["model_version"] != first:
            assert time.monotonic() < deadline, "the service did not follow the rollback"
            time.sleep(0.1)


def test_the_dashboard_shows_the_forecast_metrics_drift_and_history(
    trained_project, tmp_path, body
):
    reports = tmp_path / "reports"
    (reports / "monitoring").mkdir(parents=True)
    drift = {
        "created_at": "2024-05-01T00:00:00+00:00",
        "rows": 500,
        "drift": True,
        "drifted": ["level"],
        "features": [
            {
                "name": "level",
                "kind": "series",
                "status": "drift",
                "psi": 0.9,
                "missing_rate_change": 0.0,
                "reasons": ["PSI 0.90 >= 0.20"],
            },
        ],
        "predictions": {"status": "ok", "psi": 0.01, "reasons": []},
    }
    (reports / "monitoring" / "latest.json").write_text(json.dumps(drift))
    settings = settings_for(trained_project, tmp_path, reports_dir=reports, api_key="s3cret")
    with TestClient(create_app(settings)) as client:
        assert client.get("/dashboard").status_code == 401
        client.post("/v1/predict", json=body, headers={"X-API-Key": "s3cret"})
        page = client.get("/dashboard", auth=("operator", "s3cret"))
    assert page.status_code == 200
    html = page.text
    assert bundle.read_pointer(trained_project.models, "current") in html
    assert 'id="drift-status" class="badge drift">drift<' in html
    assert "Latest report 2024-05-01T00:00:00+00:00 on" in html
    assert all(f"<td>{name}" in html for name in PROBLEM_TYPE.metrics)  # mase, mae, rmse, smape
    assert "/v1/predict" in html  # traffic counts
    assert "promoted" in html  # registry history
