"""Slow tier: a deep_learning=yes project of each problem type, run as a user would.

Render, install, the project's own network tests, `make pipeline` (the network is the
default candidate and must pass the gate on the sample data), `make serve` in a process
that cannot import torch (the image has none: the network is served from its ONNX export),
and `make monitor` on the traffic the service logged.

The five projects share one Python 3.11 environment: torch is installed once, from the
local CPU wheel that pip's find-links point at (never from an index: that would be a
multi-GB CUDA build), then each project goes in with `pip install -e .[torch] --group dev`,
the line its Makefile's pip route runs; pip finds torch already satisfied. Projects are
named `Slow <type>`, as in test_generated, so their packages differ and that file's traffic
helpers recognise their type.
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import test_generated
from conftest import BIN_DIR, PROBLEM_TYPES, TEMPLATE_DIR, checked
from test_generated import Service, row_traffic, series_traffic, sh, user_env

pytestmark = pytest.mark.slow

PYTHON = "python3.11"  # the local torch wheel's Python
TORCH_VERSION = "2.13.0"
BLOCKED = ("torch", "onnxscript", "safetensors")  # the `torch` extra, absent from the image


def find_links() -> list[Path]:
    """The folders pip's configuration and environment name as find-links."""
    listed = subprocess.run(
        [PYTHON, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    places = os.environ.get("PIP_FIND_LINKS", "").split()
    for value in re.findall(r"find-links='([^']*)'", listed):
        places += value.split()
    return [Path(place) for place in dict.fromkeys(places) if Path(place).is_dir()]


def local_torch_wheel() -> Path:
    """The CPU torch wheel on this machine's disk (TORCH_WHEEL, else pip's find-links)."""
    if os.environ.get("TORCH_WHEEL"):
        return Path(os.environ["TORCH_WHEEL"])
    wheels = sorted(
        wheel
        for folder in find_links()
        for wheel in folder.glob(f"torch-{TORCH_VERSION}*-cp311-cp311-*.whl")
    )
    if not wheels:
        pytest.fail(
            f"no local torch {TORCH_VERSION} wheel for Python 3.11 in pip's find-links "
            "(set TORCH_WHEEL): refusing to let pip download one"
        )
    return wheels[0]


def torch_version(venv: Path) -> str:
    code = "import importlib.metadata as m; print(m.version('torch'))"
    return sh(venv, str(venv / "bin" / "python"), "-c", code).stdout.strip()


@pytest.fixture(scope="module")
def torch_venv(tmp_path_factory) -> Path:
    """One environment with torch, shared by the five projects."""
    venv = tmp_path_factory.mktemp("torch") / "venv"
    sh(venv.parent, PYTHON, "-m", "venv", str(venv))
    wheel = local_torch_wheel()
    sh(venv.parent, str(venv / "bin" / "pip"), "install", "-q", "pip>=25.1", str(wheel))
    assert torch_version(venv).startswith(TORCH_VERSION)
    return venv


def render(problem_type: str, out: Path) -> Path:
    answers = checked(
        {
            "problem_type": problem_type,
            "deep_learning": "yes",
            "python_version": "3.11",
            "project_name": f"Slow {problem_type}",
        }
    )
    subprocess.run(
        [str(BIN_DIR / "cookiecutter"), str(TEMPLATE_DIR), "--no-input", "-o", str(out)]
        + [f"{k}={v}" for k, v in answers.items()],
        check=True,
        capture_output=True,
        env=user_env(),
    )
    return out / f"slow-{problem_type.replace('_', '-')}"


@pytest.fixture(scope="module", params=PROBLEM_TYPES)
def project(request, torch_venv, tmp_path_factory) -> Path:
    """A rendered deep_learning=yes project installed into the shared environment; its
    .venv is a link to it, so its Makefile's targets run there."""
    project = render(request.param, tmp_path_factory.mktemp(request.param))
    (project / ".venv").symlink_to(torch_venv, target_is_directory=True)
    sh(
        project,
        str(torch_venv / "bin" / "pip"),
        "install",
        "-q",
        "-e",
        ".[torch]",
        "--group",
        "dev",
    )
    assert torch_version(torch_venv).startswith(TORCH_VERSION), "pip replaced the local torch"
    return project


def problem_type_of(project: Path) -> str:
    return test_generated.problem_type_of(project)


def package_of(project: Path) -> str:
    return project.name.replace("-", "_")


def current_metadata(project: Path) -> dict:
    version = (project / "models" / "current").read_text().strip()
    return json.loads((project / "models" / version / "metadata.json").read_text())


def network_tests(project: Path) -> str:
    """The project's network tests: the row types share one network, the others have theirs."""
    own = problem_type_of(project) in {"forecasting", "anomaly_detection"}
    return "tests/test_networks.py" if own else "tests/test_row_networks.py"


def test_the_projects_network_tests_pass(project):
    python = str(project / ".venv" / "bin" / "python")
    result = sh(
        project, python, "-m", "pytest", "-q", "-p", "no:cacheprovider", network_tests(project)
    )
    assert " passed" in result.stdout
    assert " failed" not in result.stdout


def test_pipeline_trains_the_network_and_it_beats_the_baseline(project):
    result = sh(project, "make", "pipeline")  # exit 0: the gate passed

    log = result.stdout + result.stderr
    assert re.search(r"epoch 1/\d+: train loss \d", log), "no line for the first epoch"
    assert "kept epoch" in log
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["gate"]["passed"], metrics["gate"]["reason"]
    primary = metrics["primary"]
    sign = 1 if primary["greater_is_better"] else -1
    assert sign * (primary["candidate"] - primary["baseline"]) > 0
    assert (project / "models" / "current").read_text().strip() == metrics["version"]
    assert current_metadata(project)["model"]["name"] == "network"


def torch_blocker(folder: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes the extra's packages fail to import."""
    for name in BLOCKED:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError('{name} is not installed where the service runs')\n"
        )
    return folder


def monitor(project: Path, *options: str) -> subprocess.CompletedProcess:
    python = str(project / ".venv" / "bin" / "python")
    return subprocess.run(
        [python, "-m", package_of(project), "monitor", *options],
        cwd=project,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_service_without_torch_answers_and_the_monitor_reads_its_log(
    project, tmp_path, monkeypatch
):
    if not (project / "models" / "current").exists():  # when run on its own
        sh(project, "make", "pipeline")
    metadata = current_metadata(project)
    assert metadata["model"]["name"] == "network"
    forecasting = problem_type_of(project) == "forecasting"
    quiet, drifted, changed = (series_traffic if forecasting else row_traffic)(project)

    blocker = torch_blocker(tmp_path / "no-torch")
    monkeypatch.setattr(  # `make serve` with torch, onnxscript and safetensors unimportable
        test_generated, "user_env", lambda: {**user_env(), "PYTHONPATH": str(blocker)}
    )
    service = Service(project)
    try:
        assert service.version() == (project / "models" / "current").read_text().strip()
        check_answers(project, service, metadata)
        for body in quiet:  # traffic like the training data
            status, answer = service.call("POST", "/v1/predict", body)
            assert status == 200, answer
        time.sleep(1)  # the prediction log is written in batches
        calm = monitor(project)
        assert calm.returncode == 0, calm.stdout + calm.stderr
        if not forecasting:  # one request of 50 rows: fewer than monitoring.min_rows
            few = monitor(project, "--last", "1")
            assert few.returncode == 3, few.stdout + few.stderr
        for body in drifted:
            status, answer = service.call("POST", "/v1/predict", body)
            assert status == 200, answer
        time.sleep(1)
    finally:
        service.stop()
    alarm = monitor(project, "--last", str(len(drifted)))
    assert alarm.returncode == 1, alarm.stdout + alarm.stderr
    assert changed in alarm.stdout + alarm.stderr


def training_rows(project: Path, metadata: dict, count: int = 200) -> tuple[list[dict], list]:
    """`count` labelled training rows spread over the set, as request rows and truths."""
    train = pd.read_parquet(project / "data" / "processed" / "train.parquet")
    names = [feature["name"] for feature in metadata["features"]]
    train = train[train[metadata["target"]].notna()]
    picked = train.iloc[np.linspace(0, len(train) - 1, count).astype(int)]
    rows = picked[names].astype(object).where(picked[names].notna(), None)
    return rows.to_dict("records"), picked[metadata["target"]].tolist()


def check_answers(project: Path, service: Service, metadata: dict) -> None:
    """The served network's answers make sense for the type: on training rows it does
    better than a constant would, and its fields agree with each other."""
    problem_type = problem_type_of(project)
    if problem_type == "forecasting":
        schema = service.call("GET", "/openapi.json")[1]["components"]["schemas"]
        example = schema["PredictRequest"]["examples"][0]
        status, answer = service.call("POST", "/v1/predict", example)
        assert status == 200, answer
        assert len(answer["forecast"]) == metadata["features"][0]["horizon"]
        assert all(np.isfinite(point["value"]) for point in answer["forecast"])
        assert all(p["lower"] <= p["value"] <= p["upper"] for p in answer["forecast"])
        return
    rows, truth = training_rows(project, metadata)
    status, answer = service.call("POST", "/v1/predict", {"instances": rows})
    assert status == 200, answer
    predictions = answer["predictions"]
    assert len(predictions) == len(rows)
    if problem_type in {"classification", "text_classification"}:
        for predicted, probabilities in zip(predictions, answer["probabilities"], strict=True):
            assert sum(probabilities.values()) == pytest.approx(1, abs=1e-4)
            assert max(probabilities, key=probabilities.get) == str(predicted)
        hits = np.mean([str(p) == str(t) for p, t in zip(predictions, truth, strict=True)])
        majority = pd.Series(truth).astype(str).value_counts(normalize=True).iloc[0]
        assert hits > majority, f"accuracy {hits:.2f} on training rows, majority {majority:.2f}"
    elif problem_type == "regression":
        truth = np.asarray(truth, dtype=float)
        error = np.abs(np.asarray(predictions) - truth).mean()
        assert error < np.abs(truth.mean() - truth).mean()
    else:  # anomaly detection: scores, and the flags the validated threshold gives
        scores = np.asarray(predictions, dtype=float)
        assert np.isfinite(scores).all()
        assert answer["anomalies"] == [bool(s >= answer["threshold"]) for s in scores]
        labels = np.asarray(truth).astype(bool)
        if labels.any() and not labels.all():
            assert scores[labels].mean() > scores[~labels].mean()
