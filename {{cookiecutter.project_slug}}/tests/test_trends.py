"""The dashboard's trends and alerts, from what the real monitor, registry and service wrote."""

import shutil
import time
import xml.etree.ElementTree as ET
from contextlib import suppress
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from conftest import PROJECT_ROOT, another_version, quick

from {{ cookiecutter.package_name }} import alerts, bundle, dashboard, evaluate, monitor, registry, trends
from {{ cookiecutter.package_name }}.config import load_params, load_problem
from {{ cookiecutter.package_name }}.errors import ProjectError
from {{ cookiecutter.package_name }}.service.models import ServedModel, read_schema

BASE = {"Drift alarm", "Not enough data", "Evaluation gate failure", "Service not ready"}
BASE |= {"High latency"}


@pytest.fixture(scope="module")
def thresholds(trained_project):
    """The project's alarm levels, for test splits of any size: alarms from 30 rows."""
    return load_params(trained_project.params).monitoring.model_copy(update={"min_rows": 30})


def shifted(frame: pd.DataFrame, served) -> pd.DataFrame:
    """The rows with every number tripled and every text replaced by unknown words."""
    frame = frame.copy()
    for feature in served.metadata["features"]:
        name = feature["name"]
        if name in frame and feature["kind"] in ("numeric", "series"):
            frame[name] = frame[name] * 3 + 1
        elif name in frame and feature["kind"] == "text":
            frame[name] = [f"zqx{i} vorp{i % 7} blick" for i in range(len(frame))]
    return frame


@pytest.fixture(scope="module")
def monitored(trained_project, thresholds, tmp_path_factory):
    """The reports of two monitor runs: the test split as it is, then shifted."""
    root = tmp_path_factory.mktemp("trends")
    served = bundle.load(bundle.resolve(trained_project.models, "current"))
    test = pd.read_parquet(trained_project.processed / "test.parquet")
    runs = []
    for name, frame in (("same", test), ("shifted", shifted(test, served))):
        path = root / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        time.sleep(1.05 - time.time() % 1)  # a report's name carries its time to the second
        reports = root / "reports" / "monitoring"
        runs.append(monitor.run(trained_project.models, reports, thresholds, data_path=path))
    return root / "reports", runs


def svg_root(svg: str) -> ET.Element:
    element = ET.fromstring(svg)
    assert element.tag.endswith("svg")
    return element


def test_drift_history_lists_the_monitor_runs_oldest_first(monitored, tmp_path):
    reports, runs = monitored
    copy = tmp_path / "reports"
    shutil.copytree(reports, copy)
    (copy / "monitoring" / "20000101T000000Z.json").write_text("{ cut short")
    history = trends.drift_history(copy)
    assert [run["created_at"] for run in history] == [run["created_at"] for run in runs]
    assert [run["verdict"] for run in history] == [run["verdict"] for run in runs]
    assert history[-1]["verdict"] == "drift" and history[-1]["drifted"]
    assert set(history[0]["features"]) == {check["name"] for check in runs[0]["features"]}
    assert history[0]["predictions"] == runs[0]["predictions"]["psi"]
    assert trends.drift_history(copy, limit=1) == history[-1:]


def test_the_drift_chart_is_svg_with_the_checks_and_the_same_every_time(monitored, thresholds):
    history = trends.drift_history(monitored[0])
    svg = trends.drift_chart(history, warn=thresholds.psi_warn, alarm=thresholds.psi_alarm)
    svg_root(svg)
    largest = {}
    for run in history:
        for name, psi in run["features"].items():
            if psi is not None:
                largest[name] = max(largest.get(name, 0.0), psi)
    drawn = sorted(largest, key=lambda name: (-largest[name], name))[: trends.MOST_LINES]
    for name in [*drawn, "predictions", "UTC", "PSI"]:
        assert name in svg
    if len(largest) > trends.MOST_LINES:
        assert f"{len(largest) - trends.MOST_LINES} more not drawn" in svg
    assert svg == trends.drift_chart(history, thresholds.psi_warn, thresholds.psi_alarm)
    assert trends.drift_chart([]) is None


