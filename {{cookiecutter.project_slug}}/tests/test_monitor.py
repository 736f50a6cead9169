import json
import shutil
import warnings
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from conftest import edit_yaml, quick, run_cli
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import bundle, data, drift, drift_report, monitor
from {{ cookiecutter.package_name }}.api import Settings, create_app
from {{ cookiecutter.package_name }}.config import Paths, load_params, load_problem
from {{ cookiecutter.package_name }}.contract import Recent
from {{ cookiecutter.package_name }}.data import read_processed
from {{ cookiecutter.package_name }}.errors import DataError
from {{ cookiecutter.package_name }}.predictor import to_frame
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE

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
    recent = to_frame(as_rows(frame), served.metadata["features"])
    outputs = PROBLEM_TYPE.predict(served.model, recent).values.tolist()
    columns = {name: recent[name] for name in drift.feature_references(served.reference)}
    return monitor.compare(served.reference, Recent(columns, outputs, source={}), thresholds)


def numeric_feature(served) -> str:
    references = drift.feature_references(served.reference)
    return next(name for name, ref in references.items() if ref["kind"] == "numeric")


def feature(report: dict, name: str) -> dict:
    return next(r for r in report["features"] if r["name"] == name)


def write_csv(path, frame: pd.DataFrame):
    frame.to_csv(path, index=False)
    return path


def write_log(path, models, frame: pd.DataFrame, requests: int) -> None:
    """Send the rows to the service in a few requests; the service writes the log."""
    settings = Settings(models_dir=models, prediction_log_path=path)
    with TestClient(create_app(settings)) as client:
        for chunk in np.array_split(np.arange(len(frame)), requests):
            body = {"instances": as_rows(frame.iloc[chunk])}
            assert client.post("/v1/predict", json=body).status_code == 200


def test_the_reference_describes_every_served_feature(served):
    served_features = {f["name"] for f in served.metadata["features"]}
    assert set(drift.feature_references(served.reference)) == served_features


def test_samples_of_the_training_distribution_raise_no_alarm(served, train, thresholds):
    assert thresholds.min_rows <= ROWS
    alarms = [
        seed for seed in range(SEEDS) if check(served, draw(train, seed), thresholds)["drift"]
    ]
    assert alarms == [], f"false alarms for seeds {alarms}"


def test_a_mean_shift_in_one_feature_is_named(served, train, thresholds):
    name = numeric_feature(served)
    recent = draw(train, seed=0)
    recent[name] += drift.feature_references(served.reference)[name]["std"]
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


def test_too_few_rows_are_not_enough_data_and_name_what_would_alarm(served, train, thresholds):
    recent = draw(train, seed=2, rows=20)
    recent["band"] = "brand-new line"
    report = check(served, recent, thresholds)
    assert not report["enough_rows"]
    assert report["verdict"] == "not enough data"
    assert not report["drift"]
    assert feature(report, "band")["status"] == "warn"
    line = drift_report.summary(report, monitor.WORDING)
    assert line.startswith(f"not enough data: 20 rows, alarms need {thresholds.min_rows}")
    assert "band" in line


def test_dates_outside_the_training_range_are_named(served, train, thresholds):
    recent = draw(train, seed=7)
    dates = pd.to_datetime(recent["seen_on"]) + pd.DateOffset(years=20)
    recent["seen_on"] = dates.dt.strftime("%Y-%m-%d")
    report = check(served, recent, thresholds)
    assert "seen_on" in report["drifted"]
    result = feature(report, "seen_on")
    assert result["outside_share"] == pytest.approx(1.0)
    assert any("outside the training range" in reason for reason in result["reasons"])


def test_dates_crowding_into_one_month_drift_by_psi(served, train, thresholds):
    recent = draw(train, seed=8)
    dates = pd.to_datetime(recent["seen_on"])
    recent["seen_on"] = dates.map(lambda d: d.replace(month=1, day=min(d.day, 28))).dt.strftime(
        "%Y-%m-%d"
    )
    report = check(served, recent, thresholds)
    result = feature(report, "seen_on")
    assert result["outside_share"] < thresholds.max_outside_share  # still inside the range
    assert result["status"] == "drift"
    assert result["psi_part"] == "month"
    assert result["distribution"]["recent"][0] == pytest.approx(1.0)


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
    assert set(result["metrics"]) == set(PROBLEM_TYPE.metrics)
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


def test_the_cli_exits_0_without_drift_1_with_drift_2_on_errors_3_without_enough_data(
    served, train, mixed_project, tmp_path, monkeypatch, capsys
):
    root = tmp_path / "project"
    shutil.copytree(mixed_project.root, root)
    loaded = {bundle.resolve(root / "models", "current"): served}  # the copied bundle, loaded
    monkeypatch.setattr(bundle, "load", loaded.__getitem__)
    write_log(root / "logs" / "predictions.jsonl", root / "models", draw(train, 5), requests=4)
    shifted = draw(train, seed=6)
    shifted[numeric_feature(served)] *= 3
    write_log(root / "logs" / "shifted.jsonl", root / "models", shifted, requests=4)

    write_log(root / "logs" / "few.jsonl", root / "models", draw(train, 7, rows=10), requests=2)

    assert run_cli(monkeypatch, "monitor", "--root", str(root)) == 0
    capsys.readouterr()
    assert run_cli(monkeypatch, "monitor", "--root", str(root), "--log", "logs/few.jsonl") == 3
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("cannot tell: not enough data: 10 rows, alarms need ")
    assert "--since/--last" in line
    few = json.loads((root / "reports" / "monitoring" / "latest.json").read_text())
    assert few["verdict"] == "not enough data"
    assert run_cli(monkeypatch, "monitor", "--root", str(root), "--log", "logs/none.jsonl") == 2
    assert run_cli(monkeypatch, "monitor", "--root", str(root), "--log", "logs/shifted.jsonl") == 1
    latest = json.loads((root / "reports" / "monitoring" / "latest.json").read_text())
    assert latest["source"]["requests"] == 4
    assert latest["predictions_source"] == "the log"
    assert numeric_feature(served) in latest["drifted"]


