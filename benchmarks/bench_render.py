"""How long `cookiecutter --no-input` takes to render this template, against a bare one.

The bare template (one file, no hooks) is measured in the same run, so the ratio says how
much this template adds on top of cookiecutter's own start-up on this machine.
Reports only; always exits 0.

    python benchmarks/bench_render.py [runs]
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE_DIR = Path(__file__).absolute().parents[1]
COOKIECUTTER = str(Path(sys.executable).parent / "cookiecutter")
BAR_SECONDS = 0.8


def make_bare_template(root: Path) -> Path:
    template = root / "bare-template"
    (template / "{{cookiecutter.project_slug}}").mkdir(parents=True)
    (template / "cookiecutter.json").write_text(
        json.dumps({"project_slug": "bare"}), encoding="utf-8"
    )
    (template / "{{cookiecutter.project_slug}}" / "README.md").write_text(
        "# {{ cookiecutter.project_slug }}\n", encoding="utf-8"
    )
    return template


def time_renders(template: Path, work: Path, runs: int) -> list[float]:
    """Wall seconds of each render, each into a fresh output directory."""
    config = work / f"{template.name}-config.yaml"
    config.write_text(
        f"cookiecutters_dir: {json.dumps(str(work / 'cookiecutters'))}\n"
        f"replay_dir: {json.dumps(str(work / 'replay'))}\n",
        encoding="utf-8",
    )
    seconds = []
    for run in range(runs):
        output_dir = work / f"{template.name}-{run}"
        command = [COOKIECUTTER, str(template), "--no-input", "--config-file", str(config)]
        start = time.perf_counter()
        subprocess.run([*command, "--output-dir", str(output_dir)], check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {
            "this template": time_renders(TEMPLATE_DIR, work, runs),
            "bare template": time_renders(make_bare_template(work), work, runs),
        }

    print(f"cookiecutter --no-input, {runs} runs each (wall seconds)")
    print(f"{'template':<15} {'min':>7} {'median':>7} {'max':>7}")
    for name, seconds in results.items():
        print(
            f"{name:<15} {min(seconds):7.3f} {statistics.median(seconds):7.3f} {max(seconds):7.3f}"
        )
    ours = statistics.median(results["this template"])
    bare = statistics.median(results["bare template"])
    verdict = "within" if ours <= BAR_SECONDS else "OVER"
    print(f"bar: median {ours:.3f} s is {verdict} the {BAR_SECONDS} s bar")
    print(f"ratio to bare template: {ours / bare:.2f}x (bare median {bare:.3f} s)")


if __name__ == "__main__":
    main()
