import csv
import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import schemathesis
from conftest import quick
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError
from schemathesis.checks import not_a_server_error, response_schema_conformance

from {{ cookiecutter.package_name }} import bundle, evaluate, registry, train
from {{ cookiecutter.package_name }}.api import Settings, create_app
from {{ cookiecutter.package_name }}.config import load_params, load_problem
from {{ cookiecutter.package_name }}.predictor import Predictor, row_model, to_frame
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


def settings_for(paths, tmp_path: Path, **changes) -> Settings:
    defaults = {"models_dir": paths.models, "prediction_log_path": tmp_path / "predictions.jsonl"}
    return Settings(**{**defaults, **changes})


@pytest.fixture
def client(mixed_project, tmp_path):
    with TestClient(create_app(settings_for(mixed_project, tmp_path))) as client:
        yield client


@pytest.fixture(scope="module")
def card(mixed_project, tmp_path_factory) -> dict:
    settings = settings_for(mixed_project, tmp_path_factory.mktemp("card"))
    with TestClient(create_app(settings)) as client:
        return client.get("/v1/model").json()


@pytest.fixture
def row(card) -> dict:
    """A valid request row built from the model card, as a client would."""
    values = {
        "numeric": lambda f: f["min"],
        "categorical": lambda f: f["categories"][0],
        "text": lambda f: "Arrived on time and works as described.",
    }
    return {f["name"]: values.get(f["kind"], lambda f: f["min"])(f) for f in card["features"]}


def feature_of(card: dict, kind: str) -> str:
    return next(f["name"] for f in card["features"] if f["kind"] == kind)


