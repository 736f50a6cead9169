"""Time a generated project's `make test` (the fast tier) per problem type.

For each type: render the template, `make setup` (not timed), then run `make test` three
times and print the wall times beside the 40 s bar, with the number of fast tests and of
slow tests left to `make test-all`. With --all, `make test-all` is timed once as well, in
the same run, and the table gives the fast tier's share of it. Name types to bench only
those.

    python benchmarks/bench_tests.py [--all] [TYPE ...]
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline import PROBLEM_TYPES, env, render, run

BAR = 40.0  # seconds, for `make test` on a 2-core machine
RUNS = 3


def timed(target: str, project: Path) -> float:
    """Wall seconds of `make target`."""
    start = time.perf_counter()
    subprocess.run(["make", target], cwd=project, env=env(), check=True, capture_output=True)
    return time.perf_counter() - start


def count(project: Path, marker: str) -> int:
    """How many tests `-m marker` selects."""
    result = subprocess.run(
        [".venv/bin/python", "-m", "pytest", "--collect-only", "-q", "-m", marker],
        cwd=project,
        env=env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return int(re.search(r"(\d+)(?:/\d+)? tests? collected", result.stdout)[1])


def bench(problem_type: str, workdir: Path, whole: bool) -> dict:
    project = render(problem_type, workdir)
    run(["make", "setup"], cwd=project)
    times = [timed("test", project) for _ in range(RUNS)]
    row = {
        "type": problem_type,
        "min": min(times),
        "median": statistics.median(times),
        "max": max(times),
        "fast": count(project, "not slow"),
        "slow": count(project, "slow"),
    }
    if whole:
        row["all"] = timed("test-all", project)
    return row


def main() -> None:
    args = sys.argv[1:]
    whole = "--all" in args
    types = [a for a in args if a != "--all"] or PROBLEM_TYPES
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for problem_type in types:
            workdir = Path(tmp) / problem_type
            workdir.mkdir()
            rows.append(bench(problem_type, workdir, whole))
    print(f"make test (fast tier) after make setup, {RUNS} runs per type (seconds)")
    header = (
        f"{'type':<24}{'min':>7}{'median':>8}{'max':>7}{'bar':>6}  {'':<5}"
        f"{'tests':>6}{'slow':>6}" + (f"{'test-all':>10}{'share':>7}" if whole else "")
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        verdict = "ok" if r["median"] <= BAR else "OVER"
        line = (
            f"{r['type']:<24}{r['min']:>7.1f}{r['median']:>8.1f}{r['max']:>7.1f}{BAR:>6.0f}  "
            f"{verdict:<5}{r['fast']:>6}{r['slow']:>6}"
        )
        if whole:
            line += f"{r['all']:>10.1f}{r['median'] / r['all']:>7.0%}"
        print(line)


if __name__ == "__main__":
    main()
