"""Render every supported option set and check what lands on disk.

Each rendered project must hold exactly the chosen options' files, no Jinja residue, and
be valid: Python compiles with no function over 60 lines, TOML and YAML parse, ruff
passes with the project's own configuration (complexity included), and the CI workflow
files match their schemas (GitHub's or GitLab's).
"""

import ast
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import (
    CI_CHOICES,
    LICENSES,
    PROBLEM_TYPES,
    PYTHON_VERSIONS,
    assert_python_compiles,
    files_of,
    load_pyproject,
    load_yaml_documents,
    text_files,
    tool,
)

JINJA_RESIDUE = ("{{", "{%", "cookiecutter.")
LICENSE_TITLES = {
    "MIT": "MIT License",
    "BSD-3-Clause": "BSD 3-Clause License",
    "Apache-2.0": "Apache License",
}
# The files each `ci` answer leaves, and the check-jsonschema builtin schema (SchemaStore's,
# vendored in the package, so the check runs offline) that each must match.
CI_FILES = {
    "github": {
        Path(".github/workflows/ci.yml"): "vendor.github-workflows",
        Path(".github/workflows/release.yml"): "vendor.github-workflows",
        Path(".github/dependabot.yml"): "vendor.dependabot",
    },
    "gitlab": {Path(".gitlab-ci.yml"): "vendor.gitlab-ci"},
    "none": {},
}
# Braces that belong to the generated files' own tools, not to cookiecutter: GitHub
# expressions, docker-inspect Go templates and docker/metadata-action's tag patterns.
FOREIGN_BRACES = re.compile(
    r"\$\{\{ [^{}]+ \}\}"  # ${{ github.actor }}
    r"|\{\{\.[A-Za-z.]+\}\}"  # {{.State.Status}}
    r"|\{\{(?:version|major|minor)\}\}"  # type=semver,pattern={{version}}
)

COMBINATIONS = [
    pytest.param(
        {"problem_type": problem_type, "license": license_id, "ci": ci},
        id=f"{problem_type}-{license_id}-{ci}",
    )
    for problem_type in PROBLEM_TYPES
    for license_id in LICENSES
    for ci in CI_CHOICES
]


TREE_ENTRY = re.compile(r"^(?P<indent>(?:│   |    )*)[├└]── (?P<name>\S+)")


