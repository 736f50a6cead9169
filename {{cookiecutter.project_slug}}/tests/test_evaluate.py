import json
import re
import shutil
import sys
import time

import pandas as pd
import pytest
from conftest import edit_yaml, quick

from {{ cookiecutter.package_name }} import bundle, data, evaluate, train
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import load_params
from {{ cookiecutter.package_name }}.errors import ConfigError, GateFailed
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


def report(
    candidate: float, baseline: float, difference_ci: tuple[float, float], metric: str
) -> dict:
    return {
        "primary": {
            "metric": metric,
            "greater_is_better": PROBLEM_TYPE.metrics[metric].greater_is_better,
            "candidate": candidate,
            "baseline": baseline,
            "ci": {"difference": list(difference_ci)},
        }
    }


def better(value: float, by: float, metric: str) -> float:
    return value + by if PROBLEM_TYPE.metrics[metric].greater_is_better else value - by


def test_the_gate_passes_a_clearly_better_candidate(problem, params):
    m = problem.metric
    good = better(problem.success_threshold, 0.01, m)
    base = better(good, -0.3, m)
    lift = good - base
    verdict, reason = evaluate.gate(report(good, base, (lift / 2, lift * 2), m), problem, params)
    assert verdict == evaluate.PASSED, reason


def test_the_gate_fails_a_candidate_no_better_than_the_baseline(problem, params):
    m = problem.metric
    value = better(problem.success_threshold, 0.01, m)
    verdict, reason = evaluate.gate(report(value, value, (-0.1, 0.1), m), problem, params)
    assert verdict == evaluate.FAILED
    assert "does not beat baseline" in reason


def test_the_gate_fails_when_the_interval_includes_zero(problem, params):
    m = problem.metric
    good = better(problem.success_threshold, 0.01, m)
    base = better(good, -0.02, m)
    lift = good - base
    verdict, reason = evaluate.gate(
        report(good, base, (-abs(lift), abs(lift) * 2), m), problem, params
    )
    assert verdict == evaluate.FAILED
    assert "includes zero" in reason


def test_the_gate_fails_a_candidate_worse_than_the_serving_model(problem, params):
    m = problem.metric
    good = better(problem.success_threshold, 0.05, m)
    base = better(good, -0.3, m)
    lift = good - base
    result = report(good, base, (lift / 2, lift * 2), m)
    result["champion"] = {"version": "v-serving", "score": better(good, 0.01, m)}
    verdict, reason = evaluate.gate(result, problem, params)
    assert verdict == evaluate.FAILED
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
    verdict, reason = evaluate.gate(result, problem, params)
    assert verdict == evaluate.FAILED
    assert "on the recent holdout" in reason


def test_the_gate_fails_below_the_success_threshold(problem, params):
    m = problem.metric
    weak = better(problem.success_threshold, -0.01, m)
    base = better(weak, -0.3, m)
    lift = weak - base
    verdict, reason = evaluate.gate(report(weak, base, (lift / 2, lift * 2), m), problem, params)
    assert verdict == evaluate.FAILED
    assert "success threshold" in reason


def test_the_gate_is_inconclusive_on_a_test_set_too_small_to_judge(problem, params):
    m = problem.metric
    good = better(problem.success_threshold, 0.01, m)
    base = better(good, -0.3, m)
    lift = good - base
    small = report(good, base, (lift / 2, lift * 2), m) | {"no_verdict": "3 test rows"}
    assert evaluate.gate(small, problem, params) == (evaluate.INCONCLUSIVE, "3 test rows")
    # a zero-width interval is never significant, however large the lift
    flat = report(good, base, (lift, lift), m)
    verdict, reason = evaluate.gate(flat, problem, params)
    assert verdict == evaluate.INCONCLUSIVE
    assert "zero width" in reason


def test_an_undefined_primary_metric_is_inconclusive_with_its_reason(problem, params):
    m = problem.metric
    undefined = report(None, None, (0.0, 0.0), m) | {"undefined": {m: "a made-up reason"}}
    verdict, reason = evaluate.gate(undefined, problem, params)
    assert verdict == evaluate.INCONCLUSIVE
    assert reason.startswith(f"{m} is undefined: a made-up reason")


@pytest.fixture
def prepared(project, problem, params):
    data.collect(problem, project.raw, project.root)
    PROBLEM_TYPE.prepare(data.read_raw(project.raw), problem, params, project.processed)
    return quick(params)


@pytest.mark.slow
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
    assert metrics["gate"]["verdict"] == "failed"


