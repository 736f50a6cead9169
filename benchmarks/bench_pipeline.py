"""Time `make pipeline` on a freshly rendered project per problem type.

For each type: render the template, `make setup` (not timed), then run `make pipeline`
three times, each from a clean slate (no raw data, splits, models or reports), and print
the wall times beside the type's bar (20 s for the tabular types, 30 s for the others),
plus the gate's verdict on the sample data. Name types to bench only those.

    python benchmarks/bench_pipeline.py [TYPE ...]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BARS = {"classification": 20.0, "regression": 20.0}  # seconds
DEFAULT_BAR = 30.0  # the types that came later do more per run (text, sensors, series)
RUNS = 3
PROBLEM_TYPES = json.loads((TEMPLATE / "cookiecutter.json").read_text())["problem_type"]


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    clean["PATH"] = f"{BIN}{os.pathsep}{clean['PATH']}"
    return clean


def run(command: list[str], cwd: Path) -> None:
    subprocess.run(command, cwd=cwd, env=env(), check=True, capture_output=True, text=True)


def reset(project: Path) -> None:
    for folder in ("data/raw", "data/processed", "models", "reports"):
        for path in (project / folder).iterdir():
            if path.name in {"README.md", "figures"}:
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in (project / "reports" / "figures").glob("*.png"):
        path.unlink()


def render(problem_type: str, workdir: Path) -> Path:
    """A fresh project of `problem_type` in `workdir`, named after it; returns its root."""
    run(
        [
            str(BIN / "cookiecutter"),
            str(TEMPLATE),
            "--no-input",
            "-o",
            str(workdir),
            f"problem_type={problem_type}",
            f"project_name=bench {problem_type}",
        ],
        cwd=workdir,
    )
    return workdir / f"bench-{problem_type.replace('_', '-')}"  # the slug of the name


def bench(problem_type: str, workdir: Path) -> dict:
    project = render(problem_type, workdir)
    run(["make", "setup"], cwd=project)
    times = []
    for _ in range(RUNS):
        reset(project)
        start = time.perf_counter()
        run(["make", "pipeline"], cwd=project)
        times.append(time.perf_counter() - start)
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    primary = metrics["primary"]
    return {
        "type": problem_type,
        "min": min(times),
        "median": statistics.median(times),
        "max": max(times),
        "metric": primary["metric"],
        "baseline": primary["baseline"],
        "candidate": primary["candidate"],
        "gate": "passed" if metrics["gate"]["passed"] else "FAILED",
    }


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for problem_type in sys.argv[1:] or PROBLEM_TYPES:
            workdir = Path(tmp) / problem_type
            workdir.mkdir()
            rows.append(bench(problem_type, workdir))
    print(f"make pipeline from a clean slate, {RUNS} runs per type (seconds)")
    header = (
        f"{'type':<24}{'min':>7}{'median':>8}{'max':>7}{'bar':>6}  {'':<5}"
        f"{'metric':<10}{'baseline':>10}{'candidate':>11}  gate"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        bar = BARS.get(r["type"], DEFAULT_BAR)
        verdict = "ok" if r["median"] <= bar else "OVER"
        print(
            f"{r['type']:<24}{r['min']:>7.1f}{r['median']:>8.1f}{r['max']:>7.1f}{bar:>6.0f}  "
            f"{verdict:<5}"
            f"{r['metric']:<10}{r['baseline']:>10.4f}{r['candidate']:>11.4f}  {r['gate']}"
        )


if __name__ == "__main__":
    main()
