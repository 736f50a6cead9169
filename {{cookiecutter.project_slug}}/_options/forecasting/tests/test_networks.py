"""The network candidate: a GRU over windows of many series, trained with torch, served by
its ONNX export without torch."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package_name }} import bundle, neural
from {{ cookiecutter.package_name }}.errors import CannotTell
from {{ cookiecutter.package_name }}.networks import GRUForecaster, chronological_split

SEASON, HORIZON = 7, 7


def tiny_series(seed: int = 0) -> tuple[list, list, list]:
    """Two weekly series of 100 steps in different units (about 200 rows), with a
    promotion covariate that lifts the value on the days it is on."""
    rng = np.random.default_rng(seed)
    values, positions, covariates = [], [], []
    for scale in (1.0, 10.0):
        steps = np.arange(100)
        promo = (rng.random(100) < 0.2).astype(float)
        weekly = np.array([-3.0, -1.0, 0.0, 1.0, 2.0, 5.0, 1.0])[steps % SEASON]
        values.append(scale * (50 + weekly + 6 * promo + rng.normal(0, 1, 100)))
        positions.append(steps % SEASON)
        covariates.append(promo[:, None])
    return values, positions, covariates


def tiny_network(seed: int = 0, **params) -> GRUForecaster:
    settings = {"max_epochs": 2, "hidden_size": 8, "lag_seasons": 2, "device": "cpu"}
    return GRUForecaster(season_length=SEASON, horizon=HORIZON, random_state=seed).set_params(
        **(settings | params)
    )


def windows_of(values, positions, covariates, origins):
    """The model's inputs from `origins` of one series: windows, the place of the first
    forecast step, and the covariates of the forecast steps."""
    windows = np.stack([values[o - 2 * SEASON : o] for o in origins])
    future = np.stack([covariates[o : o + HORIZON] for o in origins])
    return windows, positions[origins], future


@pytest.fixture(scope="module")
def fitted() -> GRUForecaster:
    """A network trained for 2 epochs on the tiny series, exported and checked."""
    return tiny_network().fit(*tiny_series())


@pytest.mark.slow  # the ONNX export of a GRU takes seconds
def test_tiny_data_trains_at_most_the_epochs_asked_and_forecasts_each_series(fitted):
    assert 1 <= fitted.history_.epochs <= 2
    assert fitted.history_.device == "cpu"
    values, positions, covariates = tiny_series()
    for v, p, c in zip(values, positions, covariates, strict=True):
        windows, places, future = windows_of(v, p, c, np.arange(30, 40))
        forecast = fitted.forecast(windows, places, HORIZON, future)
        assert forecast.shape == (10, HORIZON)
        assert np.isfinite(forecast).all()
        # relative to each window's level and unit: the forecasts follow the series' scale
        assert abs(np.median(forecast) / np.median(v) - 1) < 0.5


@pytest.mark.slow
def test_the_onnx_export_gives_the_torch_forecasts_on_new_windows(fitted):
    values, positions, covariates = tiny_series(seed=5)  # windows the probes never saw
    windows, places, future = windows_of(values[1], positions[1], covariates[1], np.arange(20, 80))
    window, ahead, _, _ = fitted._inputs(windows, places, future)
    (onnx,) = fitted.run([window, ahead])
    (torch_out,) = neural.torch_outputs(fitted.network(), [window, ahead])
    np.testing.assert_allclose(onnx, torch_out, rtol=neural.RTOL, atol=neural.ATOL)


@pytest.mark.slow
def test_fewer_steps_give_the_same_forecasts_of_those_steps(fitted):
    values, positions, covariates = tiny_series()
    windows, places, future = windows_of(values[0], positions[0], covariates[0], np.arange(30, 35))
    full = fitted.forecast(windows, places, HORIZON, future)
    three = fitted.forecast(windows, places, 3, future[:, :3])
    np.testing.assert_allclose(three, full[:, :3], rtol=1e-6)
    with pytest.raises(ValueError, match="up to 7 steps"):
        fitted.forecast(windows, places, HORIZON + 1, future)


@pytest.mark.slow
def test_a_saved_network_whose_export_was_altered_is_refused(fitted, tmp_path):
    models = tmp_path / "models"
    version = bundle.save(models, fitted, fitted, {"note": "network"}, {})
    loaded = bundle.load(models / version).model
    assert isinstance(loaded, GRUForecaster)
    values, positions, covariates = tiny_series()
    windows, places, future = windows_of(values[0], positions[0], covariates[0], np.arange(30, 35))
    np.testing.assert_allclose(
        loaded.forecast(windows, places, HORIZON, future),
        fitted.forecast(windows, places, HORIZON, future),
    )
    expected = [e + 1.0 for e in fitted.exported_.expected]
    altered = neural.Exported(**{**vars(fitted.exported_), "expected": expected})
    with pytest.raises(neural.ExportMismatch):
        GRUForecaster().__setstate__({**fitted.__getstate__(), "exported_": altered})


class Payload:
    """What a malicious weights file would run on unpickling: here, create a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_weights_file_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    architecture = tiny_network().set_params(dropout=0.0)
    architecture.covariates_ = 1
    module = GRUForecaster.build(architecture.architecture())
    pickled = pickle.dumps({"encoder.weight_ih_l0": Payload(marker)})
    with pytest.raises(neural.WeightsError):
        neural.load_weights(module, pickled)
    assert not marker.exists()
    # the module's own weights in safetensors load
    neural.load_weights(module, neural.save_weights(module))


