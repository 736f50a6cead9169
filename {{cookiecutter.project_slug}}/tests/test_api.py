"""What the service does for every problem type: health, readiness, the model card, auth,
limits, the prediction log and metrics, reloads, the dashboard, fuzzing and a real server.
Each request is the example the OpenAPI document offers, as a client would send it."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import schemathesis
from conftest import another_version, settings_for
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from {{ cookiecutter.package_name }} import bundle, registry
from {{ cookiecutter.package_name }}.api import Settings, create_app
from {{ cookiecutter.package_name }}.config import load_problem
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE

KEY = "a-key-of-16-characters-or-more"


@pytest.fixture(scope="module")
def service(trained_project, tmp_path_factory):
    """A client of the service for the trained project, shared by the tests that neither
    read its prediction log or metrics nor change its models."""
    settings = settings_for(trained_project, tmp_path_factory.mktemp("service"))
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def body(service) -> dict:
    """A valid request: the example of the OpenAPI document, made from the bundle."""
    schemas = service.get("/openapi.json").json()["components"]["schemas"]
    return schemas["PredictRequest"]["examples"][0]


def predictions_counted(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("predictions_total{")
    )


def test_health_and_readiness(service):
    assert service.get("/health").json() == {"status": "ok"}
    ready = service.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == service.get("/v1/model").json()["model_version"]


def test_the_model_card_shows_the_version_the_gate_and_the_type(card, trained_project):
    assert card["problem_type"] == PROBLEM_TYPE.name
    assert card["model_version"] == bundle.read_pointer(trained_project.models, "current")
    assert card["target"] == load_problem(trained_project.problem).target.name
    assert card["metrics"]["gate"]["passed"] is True


def test_the_openapi_example_is_answered(service, body):
    response = service.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    PROBLEM_TYPE.PredictResponse.model_validate(response.json())


def test_a_truncated_body_gets_a_422(service, body):
    raw = json.dumps(body).encode()[:20]
    response = service.post(
        "/v1/predict", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "body" in json.dumps(response.json()["detail"])


def test_an_oversized_body_gets_a_413(trained_project, tmp_path, body):
    settings = settings_for(trained_project, tmp_path, max_body_bytes=1024)
    padded = json.dumps(body).encode() + b" " * 1024  # still valid JSON, but too long
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/predict", content=padded, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413


def test_the_api_key_guards_v1_but_not_health(trained_project, tmp_path, body):
    settings = settings_for(trained_project, tmp_path, api_key=KEY)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/predict", json=body).status_code == 401
        assert client.get("/v1/model", headers={"X-API-Key": "guess"}).status_code == 401
        ok = client.post("/v1/predict", json=body, headers={"X-API-Key": KEY})
        assert ok.status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200


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


def test_predictions_are_logged_and_counted(trained_project, tmp_path, body):
    settings = settings_for(trained_project, tmp_path)
    with TestClient(create_app(settings)) as client:
        first = client.post("/v1/predict", json=body).json()
        once = predictions_counted(client.get("/metrics").text)
        for _ in range(2):
            client.post("/v1/predict", json=body)
        metrics = client.get("/metrics").text
    records = [json.loads(line) for line in settings.prediction_log_path.read_text().splitlines()]
    assert [record["request"] for record in records] == [body] * 3
    assert records[0]["response"] == first
    assert 'http_requests_total{route="/v1/predict",status="200"} 3.0' in metrics
    assert once >= 1
    assert predictions_counted(metrics) == 3 * once


@pytest.fixture
def api_schema(service):
    return schemathesis.openapi.from_asgi("/openapi.json", service.app)


@pytest.mark.slow  # fuzzing: many generated requests per operation
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
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "{{ cookiecutter.package_name }}.api:create_app",
        "--factory",
    ]
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
        PROBLEM_TYPE.PredictResponse.model_validate(answer)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_promotion_and_rollback_reach_the_running_service(trained_project, tmp_path, body):
    models = tmp_path / "models"
    shutil.copytree(trained_project.models, models)
    settings = settings_for(trained_project, tmp_path, models_dir=models, reload_interval=0.2)
    with TestClient(create_app(settings)) as client:
        first = client.get("/v1/model").json()["model_version"]
        new = another_version(models, first)
        registry.promote(models, new, reason="test", force=True)

        assert client.post("/v1/reload").json() == {"model_version": new, "changed": True}
        answer = client.post("/v1/predict", json=body).json()
        assert answer["model_version"] == new

        assert registry.rollback(models, reason="test") == first
        deadline = time.monotonic() + 10
        while client.get("/ready").json()["model_version"] != first:
            assert time.monotonic() < deadline, "the service did not follow the rollback"
            time.sleep(0.1)


def test_the_dashboard_shows_the_model_metrics_drift_and_history(trained_project, tmp_path, body):
    reports = tmp_path / "reports"
    (reports / "monitoring").mkdir(parents=True)
    drift = {
        "created_at": "2024-05-01T00:00:00+00:00",
        "rows": 500,
        "drift": True,
        "drifted": ["band"],
        "features": [
            {
                "name": "band",
                "kind": "categorical",
                "status": "drift",
                "psi": 0.9,
                "missing_rate_change": 0.0,
                "reasons": ["PSI 0.90 >= 0.20"],
            },
        ],
        "predictions": {"status": "ok", "psi": 0.01, "reasons": []},
    }
    (reports / "monitoring" / "latest.json").write_text(json.dumps(drift))
    viewer = "viewer-key-of-16-chars"
    settings = settings_for(
        trained_project, tmp_path, reports_dir=reports, api_key=KEY, viewer_key=viewer
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/dashboard").status_code == 401
        assert client.get("/dashboard", auth=("client", KEY)).status_code == 401
        client.post("/v1/predict", json=body, headers={"X-API-Key": KEY})
        page = client.get("/dashboard", auth=("ana", viewer))
        runbook = client.get("/dashboard/runbook", headers={"X-API-Key": viewer})
    assert page.status_code == 200
    html = page.text
    assert bundle.read_pointer(trained_project.models, "current") in html
    assert 'id="drift-status" class="badge drift">drift<' in html
    assert "PSI 0.90" in html
    assert "Latest report 2024-05-01T00:00:00+00:00 on" in html
    assert all(f"<td>{name}" in html for name in PROBLEM_TYPE.metrics)
    assert "/v1/predict" in html  # traffic counts
    assert "promoted" in html  # registry history
    assert 'id="gate-verdict" class="badge ok">passed<' in html
    assert runbook.status_code == 200
