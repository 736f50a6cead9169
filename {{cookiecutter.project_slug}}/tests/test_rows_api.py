"""What the service does with rows: every feature kind, the forms values arrive in, bad
rows, batches, and the fast path against the pipeline (see test_api.py for the rest)."""

import csv
import dataclasses
import json
import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
from conftest import settings_for
from fastapi.testclient import TestClient
from pydantic import ValidationError

from {{ cookiecutter.package_name }} import bundle
from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.predictor import Predictor, row_model, to_frame
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


@pytest.fixture(scope="module")
def client(mixed_project, tmp_path_factory):
    """A client of the service for the project with every feature kind, shared by the tests
    that only send requests (none of them reads the prediction log or the metrics)."""
    settings = settings_for(mixed_project, tmp_path_factory.mktemp("rows"))
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def card(client) -> dict:
    """The model card of the project with every feature kind."""
    return client.get("/v1/model").json()


@pytest.fixture(scope="module")
def loaded(mixed_project) -> bundle.Bundle:
    """The current bundle of the project with every feature kind."""
    return bundle.load(bundle.resolve(mixed_project.models, "current"))


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
    request = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
    assert request["examples"] == [{"instances": schema["examples"]}]


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
    "number as text": lambda row, card: {**row, feature_of(card, "numeric"): "12.5"},
    "number as boolean": lambda row, card: {**row, feature_of(card, "numeric"): False},
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
    changed = {k for k in row if repr(bad.get(k)) != repr(row[k])}  # False == 0.0 in Python
    named = (set(bad) ^ set(row)) | changed
    assert any(loc[:3] == ["body", "instances", 1] and loc[3] in named for loc in locations)


def test_a_row_copied_from_the_training_csv_is_accepted(client, card, mixed_project, loaded):
    """Categories and dates exactly as the CSV spells them (dates as YYYY/MM/DD); numbers
    as JSON numbers, since text is no number."""
    with open(mixed_project.root / "data" / "external" / "mixed.csv", newline="") as file:
        complete = [row for row in csv.DictReader(file) if all(row.values())]
    numeric = {f["name"] for f in card["features"] if f["kind"] == "numeric"}
    names = [f["name"] for f in card["features"]]
    copied = [
        {name: float(row[name]) if name in numeric else row[name] for name in names}
        for row in complete[:25]
    ]
    day = feature_of(card, "datetime")
    assert all("/" in row[day] for row in copied)
    response = client.post("/v1/predict", json={"instances": copied})
    assert response.status_code == 200, response.text

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
            row = Row.model_validate({"code": code, "day": day, "amount": 2.5})
            expected = {"code": "3", "day": date(2024, 1, 31), "amount": 2.5}
            assert row.model_dump(by_alias=True) == expected
    with pytest.raises(ValidationError, match="year first"):
        Row.model_validate({"code": 3, "day": "31.01.2024", "amount": 1.0})
    with pytest.raises(ValidationError, match="valid number"):  # numbers are strict
        Row.model_validate({"code": 3, "day": "2024-01-31", "amount": "2.5"})


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


def test_a_batch_is_logged_and_counted_row_by_row(mixed_project, tmp_path, row):
    settings = settings_for(mixed_project, tmp_path)
    with TestClient(create_app(settings)) as client:
        client.post("/v1/predict", json={"instances": [row, row]})
        metrics = client.get("/metrics").text
    records = [json.loads(line) for line in settings.prediction_log_path.read_text().splitlines()]
    assert records[0]["request"]["instances"] == [row, row]
    assert len(records[0]["response"]["predictions"]) == 2
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("predictions_total{")
    )
    assert counted == 2


def test_the_fast_path_gives_the_reference_predictions(mixed_project, loaded):
    predictor = Predictor(loaded)
    if any(f["kind"] == "text" for f in predictor.schema):
        assert loaded.onnx is None and predictor.fast is None  # TF-IDF: the pipeline serves
        return
    assert predictor.fast is not None
    test = pd.read_parquet(mixed_project.processed / "test.parquet")
    rows = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in test[[f["name"] for f in predictor.schema]].to_dict("records")
    ]
    assert PROBLEM_TYPE.same_predictions(predictor.fast.predict(rows), predictor.reference(rows))
    assert to_frame(rows, predictor.schema).shape == (len(rows), len(predictor.schema))


def test_a_model_without_onnx_is_served_by_its_pipeline(loaded, row):
    predictor = Predictor(dataclasses.replace(loaded, onnx=None))
    assert predictor.fast is None
    rows = [row, dict.fromkeys(row)]
    served, usual = predictor.predict(rows), Predictor(loaded)
    if usual.fast is None:  # no fast path (text): the same pipeline serves both
        np.testing.assert_equal(dataclasses.asdict(served), dataclasses.asdict(usual.predict(rows)))
    else:
        assert PROBLEM_TYPE.same_predictions(served, usual.predict(rows))
