"""Load test for the prediction service: `make loadtest` while `make serve` runs.

Each simulated user reads the feature schema from `GET /v1/model`, builds one valid row
from it, then mostly sends single-row predictions with an occasional 100-row batch.
Set SERVICE_API_KEY when the service requires a key.
"""

import os

from locust import HttpUser, between, task

BATCH_ROWS = 100


def example_row(schema: list[dict]) -> dict:
    """A row inside the training ranges, so every request exercises the normal path."""
    row = {}
    for feature in schema:
        if feature["kind"] == "numeric":
            row[feature["name"]] = (feature["min"] + feature["max"]) / 2
        elif feature["kind"] == "categorical":
            row[feature["name"]] = feature["categories"][0]
        elif feature["kind"] == "text":
            row[feature["name"]] = "Arrived quickly and works as described, but the manual is poor."
        else:
            row[feature["name"]] = feature["min"]
    return row


class PredictionUser(HttpUser):
    wait_time = between(0.01, 0.1)

    def on_start(self) -> None:
        api_key = os.environ.get("SERVICE_API_KEY")
        if api_key:
            self.client.headers["X-API-Key"] = api_key
        response = self.client.get("/v1/model")
        response.raise_for_status()
        self.row = example_row(response.json()["features"])

    @task(20)
    def predict_one(self) -> None:
        self.client.post("/v1/predict", json={"instances": [self.row]}, name="predict 1 row")

    @task(1)
    def predict_batch(self) -> None:
        self.client.post(
            "/v1/predict",
            json={"instances": [self.row] * BATCH_ROWS},
            name=f"predict {BATCH_ROWS} rows",
        )
