import json
import shutil
import sys
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import bundle, monitor, task
from {{ cookiecutter.package_name }}.api import Settings, create_app
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import load_params
from {{ cookiecutter.package_name }}.errors import DataError
from {{ cookiecutter.package_name }}.features import read_processed

ROWS = 200  # recent rows per check: above min_rows, so every alarm is live
SEEDS = 10


@pytest.fixture(scope="module")
def served(mixed_project):
    return bundle.load(bundle.resolve(mixed_project.models, "current"))


@pytest.fixture(scope="module")
def thresholds(mixed_project):
    return load_params(mixed_project.params).monitoring


@pytest.fixture(scope="module")
def train(mixed_project, served) -> pd.DataFrame:
    """The training rows' features: what the reference statistics describe."""
    return read_processed(mixed_project.processed)[0].drop(columns=served.metadata["target"])


def draw(frame: pd.DataFrame, seed: int, rows: int = ROWS) -> pd.DataFrame:
    """A bootstrap sample of the rows: recent data with nothing changed."""
    return frame.sample(rows, replace=True, random_state=seed).reset_index(drop=True)


def as_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as a client sends them: raw values, None for missing."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def check(served, frame: pd.DataFrame, thresholds) -> dict:
    recent = monitor.recent_frame(as_rows(frame), served.metadata["features"])
    outputs = task.predict(served.model, recent).values.tolist()
    return monitor.compare(served.reference, recent, outputs, thresholds)


def numeric_feature(served) -> str:
    return next(n for n, r in served.reference["features"].items() if r["kind"] == "numeric")


def feature(report: dict, name: str) -> dict:
    return next(r for r in report["features"] if r["name"] == name)


def write_log(path, models, frame: pd.DataFrame, requests: int) -> None:
    """Send the rows to the service in a few requests; the service writes the log."""
    settings = Settings(models_dir=models, prediction_log_path=path)
    with TestClient(create_app(settings)) as client:
        for chunk in np.array_split(np.arange(len(frame)), requests):
            body = {"instances": as_rows(frame.iloc[chunk])}
            assert client.post("/v1/predict", json=body).status_code == 200


def test_psi_is_zero_for_equal_shares_and_large_for_a_new_bucket():
    assert monitor.psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0
    assert monitor.psi([0.5, 0.5, 0.0], [0.35, 0.35, 0.3]) > 1


def test_samples_of_the_training_distribution_raise_no_alarm(served, train, thresholds):
    assert thresholds.min_rows <= ROWS
    alarms = [
        seed for seed in range(SEEDS) if check(served, draw(train, seed), thresholds)["drift"]
    ]
    assert alarms == [], f"false alarms for seeds {alarms}"


def test_a_mean_shift_in_one_feature_is_named(served, train, thresholds):
    name = numeric_feature(served)
    recent = draw(train, seed=0)
    recent[name] += served.reference["features"][name]["std"]
    report = check(served, recent, thresholds)
    assert report["drift"]
    assert report["drifted"] == [name]
    assert any(reason.startswith("PSI") for reason in feature(report, name)["reasons"])


def test_a_new_category_is_named(served, train, thresholds):
    recent = draw(train, seed=1)
    recent.loc[recent.index % 3 == 0, "band"] = "brand-new line"
    report = check(served, recent, thresholds)
    assert "band" in report["drifted"]
    assert feature(report, "band")["unseen_share"] == pytest.approx(1 / 3, abs=0.01)
    assert feature(report, "band")["unseen_examples"] == ["brand-new line"]


def test_too_few_rows_warn_but_do_not_alarm(served, train, thresholds):
    recent = draw(train, seed=2, rows=20)
    recent["band"] = "brand-new line"
    report = check(served, recent, thresholds)
    assert not report["enough_rows"]
    assert not report["drift"]
    assert feature(report, "band")["status"] == "warn"


def test_labels_with_a_broken_relationship_report_a_performance_drop(
    served, thresholds, mixed_project, tmp_path
):
    target = served.metadata["target"]
    recent = draw(read_processed(mixed_project.processed)[0], seed=3)
    recent[target] = recent[target].sample(frac=1, random_state=0).to_numpy()
    recent.to_csv(tmp_path / "labelled.csv", index=False)
    reports = tmp_path / "monitoring"

    report = monitor.run(
        mixed_project.models, reports, thresholds, data_path=tmp_path / "labelled.csv"
    )

    result = report["performance"]
    assert result["status"] == "drift"
    assert result["primary"]["relative_drop"] > thresholds.max_metric_drop
    assert set(result["metrics"]) == set(task.METRICS)
    assert report["drift"]
    assert report["drifted"] == []  # the inputs did not move; their relation to the target did
    assert json.loads((reports / "latest.json").read_text()) == report
    [markdown] = reports.glob("*.md")
    assert "Performance on" in markdown.read_text()
    assert all((reports / figure).exists() for figure in report["figures"])


def test_the_monitor_reads_the_service_log(train, mixed_project, tmp_path):
    assert Settings.model_fields["prediction_log_path"].default == monitor.DEFAULT_LOG
    path = tmp_path / "predictions.jsonl"
    write_log(path, mixed_project.models, draw(train, seed=4, rows=30), requests=3)
    with path.open("a") as handle:
        handle.write('{"time": "2024-01-01T00:00:00+00:00", "request": {"inst')  # cut short

    records = monitor.read_log(path)
    assert len(records) == 3
    assert sum(len(r["inputs"]) for r in records) == sum(len(r["outputs"]) for r in records) == 30
    assert len(monitor.read_log(path, last=2)) == 2
    with pytest.raises(DataError, match="no prediction records since"):
        monitor.read_log(path, since=datetime(2999, 1, 1, tzinfo=timezone.utc))


def exit_code(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["monitor", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code


def test_the_cli_exits_0_without_drift_1_with_drift_and_2_on_errors(
    served, train, mixed_project, tmp_path, monkeypatch
):
    root = tmp_path / "project"
    shutil.copytree(mixed_project.root, root)
    write_log(root / "logs" / "predictions.jsonl", root / "models", draw(train, 5), requests=4)
    shifted = draw(train, seed=6)
    shifted[numeric_feature(served)] *= 3
    write_log(root / "logs" / "shifted.jsonl", root / "models", shifted, requests=4)

    assert exit_code(monkeypatch, "monitor", "--root", str(root)) == 0
    assert (
        exit_code(monkeypatch, "monitor", "--root", str(root), "--log", "logs/shifted.jsonl") == 1
    )
    assert exit_code(monkeypatch, "monitor", "--root", str(root), "--log", "logs/none.jsonl") == 2
    latest = json.loads((root / "reports" / "monitoring" / "latest.json").read_text())
    assert latest["source"]["requests"] == 4
    assert latest["predictions_source"] == "the log"
    assert numeric_feature(served) in latest["drifted"]
