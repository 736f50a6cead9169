"""Slow tier: install what the template generates and run it as a user would.

For each problem type, one rendered project is set up with `make setup` (uv), linted,
tested with its own suite, checked with pre-commit, run end to end on the sample data,
and then pointed at a CSV built here (not the bundled sample) by editing only
configs/problem.yaml.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import BIN_DIR, TEMPLATE_DIR, checked

pytestmark = pytest.mark.slow

COMBINATIONS = {
    "classification": {"problem_type": "classification", "python_version": "3.11"},
    "regression": {"problem_type": "regression", "python_version": "3.12"},
    "text_classification": {"problem_type": "text_classification", "python_version": "3.11"},
    "forecasting": {"problem_type": "forecasting", "python_version": "3.11"},
    "anomaly_detection": {"problem_type": "anomaly_detection", "python_version": "3.11"},
}
# The other offered Python versions: installed and tested, without the full tour above.
SMOKE = [
    pytest.param("regression", "3.10", id="regression-py3.10"),
    pytest.param("classification", "3.13", id="classification-py3.13"),
]


def user_env() -> dict[str, str]:
    """A shell as a user has it, with uv and the template's tools on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env['PATH']}"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


def sh(project: Path, *command: str, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, cwd=project, env=user_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


def render(problem_type: str, out: Path, python_version: str | None = None) -> Path:
    """A fresh rendering, as `cookiecutter --no-input` gives it to a user."""
    answers = {**COMBINATIONS[problem_type], "project_name": f"Slow {problem_type}"}
    if python_version:
        answers["python_version"] = python_version
    answers = checked(answers)
    subprocess.run(
        [str(BIN_DIR / "cookiecutter"), str(TEMPLATE_DIR), "--no-input", "-o", str(out)]
        + [f"{k}={v}" for k, v in answers.items()],
        check=True,
        capture_output=True,
        env=user_env(),
    )
    return out / f"slow-{problem_type.replace('_', '-')}"  # the slug of the project name


@pytest.fixture(scope="module", params=list(COMBINATIONS))
def installed(request, tmp_path_factory) -> Path:
    """A rendered project with its environment set up by its own `make setup`."""
    project = render(request.param, tmp_path_factory.mktemp(request.param))
    sh(project, "make", "setup")
    return project


def problem_type_of(project: Path) -> str:
    return project.name.removeprefix("slow-").replace("-", "_")


def python_of(project: Path) -> str:
    return str(project / ".venv" / "bin" / "python")


def test_generated_project_passes_its_own_lint_and_tests(installed):
    sh(installed, "make", "lint")
    result = sh(installed, "make", "test-all")  # both tiers, as the project's CI runs them
    assert " passed" in result.stdout
    assert " failed" not in result.stdout
    assert " deselected" not in result.stdout


def test_setup_leaves_a_lock_that_ci_installs_from(installed):
    assert (installed / "uv.lock").is_file()
    assert (installed / "requirements.lock.txt").is_file()
    sh(installed, "uv", "sync", "--locked")  # what CI and the Dockerfile run


def test_pre_commit_hooks_pass_and_the_first_commit_holds_the_lock(installed, tmp_path):
    """The README's first steps in a fresh repository: the lock files `make setup` wrote,
    the hooks over every file, then the first commit through the installed hooks."""
    repo = render(problem_type_of(installed), tmp_path)
    for lock in ("uv.lock", "requirements.lock.txt"):
        shutil.copy(installed / lock, repo / lock)
    pre_commit = str(installed / ".venv" / "bin" / "pre-commit")
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, pre_commit, "run", "--all-files")
    sh(repo, pre_commit, "install")
    sh(repo, "git", "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "New")
    tracked = set(sh(repo, "git", "ls-files").stdout.split())
    assert {"uv.lock", "requirements.lock.txt"} <= tracked


def test_pipeline_runs_on_the_sample_and_the_candidate_beats_the_baseline(installed):
    sh(installed, "make", "pipeline")

    metrics = json.loads((installed / "reports" / "metrics.json").read_text())
    assert metrics["gate"]["passed"], metrics["gate"]["reason"]
    primary = metrics["primary"]
    sign = 1 if primary["greater_is_better"] else -1
    assert sign * (primary["candidate"] - primary["baseline"]) > 0
    assert (installed / "models" / "current").read_text().strip() == metrics["version"]
    for report in ("eda/README.md", "evaluation.md"):
        text = (installed / "reports" / report).read_text()
        for link in [
            line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")
        ]:
            assert (installed / "reports" / Path(report).parent / link).is_file(), link


def ran_stages(output: str) -> list[str]:
    """The stages `dvc repro` ran, in order, from its output."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.mark.parametrize("installed", ["classification"], indirect=True)
def test_dvc_repro_runs_every_stage_then_only_what_changed(installed, tmp_path):
    """The README's "Pipeline with DVC" in a fresh repository, with the installed
    environment: a first `make repro` runs the five stages, a second skips them all, a model
    parameter reruns only train and evaluate, and metrics diff and push to the default
    local remote work offline."""
    project = render("classification", tmp_path)
    (project / ".venv").symlink_to(installed / ".venv")
    env = {**user_env(), "PYTHONPATH": "src", "DVC_NO_ANALYTICS": "1"}  # this copy's code

    def run(*command: str) -> str:
        result = subprocess.run(
            command, cwd=project, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, (
            f"{command}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        return result.stdout

    dvc = str(project / ".venv" / "bin" / "dvc")
    run("git", "init", "-q")
    assert ran_stages(run("make", "repro")) == ["collect", "prepare", "eda", "train", "evaluate"]
    again = run("make", "repro")
    assert ran_stages(again) == []
    assert again.count("didn't change, skipping") == 5
    assert "up to date" in run(dvc, "status")

    run("git", "add", "-A")
    run("git", "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "Run")
    params = project / "configs" / "params.yaml"
    params.write_text(
        params.read_text().replace("n_estimators: 100", "n_estimators: 60", 1), encoding="utf-8"
    )
    assert ran_stages(run("make", "repro")) == ["train", "evaluate"]
    assert "reports/metrics.json" in run(dvc, "metrics", "diff")
    run(dvc, "push")
    remote = tmp_path / f"{project.name}-dvc-remote"
    assert any(path.is_file() for path in remote.rglob("*")), "nothing pushed"


def test_a_second_pipeline_run_keeps_raw_data_and_the_test_set(installed):
    raw = installed / "data" / "raw" / "dataset.parquet"
    test = installed / "data" / "processed" / "test.parquet"
    before = raw.read_bytes(), test.read_bytes()
    sh(installed, "make", "pipeline")
    assert (raw.read_bytes(), test.read_bytes()) == before


def test_dropping_a_column_after_a_run_keeps_the_test_rows(installed, tmp_path):
    if problem_type_of(installed) == "forecasting":
        pytest.skip("a forecast has one input, the timestamp: there is no column to drop")
    processed = installed / "data" / "processed"
    shutil.copytree(processed, tmp_path / "processed")  # put back afterwards, for later tests
    before = pd.read_parquet(processed / "test.parquet")
    problem_yaml = installed / "configs" / "problem.yaml"
    original = problem_yaml.read_text()
    config = yaml.safe_load(original)
    features = json.loads((processed / "features.json").read_text())["features"]
    dropped = features[0][0]
    config["drop"] = [*config.get("drop", []), dropped]
    problem_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        sh(installed, "make", "prepare")
        after = pd.read_parquet(processed / "test.parquet")
        train = pd.read_parquet(processed / "train.parquet")
    finally:
        problem_yaml.write_text(original)
        shutil.rmtree(processed)
        shutil.copytree(tmp_path / "processed", processed)
    assert sorted(after.index) == sorted(before.index)
    assert dropped in before.columns
    assert dropped not in after.columns
    assert not set(train.index) & set(after.index)


FIRST_NAMES = ["Ada", "Ben", "Cleo", "Dara", "Emil", "Fay", "Gus", "Hana", "Ivo", "Jun"]
FIRST_NAMES += ["Kai", "Lea", "Milo", "Nia", "Otto", "Pia", "Rui", "Sol", "Tom", "Uma"]
SURNAMES = [a + b for a in ("Ber", "Kov", "Lind", "Mar") for b in ("ac", "ek", "in", "os", "ul")]
SURNAMES += [
    a + b for a in ("Ber", "Kov", "Lind", "Mar") for b in ("and", "ers", "ik", "oni", "ova")
]


def own_data(problem_type: str, rows: int = 600) -> pd.DataFrame:
    """Customer records with the usual mess: IDs, a free-text name with many distinct values,
    dates written YYYY/MM/DD, text categories, a numeric code, long decimals, gaps in
    features and target, repeated rows and, for classification, a rare class."""
    rng = np.random.default_rng(7)
    plan = rng.choice(["basic", "plus", "enterprise"], rows, p=[0.5, 0.3, 0.2])
    tenure = rng.integers(1, 72, rows).astype(float)
    calls = rng.poisson(2.0, rows).astype(float)
    spend = np.round(rng.gamma(2.0, 30.0, rows), 2)
    names = [f"{first} {last}" for first in FIRST_NAMES for last in SURNAMES]
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(rows)],
            "customer_name": rng.choice(names, rows),  # about 70% of the rows distinct
            "signup_date": pd.to_datetime("2021-01-01")
            + pd.to_timedelta(rng.integers(0, 900, rows), unit="D"),
            "plan": plan,
            "region": rng.choice(["north", "south", "east", "west"], rows),
            "occupation_code": rng.integers(1, 10, rows),  # a code, not a quantity
            "tenure_months": tenure,
            "support_calls": calls,
            "monthly_spend": spend,
            "log_spend": np.log(spend),  # 16 significant digits in the CSV
        }
    )
    frame["signup_date"] = frame["signup_date"].dt.strftime("%Y/%m/%d")
    plan_effect = pd.Series(plan).map({"basic": 1.0, "plus": 0.0, "enterprise": -1.5}).to_numpy()
    if problem_type == "classification":
        risk = 0.9 * calls - 0.06 * tenure + plan_effect + rng.normal(0, 0.5, rows)
        churned = np.where(risk > np.quantile(risk, 0.6), "yes", "no")
        # rare: enterprise customers who call often escalate (about 6% of the rows)
        frame["churned"] = np.where((plan == "enterprise") & (calls >= 3), "escalated", churned)
        target = "churned"
    else:
        value = 12 * spend * (1 + tenure / 48) - 150 * plan_effect + rng.normal(0, 60, rows)
        frame["annual_value"] = np.round(value, 2)
        target = "annual_value"
    for column in ("plan", "monthly_spend", "tenure_months"):
        frame.loc[rng.choice(rows, rows // 12, replace=False), column] = None
    frame.loc[rng.choice(rows, rows // 40, replace=False), target] = None
    repeated = frame.sample(rows // 30, random_state=1)  # the same record exported twice
    return pd.concat([frame, repeated], ignore_index=True)


SENTIMENT = {
    1: ["dreadful", "broke within days", "a total rip-off", "refund requested"],
    2: ["flimsy", "arrived scratched", "underwhelming", "overpriced"],
    3: ["ordinary", "so-so", "fair enough", "neither good nor bad"],
    4: ["sturdy", "handy", "pleasant to use", "good value"],
    5: ["flawless", "delightful", "exceeded expectations", "top notch"],
}


def own_reviews(rows: int = 700) -> pd.DataFrame:
    """Shop reviews unlike the sample: other words, other column names, an ID, a date and a
    category next to the text, a few missing categories, ratings one star off now and then."""
    rng = np.random.default_rng(11)
    rating = rng.choice([1, 2, 3, 4, 5], rows, p=[0.15, 0.15, 0.2, 0.25, 0.25])
    category = rng.choice(["garden", "toys", "kitchen", "office"], rows)
    bodies = []
    for stars, item in zip(rating, category, strict=True):
        said = [
            rng.choice(SENTIMENT[int(np.clip(stars + rng.integers(-1, 2), 1, 5))])
            for _ in range(rng.integers(1, 4))
        ]
        bodies.append(f"Ordered for the {item} corner. " + ", ".join(said).capitalize() + ".")
    noisy = rng.random(rows) < 0.08
    frame = pd.DataFrame(
        {
            "review_id": [f"R{i:06d}" for i in range(rows)],
            "posted_on": pd.date_range("2023-01-01", periods=rows, freq="12h").strftime("%Y-%m-%d"),
            "category": category,
            "body": bodies,
            "rating": np.where(noisy, np.clip(rating + 1, 1, 5), rating),
        }
    )
    frame.loc[rng.choice(rows, rows // 20, replace=False), "category"] = None
    return frame


def own_series(days: int = 60) -> pd.DataFrame:
    """Hourly meter readings (a daily season, other column names, an extra column, missing
    hours and empty values), in a file with a different frequency from the daily sample."""
    rng = np.random.default_rng(11)
    hours = pd.date_range("2023-03-01", periods=days * 24, freq="h")
    daily = 20 * np.sin(2 * np.pi * (hours.hour - 6) / 24) + 8 * (hours.hour >= 18)
    noise = np.zeros(len(hours))
    for i in range(1, len(hours)):
        noise[i] = 0.8 * noise[i - 1] + rng.normal(0, 2.0)
    frame = pd.DataFrame(
        {
            "reading_time": hours.strftime("%Y-%m-%d %H:%M:%S"),
            "meter": "M-17",
            "load_kw": np.round(300 + 0.02 * np.arange(len(hours)) + daily + noise, 2),
        }
    )
    frame.loc[rng.choice(len(frame), 12, replace=False), "load_kw"] = None
    missing_hours = rng.choice(len(frame), 15, replace=False)
    return frame.drop(index=missing_hours).sample(frac=1, random_state=1)  # and unsorted


def own_sensor_data(rows: int = 1500) -> pd.DataFrame:
    """Pump readings with a timestamp, gaps, and faults labelled in a `fault` column."""
    rng = np.random.default_rng(7)
    demand = np.convolve(rng.normal(0, 1, rows + 20), np.ones(20) / np.sqrt(20), "valid")[:rows]
    frame = pd.DataFrame(
        {
            "reading_time": pd.date_range("2025-01-06", periods=rows, freq="5min").strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "pump": rng.choice(["P1", "P2"], rows),
            "flow": 40 + 6 * demand + rng.normal(0, 0.8, rows),
            "head_pressure": 3 - 0.2 * demand + rng.normal(0, 0.05, rows),
            "power_kw": 15 + 2 * demand + rng.normal(0, 0.3, rows),
            "bearing_temp": 50 + 1.5 * demand + rng.normal(0, 0.6, rows),
        }
    )
    fault = np.zeros(rows, dtype=int)
    for row in rng.choice(np.arange(10, rows), rows // 25, replace=False):
        fault[row] = 1
        if rng.random() < 0.5:  # power without the flow it should give: a clogged impeller
            frame.loc[row, "power_kw"] += rng.uniform(1.5, 3)
        else:
            frame.loc[row, "bearing_temp"] += rng.uniform(6, 12)
    frame["fault"] = fault
    for column in ("flow", "bearing_temp"):
        frame.loc[rng.choice(rows, rows // 30, replace=False), column] = None
    return frame


def own_sensor_csv_with_and_without_labels(installed: Path, tmp_path: Path) -> None:
    """Sensor readings with a timestamp and a `fault` label, configured in problem.yaml
    alone; then the same readings with `target.name: null` still train a detector."""
    project = render("anomaly_detection", tmp_path)
    own_sensor_data().to_csv(project / "data" / "external" / "pumps.csv", index=False)
    problem_yaml = project / "configs" / "problem.yaml"
    config = yaml.safe_load(problem_yaml.read_text())
    config["source"] = {"kind": "file", "path": "data/external/pumps.csv"}
    config["target"] = {"name": "fault"}
    config["drop"] = ["reading_time"]
    problem_yaml.write_text(yaml.safe_dump(config, sort_keys=False))

    sh(project, python_of(installed), "-m", project_package(installed), "pipeline")

    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["gate"]["passed"], metrics["gate"]["reason"]
    assert metrics["primary"]["candidate"] > metrics["primary"]["baseline"]
    version = (project / "models" / "current").read_text().strip()
    metadata = json.loads((project / "models" / version / "metadata.json").read_text())
    assert {f["name"]: f["kind"] for f in metadata["features"]} == {
        "pump": "categorical",
        "flow": "numeric",
        "head_pressure": "numeric",
        "power_kw": "numeric",
        "bearing_temp": "numeric",
    }

    project = render("anomaly_detection", tmp_path / "unlabelled")  # no labels at all
    own_sensor_data().drop(columns="fault").to_csv(
        project / "data" / "external" / "pumps.csv", index=False
    )
    config["target"] = {"name": None}
    (project / "configs" / "problem.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    unlabelled = subprocess.run(
        [python_of(installed), "-m", project_package(installed), "pipeline"],
        cwd=project,
        env=user_env(),
        capture_output=True,
        text=True,
    )
    assert unlabelled.returncode == 3, unlabelled.stdout + unlabelled.stderr
    assert "cannot tell: no labels" in unlabelled.stderr
    candidate = (project / "models" / "candidate").read_text().strip()
    metadata = json.loads((project / "models" / candidate / "metadata.json").read_text())
    assert metadata["target"] is None
    assert len(metadata["features"]) == 5
    assert not (project / "models" / "current").exists()  # nothing promoted without labels


def test_own_csv_runs_after_editing_only_problem_yaml(installed, tmp_path):
    problem_type = problem_type_of(installed)
    if problem_type == "anomaly_detection":  # customer records hold no sensor faults
        own_sensor_csv_with_and_without_labels(installed, tmp_path)
        return
    project = render(problem_type, tmp_path)  # the installed package runs in a clean copy
    if problem_type == "forecasting":
        own_series_runs(installed, project)
        return
    config = yaml.safe_load((project / "configs" / "problem.yaml").read_text())
    if problem_type == "text_classification":
        own_reviews().to_csv(project / "data" / "external" / "reviews.csv", index=False)
        config["source"] = {"kind": "file", "path": "data/external/reviews.csv"}
        config["target"] = {"name": "rating", "labels": [1, 2, 3, 4, 5]}
        config["drop"] = ["review_id"]
        config["success_threshold"] = 0.4
        expected = {"posted_on": "datetime", "category": "categorical", "body": "text"}
    else:
        own_data(problem_type).to_csv(project / "data" / "external" / "customers.csv", index=False)
        config["source"] = {"kind": "file", "path": "data/external/customers.csv"}
        config["drop"] = ["customer_id"]
        expected = CUSTOMER_KINDS
    if problem_type == "classification":
        config["target"] = {"name": "churned", "labels": ["no", "yes", "escalated"]}
        config["success_threshold"] = 0.7
    elif problem_type == "regression":
        config["target"] = {"name": "annual_value"}
    (project / "configs" / "problem.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    sh(project, python_of(installed), "-m", project_package(installed), "pipeline")

    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["gate"]["passed"], metrics["gate"]["reason"]
    version = (project / "models" / "current").read_text().strip()
    metadata = json.loads((project / "models" / version / "metadata.json").read_text())
    kinds = {f["name"]: f["kind"] for f in metadata["features"]}
    assert kinds == expected
    if expected is CUSTOMER_KINDS:
        plan = next(f for f in metadata["features"] if f["name"] == "plan")
        assert plan["categories"] == ["basic", "enterprise", "plus"]
        eda = (project / "reports" / "eda" / "README.md").read_text()
        left_out = eda.split("## Columns left out")[1].split("\n## ")[0]
        assert "| customer_name " in left_out
        assert "name or an ID" in left_out
        codes = eda.split("## Possible codes")[1].split("\n## ")[0]
        assert "  occupation_code: categorical" in codes
        assert "  support_calls: categorical" in codes  # a count is listed too: a hint only


CUSTOMER_KINDS = {  # customer_name (a name, not a category) is left out
    "signup_date": "datetime",
    "plan": "categorical",
    "region": "categorical",
    "occupation_code": "numeric",  # inferred as a number; EDA suggests declaring it
    "tenure_months": "numeric",
    "support_calls": "numeric",
    "monthly_spend": "numeric",
    "log_spend": "numeric",
}


def own_series_runs(installed: Path, project: Path) -> None:
    own_series().to_csv(project / "data" / "external" / "meters.csv", index=False)
    config = yaml.safe_load((project / "configs" / "problem.yaml").read_text())
    config["source"] = {"kind": "file", "path": "data/external/meters.csv"}
    config["target"] = {
        "name": "load_kw",
        "timestamp": "reading_time",
        "frequency": "h",
        "horizon": 24,
        "season_length": 24,
        "max_gap": 3,
    }
    (project / "configs" / "problem.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    sh(project, python_of(installed), "-m", project_package(installed), "pipeline")

    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["gate"]["passed"], metrics["gate"]["reason"]
    assert metrics["horizon"] == 24
    version = (project / "models" / "current").read_text().strip()
    series = json.loads((project / "models" / version / "metadata.json").read_text())["features"]
    assert series[0]["name"] == "load_kw"
    assert series[0]["frequency"] == "h"
    assert pd.Timestamp(series[0]["last"]) - pd.Timestamp(series[0]["first"]) > pd.Timedelta(
        days=40
    )
    assert "hour of day" in (project / "reports" / "eda" / "README.md").read_text()


def stock_prices() -> pd.DataFrame:
    """Shaped like a public file of monthly stock prices: five symbols in long format, dates
    written `Jan 1 2000`, one symbol listed four years later than the others."""
    rng = np.random.default_rng(5)
    frames = []
    for symbol, start, price in [
        ("MSFT", "2000-01-01", 40),
        ("AMZN", "2000-01-01", 60),
        ("IBM", "2000-01-01", 100),
        ("GOOG", "2004-08-01", 100),
        ("AAPL", "2000-01-01", 25),
    ]:
        months = pd.date_range(start, "2010-03-01", freq="MS")
        walk = price * np.exp(np.cumsum(rng.normal(0.005, 0.08, len(months))))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "date": [f"{m:%b} {m.day} {m.year}" for m in months],
                    "price": walk.round(2),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def energy_generation() -> pd.DataFrame:
    """Shaped like a public file of yearly net electricity generation: 17 years of three
    sources, one declining and two growing."""
    rng = np.random.default_rng(9)
    years = np.arange(2001, 2018)
    return pd.concat(
        pd.DataFrame(
            {
                "source": source,
                "year": years,
                "net_generation": (start + slope * (years - 2001) + rng.normal(0, 40, 17)).round(1),
            }
        )
        for source, start, slope in [
            ("Fossil Fuels", 2800, -40),
            ("Nuclear Energy", 780, 2),
            ("Renewables", 350, 30),
        ]
    )


REAL_WORLD = {
    "stocks": (
        stock_prices,
        {
            "name": "price",
            "timestamp": "date",
            "series_id": "symbol",
            "frequency": "MS",
            "horizon": 6,
            "season_length": 12,
        },
    ),
    "energy": (
        energy_generation,
        {
            "name": "net_generation",
            "timestamp": "year",
            "series_id": "source",
            "frequency": "YS",
            "horizon": 2,
            "season_length": 1,
        },
    ),
}


@pytest.mark.parametrize("installed", ["forecasting"], indirect=True)  # the same project
@pytest.mark.parametrize("shape", list(REAL_WORLD))
def test_real_world_series_run_serve_and_monitor(installed, tmp_path, shape):
    """Files shaped like two public data sets, pointed at through problem.yaml alone: the
    pipeline gives a verdict (an inconclusive one is promoted by hand, as an operator
    would), the service answers in the file's own dates with intervals, and the monitor
    raises no alarm on the steps the model learnt from."""
    python, package = python_of(installed), project_package(installed)
    project = render("forecasting", tmp_path)
    make, target = REAL_WORLD[shape]
    frame = make()
    frame.to_csv(project / "data" / "external" / f"{shape}.csv", index=False)
    config = yaml.safe_load((project / "configs" / "problem.yaml").read_text())
    config["source"] = {"kind": "file", "path": f"data/external/{shape}.csv"}
    config["target"] = target
    (project / "configs" / "problem.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    venv = f"VENV={installed / '.venv'}"
    run = subprocess.run(
        ["make", "pipeline", venv], cwd=project, env=user_env(), capture_output=True, text=True
    )
    verdict = 0 if run.returncode == 0 else int(run.stderr.rsplit("Error ", 1)[-1].split()[0])
    assert verdict in (0, 1, 3), run.stderr[-4000:]  # a verdict (make names the code), no error
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    per_series = metrics["tables"]["Metrics per series"]
    assert {row["series"] for row in per_series} == set(frame[target["series_id"]])
    assert "Prediction intervals" in (project / "reports" / "evaluation.md").read_text()
    if verdict != 0:
        promote = ("models", "promote", metrics["version"], "--force", "--reason", "judged by hand")
        sh(project, python, "-m", package, *promote)

    service = Service(project, venv=installed / ".venv")  # make serve
    try:
        schema = service.call("GET", "/openapi.json")[1]["components"]["schemas"]
        example = schema["PredictRequest"]["examples"][0]
        status, answer = service.call("POST", "/v1/predict", example)
        assert status == 200, answer
        series = frame[frame[target["series_id"]] == example["series_id"]]
        history = series.tail(len(example["history"]["values"]))
        own_dates = {
            "series_id": example["series_id"],
            "history": {
                "timestamps": history[target["timestamp"]].tolist(),  # as the file writes them
                "values": history[target["name"]].tolist(),
            },
        }
        status, answer = service.call("POST", "/v1/predict", own_dates)
        assert status == 200, answer
        assert len(answer["forecast"]) == target["horizon"]
        assert all(p["lower"] <= p["value"] <= p["upper"] for p in answer["forecast"])
    finally:
        service.stop()

    learnt = pd.read_parquet(project / "data" / "processed" / "train.parquet")
    learnt.to_csv(project / "learnt.csv", index=False)  # the steps the model learnt from
    own = subprocess.run(
        ["make", "monitor", "DATA=learnt.csv", venv],
        cwd=project,
        env=user_env(),
        capture_output=True,
        text=True,
    )
    code = 0 if own.returncode == 0 else int(own.stderr.rsplit("Error ", 1)[-1].split()[0])
    assert code in (0, 3), own.stdout + own.stderr  # never an alarm, never an error


def project_package(project: Path) -> str:
    return next((project / "src").iterdir()).name


@pytest.mark.parametrize(("problem_type", "python_version"), SMOKE)
def test_other_python_versions_install_and_pass_their_tests(problem_type, python_version, tmp_path):
    project = render(problem_type, tmp_path, python_version)
    sh(project, "make", "setup")
    version = sh(project, python_of(project), "-c", "import sys; print(sys.version)").stdout
    assert version.startswith(python_version)
    result = sh(project, "make", "test")  # the fast tier, on pytest-xdist workers
    assert " passed" in result.stdout
    assert " failed" not in result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """The generated project's `make serve`, on a free loopback port, with an API key."""

    key = "cycle-test-key-of-16-chars"
    viewer, operator = "cycle-viewer-key-16-chars", "cycle-operator-key-16-chars"

    def __init__(self, project: Path, venv: Path | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **user_env(),
            "SERVICE_API_KEY": self.key,
            "SERVICE_VIEWER_KEY": self.viewer,
            "SERVICE_OPERATOR_KEY": self.operator,
            "SERVICE_RELOAD_INTERVAL": "0.5",
            "SERVICE_TRENDS_INTERVAL": "1",
        }
        self.process = subprocess.Popen(
            ["make", "serve", f"PORT={self.port}", *([f"VENV={venv}"] if venv else [])],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.wait_for(lambda: self.call("GET", "/ready")[0] == 200, "ready")

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"content-type": "application/json", "x-api-key": self.key},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
        except OSError:
            return 0, {}

    def version(self) -> str:
        return self.call("GET", "/v1/model")[1]["model_version"]

    def wait_for(self, condition, what: str, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert self.process.poll() is None, "the service exited"
            assert time.monotonic() < deadline, f"the service was not {what} within {seconds} s"
            time.sleep(0.25)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def test_operations_cycle_from_serving_to_rollback(installed, tmp_path):
    """train -> serve -> log -> monitor (quiet) -> drift -> monitor (alarm), then the
    operator's story in the console, in Chromium: upload shifted data -> the drift check
    alarms -> retrain -> the gate's verdict -> promote -> the service answers with the new
    version -> roll back."""
    python, package = python_of(installed), project_package(installed)
    if not (installed / "models" / "current").exists():  # when run on its own
        sh(installed, "make", "pipeline")
    traffic = series_traffic if problem_type_of(installed) == "forecasting" else row_traffic
    quiet, drifted, changed = traffic(installed)
    upload = shifted_upload(installed, tmp_path)

    service = Service(installed)
    try:
        first = service.version()
        for body in quiet:  # traffic like the training data
            assert service.call("POST", "/v1/predict", body)[0] == 200
        time.sleep(1)  # the prediction log is written in batches
        quiet_report = subprocess.run(
            [python, "-m", package, "monitor"],
            cwd=installed,
            env=user_env(),
            capture_output=True,
            text=True,
        )
        assert quiet_report.returncode == 0, quiet_report.stdout + quiet_report.stderr

        for body in drifted:
            assert service.call("POST", "/v1/predict", body)[0] == 200
        time.sleep(1)
        alarm = subprocess.run(
            [python, "-m", package, "monitor", "--last", str(len(drifted))],
            cwd=installed,
            env=user_env(),
            capture_output=True,
            text=True,
        )
        assert alarm.returncode == 1, alarm.stdout + alarm.stderr
        assert changed in alarm.stdout + alarm.stderr

        time.sleep(1.1)  # a new version name: versions carry the time to the second
        second = operator_story_in_chromium(service, upload, first, installed.name)
        listed = sh(installed, python, "-m", package, "models", "list").stdout
        assert first in listed
        assert second in listed
        audit = sh(installed, python, "-m", package, "audit").stdout
        for action in ("upload: accepted", "drift check: drift", "retrain: started"):
            assert action in audit
        for action in ("promote: done", "rollback: done"):
            assert action in audit
    finally:
        service.stop()


def shifted_upload(installed: Path, folder: Path) -> Path:
    """New labelled data as an operator would upload it: the new product line's readings
    for anomaly detection, the series' next stretch at a higher level for forecasting, and
    otherwise rows of the raw data with one feature moved (see `drift`)."""
    kind = problem_type_of(installed)
    raw = pd.read_parquet(installed / "data" / "raw" / "dataset.parquet")
    path = folder / "new-data.csv"
    if kind == "anomaly_detection":
        sh(installed, "make", "new-line-data")
        shutil.copy(installed / "data" / "external" / "sensors_new_line.csv", path)
        return path
    target = yaml.safe_load((installed / "configs" / "problem.yaml").read_text())["target"]
    kinds = dict(
        json.loads((installed / "data" / "processed" / "features.json").read_text())["features"]
    )
    rows = raw.sample(300, replace=True, random_state=0)
    text = next((name for name, kind in kinds.items() if kind == "text"), None)
    if kind == "forecasting":  # long enough that training sees the new level too
        stamps = pd.to_datetime(raw[target["timestamp"]], format="ISO8601")
        steps = pd.date_range(stamps.max(), periods=401, freq=target["frequency"])[1:]
        level = raw[target["name"]].tail(400).to_numpy() + 5 * raw[target["name"]].std()
        new = pd.DataFrame({target["timestamp"]: steps.strftime("%Y-%m-%d"), target["name"]: level})
    elif text:  # the same reviews, each with a sentence in another language
        said = [FOREIGN[i % 2].format("prima") for i in range(len(rows))]
        new = rows.assign(**{text: rows[text] + " " + pd.Series(said, index=rows.index)})
    else:
        new = pd.DataFrame(drift(rows.to_dict("records"), raw, kinds)[0])
    new.to_csv(path, index=False)
    return path


FOREIGN = ["Das Gerät ist {} und kam pünktlich an.", "Le produit est {} et bien emballé."]


def drift(rows: list[dict], train: pd.DataFrame, kinds: dict) -> tuple[list[dict], str]:
    """The same rows with one feature moved: texts in another language, else a number
    shifted by five standard deviations. Returns the rows and the moved feature's name."""
    text = next((name for name, kind in kinds.items() if kind == "text"), None)
    if text:
        words = ["prima", "schlecht", "magnifique", "cassé", "okay"]
        foreign = [FOREIGN[i % 2].format(words[i % 5]) for i in range(len(rows))]
        return [{**row, text: said} for row, said in zip(rows, foreign, strict=True)], text
    numeric = next(name for name, kind in kinds.items() if kind == "numeric")
    shift = 5 * float(train[numeric].std())
    return [{**row, numeric: (row[numeric] or 0.0) + shift} for row in rows], numeric


def row_traffic(installed: Path) -> tuple[list[dict], list[dict], str]:
    """Requests of training rows, then the same rows with one feature moved (see `drift`)."""
    train = pd.read_parquet(installed / "data" / "processed" / "train.parquet")
    features = json.loads((installed / "data" / "processed" / "features.json").read_text())
    names = [name for name, _ in features["features"]]
    records = train[names].astype(object).where(train[names].notna(), None).to_dict("records")
    # spread over the whole training set: consecutive sensor readings are alike
    rows = [records[i * len(records) // 300] for i in range(300)]
    if problem_type_of(installed) == "anomaly_detection":  # a new product line starts
        sh(installed, "make", "new-line-data")
        new = pd.read_csv(installed / "data" / "external" / "sensors_new_line.csv").head(300)
        drifted = new[names].astype(object).where(new[names].notna(), None).to_dict("records")
        moved = next(name for name, kind in features["features"] if kind == "numeric")
    else:
        drifted, moved = drift(rows, train, dict(features["features"]))
    return (
        [{"instances": rows[start : start + 50]} for start in range(0, 300, 50)],
        [{"instances": drifted[start : start + 50]} for start in range(0, 300, 50)],
        moved,
    )


def series_traffic(installed: Path) -> tuple[list[dict], list[dict], str]:
    """Histories from the end of the training series, then the same with the level shifted."""
    version = (installed / "models" / "current").read_text().strip()
    bundle_dir = installed / "models" / version
    series = json.loads((bundle_dir / "metadata.json").read_text())["features"][0]
    reference_rows = json.loads((bundle_dir / "reference.json").read_text())["rows"]
    train = pd.read_parquet(installed / "data" / "processed" / "train.parquet")
    recent = train.iloc[-reference_rows:]
    stamps = [stamp.isoformat() for stamp in recent[series["timestamp"]]]
    values = recent[series["name"]].tolist()
    length, shift = series["min_history"] + 7, 5 * float(recent[series["name"]].std())
    starts = np.random.default_rng(0).integers(0, len(recent) - length, size=20)

    def body(start: int, change: float) -> dict:
        window = slice(start, start + length)
        history = {"timestamps": stamps[window], "values": [v + change for v in values[window]]}
        return {"history": history, "horizon": series["horizon"]}

    return [body(s, 0.0) for s in starts], [body(s, shift) for s in starts], "level"


ARTIFACTS = TEMPLATE_DIR / "artifacts"


def operator_story_in_chromium(service: Service, upload: Path, first: str, name: str) -> str:
    """The console in real headless Chromium, as the operator: every step's page is kept
    in artifacts/ and the run fails on any console error. Returns the promoted version."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(
                http_credentials={"username": "olga", "password": service.operator}
            )
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            second = operator_story(page, service, upload, first, name)
        finally:
            browser.close()
    assert errors == []
    return second


def operator_story(page, service: Service, upload: Path, first: str, name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)

    def shot(step: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"console-{name}-{step}.png"), full_page=True)

    page.goto(f"{service.base}/dashboard")
    assert page.inner_text("#model-version") == first
    page.set_input_files("#console-upload input[type=file]", str(upload))
    page.click("#console-upload button")
    assert page.inner_text("#outcome") == "accepted", page.inner_text("#details")
    shot("1-upload")

    page.goto(f"{service.base}/dashboard")
    stored = page.eval_on_selector_all(
        "#console-drift-check option", "options => options.map(o => o.value)"
    )[1]
    page.select_option("#console-drift-check select", stored)
    page.click("#console-drift-check button")
    assert page.inner_text("#outcome") == "drift", page.inner_text("#details")
    shot("2-drift-check")

    page.goto(f"{service.base}/dashboard")
    page.click("#console-retrain button")
    page.wait_for_url("**/dashboard/jobs/*")
    deadline = time.monotonic() + 600  # the page refreshes itself while the job runs
    while page.inner_text("#job-status") == "running":
        assert time.monotonic() < deadline, "the retrain did not end within 600 s"
        page.wait_for_timeout(1000)
    assert page.inner_text("#job-status") == "passed", page.inner_text("#job-log")[-3000:]
    assert page.inner_text("#gate-verdict") == "passed"
    assert service.version() == first  # a retrain never promotes by itself
    shot("3-gate")

    second = page.get_attribute("#promote-candidate input[name=version]", "value")
    page.check("#promote-candidate input[name=confirm]")
    page.click("#promote-candidate button")
    assert page.inner_text("#outcome") == "done"
    assert service.version() == second
    shot("4-promoted")

    page.goto(f"{service.base}/dashboard")
    back = page.locator(f"form.rollback:has(input[value='{first}'])")
    back.locator("input[name=confirm]").check()
    back.locator("button").click()
    assert page.inner_text("#outcome") == "done"
    assert service.version() == first
    page.goto(f"{service.base}/dashboard")
    assert page.inner_text("#model-version") == first
    shot("5-rolled-back")
    return second
