"""The hooks: bad answers stop generation with one clear line, odd answers render safely.

Failures run through the real ``cookiecutter`` command so the test sees the user's view,
and each one must leave nothing behind in the output directory.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    ANSWER_KEYS,
    QUESTIONS,
    TEMPLATE_DIR,
    assert_python_compiles,
    checked,
    files_of,
    load_pyproject,
    load_yaml_documents,
    tool,
)
from cookiecutter.environment import StrictEnvironment

PROJECT_TEMPLATE = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
EXPLICIT_NAMES_HINT = "Set project_slug and package_name explicitly"

# (field, bad value, test id). The pre_gen hook must reject each one.
INVALID_ANSWERS = [
    ("project_slug", "My-Project", "slug-uppercase"),
    ("project_slug", "1st-model", "slug-leading-digit"),
    ("project_slug", "-model", "slug-leading-dash"),
    ("project_slug", "my model", "slug-space"),
    ("project_slug", "my.model", "slug-dot"),
    ("project_slug", "a" * 65, "slug-too-long"),
    ("package_name", "class", "package-keyword"),
    ("package_name", "json", "package-shadows-stdlib-json"),
    ("package_name", "types", "package-shadows-stdlib-types"),
    ("package_name", "test", "package-shadows-test"),
    ("package_name", "My_Model", "package-uppercase"),
    ("package_name", "my-model", "package-dash"),
    ("package_name", "2model", "package-leading-digit"),
    ("package_name", "modèle", "package-non-ascii"),
    ("author_email", "not-an-email", "email-no-at"),
    ("author_email", "me@localhost", "email-no-tld"),
    ("author_email", "me @example.com", "email-space"),
    ("author_email", "me@@example.com", "email-double-at"),
    ("author_email", "me@example.com\nBcc: you@example.com", "email-newline"),
]

# Choice answers outside the list never reach the hook: cookiecutter refuses them first.
OUT_OF_CHOICE_ANSWERS = [
    ("python_version", "3.9"),
    ("python_version", "3.14"),
    ("problem_type", "clustering"),
    ("deep_learning", "maybe"),
    ("deep_learning", "true"),
    ("license", "GPL-3.0-only"),
    ("ci", "travis"),
]


def error_lines(result: subprocess.CompletedProcess, field: str) -> list[str]:
    output = result.stdout + result.stderr
    return [line for line in output.splitlines() if line.startswith(f"ERROR: {field}=")]


def assert_nothing_left(output_dir: Path) -> None:
    assert list(output_dir.iterdir()) == [], "a failed render left files behind"


@pytest.mark.parametrize(
    ("field", "value"), [pytest.param(f, v, id=i) for f, v, i in INVALID_ANSWERS]
)
def test_invalid_answer_stops_with_one_line_naming_field_and_value(run_cli, field, value):
    result = run_cli(**{field: value})

    assert result.returncode != 0
    lines = error_lines(result, field)
    assert len(lines) == 1, result.stdout + result.stderr
    assert lines[0].startswith(f"ERROR: {field}={value!r} ")
    assert "(e.g. '" in lines[0]
    assert_nothing_left(run_cli.output_dir)


@pytest.mark.parametrize(("field", "value"), OUT_OF_CHOICE_ANSWERS)
def test_answer_outside_choices_is_refused_by_cookiecutter(run_cli, field, value):
    result = run_cli(**{field: value})

    assert result.returncode != 0
    assert f"{value} provided for choice variable {field}" in result.stderr
    assert_nothing_left(run_cli.output_dir)


@pytest.mark.parametrize(
    ("project_name", "field", "bad_value"),
    [
        pytest.param("🤖", "project_slug", "(none)", id="emoji-gives-empty-slug"),
        pytest.param("!!!", "project_slug", "(none)", id="punctuation-gives-empty-slug"),
        pytest.param("2024 churn", "project_slug", "2024-churn", id="leading-digit"),
        pytest.param("JSON", "package_name", "json", id="shadows-stdlib"),
    ],
)
def test_unusable_project_name_asks_for_explicit_names(run_cli, project_name, field, bad_value):
    result = run_cli(project_name=project_name)

    assert result.returncode != 0
    [line] = error_lines(result, field)
    assert line.startswith(f"ERROR: {field}={bad_value!r} ")
    assert EXPLICIT_NAMES_HINT in line
    assert repr(project_name) in line
    assert_nothing_left(run_cli.output_dir)


def test_explicit_names_rescue_an_unusable_project_name(run_cli):
    result = run_cli(project_name="🤖", project_slug="robot", package_name="robot")

    assert result.returncode == 0, result.stderr
    assert (run_cli.output_dir / "robot" / "src" / "robot" / "problem_type.py").is_file()


def test_ci_none_on_the_command_line_leaves_no_ci_files(run_cli):
    result = run_cli(project_slug="no-ci", ci="none")

    assert result.returncode == 0, result.stderr
    assert (run_cli.output_dir / "no-ci" / "README.md").is_file()
    assert not (run_cli.output_dir / "no-ci" / ".github").exists()
    assert not (run_cli.output_dir / "no-ci" / ".gitlab-ci.yml").exists()


@pytest.mark.parametrize(
    ("project_name", "slug", "package"),
    [
        pytest.param(
            "라면 끓이기 로봇", "ramyeon-ggeulhigi-robos", "ramyeon_ggeulhigi_robos", id="korean"
        ),
        pytest.param("Größenmodell", "grossenmodell", "grossenmodell", id="german"),
    ],
)
def test_non_ascii_project_name_is_transliterated(run_cli, project_name, slug, package):
    result = run_cli(project_name=project_name)

    assert result.returncode == 0, result.stderr
    assert [path.name for path in run_cli.output_dir.iterdir()] == [slug]
    project = run_cli.output_dir / slug
    assert (project / "src" / package / "problem_type.py").is_file()


TRICKY = {
    "project_name": 'Quote "double" \'single\' """triple""" \'\'\' back\\slash',
    "description": "Line one\nLine two with \"quotes\", ''' and a path C:\\new\\table\\",
    "author_name": 'O\'Brien "Bob" \\ Co',
}


def rendered_path(template_file: Path, context: dict) -> Path | None:
    """Where a file of the project template ends up, or None if the options drop it."""
    parts = list(template_file.relative_to(PROJECT_TEMPLATE).parts)
    if parts[0] == "_options":
        if parts[1] != context["problem_type"]:
            return None
        parts = parts[2:]
    if parts[0] == "_licenses":
        return None
    if {".github": "github", ".gitlab-ci.yml": "gitlab"}.get(parts[0], context["ci"]) != context[
        "ci"
    ]:
        return None
    parts = [
        part.replace("{{cookiecutter.package_name}}", context["package_name"]) for part in parts
    ]
    return Path(*parts)


def string_leaves(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [
            leaf
            for key, value in node.items()
            for leaf in string_leaves(key) + string_leaves(value)
        ]
    if isinstance(node, list):
        return [leaf for item in node for leaf in string_leaves(item)]
    return []


def test_quotes_backslashes_and_newlines_in_answers_render_safely(bake):
    result = bake(**TRICKY)

    assert result.exit_code == 0, result.exception
    project = result.project_path
    assert_python_compiles(project)
    metadata = load_pyproject(project)["project"]
    assert metadata["description"] == TRICKY["description"]
    assert metadata["authors"][0]["name"] == TRICKY["author_name"]

    # Every YAML file whose template uses one of these answers must carry it exactly.
    for template_file in files_of(PROJECT_TEMPLATE):
        if template_file.suffix not in {".yaml", ".yml"}:
            continue
        target = rendered_path(template_file, result.context)
        if target is None:
            continue
        leaves = string_leaves(load_yaml_documents(project / target))
        source = template_file.read_text(encoding="utf-8")
        for key, value in TRICKY.items():
            if f"cookiecutter.{key}" in source:
                assert any(value in leaf for leaf in leaves), f"{target} lost {key}={value!r}"


DEFAULT_ANSWERS = {
    **{key: value[0] if isinstance(value, list) else value for key, value in QUESTIONS.items()},
    "project_slug": "my-ml-project",
    "package_name": "my_ml_project",
}


def run_hook(name: str, cwd: Path, **answers) -> subprocess.CompletedProcess:
    """Render a hook as cookiecutter would for these answers, then run it in ``cwd``."""
    context = {**DEFAULT_ANSWERS, **checked(answers)}
    source = (TEMPLATE_DIR / "hooks" / name).read_text(encoding="utf-8")
    script = cwd.parent / f"rendered_{name}"
    script.write_text(
        StrictEnvironment(keep_trailing_newline=True)
        .from_string(source)
        .render(cookiecutter=context),
        encoding="utf-8",
    )
    command = [sys.executable, str(script)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def test_pre_gen_hook_accepts_the_defaults(tmp_path):
    (tmp_path / "project").mkdir()
    result = run_hook("pre_gen_project.py", tmp_path / "project")

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(("field", "value"), OUT_OF_CHOICE_ANSWERS)
def test_pre_gen_hook_rejects_choices_outside_the_lists(tmp_path, field, value):
    """Replays and cruft can bypass cookiecutter's own choice check; the hook still holds."""
    (tmp_path / "project").mkdir()
    result = run_hook("pre_gen_project.py", tmp_path / "project", **{field: value})

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"ERROR: {field}={value!r} must be ")
    rule = line.split(" must be ", 1)[1]
    assert all(choice in rule for choice in QUESTIONS[field]), line
    assert list((tmp_path / "project").iterdir()) == []


