import json
import time

import numpy as np
import pandas as pd
import pytest
from conftest import quick

from {{ cookiecutter.package_name }} import bundle, data, evaluate, features, task, train
from {{ cookiecutter.package_name }}.errors import DataError, GateFailed


def report(
    candidate: float, baseline: float, difference_ci: tuple[float, float], metric: str
) -> dict:
    return {
        "primary": {
            "metric": metric,
            "greater_is_better": task.METRICS[metric].greater_is_better,
            "candidate": candidate,
            "baseline": baseline,
            "ci": {"difference": list(difference_ci)},
        }
    }


def better(value: float, by: float, metric: str) -> float:
    return value + by if task.METRICS[metric].greater_is_better else value - by


def test_the_gate_passes_a_clearly_better_candidate(problem, params):
    m = problem.metric
    good = better(problem.success_threshold, 0.01, m)
    base = better(good, -0.3, m)
    lift = good - base
    passed, reason = evaluate.gate(report(good, base, (lift / 2, lift * 2), m), problem, params)
    assert passed, reason


def test_the_gate_fails_a_candidate_no_better_than_the_baseline(problem, params):
    m = problem.metric
    value = better(problem.success_threshold, 0.01, m)
    passed, reason = evaluate.gate(report(value, value, (-0.1, 0.1), m), problem, params)
    assert not passed
    assert "does not beat baseline" in reason


def test_the_gate_fails_when_the_interval_includes_zero(problem, params):
    m = problem.metric
    good = better(problem.success_threshold, 0.01, m)
    base = better(good, -0.02, m)
    lift = good - base
    passed, reason = evaluate.gate(
        report(good, base, (-abs(lift), abs(lift) * 2), m), problem, params
    )
    assert not passed
    assert "includes zero" in reason


def test_the_gate_fails_a_candidate_worse_than_the_serving_model(problem, params):
    m = problem.metric
    good = better(problem.success_threshold, 0.05, m)
    base = better(good, -0.3, m)
    lift = good - base
    result = report(good, base, (lift / 2, lift * 2), m)
    result["champion"] = {"version": "v-serving", "score": better(good, 0.01, m)}
    passed, reason = evaluate.gate(result, problem, params)
    assert not passed
    assert "worse than the serving model v-serving" in reason


def test_the_gate_fails_a_candidate_worse_on_the_recent_holdout(problem, params):
    m = problem.metric
    good = better(problem.success_threshold, 0.05, m)
    base = better(good, -0.3, m)
    lift = good - base
    result = report(good, base, (lift / 2, lift * 2), m)
    result["champion"] = {
        "version": "v-serving",
        "score": good,
        "holdout_score": better(good, 0.1, m),
    }
    result["holdout"] = {"rows": 50, "candidate": good}
    passed, reason = evaluate.gate(result, problem, params)
    assert not passed
    assert "on the recent holdout" in reason


def test_the_gate_fails_below_the_success_threshold(problem, params):
    m = problem.metric
    weak = better(problem.success_threshold, -0.01, m)
    base = better(weak, -0.3, m)
    lift = weak - base
    passed, reason = evaluate.gate(report(weak, base, (lift / 2, lift * 2), m), problem, params)
    assert not passed
    assert "success threshold" in reason


@pytest.fixture
def prepared(project, problem, params):
    data.collect(problem, project.raw, project.root)
    features.prepare(data.read_raw(project.raw), problem, params, project.processed)
    return quick(params)


def test_a_rejected_candidate_leaves_the_current_model_in_place(project, problem, prepared):
    good = train.run(project.processed, project.models, problem, prepared)
    evaluate.run(project.processed, project.models, project.reports, problem, prepared)
    assert bundle.read_pointer(project.models, "current") == good

    train.run(project.processed, project.models, problem, prepared)
    impossible = problem.model_copy(update={"success_threshold": better(0, 1e9, problem.metric)})
    with pytest.raises(GateFailed, match="success threshold"):
        evaluate.run(project.processed, project.models, project.reports, impossible, prepared)

    assert bundle.read_pointer(project.models, "current") == good
    events = [
        json.loads(line)["event"]
        for line in (project.models / bundle.REGISTRY).read_text().splitlines()
    ]
    assert events == ["trained", "promoted", "trained", "rejected"]
    metrics = json.loads((project.reports / "metrics.json").read_text())
    assert metrics["gate"]["passed"] is False


def test_the_report_sets_control_beside_treatment(project, problem, prepared):
    train.run(project.processed, project.models, problem, prepared)
    result = evaluate.run(project.processed, project.models, project.reports, problem, prepared)

    assert set(result["candidate"]) == set(result["baseline"]) == set(task.METRICS)
    low, high = result["primary"]["ci"]["candidate"]
    assert low <= result["primary"]["candidate"] <= high
    text = (project.reports / "evaluation.md").read_text()
    assert "| metric" in text and "baseline" in text and "candidate" in text
    for image in (project.reports / "figures").glob("*.png"):
        assert f"figures/{image.name}" in text


def test_a_holdout_is_scored_for_candidate_and_serving_model(project, problem, prepared):
    train.run(project.processed, project.models, problem, prepared)
    evaluate.run(project.processed, project.models, project.reports, problem, prepared)
    time.sleep(1.1)  # a new version name
    train.run(project.processed, project.models, problem, prepared)
    test = pd.read_parquet(project.processed / "test.parquet")
    stamp, name = problem.target.timestamp, problem.target.name
    # Recent steps right after the data: the test period's values, dated one period later.
    holdout = pd.DataFrame(
        {stamp: test[stamp] + pd.Timedelta(len(test), unit="D"), name: test[name]}
    ).iloc[:60]

    result = evaluate.run(
        project.processed, project.models, project.reports, problem, prepared, holdout=holdout
    )

    assert result["holdout"]["rows"] == len(holdout)
    assert result["champion"]["holdout_score"] == pytest.approx(result["holdout"]["candidate"])


def test_the_bootstrap_resamples_blocks_of_consecutive_origins(params):
    rng = np.random.default_rng(0)
    y = rng.normal(100, 5, (140, 14))
    candidate = task.Predictions(y + rng.normal(0, 1, y.shape), 5.0)
    baseline = task.Predictions(y + rng.normal(0, 3, y.shape), 5.0)
    params = params.model_copy(
        update={"evaluation": params.evaluation.model_copy(update={"bootstrap_resamples": 200})}
    )
    ci = evaluate.bootstrap_primary(y, candidate, baseline, "mae", params)
    assert ci == evaluate.bootstrap_primary(y, candidate, baseline, "mae", params)  # seeded
    low, high = ci["difference"]
    assert low < high < 0  # clearly better: the whole interval is below zero
    assert ci["candidate"][0] < task.METRICS["mae"].compute(y, candidate) < ci["candidate"][1]


def test_a_holdout_that_does_not_continue_the_series_is_refused(project, problem, prepared):
    train.run(project.processed, project.models, problem, prepared)
    test = pd.read_parquet(project.processed / "test.parquet")
    stamp, name = problem.target.timestamp, problem.target.name
    late = pd.DataFrame(
        {stamp: test[stamp] + pd.Timedelta(len(test) + 5, unit="D"), name: test[name]}
    )
    with pytest.raises(DataError, match="does not continue the history"):
        evaluate.run(
            project.processed, project.models, project.reports, problem, prepared, holdout=late
        )
