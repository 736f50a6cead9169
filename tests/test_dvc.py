"""The DVC pipeline a project ships (dvc.yaml, .dvc/config), checked without running DVC:
its stages call CLI commands that exist, read parameter keys the configs have, and never
share an output. `test_generated.py` runs it."""

import ast
import configparser
from pathlib import Path, PurePosixPath

import pytest
import yaml
from conftest import PROBLEM_TYPES

STAGES = ["collect", "prepare", "eda", "train", "evaluate"]


def cli_commands(package: Path) -> set[str]:
    """The command names cli.py registers with `@app.command()`."""
    tree = ast.parse((package / "cli.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and isinstance(decorator.func.value, ast.Name)
                and decorator.func.value.id == "app"
                and decorator.func.attr == "command"
            ):
                named = decorator.args and isinstance(decorator.args[0], ast.Constant)
                names.add(decorator.args[0].value if named else node.name.replace("_", "-"))
    return names


def paths_of(entries: list) -> list[str]:
    """Paths of a stage's deps, outs, metrics or plots (plain or with options)."""
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries]


def outputs(stage: dict) -> list[str]:
    return [path for kind in ("outs", "metrics", "plots") for path in paths_of(stage.get(kind, []))]


def overlaps(first: str, second: str) -> bool:
    a, b = PurePosixPath(first), PurePosixPath(second)
    return a == b or a in b.parents or b in a.parents


@pytest.mark.parametrize(
    ("problem_type", "deep_learning"),
    [(problem_type, "no") for problem_type in PROBLEM_TYPES] + [("forecasting", "yes")],
)
def test_dvc_stages_call_the_cli_read_existing_params_and_share_no_output(
    bake, problem_type, deep_learning
):
    result = bake(problem_type=problem_type, deep_learning=deep_learning)
    assert result.exit_code == 0, result.exception
    project = result.project_path
    package_name = result.context["package_name"]
    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert list(stages) == STAGES

    commands = cli_commands(project / "src" / package_name)
    configs = {
        f"configs/{name}": yaml.safe_load((project / "configs" / name).read_text(encoding="utf-8"))
        for name in ("params.yaml", "problem.yaml")
    }
    written: dict[str, str] = {}
    for name, stage in stages.items():
        prefix = f"python -m {package_name} "
        assert stage["cmd"].startswith(prefix), stage["cmd"]
        assert stage["cmd"].removeprefix(prefix) in commands
        for group in stage["params"]:
            for path, keys in group.items():
                missing = set(keys) - set(configs[path])
                assert not missing, f"{name}: {path} has no {sorted(missing)}"
        for dep in paths_of(stage.get("deps", [])):
            # an earlier stage writes it, or it ships with the project
            assert dep in written or (project / dep).exists(), f"{name}: dep {dep}"
        for path in outputs(stage):
            clash = [other for other in written if overlaps(path, other)]
            assert not clash, f"{name}: {path} overlaps {clash} of {written[clash[0]]}"
            written[path] = name
            assert not (project / path).exists(), f"{name}: {path} ships in the template"
    assert any(stages["evaluate"].get(kind) for kind in ("metrics", "plots"))

    config = configparser.ConfigParser()
    config.read(project / ".dvc" / "config")
    assert config["core"]["analytics"] == "false"
    assert config["core"]["check_update"] == "false"
    remote = config[f"'remote \"{config['core']['remote']}\"'"]["url"]
    assert (project / ".dvc" / remote).resolve().parent == project.parent.resolve()
