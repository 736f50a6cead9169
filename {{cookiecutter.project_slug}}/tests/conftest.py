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