def test_training_on_the_cpu_repeats_exactly_for_a_seed():
    data = tiny_series()

    def backtest_fit(seed):  # export=False: training alone, as a backtest fold does
        return tiny_network(seed, max_epochs=3).fit(*data, export=False)

    values, positions, covariates = data
    windows, places, future = windows_of(values[0], positions[0], covariates[0], np.arange(30, 40))
    first, again, other = (
        backtest_fit(seed).forecast(windows, places, HORIZON, future) for seed in (0, 0, 1)
    )
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_a_backtest_fold_network_is_never_saved():
    network = tiny_network(max_epochs=1).fit(*tiny_series(), export=False)
    with pytest.raises(ValueError, match="export=False"):
        pickle.dumps(network)


def test_validation_is_the_latest_origins_of_each_series_after_a_gap():
    fit, validation = chronological_split([20, 10], share=0.2, horizon=3)
    # series 1: origins 0-19, the last 4 validate, the 2 before them are left out
    assert validation.tolist() == [16, 17, 18, 19, 28, 29]
    assert fit.tolist() == [*range(14), *range(20, 26)]
    assert not set(fit) & set(validation)
    with pytest.raises(CannotTell, match="longer series"):
        chronological_split([3], share=0.2, horizon=7)


# Loads the current bundle of the models folder argv[1] in an interpreter where torch cannot
# be imported, forecasts for the request body argv[2] and prints the values.
WITHOUT_TORCH = """
import json, sys
from pathlib import Path

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("torch is not installed in the service image")

sys.meta_path.insert(0, NoTorch())
from {{ cookiecutter.package_name }} import bundle
from {{ cookiecutter.package_name }}.series_service import Predictor

served = bundle.load(bundle.resolve(Path(sys.argv[1]), "current"))
body = json.loads(sys.argv[2])
forecast = Predictor(served).forecast(
    body["history"]["timestamps"], body["history"]["values"], body["horizon"],
    body.get("series_id"), body.get("future"),
)
assert "torch" not in sys.modules
print(json.dumps(forecast.values[0].tolist()))
"""


@pytest.mark.slow  # the session's trained project: a pipeline run with the network
def test_the_service_serves_the_network_by_onnx_without_torch(trained_project, client):
    served = bundle.load(bundle.resolve(trained_project.models, "current"))
    assert served.metadata["model"]["name"] == "network"
    assert isinstance(served.model, GRUForecaster)
    training = served.metadata["training"]  # what the network's training did
    assert 1 <= training["best_epoch"] <= training["epochs"]
    example = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
    body = example["examples"][0]
    response = client.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    served_values = [step["value"] for step in response.json()["forecast"]]
    # A fresh interpreter where torch cannot be imported loads the bundle and forecasts the
    # same values: serving needs ONNX Runtime only.
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, str(trained_project.models), json.dumps(body)],
        capture_output=True,
        text=True,
        env=os.environ,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(json.loads(done.stdout), served_values, rtol=1e-6)
