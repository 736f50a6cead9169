"""Time a generated project's `make test` (the fast tier) per problem type.

For each type: render the template, `make setup` (not timed), then run `make test` three
times and print the wall times beside the 40 s bar, with the counts of tests run and of
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


def timed(target: str, project: Path) -> tuple[float, dict[str, int]]:
    """Wall seconds of `make target` and pytest's summary counts."""
    start = time.perf_counter()
    result = subprocess.run(
        ["make", target], cwd=project, env=env(), check=True, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    summary = result.stdout.strip().splitlines()[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|deselected)", summary)}
    return seconds, counts


def bench(problem_type: str, workdir: Path, whole: bool) -> dict:
    project = render(problem_type, workdir)
    run(["make", "setup"], cwd=project)
    times, counts = [], {}
    for _ in range(RUNS):
        seconds, counts = timed("test", project)
        times.append(seconds)
    row = {
        "type": problem_type,
        "min": min(times),
        "median": statistics.median(times),
        "max": max(times),
        "fast": counts.get("passed", 0),
        "slow": counts.get("deselected", 0),
    }
    if whole:
        row["all"] = timed("test-all", project)[0]
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