@pytest.fixture(scope="module")
def decimal_project(mixed_project, tmp_path_factory) -> Paths:
    """The mixed project's source plus a column of long decimals that repeat (log ratios, as
    in count data), trained; a random half of its source is then judged (min_rows 50)."""
    from {{ cookiecutter.package_name }} import evaluate, features, train

    root = tmp_path_factory.mktemp("decimals")
    shutil.copytree(mixed_project.root / "configs", root / "configs")
    source = pd.read_csv(mixed_project.root / "data" / "external" / "mixed.csv")
    source["log_ratio"] = np.log(np.random.default_rng(1).integers(1, 6, len(source)) / 7)
    (root / "data" / "external").mkdir(parents=True)
    source.to_csv(root / "data" / "external" / "mixed.csv", index=False)
    paths = Paths(root)
    edit_yaml(paths.params, monitoring__min_rows=50)
    problem, params = load_problem(paths.problem), quick(load_params(paths.params))
    data.collect(problem, paths.raw, paths.root)
    features.prepare(data.read_raw(paths.raw), problem, params, paths.processed)
    train.run(paths.processed, paths.models, problem, params)
    evaluate.run(paths.processed, paths.models, paths.reports, problem, params)
    return paths


@pytest.mark.slow
def test_a_random_half_of_the_training_source_is_no_drift(decimal_project, monkeypatch):
    """The reference is built as live data is read: no false alarm on repeated long decimals."""
    source = data.read_csv(decimal_project.root / "data" / "external" / "mixed.csv")
    assert source["log_ratio"].round(6).ne(source["log_ratio"]).all()
{%- if cookiecutter.deep_learning == "yes" and cookiecutter.problem_type != "anomaly_detection" %}
    # Without the target: the metric check compares with the test score and has no
    # significance test; the early-stopped network scores training rows about as it scores
    # the test rows, so a half can fall more than max_metric_drop below by chance.
    source = source.drop(columns=load_problem(decimal_project.problem).target.name)
{%- endif %}
    for seed in range(3):
        half = source.sample(frac=0.5, random_state=seed)
        half.to_csv(decimal_project.root / "half.csv", index=False)
        args = ("monitor", "--root", str(decimal_project.root), "--data", "half.csv")
        assert run_cli(monkeypatch, *args) == 0, f"seed {seed}"
        latest = decimal_project.reports / "monitoring" / "latest.json"
        report = json.loads(latest.read_text())
        assert report["verdict"] == "no drift"
        assert feature(report, "log_ratio")["ks_statistic"] < 0.1


def test_metrics_a_sample_cannot_define_are_undefined_with_a_reason(
    served, mixed_project, thresholds
):
    """Labelled rows that all hold one target value: no NaN, no library warning."""
    target = served.metadata["target"]
    rows = read_processed(mixed_project.processed)[0]
    single = rows[rows[target] == rows[target].mode()[0]].head(60)
    frame = to_frame(as_rows(single.drop(columns=target)), served.metadata["features"])
    evaluation = json.loads((served.path / "evaluation.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning that escapes fails the test
        result = drift_report.performance(
            single[target].to_numpy(), PROBLEM_TYPE.predict(served.model, frame), evaluation
        )
    for name, metric in result["metrics"].items():
        assert metric["recent"] is not None or metric["undefined"], name
{%- if cookiecutter.problem_type == "classification" %}
    undefined = [name for name, metric in result["metrics"].items() if "undefined" in metric]
    assert "roc_auc" in undefined, "one class: ROC AUC has no value"
    assert all("class" in result["metrics"][name]["undefined"] for name in undefined)
{%- endif %}


def test_the_dashboard_shows_not_enough_data_as_its_own_verdict(mixed_project, tmp_path, train):
    reports = tmp_path / "reports"
    settings = Settings(
        models_dir=mixed_project.models,
        reports_dir=reports,
        prediction_log_path=tmp_path / "predictions.jsonl",
    )
    thresholds = load_params(mixed_project.params).monitoring
    monitor.run(
        mixed_project.models,
        reports / "monitoring",
        thresholds,
        data_path=write_csv(tmp_path / "few.csv", draw(train, seed=9, rows=12)),
    )
    with TestClient(create_app(settings)) as client:
        html = client.get("/dashboard").text
    assert 'id="drift-status" class="badge warn">not enough data<' in html
    assert "not enough data: 12 rows" in html
