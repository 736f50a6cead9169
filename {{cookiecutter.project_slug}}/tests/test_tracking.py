"""Experiment tracking: runs land in the project's MLflow store; a dead server changes nothing
but a warning."""

import json
import logging
import os
import shutil

import pytest
from conftest import edit_yaml, quick, settings_for
from typer.testing import CliRunner

from {{ cookiecutter.package_name }} import bundle, evaluate, tracking
from {{ cookiecutter.package_name }}.cli import app
from {{ cookiecutter.package_name }}.config import Paths, load_params, load_problem
from {{ cookiecutter.package_name }}.data import MANIFEST_FILE


@pytest.fixture
def tracked(trained_project, tmp_path, monkeypatch) -> Paths:
    """A copy of the trained project, with tracking on (to its own mlflow.db) and fresh."""
    root = tmp_path / "project"
    shutil.copytree(trained_project.root, root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setattr(tracking, "_off", None)
    return Paths(root)


def recorded_runs(paths: Paths) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{paths.root / tracking.DATABASE}")
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    return client, client.search_runs([experiment.experiment_id])


def evaluate_tracked(paths: Paths) -> dict:
    problem, params = load_problem(paths.problem), quick(load_params(paths.params))
    with tracking.for_bundle(paths.root, "evaluate") as run:
        return evaluate.run(
            paths.processed, paths.models, paths.reports, problem, params, tracked=run
        )


@pytest.mark.slow
def test_an_evaluation_is_recorded_with_both_configs_metrics_and_report(tracked):
    report = evaluate_tracked(tracked)

    client, runs = recorded_runs(tracked)
    assert len(runs) == 1
    run = runs[0]
    metadata = bundle.read_metadata(bundle.resolve(tracked.models, "current"))
    metric = report["primary"]["metric"]
    assert run.data.metrics[f"cv_{metric}_mean"] == pytest.approx(metadata["cv"]["mean"])
    for model in ("candidate", "baseline"):
        assert run.data.metrics[f"test_{model}_{metric}"] == pytest.approx(report[model][metric])
    assert run.data.metrics["gate_passed"] == 1.0
    assert run.data.tags["gate_verdict"] == report["gate"]["verdict"]
    assert run.data.params["problem.metric"] == metric
    assert run.data.params["params.split.seed"] == str(load_params(tracked.params).split.seed)
    assert run.data.tags["bundle_version"] == metadata["version"]
    assert run.data.tags["bundle_content_sha256"] == metadata["content_sha256"]
    manifest = tracked.raw / MANIFEST_FILE
    assert run.data.tags["data_manifest_sha256"] == bundle.sha256_file(manifest)
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/evaluation.md", "evaluation/metrics.json"} <= logged
    assert client.list_artifacts(run.info.run_id, "evaluation/figures")


def test_an_unreachable_tracking_server_warns_once_and_the_stage_goes_on(
    tracked, monkeypatch, caplog
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    for name in tracking.HTTP_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.WARNING):
        report = evaluate_tracked(tracked)
        with tracking.start(tracked.root, "train") as run:
            assert run.id is None

    assert report["gate"]["passed"]
    warnings = [r for r in caplog.records if r.name == tracking.__name__]
    assert len(warnings) == 1
    assert "127.0.0.1" in warnings[0].getMessage()
    # what keeps it fast: no retries with backoff, a short timeout (MLflow waits minutes)
    assert [os.environ[name] for name in tracking.HTTP_DEFAULTS] == ["0", "2"]


def test_tracking_set_off_records_nothing(tracked, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    evaluate_tracked(tracked)
    assert not (tracked.root / tracking.DATABASE).exists()


@pytest.mark.slow
def test_train_and_evaluate_fill_one_run_the_bundle_and_dashboard_name(tracked, tmp_path):
    from fastapi.testclient import TestClient

    from {{ cookiecutter.package_name }}.api import create_app

    edit_yaml(tracked.params, cv__folds=2, evaluation__bootstrap_resamples=100)
    runner = CliRunner()
    for command in ("train", "evaluate"):
        result = runner.invoke(app, [command, "--root", str(tracked.root)])
        assert result.exit_code == 0, result.output

    _, runs = recorded_runs(tracked)
    assert len(runs) == 1
    run = runs[0]
    metadata = bundle.read_metadata(bundle.resolve(tracked.models, "candidate"))
    assert metadata["mlflow_run_id"] == run.info.run_id
    assert run.info.status == "FINISHED"
    report = json.loads((tracked.reports / "metrics.json").read_text())
    metric = report["primary"]["metric"]
    assert run.data.metrics[f"cv_{metric}_mean"] == pytest.approx(metadata["cv"]["mean"])
    assert run.data.metrics[f"test_candidate_{metric}"] == pytest.approx(
        report["candidate"][metric]
    )
    assert run.data.tags["bundle_version"] == metadata["version"]
    with TestClient(create_app(settings_for(tracked, tmp_path))) as client:
        assert run.info.run_id in client.get("/dashboard").text  # the served bundle's run
