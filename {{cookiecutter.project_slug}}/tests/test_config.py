import re

import pytest
from conftest import edit_yaml

from {{ cookiecutter.package_name }}.config import load_params, load_problem
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


def test_shipped_configs_load(problem, params):
    assert problem.problem_type == PROBLEM_TYPE.name
    assert problem.metric in PROBLEM_TYPE.metrics
    assert params.model.name in PROBLEM_TYPE.candidates


def test_unknown_key_is_named_with_the_valid_keys(project):
    edit_yaml(project.problem, succes_threshold=0.5)
    with pytest.raises(ConfigError) as error:
        load_problem(project.problem)
    message = str(error.value)
    assert "succes_threshold: unknown key" in message
    assert "success_threshold" in message


def test_unknown_nested_key_is_named(project):
    edit_yaml(project.params, split__test_fraction=0.3)
    with pytest.raises(
        ConfigError, match=r"split\.test_fraction: unknown key; valid keys here: test_size"
    ):
        load_params(project.params)


def test_unknown_source_key_lists_the_keys_of_that_source_kind(project):
    edit_yaml(project.problem, source={"kind": "file", "path": "data/x.csv", "sep": ";"})
    with pytest.raises(
        ConfigError, match=r"source\.file\.sep: unknown key; valid keys here: kind, path"
    ):
        load_problem(project.problem)


def test_metric_typo_lists_the_valid_choices(project):
    edit_yaml(project.problem, metric="acuracy")
    with pytest.raises(ConfigError) as error:
        load_problem(project.problem)
    assert "metric: unknown metric 'acuracy'; valid choices: " + ", ".join(
        PROBLEM_TYPE.metrics
    ) in str(error.value)


def test_unknown_model_lists_the_valid_choices(project):
    edit_yaml(project.params, model__name="xgboost")
    with pytest.raises(ConfigError, match=r"model\.name: unknown model 'xgboost'; valid choices"):
        load_params(project.params)


def test_problem_type_must_match_the_project(project):
    edit_yaml(project.problem, problem_type="clustering")
    with pytest.raises(ConfigError, match=f"generated for '{PROBLEM_TYPE.name}'"):
        load_problem(project.problem)


def test_unknown_source_kind_is_rejected(project):
    edit_yaml(project.problem, source={"kind": "s3", "path": "bucket/x.csv"})
    with pytest.raises(ConfigError, match="source"):
        load_problem(project.problem)


def test_a_params_key_this_problem_type_does_not_use_is_refused(project, monkeypatch):
    monkeypatch.setattr(PROBLEM_TYPE, "unused_params", ("cv", "monitoring.psi_warn"))
    with pytest.raises(ConfigError) as error:
        load_params(project.params)
    assert str(error.value).splitlines() == [
        f"params.yaml: {key}: a {PROBLEM_TYPE.name} project does not use this key; remove it"
        for key in ("cv", "monitoring.psi_warn")
    ]


def test_the_keys_this_problem_type_does_not_use_are_refused_and_not_shipped(project):
    load_params(project.params)  # the shipped params.yaml sets none of them
    for key in PROBLEM_TYPE.unused_params:
        edit_yaml(project.params, **{key.replace(".", "__"): 1})
        line = f"params.yaml: {key}: a {PROBLEM_TYPE.name} project does not use this key"
        with pytest.raises(ConfigError, match=re.escape(line)):
            load_params(project.params)
