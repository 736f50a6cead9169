"""Load test for the forecasting service: `make loadtest` while `make serve` runs.

Each simulated user reads the series contract from `GET /v1/model` and takes its example
history (the end of the training series), then asks for forecasts: mostly the full
horizon, sometimes a single step. Set SERVICE_API_KEY when the service requires a key.
"""

import os

from locust import HttpUser, between, task


class ForecastUser(HttpUser):
    wait_time = between(0.01, 0.1)

    def on_start(self) -> None:
        api_key = os.environ.get("SERVICE_API_KEY")
        if api_key:
            self.client.headers["X-API-Key"] = api_key
        response = self.client.get("/v1/model")
        response.raise_for_status()
        series = response.json()["features"][0]
        self.history, self.horizon = series["example"], series["horizon"]

    @task(10)
    def forecast_horizon(self) -> None:
        body = {"history": self.history, "horizon": self.horizon}
        self.client.post("/v1/predict", json=body, name="forecast the horizon")

    @task(1)
    def forecast_one_step(self) -> None:
        body = {"history": self.history, "horizon": 1}
        self.client.post("/v1/predict", json=body, name="forecast 1 step")
