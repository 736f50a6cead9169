"""Hyperparameter search: a space params.yaml declares, trials on the training set alone, a
study that resumes, and the best params where `train` reads them."""

import re
import shutil

import pytest
import yaml
from conftest import edit_yaml, quick
from typer.testing import CliRunner

from {{ cookiecutter.package_name }} import bundle, tracking
from {{ cookiecutter.package_name }}.cli import app
from {{ cookiecutter.package_name }}.config import Paths, load_params, load_problem
from {{ cookiecutter.package_name }}.data import TEST_FILE
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE
from {{ cookiecutter.package_name }}.tune import STUDY_FILE, checked_space, read_training


def test_the_shipped_space_fits_the_shipped_candidate(params, problem):
    assert checked_space(problem, params) == params.tune.space != {}


def test_a_trial_scores_the_candidate_as_training_did(trained_project, problem, params):
    train, features = read_training(trained_project.processed)
    scores = PROBLEM_TYPE.score_candidate(train, features, problem, quick(params))
    recorded = bundle.read_metadata(bundle.resolve(trained_project.models, "current"))["cv"]
    assert scores["metric"] == recorded["metric"] == problem.metric
    assert scores["folds"] == pytest.approx(recorded["folds"])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"low": 5, "high": 1}, "low (5) must be below high (1)"),
        ({"low": 0, "high": 1, "log": True}, "a log scale needs low above 0"),
        ({"low": 1}, "give low and high"),
        ({"choices": [1], "low": 1, "high": 2}, "not both"),
    ],
)
def test_a_bad_range_is_a_config_error_naming_the_key(project, entry, message):
    edit_yaml(project.params, tune__space={"depth": entry})
    with pytest.raises(ConfigError, match=rf"tune\.space\.depth: .*{re.escape(message)}"):
        load_params(project.params)


def test_a_parameter_the_candidate_does_not_take_is_a_config_error(project):
    edit_yaml(project.params, tune__space={"no_such_knob": {"low": 1, "high": 3}})
    params, problem = load_params(project.params), load_problem(project.problem)
    with pytest.raises(ConfigError, match=r"tune\.space\.no_such_knob: not a parameter"):
        checked_space(problem, params)


@pytest.mark.slow
def test_tune_resumes_its_study_and_writes_the_best_params_without_the_test_set(
    trained_project, tmp_path, monkeypatch
):
    import optuna
    from mlflow import MlflowClient

    paths = Paths(tmp_path / "project")
    shutil.copytree(trained_project.root, paths.root)
    (paths.processed / TEST_FILE).unlink()  # tune must never need it
    text = paths.params.read_text()  # edited as a user would, comments kept
    text = re.sub(r"(?m)^  folds: \d+", "  folds: 2", text)
    paths.params.write_text(re.sub(r"max_epochs: \d+", "max_epochs: 5", text))  # networks
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setattr(tracking, "_off", None)
    runner = CliRunner()
    for trials in ("3", "2"):
        result = runner.invoke(app, ["tune", "--trials", trials, "--root", str(paths.root)])
        assert result.exit_code == 0, result.output

    storage = f"sqlite:///{paths.root / STUDY_FILE}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    assert len(study.trials) == 5
    model_params = load_params(paths.params).model.params
    assert {k: model_params[k] for k in study.best_params} == study.best_params
    assert "# Knobs for stages 3 to 5" in paths.params.read_text()  # comments kept
    assert yaml.safe_load(paths.params.read_text())["tune"]  # the rest of the file too

    client = MlflowClient(f"sqlite:///{paths.root / tracking.DATABASE}")
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    parents = {r.info.run_id for r in runs if r.info.run_name == "tune"}
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in parents]
    assert len(parents) == 2 and len(trials) == 5
    assert all(any(k.startswith("cv_") for k in r.data.metrics) for r in trials)
