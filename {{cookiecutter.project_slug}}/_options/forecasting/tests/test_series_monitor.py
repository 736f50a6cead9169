import json
import shutil
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import bundle, drift, drift_report, monitor, recent_series
from {{ cookiecutter.package_name }}.api import Settings, create_app
from {{ cookiecutter.package_name }}.config import load_params
from {{ cookiecutter.package_name }}.data import read_processed
from {{ cookiecutter.package_name }}.errors import DataError
from {{ cookiecutter.package_name }}.series_service import Predictor

REQUESTS = 20  # recent histories per check: their distinct values pass min_rows
SEEDS = 5


@pytest.fixture(scope="module")
def served(trained_project):
    return bundle.load(bundle.resolve(trained_project.models, "current"))


@pytest.fixture(scope="module")
def thresholds(trained_project):
    return load_params(trained_project.params).monitoring


@pytest.fixture(scope="module")
def reference_window(trained_project, served) -> pd.DataFrame:
    """The end of the training series: what the reference statistics describe."""
    steps = drift.reference_rows(served.reference)
    return read_processed(trained_project.processed)[0].iloc[-steps:]


def bodies(frame: pd.DataFrame, served, seed: int, requests: int = REQUESTS) -> list[dict]:
    """Requests with histories drawn from the frame, as a client sends them."""
    series = served.metadata["features"][0]
    length = series["min_history"] + 7
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(frame) - length, size=requests)
    return [
        {
            "history": {
                "timestamps": [
                    t.isoformat() for t in frame[series["timestamp"]].iloc[s : s + length]
                ],
                "values": frame[series["name"]].iloc[s : s + length].tolist(),
            },
            "horizon": series["horizon"],
        }
        for s in starts
    ]


def check(served, requests: list[dict], thresholds) -> dict:
    """The monitor's comparison on records made by the served model, without the log."""
    predictor, records = Predictor(served), []
    for body in requests:
        history = body["history"]
        made = predictor.forecast(history["timestamps"], history["values"], body["horizon"])
        forecast = [
            {"timestamp": t, "value": v}
            for t, v in zip(made.timestamps, made.values[0], strict=True)
        ]
        records.append(
            {
                "time": datetime.now(timezone.utc),
                "model_version": served.version,
                "series_id": None,
                "future": None,
                "history": history,
                "horizon": body["horizon"],
                "forecast": forecast,
            }
        )
    recent = recent_series.from_log(served, records, monitor.DEFAULT_LOG)
    return monitor.compare(served.reference, recent, thresholds)


def check_named(report: dict, name: str) -> dict:
    return next(r for r in report["features"] if r["name"] == name)


def test_the_reference_keeps_the_training_values_as_they_are(served, reference_window):
    """Nothing is rounded on one side only: the KS sample holds the training values exactly."""
    values = set(reference_window[served.metadata["target"]].astype(float))
    assert set(drift.feature_references(served.reference)["level"]["sample"]) <= values


def test_half_of_a_series_of_repeated_long_decimals_is_no_drift():
    rng = np.random.default_rng(0)
    values = pd.Series(np.log(rng.integers(1, 6, 600) / 7))
    reference = json.loads(json.dumps(drift.feature_reference("series", values)))
    for seed in range(3):
        half = values.sample(frac=0.5, random_state=seed)
        result = drift.CHECKS["series"].compare(reference, half, len(values))
        assert result["ks_statistic"] < 0.1, seed


@pytest.mark.parametrize(
    "seed", [0, *(pytest.param(seed, marks=pytest.mark.slow) for seed in range(1, SEEDS))]
)
def test_histories_from_the_training_series_raise_no_alarm(
    served, reference_window, thresholds, seed
):
    report = check(served, bodies(reference_window, served, seed), thresholds)
    assert report["enough_rows"], report["rows"]
    assert not report["drift"], (seed, [r["reasons"] for r in report["features"]])


def test_a_level_shift_is_named(served, reference_window, thresholds, trained_project):
    name = served.metadata["target"]
    shifted = reference_window.assign(**{name: reference_window[name] * 1.4})
    report = check(served, bodies(shifted, served, seed=1), thresholds)
    assert report["drift"]
    assert "level" in report["drifted"]
    assert report["predictions"]["status"] == "drift"  # the forecasts follow the level


def test_missing_steps_in_the_histories_are_named(served, reference_window, thresholds):
    requests = bodies(reference_window, served, seed=2)
    for body in requests:
        values = body["history"]["values"]
        body["history"]["values"] = [None if i % 4 == 2 else v for i, v in enumerate(values)]
    report = check(served, requests, thresholds)
    assert any("missing rate" in reason for reason in check_named(report, "level")["reasons"])


def test_too_few_values_are_not_enough_data(served, reference_window, thresholds):
    name = served.metadata["target"]
    shifted = reference_window.assign(**{name: reference_window[name] * 1.4})
    report = check(served, bodies(shifted, served, seed=3, requests=1), thresholds)
    assert not report["enough_rows"]
    assert report["verdict"] == "not enough data"
    assert not report["drift"]
    assert check_named(report, "level")["status"] == "warn"
    line = drift_report.summary(report, monitor.WORDING)
    assert line.startswith(f"not enough data: {report['rows']} distinct values, alarms need")


