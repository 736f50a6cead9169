"""The cost of experiment tracking: `pipeline` with MLflow tracking against the same run with
tracking off (`MLFLOW_TRACKING_URI=`), in the same rendered project and session.

Renders a project (classification unless a type is named), installs it with `make setup`
(or links an existing environment, `--venv PATH`), runs the pipeline once with tracking to
create mlflow.db, then alternates tracked and untracked runs from a clean slate (no raw
data, splits, models or reports; mlflow.db kept, as in a project's life) and prints the wall
times, the overhead in seconds and the ratio beside the 2 s bar.

    python benchmarks/bench_tracking.py [TYPE] [--runs N] [--venv PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench_pipeline import env, render, reset

TEMPLATE = Path(__file__).resolve().parents[1]
BAR = 2.0  # seconds of tracking overhead per pipeline run
PROBLEM_TYPES = json.loads((TEMPLATE / "cookiecutter.json").read_text())["problem_type"]


def pipeline(project: Path, tracked: bool) -> float:
    """Seconds for one `pipeline` from a clean slate, tracked or not."""
    reset(project)
    variables = env() | {"PYTHONPATH": str(project / "src")}  # also for a linked --venv
    if tracked:
        variables.pop("MLFLOW_TRACKING_URI", None)
    else:
        variables["MLFLOW_TRACKING_URI"] = ""
    package = next((project / "src").iterdir()).name
    command = [str(project / ".venv" / "bin" / "python"), "-m", package, "pipeline"]
    start = time.perf_counter()
    subprocess.run(command, cwd=project, env=variables, check=True, capture_output=True)
    return time.perf_counter() - start


def recorded_runs(project: Path) -> int:
    python = project / ".venv" / "bin" / "python"
    script = (
        "import sqlite3; print(sqlite3.connect('mlflow.db').execute("
        "\"select count(*) from runs where status = 'FINISHED'\").fetchone()[0])"
    )
    result = subprocess.run(
        [str(python), "-c", script], cwd=project, check=True, capture_output=True, text=True
    )
    return int(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problem_type", nargs="?", default="classification", choices=PROBLEM_TYPES)
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind (default 3)")
    parser.add_argument("--venv", type=Path, help="an environment to link instead of setup")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = render(args.problem_type, Path(tmp))
        if args.venv:
            os.symlink(args.venv.resolve(), project / ".venv")
        else:
            subprocess.run(["make", "setup"], cwd=project, env=env(), check=True)
        first = pipeline(project, tracked=True)  # creates mlflow.db and its tables
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.runs):
            for tracked in (False, True):
                times[tracked].append(pipeline(project, tracked))
        runs = recorded_runs(project)
    print(f"pipeline on {args.problem_type}, {args.runs} runs of each kind, alternated (seconds)")
    print(f"first tracked run, creating mlflow.db: {first:.1f}; finished runs recorded: {runs}")
    header = f"{'tracking':<10}{'min':>7}{'median':>8}{'max':>7}"
    print(header)
    print("-" * len(header))
    for tracked, label in ((False, "off"), (True, "on")):
        values = times[tracked]
        print(f"{label:<10}{min(values):>7.1f}{statistics.median(values):>8.1f}{max(values):>7.1f}")
    on, off = statistics.median(times[True]), statistics.median(times[False])
    verdict = "ok" if on - off <= BAR else "OVER"
    print(
        f"overhead (medians): {on - off:+.1f} s, ratio {on / off:.2f}; bar {BAR:.0f} s: {verdict}"
    )


if __name__ == "__main__":
    main()
