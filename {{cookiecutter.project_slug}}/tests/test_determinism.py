"""The same data, configs and seed give the same results, whether the split is new or reused."""

import contextlib
import json

{% if cookiecutter.problem_type != "forecasting" -%}
import numpy as np
{% endif -%}
import pytest
from conftest import quick

from {{ cookiecutter.package_name }} import bundle, data, evaluate, train
from {{ cookiecutter.package_name }}.errors import GateFailed
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE

VARYING = {"version", "champion", "gate"}  # the bundle's name, and the model it is compared with


def run_pipeline(project, problem, params) -> tuple[str, dict]:
    """collect, prepare, train and evaluate; the gate's verdict does not matter here."""
    data.collect(problem, project.raw, project.root)
    PROBLEM_TYPE.prepare(data.read_raw(project.raw), problem, params, project.processed)
    version = train.run(project.processed, project.models, problem, params)
    with contextlib.suppress(GateFailed):
        evaluate.run(project.processed, project.models, project.reports, problem, params)
    metrics = json.loads((project.reports / "metrics.json").read_text())
    return version, {key: value for key, value in metrics.items() if key not in VARYING}


@pytest.mark.slow
def test_a_rerun_gives_identical_metrics_and_predictions(project, problem, params):
    params = quick(params)
    first, first_metrics = run_pipeline(project, problem, params)  # draws the split
    second, second_metrics = run_pipeline(project, problem, params)  # reuses it

    assert first != second
    assert second_metrics == first_metrics
    old, new = bundle.load(project.models / first), bundle.load(project.models / second)
    assert old.metadata["train_data_sha256"] == new.metadata["train_data_sha256"]
    assert old.metadata["cv"] == new.metadata["cv"]
    assert old.reference == new.reference  # input and prediction distributions on training
{%- if cookiecutter.problem_type != "forecasting" %}
    _, test, schema = data.read_processed(project.processed)
    X = test[list(schema)]
    np.testing.assert_array_equal(
        PROBLEM_TYPE.predict(old.model, X).values, PROBLEM_TYPE.predict(new.model, X).values
    )
{%- endif %}
