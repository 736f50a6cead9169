import shutil
import time

import pytest
from conftest import quick

from {{ cookiecutter.package_name }} import bundle, evaluate, registry, train
from {{ cookiecutter.package_name }}.config import load_params, load_problem
from {{ cookiecutter.package_name }}.errors import ProjectError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_versions(trained_project, tmp_path_factory):
    """The trained project's models plus a second bundle that passed the gate, promoted after
    the first."""
    root = tmp_path_factory.mktemp("registry")
    models = root / "models"
    shutil.copytree(trained_project.models, models)
    problem = load_problem(trained_project.problem)
    params = quick(load_params(trained_project.params))
    promoted = [bundle.read_pointer(models, "current")]
    time.sleep(1.1)  # version names carry the time to the second
    train.run(trained_project.processed, models, problem, params)
    evaluate.run(trained_project.processed, models, root / "reports", problem, params)
    promoted.append(bundle.read_pointer(models, "current"))
    return models, promoted


def test_versions_lists_every_bundle_with_its_verdict(two_versions):
    models, promoted = two_versions
    listed = registry.versions(models)
    assert [row["version"] for row in listed] == sorted(promoted, reverse=True)
    assert [row["current"] for row in listed] == [True, False]
    assert all(row["gate"] for row in listed)
    assert [row["verdict"] for row in listed] == ["passed", "passed"]


def test_the_gate_promotes_through_the_registry_with_its_numbers(two_versions):
    models, promoted = two_versions
    events = [event for event in registry.history(models) if event["event"] == "promoted"]
    assert [event["version"] for event in events[:2]] == promoted
    for event in events[:2]:
        assert event["forced"] is False and event["reason"].startswith("candidate ")
        assert {"metric", "candidate", "baseline"} <= set(event)


def test_rollback_and_promotion_follow_the_registry_log(two_versions):
    models, (first, second) = two_versions
    assert registry.rollback(models, reason="drift alarm") == first
    assert bundle.read_pointer(models, "current") == first
    last = registry.history(models)[-1]
    assert (last["event"], last["version"], last["replaced"]) == ("rolled_back", first, second)
    with pytest.raises(ProjectError, match="nothing to roll back to"):
        registry.rollback(models, reason="again")

    report = models / second / "evaluation.json"
    text = report.read_text().replace('"passed": true', '"passed": false')
    report.write_text(text.replace('"verdict": "passed"', '"verdict": "inconclusive"'))
    with pytest.raises(ProjectError, match="has not passed the evaluation gate"):
        registry.promote(models, second, reason="operator")
    registry.promote(models, second, reason="operator override", force=True)
    assert bundle.read_pointer(models, "current") == second
    assert registry.history(models)[-1]["forced"] is True


def test_train_logs_the_content_hash_of_each_bundle(two_versions):
    models, promoted = two_versions
    trained = {e["version"]: e for e in registry.history(models) if e["event"] == "trained"}
    for version in promoted:
        digest = bundle.verify(models / version)["content_sha256"]
        assert trained[version]["content_sha256"] == digest
