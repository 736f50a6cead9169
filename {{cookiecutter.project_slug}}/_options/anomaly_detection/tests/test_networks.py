"""The autoencoder detector (deep_learning=yes): it trains with torch, is served by its ONNX
export, keeps its weights in a file that runs no code, and repeats exactly on the CPU."""

import copy
import pickle
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT_ROOT, settings_for
from fastapi.testclient import TestClient
from sklearn.base import clone

from {{ cookiecutter.package_name }} import bundle
from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.features import model_pipeline, resolve_features
from {{ cookiecutter.package_name }}.networks import AutoencoderDetector
from {{ cookiecutter.package_name }}.neural import (
    ExportMismatch,
    WeightsError,
    load_weights,
    torch_outputs,
)
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE

TINY = {"max_epochs": 2, "device": "cpu"}  # a few seconds: the same code paths


@pytest.fixture(scope="module")
def shipped():
    """The project's problem.yaml and params.yaml as shipped."""
    from {{ cookiecutter.package_name }}.config import load_params, load_problem

    configs = PROJECT_ROOT / "configs"
    return load_problem(configs / "problem.yaml"), load_params(configs / "params.yaml")


@pytest.fixture(scope="module")
def rows(shipped) -> tuple[pd.DataFrame, pd.Series, dict]:
    """200 labelled readings of the sample: features, labels and feature kinds."""
    problem, _ = shipped
    sensors = PROBLEM_TYPE.samples["sensors"]().sample(200, random_state=0)
    features = resolve_features(sensors, problem)
    return sensors[list(features)], sensors[problem.target.name], features


@pytest.fixture(scope="module")
def tiny(rows, shipped):
    """The shipped network, trained for two epochs on those rows."""
    X, y, features = rows
    problem, params = shipped
    settings = {**params.model.params, **TINY}
    detector = PROBLEM_TYPE.make_candidate("network", settings, 0, problem.target)
    return model_pipeline(features, params.preprocessing, detector).fit(X, y)


def test_the_network_is_the_default_candidate(shipped):
    _, params = shipped
    assert params.model.name == "network"
    assert {"robust_covariance", "network"} <= set(PROBLEM_TYPE.candidates)


def test_tiny_training_scores_flags_at_its_threshold_and_keeps_its_history(tiny, rows):
    X, _, _ = rows
    detector = tiny[-1]
    assert isinstance(detector, AutoencoderDetector)
    assert 1 <= detector.history_.best_epoch <= detector.history_.epochs <= 2
    predictions = PROBLEM_TYPE.predict(tiny, X)
    assert np.isfinite(predictions.values).all() and (predictions.values >= 0).all()
    assert predictions.threshold == detector.threshold_
    assert np.array_equal(predictions.flags, predictions.values >= detector.threshold_)
    assert np.array_equal(tiny.predict(X), predictions.flags.astype(int))


def test_the_export_gives_the_torch_scores_and_the_threshold(tiny, rows):
    """On rows other than the probes the export was checked on: the fast path reads the
    same outputs (see `from_onnx`)."""
    X, _, _ = rows
    detector = tiny[-1]
    x = tiny[:-1].transform(X).astype(np.float32)
    x = np.vstack([x, 5 * x[:20]])  # and readings far outside the training range
    network = detector.network()
    scores, threshold = torch_outputs(network, [x])
    exported = detector.run([x])
    np.testing.assert_allclose(exported[0], scores, rtol=1e-4, atol=1e-6)
    assert float(exported[1][0]) == float(threshold[0]) == detector.threshold_
    compiled = PROBLEM_TYPE.from_onnx(exported)
    assert PROBLEM_TYPE.same_predictions(compiled, PROBLEM_TYPE.predict(detector, x))


class _Trap:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_pickled_weights_file_is_refused_and_nothing_in_it_runs(tiny, tmp_path):
    import torch

    network = tiny[-1].network()
    marker = tmp_path / "ran"
    state = {name: _Trap(marker) for name in network.state_dict()}
    for data in (pickle.dumps(state), pickle.dumps(_Trap(marker))):
        with pytest.raises(WeightsError):
            load_weights(network, data)
    saved = tmp_path / "weights.pt"
    torch.save(network.state_dict(), saved)  # torch's own format is a pickle too
    with pytest.raises(WeightsError):
        load_weights(network, saved.read_bytes())
    assert not marker.exists()


def test_a_loaded_detector_is_checked_against_its_recorded_torch_scores(tiny):
    restored = pickle.loads(pickle.dumps(tiny[-1]))
    assert restored.threshold_ == tiny[-1].threshold_
    tampered = copy.copy(tiny[-1])
    recorded = tampered.exported_
    tampered.exported_ = replace(recorded, expected=[e + 0.01 for e in recorded.expected])
    with pytest.raises(ExportMismatch):
        pickle.loads(pickle.dumps(tampered))


def test_training_on_the_cpu_repeats_exactly_in_any_row_order(tiny, rows):
    X, y, _ = rows
    order = np.random.default_rng(1).permutation(len(X))
    again = clone(tiny).fit(X.iloc[order], y.iloc[order])
    assert again[-1].exported_.weights == tiny[-1].exported_.weights
    assert again[-1].threshold_ == tiny[-1].threshold_
    np.testing.assert_array_equal(again.score_samples(X), tiny.score_samples(X))


def test_the_service_serves_the_network_and_flags_a_broken_correlation(trained_project, tmp_path):
    models = trained_project.models
    current = bundle.load(models / bundle.read_pointer(models, "current"))
    assert isinstance(current.model[-1], AutoencoderDetector)
    names = [f["name"] for f in current.metadata["features"]]
    sensors = PROBLEM_TYPE.samples["sensors"]()
    normal = sensors.loc[sensors["anomaly"] == 0, names]
    usual = normal[~PROBLEM_TYPE.predict(current.model, normal).flags].iloc[0].to_dict()
    broken = {**usual, "motor_current": usual["motor_current"] + 6}  # too high for the load
    with TestClient(create_app(settings_for(trained_project, tmp_path))) as client:
        response = client.post("/v1/predict", json={"instances": [usual, broken]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["threshold"] == pytest.approx(current.model[-1].threshold_, abs=1e-6)
    assert answer["anomalies"] == [False, True]
    expected = PROBLEM_TYPE.predict(current.model, pd.DataFrame([usual, broken]))
    np.testing.assert_allclose(answer["predictions"], expected.values, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # a fresh interpreter
def test_a_bundle_loads_and_predicts_without_torch(trained_project):
    """What the service image has: onnxruntime and no torch."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ImportError("torch is not installed")

        sys.meta_path.insert(0, NoTorch())
        from {{ cookiecutter.package_name }} import bundle
        from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE

        models = Path({str(trained_project.models)!r})
        current = bundle.load(models / bundle.read_pointer(models, "current"))
        rows = PROBLEM_TYPE.samples["sensors"]()
        names = [f["name"] for f in current.metadata["features"]]
        print(int(PROBLEM_TYPE.predict(current.model, rows[names]).flags.sum()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) > 0
