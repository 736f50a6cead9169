"""The problem-type contract, checked in the spirit of scikit-learn's `check_estimator`:
every member this project's problem type provides behaves as contract.py says, on the
models and data its own pipeline produced."""

import inspect
import json

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel

from {{ cookiecutter.package_name }} import bundle, drift
from {{ cookiecutter.package_name }}.config import load_params, load_problem
from {{ cookiecutter.package_name }}.contract import Metric, ProblemType
from {{ cookiecutter.package_name }}.data import read_processed
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


@pytest.fixture(scope="module")
def judged(trained_project):
    """The trained bundle, the problem, and what `held_out` returns on the test split."""
    problem = load_problem(trained_project.problem)
    params = load_params(trained_project.params)
    model_bundle = bundle.load(bundle.resolve(trained_project.models, "current"))
    train, test, _ = read_processed(trained_project.processed)
    held_out = PROBLEM_TYPE.held_out(model_bundle, train, test, problem.target)
    assert held_out is not None, "held_out found no columns to judge on the test split"
    return model_bundle, problem, params, held_out


def test_it_implements_every_abstract_member():
    assert isinstance(PROBLEM_TYPE, ProblemType)
    assert not inspect.isabstract(type(PROBLEM_TYPE))


def test_its_choices_are_well_formed(project):
    assert PROBLEM_TYPE.name == load_problem(project.problem).problem_type
    assert PROBLEM_TYPE.samples and all(callable(load) for load in PROBLEM_TYPE.samples.values())
    assert PROBLEM_TYPE.candidates and PROBLEM_TYPE.baseline_strategies
    assert all(isinstance(metric, Metric) for metric in PROBLEM_TYPE.metrics.values())
    for model in (PROBLEM_TYPE.TargetSpec, PROBLEM_TYPE.PredictResponse):
        assert issubclass(model, BaseModel)
    assert isinstance(PROBLEM_TYPE.prediction_metric_help, str)


def test_every_sample_loads_as_a_frame():
    for name, load in PROBLEM_TYPE.samples.items():
        frame = load()
        assert isinstance(frame, pd.DataFrame) and len(frame) > 0, name


def test_an_unknown_model_parameter_is_a_value_error(problem, params):
    with pytest.raises(ValueError):
        PROBLEM_TYPE.make_candidate(
            params.model.name, {"no_such_parameter": 1}, params.split.seed, problem.target
        )


def test_held_out_gives_truth_and_predictions_of_one_length(judged):
    _, _, _, (y, candidate, baseline) = judged
    assert isinstance(candidate, PROBLEM_TYPE.Predictions)
    assert isinstance(baseline, PROBLEM_TYPE.Predictions)
    assert len(candidate.values) == len(baseline.values) == len(y)


def test_scores_cover_every_metric_and_undefined_ones_are_named(judged):
    _, _, _, (y, candidate, _) = judged
    scores = PROBLEM_TYPE.score(y, candidate)
    assert set(scores) == set(PROBLEM_TYPE.metrics)
    undefined = PROBLEM_TYPE.undefined(y, candidate)
    assert set(undefined) <= set(scores)
    for name, value in scores.items():
        assert name in undefined or np.isfinite(value), name


def test_a_subset_keeps_the_units_it_names(judged):
    _, _, _, (y, candidate, _) = judged
    half = PROBLEM_TYPE.subset(candidate, np.arange(0, len(y), 2))
    assert len(half.values) == len(y[::2])
    whole = PROBLEM_TYPE.subset(candidate, np.arange(len(y)))
    for metric in PROBLEM_TYPE.metrics.values():
        assert metric.compute(y, whole) == pytest.approx(metric.compute(y, candidate), nan_ok=True)


def test_the_response_validates_against_its_schema(judged):
    model_bundle, _, _, (_, candidate, _) = judged
    body = PROBLEM_TYPE.response(candidate, model_bundle.version)
    PROBLEM_TYPE.PredictResponse.model_validate(json.loads(json.dumps(body)))


def test_prediction_counts_count_every_unit(judged):
    model_bundle, _, _, (y, candidate, _) = judged
    reference = drift.prediction_reference(model_bundle.reference)
    counts = PROBLEM_TYPE.prediction_counts(candidate, reference)
    assert all(isinstance(key, str) and value >= 0 for key, value in counts.items())
    assert sum(counts.values()) >= len(y)


def test_the_prediction_reference_is_json(judged):
    _, _, _, (_, candidate, _) = judged
    json.dumps(PROBLEM_TYPE.prediction_reference(candidate))


def test_the_test_set_facts_are_json_and_markdown(judged):
    _, problem, params, (y, _, _) = judged
    facts = PROBLEM_TYPE.test_facts(problem.target, y)
    json.dumps(facts)
    assert all(isinstance(line, str) for line in PROBLEM_TYPE.describe_test(facts))
    assert PROBLEM_TYPE.resampling_block(problem.target) >= 1
    assert PROBLEM_TYPE.too_small(y[:1], problem.target, params.gate)
    assert PROBLEM_TYPE.too_small(y, problem.target, params.gate) is None


def test_report_tables_and_figures_are_written(judged, trained_project, tmp_path):
    _, problem, _, (y, candidate, baseline) = judged
    for title, table in PROBLEM_TYPE.evaluation_tables(y, candidate, baseline).items():
        assert isinstance(title, str) and isinstance(table, pd.DataFrame)
    train, test, _ = read_processed(trained_project.processed)
    figures = PROBLEM_TYPE.evaluation_figures(
        y, candidate, baseline, train, test, problem.target, tmp_path
    )
    assert figures and all(path.is_file() and path.parent == tmp_path for path in figures)