def test_the_report_sets_control_beside_treatment(trained_project, project, problem, params):
    """The trained project's candidate, evaluated again in a copy of its models."""
    shutil.copytree(trained_project.models, project.models)
    processed = trained_project.processed
    result = evaluate.run(processed, project.models, project.reports, problem, quick(params))

    assert set(result["candidate"]) == set(result["baseline"]) == set(PROBLEM_TYPE.metrics)
    low, high = result["primary"]["ci"]["candidate"]
    assert low <= result["primary"]["candidate"] <= high
    text = (project.reports / "evaluation.md").read_text()
    assert "| metric" in text and "baseline" in text and "candidate" in text
    train_rows = len(pd.read_parquet(processed / "train.parquet"))
    assert f"Training set: {train_rows} rows" in text
    assert f"Held-out test set: {result['test_rows']} rows" in text
    for title, rows in result["tables"].items():
        assert f"## {title}" in text and rows
        for row in rows:  # each row starts with its name (a class, ...) in a table cell
            assert re.search(rf"\|\s*{re.escape(str(next(iter(row.values()))))}\s*\|", text)
    assert "nan" not in text.lower().split()
    for image in (project.reports / "figures").glob("*.png"):
        assert f"figures/{image.name}" in text


@pytest.mark.slow
def test_a_holdout_is_scored_for_candidate_and_serving_model(project, problem, prepared):
    train.run(project.processed, project.models, problem, prepared)
    evaluate.run(project.processed, project.models, project.reports, problem, prepared)
    time.sleep(1.1)  # a new version name
    train.run(project.processed, project.models, problem, prepared)
{%- if cookiecutter.problem_type == "forecasting" %}
    test = pd.read_parquet(project.processed / "test.parquet")
    stamp, name = problem.target.timestamp, problem.target.name
    # Recent steps right after the data: the test period's values, dated one period later.
    holdout = pd.DataFrame(
        {stamp: test[stamp] + pd.Timedelta(len(test), unit="D"), name: test[name]}
    ).iloc[:60]
{%- else %}
    holdout = pd.read_parquet(project.processed / "test.parquet").sample(frac=0.5, random_state=0)
{%- endif %}

    result = evaluate.run(
        project.processed, project.models, project.reports, problem, prepared, holdout=holdout
    )

    assert result["holdout"]["rows"] == len(holdout)
    assert result["champion"]["holdout_score"] == pytest.approx(result["holdout"]["candidate"])


@pytest.mark.slow
def test_a_test_set_below_the_minimum_exits_3_and_promotes_nothing(
    project, problem, prepared, monkeypatch, capsys
):
    train.run(project.processed, project.models, problem, prepared)
{%- if cookiecutter.problem_type == "forecasting" %}
    edit_yaml(project.params, gate__min_blocks=10_000)
{%- else %}
    edit_yaml(project.params, gate__min_test_rows=10_000)
{%- endif %}
    monkeypatch.setattr(sys, "argv", ["evaluate", "evaluate", "--root", str(project.root)])

    with pytest.raises(SystemExit) as exit_info:
        main()

    assert exit_info.value.code == 3
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("cannot tell: ") and "10000 (gate.min_" in message
    assert not (project.models / "current").exists()
    last = json.loads((project.models / bundle.REGISTRY).read_text().splitlines()[-1])
    assert last["event"] == "inconclusive"
    metrics = json.loads((project.reports / "metrics.json").read_text())
    assert metrics["gate"] == {"verdict": "inconclusive", "passed": False, "reason": message[13:]}
    assert "**Gate: INCONCLUSIVE**" in (project.reports / "evaluation.md").read_text()


@pytest.mark.slow
def test_a_tiny_data_set_cannot_be_judged_and_exits_3(project, problem, monkeypatch, capsys):
    frame = PROBLEM_TYPE.samples[problem.source.name]()
{%- if cookiecutter.problem_type == "forecasting" %}
    tiny = frame.tail(200)  # a test period of 40 steps: 27 origins, 2 blocks of the horizon
{%- elif cookiecutter.problem_type == "anomaly_detection" %}
    tiny = frame.sample(200, random_state=0)  # a handful of anomalies
{%- else %}
    tiny = frame.sample(80, random_state=0)  # 20 test rows
{%- endif %}
    (project.root / "data" / "external").mkdir(parents=True)
    tiny.to_csv(project.root / "data" / "external" / "tiny.csv", index=False)
    edit_yaml(project.problem, source={"kind": "file", "path": "data/external/tiny.csv"})
    edit_yaml(project.params, cv__folds=2, evaluation__bootstrap_resamples=200)
    monkeypatch.setattr(sys, "argv", ["pipeline", "pipeline", "--root", str(project.root)])

    with pytest.raises(SystemExit) as exit_info:
        main()

    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 3, message
    assert message.startswith("cannot tell: ") and "split.test_size" in message
    assert not (project.models / "current").exists()


def test_a_gate_minimum_of_another_problem_type_is_refused(project):
{%- if cookiecutter.problem_type == "forecasting" %}
    edit_yaml(project.params, gate__min_test_rows=10)
{%- else %}
    edit_yaml(project.params, gate__min_blocks=10)
{%- endif %}
    with pytest.raises(ConfigError, match="unknown key"):
        load_params(project.params)