def test_the_metric_chart_and_a_gate_failure_after_a_second_version(trained_project, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(trained_project.models, models)
    first = bundle.read_pointer(models, "current")
    second = another_version(models, first)
    bundle.set_pointer(models, "candidate", second)
    problem, params = load_problem(trained_project.problem), load_params(trained_project.params)
    with suppress(ProjectError):  # a failed or inconclusive gate still writes its report
        evaluate.run(
            trained_project.processed, models, tmp_path / "reports", problem, quick(params)
        )
    svg = trends.metric_chart(models)
    svg_root(svg)
    assert first in svg and second in svg and "serving" in svg
    assert trends.metric_chart(tmp_path) is None

    registry.record(models, registry.REJECTED, second, reason="worse than the serving model")
    served = ServedModel(models, read_schema(models))
    served.load()
    found = alerts.active(served, None, registry.history(models), None, latency_budget=1.0)
    assert [alert.name for alert in found] == ["Evaluation gate failure"]
    assert second in found[0].message and found[0].runbook == "evaluation-gate-failure"


def service_metrics(app):
    """The Prometheus metrics the service counts requests with."""
    return app.state.telemetry.metrics


def test_traffic_samples_count_the_requests_between_two_readings(client):
    body = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
    metrics, samples = service_metrics(client.app), trends.TrafficSamples()
    start = datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert samples.sample(metrics, now=start) is None and len(samples) == 0
    for _ in range(5):
        assert client.post("/v1/predict", json=body["examples"][0]).status_code == 200
    assert client.post("/v1/predict", json={"nothing": 1}).status_code == 422
    assert client.get("/health").status_code == 200
    sample = samples.sample(metrics, now=start + timedelta(minutes=1))
    assert (sample["requests"], sample["client_errors"], sample["errors"]) == (6, 1, 0)
    assert sample["predictions"] == 6 and sample["seconds"] == 60
    assert 0 < sample["p50"] <= sample["p95"] and sample["p95_above"] < sample["p95"]
    quiet = samples.sample(metrics, now=start + timedelta(minutes=2))
    assert quiet["requests"] == 0 and quiet["p95"] is None
    svg = trends.traffic_chart(samples, budget=0.5)
    svg_root(svg)
    assert "requests / min" in svg and svg == trends.traffic_chart(samples, budget=0.5)
    assert trends.traffic_chart(list(samples)[:1]) is None

    slow = alerts.active(ServedModel(PROJECT_ROOT / "models", None), None, [], [sample], 0.0)
    assert [alert.name for alert in slow] == ["Service not ready", "High latency"]


def test_alerts_for_drift_and_a_service_not_ready(monitored, trained_project):
    served = ServedModel(trained_project.models, read_schema(trained_project.models))
    found = alerts.active(served, dashboard.latest_drift(monitored[0]), [], None, 1.0)
    names = [alert.name for alert in found]
    assert names[0] == "Service not ready" and "Drift alarm" in names
    if set(alerts.ALERTS) - BASE:  # the type's own section for what drifted
        assert set(names) & (set(alerts.ALERTS) - BASE)
    for alert in found:
        assert alert.name in alerts.ALERTS and alert.severity in ("bad", "warn")
        assert alert.action in (*alerts.ACTIONS, None) and alert.action_hint
        assert "\n" not in alert.message and len(alert.message) <= alerts.LONGEST


def test_every_alert_links_to_its_runbook_section(tmp_path):
    html = alerts.runbook_html(PROJECT_ROOT / "docs")
    for name in alerts.ALERTS:
        assert f'id="{alerts.anchor(name)}"' in html, name
    assert "<script" not in html
    assert "is not deployed" in alerts.runbook_html(tmp_path)
