"""Load test for the prediction service: `make loadtest` while `make serve` runs.

Each simulated user reads a valid request from the service's OpenAPI document (the example
the problem type builds from the served model: one row, or a recent history) and sends it
over and over. Set SERVICE_API_KEY when the service requires a key.
"""

import os

from locust import HttpUser, between, task


class PredictionUser(HttpUser):
    wait_time = between(0.01, 0.1)

    def on_start(self) -> None:
        api_key = os.environ.get("SERVICE_API_KEY")
        if api_key:
            self.client.headers["X-API-Key"] = api_key
        response = self.client.get("/openapi.json")
        response.raise_for_status()
        schemas = response.json()["components"]["schemas"]
        self.body = schemas["PredictRequest"]["examples"][0]

    @task
    def predict(self) -> None:
        self.client.post("/v1/predict", json=self.body, name="predict the example")
