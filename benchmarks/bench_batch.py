"""Time batch scoring (`predict`) of 100,000 and 1,000,000 rows of classification.

Render a classification project, `make setup` and `make pipeline` (not timed), write Parquet
files of rows drawn from the sample's features, then run `predict` on each in a child process
and print its wall time, rows per second and peak memory (the child's ru_maxrss) beside the
targets: 100,000 rows within 10 s and 1 GB. `--project DIR` benches an already set-up
project instead (its pipeline must have run).

    python benchmarks/bench_batch.py [--project DIR] [--engine local|ray]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline import render, run

SIZES = (100_000, 1_000_000)
TARGETS = {100_000: (10.0, 1024.0)}  # seconds, MB


def make_input(project: Path, rows: int, path: Path) -> None:
    """`rows` rows drawn with replacement from the sample's features, as Parquet."""
    script = (
        "import sys, pandas as pd\nfrom pathlib import Path\n"
        f"from {package(project)}.problem_type import PROBLEM_TYPE\n"
        f"from {package(project)}.config import load_problem\n"
        "problem = load_problem(Path('configs/problem.yaml'))\n"
        "frame = PROBLEM_TYPE.samples[problem.source.name]().drop(columns=problem.target.name)\n"
        "frame.sample(int(sys.argv[1]), replace=True, random_state=0).to_parquet(sys.argv[2],"
        " index=False, row_group_size=50_000)\n"
    )
    python = project / ".venv" / "bin" / "python"
    subprocess.run(
        [python, "-c", script, str(rows), str(path)],
        cwd=project,
        env=os.environ | {"PYTHONPATH": "src"},
        check=True,
    )


def package(project: Path) -> str:
    return next(p.name for p in (project / "src").iterdir() if (p / "batch.py").exists())


def score(project: Path, source: Path, engine: str) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one `predict` run in a child process."""
    out = source.with_name(f"{source.stem}-{engine}-out.parquet")
    command = [str(project / ".venv" / "bin" / "python"), "-m", package(project), "predict"]
    command += ["--input", str(source), "--output", str(out), "--engine", engine, "--force"]
    start = time.perf_counter()
    child = subprocess.Popen(
        command, cwd=project, env=os.environ | {"PYTHONPATH": "src"}, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"predict failed on {source}")
    return wall, usage.ru_maxrss / 1024  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="an already set-up classification project")
    parser.add_argument("--engine", default="local", choices=("local", "ray"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        project = args.project
        if project is None:
            project = render("classification", workdir)
            run(["make", "setup"], cwd=project)
            run(["make", "pipeline"], cwd=project)
        print("| rows | engine | wall s | rows/s | peak MB | target |")
        print("|---:|---|---:|---:|---:|---|")
        for rows in SIZES:
            source = workdir / f"rows-{rows}.parquet"
            make_input(project.resolve(), rows, source)
            wall, peak = score(project.resolve(), source, args.engine)
            target = TARGETS.get(rows)
            verdict = "—"
            if target:
                ok = wall <= target[0] and peak <= target[1]
                verdict = f"≤{target[0]:g} s, ≤{target[1]:g} MB: {'met' if ok else 'MISSED'}"
            print(
                f"| {rows:,} | {args.engine} | {wall:.1f} | {rows / wall:,.0f} | {peak:.0f} | {verdict} |"
            )


if __name__ == "__main__":
    main()
