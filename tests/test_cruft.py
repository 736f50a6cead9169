"""A project made with cruft records its template and later receives template changes.

This only works because rendering is deterministic: no dates or random values, so the
diff cruft computes between two template versions holds only real changes.
"""

import json
import shutil
import subprocess
from pathlib import Path

from conftest import TEMPLATE_DIR, tool

GIT = ["git", "-c", "user.name=Template Tests", "-c", "user.email=tests@example.com"]
UPDATE_LINE = "A line added to the template after the project was created."


def run(command: list[str], cwd: Path) -> str:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def commit_everything(repo: Path, message: str) -> str:
    run([*GIT, "add", "-A"], cwd=repo)
    run([*GIT, "commit", "--quiet", "--no-gpg-sign", "-m", message], cwd=repo)
    return run([*GIT, "rev-parse", "HEAD"], cwd=repo).strip()


def test_cruft_creates_a_linked_project_and_applies_a_template_update(tmp_path):
    template = tmp_path / "template"
    shutil.copytree(
        TEMPLATE_DIR,
        template,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", ".*_cache", "demo", "node_modules"
        ),
    )
    run([*GIT, "init", "--quiet", "--initial-branch=main"], cwd=template)
    first_commit = commit_everything(template, "template v1")
    output_dir = tmp_path / "projects"
    output_dir.mkdir()

    created = run(
        [
            tool("cruft"),
            "create",
            str(template),
            "--no-input",
            "--output-dir",
            str(output_dir),
            "--extra-context",
            json.dumps({"project_name": "Cruft Check", "problem_type": "regression"}),
        ],
        cwd=tmp_path,
    )

    assert created.count("Next steps:") == 1, created
    project = output_dir / "cruft-check"
    cruft_state = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert cruft_state["template"] == str(template)
    assert cruft_state["commit"] == first_commit
    assert cruft_state["context"]["cookiecutter"]["problem_type"] == "regression"
    assert (project / "src" / "cruft_check" / "problem_type.py").is_file()
    assert not (project / "_options").exists()

    readme_template = template / "{{cookiecutter.project_slug}}" / "README.md"
    with readme_template.open("a", encoding="utf-8") as readme:
        readme.write(f"\n{UPDATE_LINE}\n")
    second_commit = commit_everything(template, "template v2")
    run([*GIT, "init", "--quiet", "--initial-branch=main"], cwd=project)
    commit_everything(project, "generated project")

    output = run(
        [tool("cruft"), "update", "--skip-apply-ask", "--allow-untracked-files"],
        cwd=project,
    )

    # cruft renders both versions in scratch folders only to diff them: the next steps
    # are for a new project, and the update's own output says what happened.
    assert "Next steps:" not in output, output

    assert UPDATE_LINE in (project / "README.md").read_text(encoding="utf-8")
    updated_state = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert updated_state["commit"] == second_commit
    run([tool("cruft"), "check"], cwd=project)
