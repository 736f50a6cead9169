"""Shared helpers: where the template is, what it asks, and two ways to render it.

``bake`` renders in-process through pytest-cookies (fast). ``run_cli`` runs the real
``cookiecutter`` command, so a test sees exactly what a user sees. Both refuse answers
that are not questions in cookiecutter.json, so a renamed key cannot pass silently.
"""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from binaryornot.check import is_binary

TEMPLATE_DIR = Path(__file__).absolute().parents[1]
QUESTIONS = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
ANSWER_KEYS = frozenset(key for key in QUESTIONS if not key.startswith("_"))
PROBLEM_TYPES = tuple(QUESTIONS["problem_type"])
LICENSES = tuple(QUESTIONS["license"])
PYTHON_VERSIONS = tuple(QUESTIONS["python_version"])
CI_CHOICES = tuple(QUESTIONS["ci"])
BIN_DIR = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a console script installed next to the running interpreter."""
    return str(BIN_DIR / name)


def checked(answers: dict) -> dict:
    unknown = set(answers) - ANSWER_KEYS
    assert not unknown, f"not a question in cookiecutter.json: {sorted(unknown)}"
    return answers


def files_of(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def text_files(root: Path) -> dict[Path, str]:
    """Every non-binary file under ``root``, decoded as UTF-8 (which it must be)."""
    return {
        path: path.read_text(encoding="utf-8")
        for path in files_of(root)
        if not is_binary(str(path))
    }


def load_pyproject(project: Path) -> dict:
    return tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))


def load_yaml_documents(path: Path) -> list:
    """All documents of a YAML file (Kubernetes manifests often hold several)."""
    return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))


def assert_python_compiles(project: Path) -> None:
    for path in project.rglob("*.py"):
        compile(path.read_bytes(), str(path), "exec")


@pytest.fixture
def bake(cookies, monkeypatch):
    """Render the template in-process; returns the pytest-cookies result.

    pytest-cookies reads the answers without putting the template on sys.path, as
    cookiecutter and cruft do, so the template's local Jinja extension is put there."""
    monkeypatch.syspath_prepend(str(TEMPLATE_DIR))

    def _bake(**answers):
        return cookies.bake(extra_context=checked(answers), template=str(TEMPLATE_DIR))

    return _bake


@pytest.fixture
def run_cli(tmp_path):
    """Run ``cookiecutter --no-input`` with ``key=value`` answers into ``tmp_path/out``.

    A private config file keeps replay files and clones out of the user's home.
    """
    config = tmp_path / "cookiecutter-config.yaml"
    config.write_text(
        f"cookiecutters_dir: {json.dumps(str(tmp_path / 'cookiecutters'))}\n"
        f"replay_dir: {json.dumps(str(tmp_path / 'replay'))}\n",
        encoding="utf-8",
    )
    output_dir = tmp_path / "out"
    output_dir.mkdir()

    def _run(**answers) -> subprocess.CompletedProcess:
        command = [
            tool("cookiecutter"),
            str(TEMPLATE_DIR),
            "--no-input",
            "--config-file",
            str(config),
            "--output-dir",
            str(output_dir),
            *(f"{key}={value}" for key, value in checked(answers).items()),
        ]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)

    _run.output_dir = output_dir
    return _run