@pytest.mark.slow
def test_actual_values_in_a_file_check_the_forecast_errors(trained_project, tmp_path, thresholds):
    root = tmp_path / "project"
    shutil.copytree(trained_project.root, root)
    train, test, _ = read_processed(trained_project.processed)
    served = bundle.load(bundle.resolve(root / "models", "current"))
    name, stamp = served.metadata["target"], served.metadata["features"][0]["timestamp"]
    # The test period after the model's window of history: the evaluation's origins.
    recent = pd.concat([train.iloc[-served.model.window_ :], test])
    recent[[stamp, name]].to_csv(root / "recent.csv", index=False)
    noise = np.random.default_rng(0).normal(0, test[name].std(), len(test))
    test.assign(**{name: test[name].mean() + noise})[[stamp, name]].to_csv(
        root / "broken.csv", index=False
    )

    usual = monitor.run(
        root / "models", root / "reports", thresholds, data_path=root / "recent.csv"
    )
    broken = monitor.run(
        root / "models", root / "reports", thresholds, data_path=root / "broken.csv"
    )

    assert usual["performance"]["status"] == "ok"
    assert usual["performance"]["primary"]["recent"] == pytest.approx(
        json.loads((served.path / "evaluation.json").read_text())["candidate"]["mase"]
    )
    assert broken["performance"]["status"] == "drift"
    assert "forecast errors" in broken["summary"]


def test_a_file_without_a_single_number_in_the_series_is_an_error(
    served, trained_project, tmp_path, thresholds
):
    name, stamp = served.metadata["target"], served.metadata["features"][0]["timestamp"]
    test = read_processed(trained_project.processed)[1]
    test[[stamp]].assign(**{name: "n/a"}).to_csv(tmp_path / "words.csv", index=False)

    with pytest.raises(DataError, match=f"no row has both a time and a number in '{name}'"):
        monitor.run(trained_project.models, tmp_path, thresholds, data_path=tmp_path / "words.csv")


def write_log(path, models, requests: list[dict]) -> None:
    """Send the requests to the service; the service writes the log."""
    settings = Settings(models_dir=models, prediction_log_path=path)
    with TestClient(create_app(settings)) as client:
        for body in requests:
            assert client.post("/v1/predict", json=body).status_code == 200


def test_the_monitor_reads_the_service_log(served, reference_window, trained_project, tmp_path):
    assert Settings.model_fields["prediction_log_path"].default == monitor.DEFAULT_LOG
    path = tmp_path / "predictions.jsonl"
    write_log(path, trained_project.models, bodies(reference_window, served, 4, requests=3))
    with path.open("a") as handle:
        handle.write('{"time": "2024-01-01T00:00:00+00:00", "request": {"hist')  # cut short

    records = monitor.read_log(path)
    assert len(records) == 3
    assert all(len(r["forecast"]) == r["horizon"] for r in records)
    assert len(monitor.read_log(path, last=2)) == 2
    with pytest.raises(DataError, match="no prediction records since"):
        monitor.read_log(path, since=datetime(2999, 1, 1, tzinfo=timezone.utc))


@pytest.mark.slow
def test_forecasts_logged_by_another_version_are_made_again(
    served, reference_window, trained_project, tmp_path, thresholds
):
    path = tmp_path / "predictions.jsonl"
    write_log(path, trained_project.models, bodies(reference_window, served, 7))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:  # as if an older model had answered, with useless forecasts
        record["response"]["model_version"] = "20000101-000000-older"
        for point in record["response"]["forecast"]:
            point["value"] = 0.0
    path.write_text("".join(json.dumps(record) + "\n" for record in records))

    report = monitor.run(trained_project.models, tmp_path / "reports", thresholds, log_path=path)

    assert report["predictions_source"] == "the current model"
    assert report["predictions"]["status"] == "ok"
    assert not report["drift"], report["summary"]


@pytest.mark.slow
def test_the_cli_exits_0_without_drift_1_with_drift_2_on_errors_3_without_enough_data(
    served, reference_window, trained_project, tmp_path, monkeypatch, capsys
):
    root = tmp_path / "project"
    shutil.copytree(trained_project.root, root)
    write_log(
        root / "logs" / "predictions.jsonl", root / "models", bodies(reference_window, served, 5)
    )
    name = served.metadata["target"]
    shifted = reference_window.assign(**{name: reference_window[name] + 50})
    write_log(root / "logs" / "shifted.jsonl", root / "models", bodies(shifted, served, 6))
    write_log(root / "logs" / "few.jsonl", root / "models", bodies(shifted, served, 8, requests=1))

    assert run_cli(monkeypatch, "monitor", "--root", str(root)) == 0
    capsys.readouterr()
    assert run_cli(monkeypatch, "monitor", "--root", str(root), "--log", "logs/few.jsonl") == 3
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("cannot tell: not enough data: ")
    assert run_cli(monkeypatch, "monitor", "--root", str(root), "--log", "logs/shifted.jsonl") == 1
    assert run_cli(monkeypatch, "monitor", "--root", str(root), "--log", "logs/none.jsonl") == 2
    latest = json.loads((root / "reports" / "monitoring" / "latest.json").read_text())
    assert latest["source"]["requests"] == REQUESTS
    assert latest["predictions_source"] == "the log"
    assert "level" in latest["drifted"]
