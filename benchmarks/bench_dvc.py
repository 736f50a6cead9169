"""Time `dvc repro` on a freshly rendered project per problem type.

For each type: render the template, `make setup` (not timed; `--venv DIR` links an
existing environment instead and runs the project's code from src/), `git init`, then time
the first `make repro` (every stage runs) and three more with nothing changed, which must
skip every stage within the bar of 10 s. Name types to bench only those.

    python benchmarks/bench_dvc.py [--venv DIR] [TYPE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BAR = 10.0  # seconds for a repro with nothing changed
RUNS = 3
STAGES = 5
PROBLEM_TYPES = json.loads((TEMPLATE / "cookiecutter.json").read_text())["problem_type"]


def env(venv: Path | None) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    clean["PATH"] = f"{BIN}{os.pathsep}{clean['PATH']}"
    clean["DVC_NO_ANALYTICS"] = "1"
    if venv:
        clean["PYTHONPATH"] = "src"  # the linked environment may hold another copy of the code
    return clean


def run(command: list[str], cwd: Path, venv: Path | None) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env(venv), check=True, capture_output=True, text=True
    )
    return result.stdout


def timed(command: list[str], cwd: Path, venv: Path | None) -> tuple[float, str]:
    start = time.perf_counter()
    output = run(command, cwd, venv)
    return time.perf_counter() - start, output


def bench(problem_type: str, workdir: Path, venv: Path | None) -> dict:
    slug = f"bench-{problem_type.replace('_', '-')}"
    answers = [f"problem_type={problem_type}", f"project_name=bench {problem_type}"]
    run(
        [str(BIN / "cookiecutter"), str(TEMPLATE), "--no-input", "-o", str(workdir), *answers],
        workdir,
        venv,
    )
    project = workdir / slug
    if venv:
        (project / ".venv").symlink_to(venv)
    else:
        run(["make", "setup"], project, venv)
    run(["git", "init", "-q"], project, venv)
    first, _ = timed(["make", "repro"], project, venv)
    again = []
    for _ in range(RUNS):
        seconds, output = timed(["make", "repro"], project, venv)
        if output.count("didn't change, skipping") != STAGES:
            raise SystemExit(f"{problem_type}: a repro with nothing changed ran a stage:\n{output}")
        again.append(seconds)
    return {"type": problem_type, "first": first, "again": statistics.median(again)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, help="an environment to link instead of setup")
    parser.add_argument("types", nargs="*", help=f"some of {', '.join(PROBLEM_TYPES)}")
    args = parser.parse_args()
    unknown = set(args.types) - set(PROBLEM_TYPES)
    if unknown:
        parser.error(f"unknown types: {', '.join(sorted(unknown))}")
    venv = args.venv.resolve() if args.venv else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for problem_type in args.types or PROBLEM_TYPES:
            workdir = Path(tmp) / problem_type
            workdir.mkdir()
            rows.append(bench(problem_type, workdir, venv))
    print(f"{'type':<20} {'first repro s':>14} {'unchanged s':>12} {'bar s':>6}  ok")
    for row in rows:
        ok = "yes" if row["again"] <= BAR else "NO"
        print(f"{row['type']:<20} {row['first']:>14.1f} {row['again']:>12.1f} {BAR:>6.0f}  {ok}")


if __name__ == "__main__":
    main()
