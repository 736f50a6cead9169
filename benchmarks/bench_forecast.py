"""In-process forecast latency of the forecasting type, against its 40 ms bar.

Renders a forecasting project, `make setup` and `make pipeline` (not timed), then, inside
the project's own environment, times a forecast of the OpenAPI example (the trained
horizon, 14 steps on the sample) with the served predictor, and the same request through
the whole app in process (FastAPI's test client: validation, forecast, response, log).
Prints median and p95 of 200 calls after 20 warm-up calls, the predictor's beside the bar
(the app's shows what HTTP handling, validation and the log add); gates nothing.

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

served = bundle.load(bundle.resolve(Path("models"), "current"))
schema = served.metadata["features"]
example = schema[0]["example"] | {{"horizon": schema[0]["horizon"]}}  # the OpenAPI example
predictor = PROBLEM_TYPE.predictor(served)
parsed = PROBLEM_TYPE.request_model(schema, 10_000).model_validate(example)
alone = timed(lambda: predictor.predict_request(parsed))
settings = Settings(models_dir=Path("models"), prediction_log_path=Path("logs/bench.jsonl"))
with TestClient(create_app(settings)) as client:
    app = timed(lambda: client.post("/v1/predict", json=example))
print(json.dumps({{"horizon": example["horizon"], "predictor": alone, "app": app}}))
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
    median, p95 = timings["predictor"]
    verdict = "ok" if median <= BAR_MS else "OVER"
    print(f"{'served predictor':<34}{median:>8.1f}{p95:>8.1f}{BAR_MS:>6.0f}  {verdict}")
    median, p95 = timings["app"]  # for scale: HTTP handling, validation and the log on top
    print(f"{'whole app (test client)':<34}{median:>8.1f}{p95:>8.1f}{'-':>6}")


if __name__ == "__main__":
    main()
