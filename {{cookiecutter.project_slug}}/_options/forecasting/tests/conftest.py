import shutil
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package_name }}.config import Paths, load_params, load_problem

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path) -> Paths:
    """A scratch project root with this project's configs, so tests never touch data/ or models/."""
    shutil.copytree(PROJECT_ROOT / "configs", tmp_path / "configs")
    return Paths(tmp_path)


@pytest.fixture
def problem(project: Paths):
    return load_problem(project.problem)


@pytest.fixture
def params(project: Paths):
    return load_params(project.params)


def quick(params):
    """The shipped params with fewer folds and resamples: the same code paths, less waiting."""
    return params.model_copy(
        update={
            "cv": params.cv.model_copy(update={"folds": 2}),
            "evaluation": params.evaluation.model_copy(update={"bootstrap_resamples": 200}),
        }
    )


def edit_yaml(path: Path, **changes) -> None:
    """Apply top-level or dotted-key changes to a YAML config, as a user would edit it."""
    content = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = content
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(content, sort_keys=False))


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory) -> Paths:
    """A project whose pipeline ran on the sample series: collected, prepared, trained and
    evaluated (promoted). Trained once per test session; tests copy what they change."""
    from {{ cookiecutter.package_name }} import data, evaluate, train
    from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE

    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(PROJECT_ROOT / "configs", root / "configs")
    paths = Paths(root)
    problem, params = load_problem(paths.problem), quick(load_params(paths.params))
    data.collect(problem, paths.raw, paths.root)
    PROBLEM_TYPE.prepare(data.read_raw(paths.raw), problem, params, paths.processed)
    train.run(paths.processed, paths.models, problem, params)
    evaluate.run(paths.processed, paths.models, paths.reports, problem, params)
    return paths