def test_post_gen_hook_run_again_changes_nothing(bake):
    result = bake(ci="gitlab", license="Apache-2.0")
    project = result.project_path
    before = {path: path.read_bytes() for path in files_of(project)}
    answers = {key: value for key, value in result.context.items() if key in ANSWER_KEYS}

    again = run_hook("post_gen_project.py", project, **answers)

    assert again.returncode == 0, again.stderr
    assert "make pipeline" in again.stdout
    assert {path: path.read_bytes() for path in files_of(project)} == before


def tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def template_repository(tmp_path: Path) -> Path:
    """A git copy of the template, as cruft needs one."""
    template = tmp_path / "template"
    shutil.copytree(
        TEMPLATE_DIR,
        template,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", ".*_cache", "demo", "node_modules"
        ),
    )
    git = ["git", "-c", "user.name=Template Tests", "-c", "user.email=tests@example.com"]
    for command in (["init", "--quiet"], ["add", "-A"], ["commit", "--quiet", "-m", "template"]):
        subprocess.run([*git, *command], cwd=template, check=True, capture_output=True)
    return template


def render_with(runner: str, tmp_path: Path, slug: str) -> subprocess.CompletedProcess:
    """Render into tmp_path/out with cookiecutter's command, its Python API or cruft."""
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    config = tmp_path / "cookiecutter-config.yaml"
    config.write_text(f"replay_dir: {json.dumps(str(tmp_path / 'replay'))}\n", encoding="utf-8")
    if runner == "cookiecutter":
        command = [
            tool("cookiecutter"),
            str(TEMPLATE_DIR),
            "--no-input",
            "--config-file",
            str(config),
            "--output-dir",
            str(output_dir),
            f"project_slug={slug}",
        ]
    elif runner == "api":
        code = (
            "import sys; from cookiecutter.main import cookiecutter; cookiecutter(sys.argv[1], "
            "no_input=True, output_dir=sys.argv[2], config_file=sys.argv[3], "
            "extra_context={'project_slug': sys.argv[4]})"
        )
        arguments = [str(TEMPLATE_DIR), str(output_dir), str(config), slug]
        command = [sys.executable, "-c", code, *arguments]
    else:
        command = [
            tool("cruft"),
            "create",
            str(template_repository(tmp_path)),
            "--no-input",
            "--config-file",
            str(config),
            "--output-dir",
            str(output_dir),
            "--extra-context",
            json.dumps({"project_slug": slug}),
        ]
    return subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300
    )


