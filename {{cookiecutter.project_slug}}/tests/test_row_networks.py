"""The network candidate: training on little data, the ONNX export against torch, safe
weight files, determinism on the CPU, and serving without torch."""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from {{ cookiecutter.package_name }} import bundle
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.features import model_pipeline, resolve_features
from {{ cookiecutter.package_name }}.neural import (
    ExportMismatch,
    NetworkEstimator,
    WeightsError,
    load_weights,
    resolve_device,
)
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE
from {{ cookiecutter.package_name }}.row_networks import NetworkPipeline


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """About 200 rows of the sample, its features and target."""
    import shutil

    from conftest import PROJECT_ROOT

    from {{ cookiecutter.package_name }}.config import Paths, load_params, load_problem

    paths = Paths(tmp_path_factory.mktemp("tiny"))
    shutil.copytree(PROJECT_ROOT / "configs", paths.root / "configs")
    problem, params = load_problem(paths.problem), load_params(paths.params)
    frame = PROBLEM_TYPE.samples[problem.source.name]()
    frame = frame.sample(n=min(200, len(frame)), random_state=0).reset_index(drop=True)
    features = resolve_features(frame, problem)
    return (
        frame[list(features)],
        PROBLEM_TYPE.truth(frame, problem.target),
        features,
        problem,
        params,
    )


def fit_network(tiny, seed: int = 0, **changes) -> NetworkPipeline:
    X, y, features, problem, params = tiny
    settings = {**params.model.params, "max_epochs": 2, "device": "cpu", **changes}
    network = PROBLEM_TYPE.make_candidate("network", settings, seed, problem.target)
    return model_pipeline(features, params.preprocessing, network).fit(X, y)


@pytest.fixture(scope="module")
def fitted(tiny) -> NetworkPipeline:
    return fit_network(tiny)


def test_the_shipped_params_choose_the_network(tiny):
    _, _, _, _, params = tiny
    assert params.model.name == "network"
    assert isinstance(PROBLEM_TYPE.make_candidate("network", {}, 0, None), NetworkEstimator)


def test_two_epochs_on_tiny_data_train_log_and_predict(tiny, caplog):
    X, y, _, _, _ = tiny
    with caplog.at_level(logging.INFO, logger="{{ cookiecutter.package_name }}.neural"):
        pipeline = fit_network(tiny)
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert "validation loss" in epochs[0]
    network = pipeline[-1]
    assert network.history_.epochs == 2 and network.history_.device == "cpu"
    predictions = PROBLEM_TYPE.predict(pipeline, X)
    assert len(predictions.values) == len(X)
    scores = PROBLEM_TYPE.score(np.asarray(y), predictions)
    assert all(
        np.isfinite(v)
        for k, v in scores.items()
        if k not in PROBLEM_TYPE.undefined(np.asarray(y), predictions)
    )


def test_the_export_gives_the_torch_outputs_on_new_inputs(fitted):
    network = fitted[-1]
    inputs = np.random.default_rng(7).normal(size=(50, network.n_features_in_))
    inputs = inputs.astype(np.float32)
    with torch.no_grad():
        expected = network.network()(torch.from_numpy(inputs))
    expected = expected if isinstance(expected, tuple) else (expected,)
    for onnx_out, torch_out in zip(network.run([inputs]), expected, strict=True):
        np.testing.assert_allclose(onnx_out, torch_out.numpy(), rtol=1e-4, atol=1e-5)


def test_each_categorical_and_text_block_gets_its_own_embedding(fitted, tiny):
    _, _, features, _, _ = tiny
    architecture = fitted[-1].exported_.architecture
    blocks = architecture["blocks"]
    expected = sum(kind in {"categorical", "text"} for kind in features.values())
    assert len(blocks) == expected
    for (start, stop), dim in zip(blocks, architecture["embedding_dims"], strict=True):
        assert 0 <= start < stop <= architecture["inputs"]
        assert 1 <= dim <= stop - start


def test_a_pickled_weights_file_is_refused_without_running_it(fitted, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("pickle code ran",))

    network = fitted[-1]
    module = network.build(network.exported_.architecture)
    with pytest.raises(WeightsError, match="not a safetensors"):
        load_weights(module, pickle.dumps({"weights": Payload()}))
    with pytest.raises(WeightsError, match="not a safetensors"):
        load_weights(module, b"")
    assert not marker.exists()
    load_weights(module, network.exported_.weights)  # the genuine file loads


def test_weights_of_another_architecture_are_refused(fitted, tiny):
    other = fit_network(tiny, hidden=[3])[-1]
    module = fitted[-1].build(fitted[-1].exported_.architecture)
    with pytest.raises(WeightsError, match="do not fit"):
        load_weights(module, other.exported_.weights)


def test_a_loaded_network_whose_export_disagrees_is_refused(fitted):
    import copy

    network = copy.deepcopy(fitted[-1])
    network.exported_.expected = [np.asarray(e) + 1 for e in network.exported_.expected]
    state = network.__getstate__()
    with pytest.raises(ExportMismatch):
        type(network).__new__(type(network)).__setstate__(state)


def test_training_on_the_cpu_repeats_for_a_seed(tiny):
    X, _, _, _, _ = tiny
    first = fit_network(tiny, seed=3, max_epochs=3)
    again = fit_network(tiny, seed=3, max_epochs=3)
    other = fit_network(tiny, seed=4, max_epochs=3)
    assert first[-1].exported_.weights == again[-1].exported_.weights
    assert np.array_equal(
        PROBLEM_TYPE.predict(first, X).values, PROBLEM_TYPE.predict(again, X).values
    )
    assert first[-1].exported_.weights != other[-1].exported_.weights


def test_a_device_without_cuda_is_a_config_error():
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="device='tpu'"):
        resolve_device("tpu")
    assert resolve_device("cpu").type == "cpu"


def test_the_service_answers_with_the_network_as_the_pipeline_does(trained_project, client):
    import pandas as pd

    loaded = bundle.load(bundle.resolve(trained_project.models, "current"))
    assert isinstance(loaded.model[-1], NetworkEstimator)
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    body = schemas["PredictRequest"]["examples"][0]
    answer = client.post("/v1/predict", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == loaded.version
    frame = pd.DataFrame(body["instances"])
    expected = PROBLEM_TYPE.predict(loaded.model, frame).values.tolist()
    served = answer.json()["predictions"]
    if all(isinstance(value, str) for value in expected):  # class labels
        assert served == expected
    else:
        assert served == pytest.approx(expected, rel=1e-5)


def test_a_bundle_loads_and_predicts_without_torch(trained_project):
    """The service image has no torch: the bundle's network predicts with its ONNX export."""
    where = bundle.resolve(trained_project.models, "current")
    script = (
        "import sys, json\n"
        "class NoTorch:  # import torch fails, as where it is not installed\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in {'torch', 'onnxscript', 'safetensors'}:\n"
        "            raise ImportError(f'{name} is not installed')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from pathlib import Path\n"
        "from {{ cookiecutter.package_name }} import bundle\n"
        "from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE\n"
        f"loaded = bundle.load(Path({str(where)!r}))\n"
        "predictor = PROBLEM_TYPE.predictor(loaded)\n"
        "assert 'torch' not in sys.modules\n"
        "print(json.dumps(type(loaded.model[-1]).__name__))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]).startswith("Network")