def readme_tree(project: Path) -> set[str]:
    """The files listed in the generated README's "Project tree" block."""
    readme = (project / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Project tree", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    files, stack = set(), []
    for line in block.splitlines()[1:]:
        entry = TREE_ENTRY.match(line)
        assert entry, f"not a tree line: {line!r}"
        stack = [*stack[: len(entry["indent"]) // 4], entry["name"].rstrip("/")]
        if not entry["name"].endswith("/"):
            files.add("/".join(stack))
    return files


def run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"


def spdx(license_id: str) -> str:
    return "LicenseRef-Proprietary" if license_id == "Proprietary" else license_id


# The network candidate's files (deep_learning=yes only) and the packages of the `torch` extra.
# The row types share one network; forecasting and anomaly detection bring their own.
ROW_NETWORK_FILES = (
    "src/{package}/neural.py",
    "src/{package}/row_networks.py",
    "src/{package}/row_architectures.py",
    "tests/test_row_networks.py",
)
TYPE_NETWORK_FILES = (
    "src/{package}/neural.py",
    "src/{package}/networks.py",
    "src/{package}/architectures.py",
    "tests/test_networks.py",
)


def network_files(problem_type: str) -> tuple[str, ...]:
    own = problem_type in {"forecasting", "anomaly_detection"}
    return TYPE_NETWORK_FILES if own else ROW_NETWORK_FILES


TORCH_EXTRA = {"torch", "onnxscript", "safetensors"}
# Where a project says how it is installed: none may name the extra's packages unless it has them.
INSTALL_FILES = ("pyproject.toml", "Makefile", "Dockerfile", *map(str, CI_FILES["github"]))
INSTALL_FILES += (".gitlab-ci.yml",)


def requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement)[0].lower().replace("_", "-")


def check_deep_learning(project: Path, context: dict) -> None:
    """Network files and the torch extra exactly when deep_learning=yes."""
    package = context["package_name"]
    every = {Path(p.format(package=package)) for p in ROW_NETWORK_FILES + TYPE_NETWORK_FILES}
    network = {Path(p.format(package=package)) for p in network_files(context["problem_type"])}
    present = {path for path in every if (project / path).exists()}
    pyproject = load_pyproject(project)
    base = {requirement_name(r) for r in pyproject["project"]["dependencies"]}
    assert not base & TORCH_EXTRA, "torch and its export tools belong in the extra only"
    if context["deep_learning"] == "no":
        assert not present, f"network files in a deep_learning=no project: {sorted(present)}"
        assert "torch" not in pyproject["project"]["optional-dependencies"]
        mentions = [
            name
            for name in INSTALL_FILES
            if (project / name).is_file()
            for package in TORCH_EXTRA
            if package in (project / name).read_text(encoding="utf-8")
        ]
        assert not mentions, f"torch named in a deep_learning=no project: {mentions}"
        return
    assert present == network, f"network files: {sorted(present)}, expected {sorted(network)}"
    extra = {requirement_name(r) for r in pyproject["project"]["optional-dependencies"]["torch"]}
    assert extra >= TORCH_EXTRA


MAX_FUNCTION_LINES = 60  # with ruff's C901 at 15 in the generated pyproject: small parts


def functions_longer_than(project: Path, limit: int) -> list[str]:
    """Every function or method of the rendered code with more lines than `limit`."""
    found = []
    for path in sorted(project.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(project)}:{node.lineno} {node.name} ({lines})")
    return found


def unreachable_modules(package: Path) -> list[str]:
    """Package modules that no import chain from the entry points (the CLI, the service,
    `python -m`) reaches: code a project's problem type never runs."""
    modules = {
        ".".join(path.relative_to(package).with_suffix("").parts): path
        for path in package.rglob("*.py")
    }
    reached, todo = set(), ["__main__", "cli", "api", "__init__"]
    while todo:
        name = todo.pop()
        if name in reached or name not in modules:
            continue
        reached.add(name)
        parent = name.split(".")[:-1]
        for node in ast.walk(ast.parse(modules[name].read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = parent[: len(parent) - node.level + 1]
                stem = [*base, *(node.module.split(".") if node.module else [])]
                todo.append(".".join(stem))
                todo.extend(".".join([*stem, alias.name]) for alias in node.names)
        if name.endswith("__init__") or "." in name:
            todo.append(".".join([*parent, "__init__"]))
    return sorted(set(modules) - reached)


def check_project(result) -> Path:
    """Everything a rendered project must satisfy, whatever the options."""
    assert result.exit_code == 0, result.exception
    project = result.project_path
    context = result.context
    relative = [path.relative_to(project) for path in files_of(project)]

    # Only the chosen options are left.
    assert not list(project.rglob("_options")), "post_gen left _options behind"
    assert not list(project.rglob("_licenses")), "post_gen left _licenses behind"
    package = project / "src" / context["package_name"]
    assert (package / "problem_type.py").is_file()
    assert not unreachable_modules(package), "modules no entry point imports"
    others = [other for other in PROBLEM_TYPES if other != context["problem_type"]]
    leaks = [str(path) for path in relative for other in others if other in str(path).lower()]
    assert not leaks, f"files of an unselected problem type: {leaks}"
    assert readme_tree(project) == {path.as_posix() for path in relative}, "README tree"

    license_file = project / "LICENSE"
    if context["license"] == "Proprietary":
        assert not license_file.exists()
    else:
        text = license_file.read_text(encoding="utf-8")
        assert LICENSE_TITLES[context["license"]] in text
        assert f"Copyright (c) {context['author_name']}" in text
    ci_files = {path for path in relative if path.parts[0] in {".github", ".gitlab-ci.yml"}}
    assert ci_files == set(CI_FILES[context["ci"]]), f"CI files for ci={context['ci']}"

    # No Jinja left, and every file parses.
    texts = text_files(project)
    residue = [
        f"{path.relative_to(project)}: {marker!r}"
        for path, text in texts.items()
        for marker in JINJA_RESIDUE
        # The service's own Jinja templates are copied unrendered (_copy_without_render);
        # they may hold Jinja syntax, but nothing of cookiecutter's.
        if marker in FOREIGN_BRACES.sub("", text)
        and (path.parent.name != "templates" or marker == "cookiecutter.")
    ]
    assert not residue, f"unrendered template markers: {residue}"
    # pre-commit's end-of-file-fixer would rewrite these on the user's first commit.
    endings = [
        str(path.relative_to(project))
        for path, text in texts.items()
        if text and (not text.endswith("\n") or text.endswith("\n\n"))
    ]
    assert not endings, f"files not ending in exactly one newline: {endings}"
    assert_python_compiles(project)
    long = functions_longer_than(project, MAX_FUNCTION_LINES)
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them): {long}"
    for path in texts:
        if path.suffix == ".toml":
            tomllib.loads(texts[path])
        elif path.suffix in {".yaml", ".yml"}:
            load_yaml_documents(path)

    # The project's own tools accept it.
    run([tool("ruff"), "check", "--no-cache", "."], cwd=project)
    run([tool("ruff"), "format", "--check", "--no-cache", "."], cwd=project)
    for path, schema in CI_FILES[context["ci"]].items():
        run([tool("check-jsonschema"), "--builtin-schema", schema, str(path)], cwd=project)

    pyproject = load_pyproject(project)
    assert pyproject["project"].get("license") == spdx(context["license"]), "pyproject license"
    check_deep_learning(project, context)
    return project


@pytest.mark.parametrize("answers", COMBINATIONS)
def test_every_option_set_renders_a_clean_project(bake, answers):
    check_project(bake(**answers))


def install_commands(path: Path) -> list[str]:
    """The `uv sync` commands of a CI file: GitHub's steps or GitLab's scripts."""
    [document] = load_yaml_documents(path)
    if path.name == ".gitlab-ci.yml":
        lines = [
            line
            for job in document.values()
            if isinstance(job, dict)
            for line in job.get("script", [])
        ]
    else:
        lines = [step.get("run", "") for job in document["jobs"].values() for step in job["steps"]]
    return [line for line in lines if "uv sync" in line]


@pytest.mark.parametrize(
    ("problem_type", "ci"),
    [
        pytest.param(problem_type, CI_CHOICES[i % 2], id=f"{problem_type}-{CI_CHOICES[i % 2]}")
        for i, problem_type in enumerate(PROBLEM_TYPES)
    ],
)
def test_deep_learning_yes_adds_the_network_and_the_torch_extra(bake, problem_type, ci):
    """A clean project (every check above) whose setup and CI install the extra, whose
    image does not, and whose default candidate is the network."""
    project = check_project(bake(problem_type=problem_type, deep_learning="yes", ci=ci))

    makefile = (project / "Makefile").read_text(encoding="utf-8")
    uv_lines = [line for line in makefile.splitlines() if re.search(r"\buv (sync|export)\b", line)]
    assert uv_lines
    assert all("--all-extras" in line for line in uv_lines), uv_lines
    assert "pip install -e .[torch,experiments,ray] --group dev" in makefile
    for path in CI_FILES[ci]:
        if path.name in {"ci.yml", ".gitlab-ci.yml"}:
            commands = install_commands(project / path)
            assert commands
            assert all("--all-extras" in command for command in commands), commands
    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
    assert "uv sync" in dockerfile
    assert not any(word in dockerfile for word in ("--extra", "--all-extras", "[torch]"))
    assert not any(package in dockerfile for package in TORCH_EXTRA)

    params = yaml.safe_load((project / "configs" / "params.yaml").read_text(encoding="utf-8"))
    assert params["model"]["name"] == "network"
    assert params["model"]["params"]["device"] in {"auto", "cpu", "cuda"}


@pytest.mark.parametrize("version", PYTHON_VERSIONS)
def test_python_version_pins_requires_python_and_python_version_file(bake, version):
    project = check_project(bake(python_version=version))
    assert load_pyproject(project)["project"]["requires-python"] == f">={version}"
    assert (project / ".python-version").read_text(encoding="utf-8").strip() == version


def test_rendering_twice_gives_identical_trees(bake):
    def snapshot(project: Path) -> dict[str, tuple[bytes, int]]:
        return {
            str(path.relative_to(project)): (path.read_bytes(), path.stat().st_mode)
            for path in files_of(project)
        }

    first, second = bake(), bake()
    assert first.exit_code == second.exit_code == 0
    assert first.project_path != second.project_path
    assert snapshot(first.project_path) == snapshot(second.project_path)
