import time

import pytest
from conftest import PROJECT_ROOT, quick

from {{ cookiecutter.package_name }} import bundle, data, evaluate, registry, train
from {{ cookiecutter.package_name }}.config import Paths, load_params, load_problem
from {{ cookiecutter.package_name }}.errors import ProjectError
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """A project with two bundles that passed the gate, promoted one after the other."""
    root = tmp_path_factory.mktemp("registry")
    (root / "configs").mkdir()
    for name in ("problem.yaml", "params.yaml"):
        (root / "configs" / name).write_text((PROJECT_ROOT / "configs" / name).read_text())
    project = Paths(root)
    problem, params = load_problem(project.problem), quick(load_params(project.params))
    data.collect(problem, project.raw, project.root)
    PROBLEM_TYPE.prepare(data.read_raw(project.raw), problem, params, project.processed)
    promoted = []
    for _ in range(2):
        time.sleep(1.1)  # version names carry the time to the second
        train.run(project.processed, project.models, problem, params)
        evaluate.run(project.processed, project.models, project.reports, problem, params)
        promoted.append(bundle.read_pointer(project.models, "current"))
    return project.models, promoted


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