def test_health_and_readiness(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == client.get("/v1/model").json()["model_version"]


def test_the_model_card_shows_schema_metrics_and_type(card, mixed_project):
    assert card["problem_type"] == PROBLEM_TYPE.name
    assert card["model_version"] == bundle.read_pointer(mixed_project.models, "current")
    kinds = {f["kind"] for f in card["features"]}
    assert {"numeric", "categorical", "datetime"} <= kinds
    assert card["metrics"]["gate"]["passed"] is True
    assert card["fast_path"] is ("text" not in kinds)  # TF-IDF is served by the pipeline


def test_the_openapi_schema_shows_the_real_features(client, card):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Row"]
    assert set(schema["properties"]) == {f["name"] for f in card["features"]}
    assert set(schema["required"]) == set(schema["properties"])
    assert schema["examples"][0].keys() == schema["properties"].keys()


def test_predict_one_row_and_a_batch(client, row):
    one = client.post("/v1/predict", json={"instances": [row]})
    assert one.status_code == 200, one.text
    assert len(one.json()["predictions"]) == 1

    batch = client.post("/v1/predict", json={"instances": [row] * 1000}).json()
    assert len(batch["predictions"]) == 1000
    assert batch["model_version"] == one.json()["model_version"]
    PROBLEM_TYPE.PredictResponse.model_validate(batch)


def test_missing_values_and_unseen_categories_are_accepted(client, row, card):
    # null means missing, for every feature but text (which must not be blank)
    gaps = {f["name"]: row[f["name"]] if f["kind"] == "text" else None for f in card["features"]}
    unseen = {**row, feature_of(card, "categorical"): "a category never seen in training"}
    response = client.post("/v1/predict", json={"instances": [gaps, unseen]})
    assert response.status_code == 200, response.text


BAD_ROWS = {
    "wrong type": lambda row, card: {**row, feature_of(card, "numeric"): "twelve"},
    "missing feature": lambda row, card: {
        k: v for k, v in row.items() if k != feature_of(card, "numeric")
    },
    "unknown feature": lambda row, card: {**row, "colour_of_the_sky": 1},
    "bad date": lambda row, card: {**row, feature_of(card, "datetime"): "31/02/2024"},
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_a_bad_row_gets_a_422_naming_the_field(client, row, card, case):
    bad = BAD_ROWS[case](row, card)
    response = client.post("/v1/predict", json={"instances": [row, bad]})
    assert response.status_code == 422
    locations = [error["loc"] for error in response.json()["detail"]]
    named = (set(bad) ^ set(row)) | {k for k in row if bad.get(k) != row[k]}
    assert any(loc[:3] == ["body", "instances", 1] and loc[3] in named for loc in locations)


def test_a_row_copied_from_the_training_csv_is_accepted(client, card, mixed_project):
    """Values exactly as the CSV spells them: numbers as text, dates as YYYY/MM/DD."""
    with open(mixed_project.root / "data" / "external" / "mixed.csv", newline="") as file:
        complete = [row for row in csv.DictReader(file) if all(row.values())]
    names = [f["name"] for f in card["features"]]
    copied = [{name: row[name] for name in names} for row in complete[:25]]
    day = feature_of(card, "datetime")
    assert all("/" in row[day] for row in copied)
    response = client.post("/v1/predict", json={"instances": copied})
    assert response.status_code == 200, response.text

    loaded = bundle.load(bundle.resolve(mixed_project.models, "current"))
    out = loaded.model[:-1].transform(to_frame(copied, card["features"]))
    out = out.toarray() if hasattr(out, "toarray") else out  # TF-IDF makes it sparse
    parts = list(loaded.model[:-1].get_feature_names_out())
    days = [float(row[day].split("/")[2]) for row in copied]
    assert out[:, parts.index(f"{day}_day")].tolist() == days  # read, not imputed
    iso = [{**row, day: row[day].replace("/", "-")} for row in copied]
    assert response.json() == client.post("/v1/predict", json={"instances": iso}).json()


def test_a_request_value_is_read_in_every_form_that_training_reads():
    Row = row_model(
        [
            {"name": "code", "kind": "categorical", "categories": ["12", "3"]},
            {"name": "day", "kind": "datetime", "min": "2024-01-01", "max": "2024-12-31"},
            {"name": "amount", "kind": "numeric", "min": 0.0, "max": 10.0},
        ]
    )
    for code in (3, 3.0, "3", "3.0"):  # a code column with gaps is read as floats: 3.0
        for day in ("2024/01/31", "2024-01-31", "2024.1.31", "2024-01-31 13:45"):
            row = Row.model_validate({"code": code, "day": day, "amount": "2.5"})
            expected = {"code": "3", "day": date(2024, 1, 31), "amount": 2.5}
            assert row.model_dump(by_alias=True) == expected
    with pytest.raises(ValidationError, match="year first"):
        Row.model_validate({"code": 3, "day": "31.01.2024", "amount": 1.0})


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected(client, row, card, token):
    name = feature_of(card, "numeric")
    body = json.dumps({"instances": [{**row, name: 0.0}]}).replace("0.0", token, 1)
    response = client.post(
        "/v1/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == name


@pytest.mark.parametrize(
    ("body", "status", "where"),
    [
        (b'{"instances": []}', 422, "instances"),
        (b'{"instances": [', 422, "body"),
        (b'{"rows": []}', 422, "instances"),
    ],
)
def test_malformed_bodies_get_a_4xx(client, body, status, where):
    response = client.post(
        "/v1/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert where in json.dumps(response.json()["detail"])


def test_a_batch_over_the_limit_is_rejected(mixed_project, tmp_path, row):
    settings = settings_for(mixed_project, tmp_path, max_batch_rows=5)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/predict", json={"instances": [row] * 6})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "too_long"


def test_an_oversized_body_gets_a_413(mixed_project, tmp_path, row):
    settings = settings_for(mixed_project, tmp_path, max_body_bytes=2048)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/predict", json={"instances": [row] * 50})
    assert response.status_code == 413


def test_the_api_key_guards_v1_but_not_health(mixed_project, tmp_path, row):
    settings = settings_for(mixed_project, tmp_path, api_key="s3cret")
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/predict", json={"instances": [row]}).status_code == 401
        wrong = {"X-API-Key": "guess"}
        assert client.get("/v1/model", headers=wrong).status_code == 401
        ok = client.post("/v1/predict", json={"instances": [row]}, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200


def test_without_a_model_the_service_stays_up_and_not_ready(tmp_path):
    settings = Settings(models_dir=tmp_path / "models", prediction_log=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "does not exist" in ready.json()["reason"]
        assert client.post("/v1/predict", json={"instances": [{}]}).status_code == 503


def test_a_corrupt_model_is_refused_with_the_reason(mixed_project, tmp_path):
    models = tmp_path / "models"
    version = bundle.read_pointer(mixed_project.models, "current")
    shutil.copytree(mixed_project.models / version, models / version)
    bundle.set_pointer(models, "current", version)
    with (models / version / bundle.MODEL).open("ab") as handle:
        handle.write(b"tampered")
    with TestClient(create_app(Settings(models_dir=models, prediction_log=False))) as client:
        ready = client.get("/ready")
    assert ready.status_code == 503
    assert "sha256" in ready.json()["reason"]


def test_predictions_are_logged_and_counted(mixed_project, tmp_path, row):
    settings = settings_for(mixed_project, tmp_path)
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            client.post("/v1/predict", json={"instances": [row, row]})
        metrics = client.get("/metrics").text
    records = [json.loads(line) for line in settings.prediction_log_path.read_text().splitlines()]
    assert len(records) == 3
    assert records[0]["request"]["instances"][0] == row
    assert len(records[0]["response"]["predictions"]) == 2
    assert 'http_requests_total{route="/v1/predict",status="200"} 3.0' in metrics
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("predictions_total{")
    )
    assert counted == 6


def test_the_fast_path_gives_the_reference_predictions(mixed_project):
    loaded = bundle.load(bundle.resolve(mixed_project.models, "current"))
    predictor = Predictor(loaded)
    if any(f["kind"] == "text" for f in predictor.schema):
        assert loaded.onnx is None and predictor.fast is None  # the pipeline serves text
        return
    assert predictor.fast is not None
    test = pd.read_parquet(mixed_project.processed / "test.parquet")
    rows = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in test[[f["name"] for f in predictor.schema]].to_dict("records")
    ]
    assert PROBLEM_TYPE.same_predictions(predictor.fast.predict(rows), predictor.reference(rows))
    assert to_frame(rows, predictor.schema).shape == (len(rows), len(predictor.schema))


def test_a_model_without_onnx_is_served_by_its_pipeline(mixed_project, row):
    loaded = bundle.load(bundle.resolve(mixed_project.models, "current"))
    predictor = Predictor(dataclasses.replace(loaded, onnx=None))
    assert predictor.fast is None
    rows = [row, dict.fromkeys(row)]
    assert PROBLEM_TYPE.same_predictions(predictor.predict(rows), Predictor(loaded).predict(rows))


@pytest.fixture
def api_schema(mixed_project, tmp_path):
    app = create_app(settings_for(mixed_project, tmp_path))
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
def test_a_real_server_answers_on_loopback(mixed_project, tmp_path, row):
    port = free_port()
    env = {
        **os.environ,
        "SERVICE_MODELS_DIR": str(mixed_project.models),
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
            data=json.dumps({"instances": [row] * 3}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
        assert len(body["predictions"]) == 3
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_promotion_and_rollback_reach_the_running_service(mixed_project, tmp_path, row):
    models = tmp_path / "models"
    shutil.copytree(mixed_project.models, models)
    problem, params = load_problem(mixed_project.problem), quick(load_params(mixed_project.params))
    settings = settings_for(mixed_project, tmp_path, models_dir=models, reload_interval=0.2)
    with TestClient(create_app(settings)) as client:
        first = client.get("/v1/model").json()["model_version"]
        time.sleep(1)  # a new version name: versions carry the time to the second
        new = train.run(mixed_project.processed, models, problem, params)
        evaluate.run(mixed_project.processed, models, tmp_path / "reports", problem, params)

        assert client.post("/v1/reload").json() == {"model_version": new, "changed": True}
        answer = client.post("/v1/predict", json={"instances": [row]}).json()
        assert answer["model_version"] == new

        assert registry.rollback(models, reason="test") == first
        deadline = time.monotonic() + 10
        while client.get("/ready").json()["model_version"] != first:
            assert time.monotonic() < deadline, "the service did not follow the rollback"
            time.sleep(0.1)


def test_the_dashboard_shows_the_model_metrics_drift_and_history(mixed_project, tmp_path, row):
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
    settings = settings_for(mixed_project, tmp_path, reports_dir=reports, api_key="s3cret")
    with TestClient(create_app(settings)) as client:
        assert client.get("/dashboard").status_code == 401
        client.post("/v1/predict", json={"instances": [row]}, headers={"X-API-Key": "s3cret"})
        page = client.get("/dashboard", auth=("operator", "s3cret"))
        runbook = client.get("/dashboard/runbook", headers={"X-API-Key": "s3cret"})
    assert page.status_code == 200
    html = page.text
    assert bundle.read_pointer(mixed_project.models, "current") in html
    assert 'id="drift-status" class="badge drift">drift<' in html
    assert "PSI 0.90" in html
    assert "Latest report 2024-05-01T00:00:00+00:00 on" in html
    assert "/v1/predict" in html  # traffic counts
    assert "promoted" in html  # registry history
    assert 'id="gate-verdict" class="badge ok">passed<' in html
    assert runbook.status_code == 200
