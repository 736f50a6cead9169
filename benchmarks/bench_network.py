"""Time the network candidate's `make pipeline` per problem type against its budget.

For each type: render with deep_learning=yes, install into one shared Python 3.11
environment (torch from the local CPU wheel that pip's find-links point at, installed once;
then `pip install -e .[torch] --group dev` per project, not timed), run `make pipeline` on the
fresh project (wall seconds), then `make prepare` and `make train` on their own (training
seconds: the train stage, baseline and cross-validation included, process start too). Prints
both beside the issue's budgets, 60 s of training and 90 s wall, and the gate's verdict.
Name types to bench only those.

    python benchmarks/bench_network.py [TYPE ...]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROBLEM_TYPES = json.loads((TEMPLATE / "cookiecutter.json").read_text())["problem_type"]
BUDGET = {"train": 60.0, "wall": 90.0}  # seconds, per type
PYTHON = "python3.11"  # the local torch wheel's Python
TORCH_VERSION = "2.13.0"


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    clean["PATH"] = f"{BIN}{os.pathsep}{clean['PATH']}"
    return clean


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env(), capture_output=True, text=True)
    if result.returncode not in (0, 1, 3):  # a gate verdict is a result; anything else is not
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def local_torch_wheel() -> Path:
    """The CPU torch wheel on disk (TORCH_WHEEL, else pip's find-links); never an index's."""
    if os.environ.get("TORCH_WHEEL"):
        return Path(os.environ["TORCH_WHEEL"])
    listed = subprocess.run(
        [PYTHON, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    places = os.environ.get("PIP_FIND_LINKS", "").split()
    for value in re.findall(r"find-links='([^']*)'", listed):
        places += value.split()
    for place in dict.fromkeys(places):
        if Path(place).is_dir():
            wheels = sorted(Path(place).glob(f"torch-{TORCH_VERSION}*-cp311-cp311-*.whl"))
            if wheels:
                return wheels[0]
    sys.exit(f"no local torch {TORCH_VERSION} wheel for Python 3.11 (set TORCH_WHEEL)")


def torch_env(folder: Path) -> Path:
    """A Python 3.11 environment with the local torch, to install projects into."""
    venv = folder / "venv"
    run([PYTHON, "-m", "venv", str(venv)], cwd=folder)
    run([str(venv / "bin" / "pip"), "install", "-q", "pip>=25.1", str(local_torch_wheel())], folder)
    return venv


def render(problem_type: str, workdir: Path, venv: Path) -> Path:
    """A deep_learning=yes project of `problem_type`, installed into `venv` (its .venv)."""
    run(
        [
            str(BIN / "cookiecutter"),
            str(TEMPLATE),
            "--no-input",
            "-o",
            str(workdir),
            f"problem_type={problem_type}",
            "deep_learning=yes",
            "python_version=3.11",
            f"project_name=bench net {problem_type}",
        ],
        cwd=workdir,
    )
    project = workdir / f"bench-net-{problem_type.replace('_', '-')}"  # the slug of the name
    (project / ".venv").symlink_to(venv, target_is_directory=True)
    run([str(venv / "bin" / "pip"), "install", "-q", "-e", ".[torch]", "--group", "dev"], project)
    return project


def timed(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = run(command, cwd)
    return time.perf_counter() - start, result


def bench(problem_type: str, workdir: Path, venv: Path) -> dict:
    project = render(problem_type, workdir, venv)
    wall, pipeline = timed(["make", "pipeline"], project)
    epochs = len(re.findall(r"\bepoch \d+/\d+:", pipeline.stderr))
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    run(["make", "prepare"], project)  # the same splits again, from the snapshot collected
    train, _ = timed(["make", "train"], project)
    return {
        "type": problem_type,
        "train": train,
        "wall": wall,
        "epochs": epochs,
        "gate": "passed" if metrics["gate"]["passed"] else "FAILED",
    }


def main() -> None:
    types = sys.argv[1:] or PROBLEM_TYPES
    unknown = set(types) - set(PROBLEM_TYPES)
    if unknown:
        sys.exit(f"unknown problem types {sorted(unknown)}; choose from {PROBLEM_TYPES}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        venv = torch_env(Path(tmp))
        for problem_type in types:
            workdir = Path(tmp) / problem_type
            workdir.mkdir()
            rows.append(bench(problem_type, workdir, venv))
    print(f"The network candidate, {os.cpu_count()} cores (seconds)")
    header = (
        f"{'type':<22}{'train':>7}{'budget':>8}  {'':<5}{'wall':>7}{'budget':>8}  {'':<5}"
        f"{'epoch lines':>12}  gate"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        train_ok = "ok" if r["train"] <= BUDGET["train"] else "OVER"
        wall_ok = "ok" if r["wall"] <= BUDGET["wall"] else "OVER"
        print(
            f"{r['type']:<22}{r['train']:>7.1f}{BUDGET['train']:>8.0f}  {train_ok:<5}"
            f"{r['wall']:>7.1f}{BUDGET['wall']:>8.0f}  {wall_ok:<5}{r['epochs']:>12}  {r['gate']}"
        )


if __name__ == "__main__":
    main()