@pytest.mark.parametrize("runner", ["cookiecutter", "api", "cruft"])
@pytest.mark.parametrize("slug", ["a/b", "../escaped", "{absolute}/x"])
def test_a_slug_that_is_a_path_is_refused_before_anything_is_written(tmp_path, runner, slug):
    """cookiecutter makes the project folder and its parents before the pre_gen hook runs;
    the check while reading the answers must come first and leave nothing anywhere."""
    slug = slug.format(absolute=tmp_path / "absolute")
    work = tmp_path / "work"
    work.mkdir()
    before = tree(tmp_path)

    result = render_with(runner, work, slug)

    assert result.returncode == 1
    [line] = error_lines(result, "project_slug")
    assert line.startswith(f"ERROR: project_slug={slug!r} must be 1-64 lowercase letters")
    assert "Traceback" not in result.stderr
    template = work / "template"  # cruft's copy of the template
    made = {path for path in tree(tmp_path) - before if template not in (path, *path.parents)}
    assert made == {work / "out", work / "cookiecutter-config.yaml"}


def test_pre_gen_hook_still_refuses_a_slug_that_is_a_path(tmp_path):
    """A replayed or hand-made context that skips the prompt check still stops at the hook,
    with the same line."""
    (tmp_path / "project").mkdir()
    result = run_hook("pre_gen_project.py", tmp_path / "project", project_slug="a/b")

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("ERROR: project_slug='a/b' must be 1-64 lowercase letters")
    assert EXPLICIT_NAMES_HINT in line
