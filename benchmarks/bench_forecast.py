"""In-process forecast latency of the forecasting type, against its 40 ms bar.

Renders a forecasting project, `make setup` and `make pipeline` (not timed), then, inside
the project's own environment, times a forecast of the OpenAPI example (the trained
horizon, 14 steps on the sample) with the served predictor, and the same request through
the whole app in process (FastAPI's test client: validation, forecast, response, log).
Prints median and p95 of 200 calls after 20 warm-up calls beside the bar; gates nothing.

    python benchmarks/bench_forecast.py
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from bench_pipeline import env, render, run

BAR_MS = 40.0
CALLS, WARM_UP = 200, 20

TIMING = f"""
import json, statistics, time
from pathlib import Path
from fastapi.testclient import TestClient
from {{package}}.api import Settings, create_app
from {{package}} import bundle
from {{package}}.problem_type import PROBLEM_TYPE

served = bundle.load(bundle.resolve(Path("models"), "current"))
predictor = PROBLEM_TYPE.predictor(served)
settings = Settings(models_dir=Path("models"), prediction_log_path=Path("logs/bench.jsonl"))
with TestClient(create_app(settings)) as client:
    body = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
    example = body["examples"][0]
    request = PROBLEM_TYPE.request_model(served.metadata["features"], 10_000)
    parsed = request.model_validate(example)

    def timed(call):
        for _ in range({WARM_UP}):
            call()
        times = []
        for _ in range({CALLS}):
            start = time.perf_counter()
            call()
            times.append(1000 * (time.perf_counter() - start))
        times.sort()
        return statistics.median(times), times[int(0.95 * len(times))]

    print(json.dumps({{
        "horizon": example["horizon"],
        "predictor": timed(lambda: predictor.predict_request(parsed)),
        "app": timed(lambda: client.post("/v1/predict", json=example)),
    }}))
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = render("forecasting", Path(tmp))
        run(["make", "setup"], cwd=project)
        run(["make", "pipeline"], cwd=project)
        script = TIMING.replace("{package}", "bench_forecasting")
        result = subprocess.run(
            [str(project / ".venv" / "bin" / "python"), "-c", script],
            cwd=project,
            env=env(),
            check=True,
            capture_output=True,
            text=True,
        )
        timings = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"a {timings['horizon']}-step forecast in process, {CALLS} calls (milliseconds)")
    header = f"{'path':<34}{'median':>8}{'p95':>8}{'bar':>6}"
    print(header)
    print("-" * len(header))
    for name, label in [("predictor", "served predictor"), ("app", "whole app (test client)")]:
        median, p95 = timings[name]
        verdict = "ok" if median <= BAR_MS else "OVER"
        print(f"{label:<34}{median:>8.1f}{p95:>8.1f}{BAR_MS:>6.0f}  {verdict}")


if __name__ == "__main__":
    main()
