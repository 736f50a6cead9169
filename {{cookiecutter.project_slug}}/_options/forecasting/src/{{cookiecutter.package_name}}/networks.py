"""The `network` candidate: a GRU over windows of the series, forecasting the whole horizon.

It forecasts like the other candidates (see forecasters.py): from the window of the last
`lag_seasons` seasons before an origin, values relative to the level of the last season and
in units of the window's mean absolute step-to-step change, so one network serves many
series of different scales. The GRU reads the window with each step's place in the season;
a head forecasts every step ahead at once (no feedback of its own forecasts) from the
encoded window, the step's place in the season and its covariates.

Training takes one sample per origin whose whole horizon lies in the training part. Early
stopping watches the latest origins of each series, the last `validation_share` of them;
the `horizon - 1` origins before those are left out, as their targets reach into the
validation steps. The test period is never seen.

Nothing here imports torch: training imports architectures.py, and forecasting runs the
network's ONNX export (see neural.py), as the service does.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin

from .errors import CannotTell, ConfigError
from .forecasters import _series_list, _windows, window_unit
from .neural import PROBE_ROWS, Exported, NetworkEstimator, seeded, torch_outputs, train

INPUT_NAMES = ("window", "future")


def chronological_split(
    counts: list[int], share: float, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the samples to fit on and of the validation samples, for samples stored
    series after series, each in time order (`counts` per series): the last `share` of each
    series validates, after a gap of `horizon - 1` origins. A series too short for both
    only fits."""
    if not 0 < share < 1:
        raise ConfigError(f"params.yaml model.params.validation_share={share}: use 0 < share < 1")
    fit, validation, start = [], [], 0
    for count in counts:
        held = round(count * share)
        kept = count - held - (horizon - 1)
        if held >= 1 and kept >= 1:
            fit.append(np.arange(start, start + kept))
            validation.append(np.arange(start + count - held, start + count))
        else:
            fit.append(np.arange(start, start + count))
        start += count
    fit_rows = np.concatenate(fit) if fit else np.empty(0, dtype=int)
    validation_rows = np.concatenate(validation) if validation else np.empty(0, dtype=int)
    if len(validation_rows) == 0:
        longest = max(counts, default=0)
        raise CannotTell(
            f"the network needs forecast origins to fit on and later ones to validate on "
            f"({share:.0%}, after a gap of {horizon - 1}); the longest training series has "
            f"{longest} origins with a whole horizon after them: collect longer series, "
            "lower model.params.lag_seasons or target.horizon, or choose model.name: "
            "lag_gradient_boosting, which learns from fewer steps"
        )
    return fit_rows, validation_rows


class GRUForecaster(RegressorMixin, NetworkEstimator):
    """A GRU encoder over the window and a head that forecasts each of `horizon` steps.

    `fit` takes one series or a list of them, with the season positions of their steps
    and their covariates (one row per step, or None): one network learns from all."""

    def __init__(
        self,
        season_length: int = 7,
        horizon: int = 1,
        lag_seasons: int = 4,
        hidden_size: int = 32,
        layers: int = 1,
        dropout: float = 0.1,
        learning_rate: float = 0.003,
        weight_decay: float = 0.0001,
        batch_size: int = 64,
        max_epochs: int = 60,
        patience: int = 8,
        validation_share: float = 0.2,
        device: str = "auto",
        random_state: int | None = None,
    ) -> None:
        self.season_length = season_length
        self.horizon = horizon
        self.lag_seasons = lag_seasons
        self.hidden_size = hidden_size
        self.layers = layers
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_share = validation_share
        self.device = device
        self.random_state = random_state

    @staticmethod
    def build(architecture: dict):
        from .architectures import build

        return build(architecture)

    def _inputs(self, windows: np.ndarray, positions: np.ndarray, future=None):
        """The network's two inputs for each window (float32), with the level and unit that
        turn its outputs back into values. `positions`: the place in the season of each
        window's first forecast step; `future`: the covariates of up to `horizon` forecast
        steps (rows x steps x covariates); steps past them get zeros, which change no
        forecast of the steps before."""
        windows = np.asarray(windows, dtype=float)[:, -self.window_ :]
        level = windows[:, -self.season_length :].mean(axis=1)
        unit = window_unit(windows)
        angle = 2 * np.pi / self.season_length
        before = np.asarray(positions)[:, None] - self.window_ + np.arange(self.window_)
        ahead = np.asarray(positions)[:, None] + np.arange(self.horizon)
        window = np.stack(
            [
                (windows - level[:, None]) / unit[:, None],
                np.sin(angle * before),
                np.cos(angle * before),
            ],
            axis=2,
        )
        places = [np.sin(angle * ahead), np.cos(angle * ahead)]
        known = np.zeros((len(windows), self.horizon, self.covariates_))
        if self.covariates_:
            given = np.asarray(future, dtype=float)[:, : self.horizon]
            known[:, : given.shape[1]] = (given - self.known_mean_) / self.known_scale_
        ahead_inputs = np.concatenate([np.stack(places, axis=2), known], axis=2)
        return window.astype(np.float32), ahead_inputs.astype(np.float32), level, unit

    def architecture(self) -> dict:
        """The numbers the network is built from (see architectures.py)."""
        return {
            "window_features": 3,
            "future_features": 2 + self.covariates_,
            "horizon": self.horizon,
            "hidden_size": self.hidden_size,
            "layers": self.layers,
            "dropout": self.dropout,
        }

    def fit(self, series, positions, covariates=None, export: bool = True):
        """Train on every origin of every series, then export to ONNX and check the export.
        `export=False` (a backtest fold, scored and thrown away) keeps the torch module to
        forecast with, in this process only: exporting a GRU takes seconds."""
        import torch

        if self.lag_seasons < 1 or self.horizon < 1:
            raise ValueError(
                f"lag_seasons and horizon must be at least 1, got {self.lag_seasons} and "
                f"{self.horizon}"
            )
        values, places, known = _series_list(series, positions, covariates)
        self.window_ = self.lag_seasons * self.season_length
        self.covariates_ = 0 if known[0] is None else known[0].shape[1]
        if self.covariates_:
            stacked = np.concatenate(known)
            self.known_mean_ = stacked.mean(axis=0)
            spread = stacked.std(axis=0)
            self.known_scale_ = np.where(spread > 0, spread, 1.0)
        inputs, targets, counts = self._samples(values, places, known)
        fit_rows, validation_rows = chronological_split(counts, self.validation_share, self.horizon)
        if self.random_state is not None:
            seeded(self.random_state)
        module = self.build(self.architecture())
        self.history_ = train(
            module, torch.nn.L1Loss(), inputs, targets, fit_rows, validation_rows, self.settings()
        )
        self.__dict__.pop("_runner", None)
        self.__dict__.pop("exported_", None)
        if not export:
            self.__dict__["_module"] = module
            return self
        self.__dict__.pop("_module", None)
        # The export is checked on origins spread over every series.
        rows = len(inputs[0])
        probes = np.linspace(0, rows - 1, min(PROBE_ROWS, rows)).astype(int)
        self.exported_ = Exported.of(
            module, self.architecture(), [x[probes] for x in inputs], INPUT_NAMES
        )
        return self

    def _samples(self, values, places, known) -> tuple[list[np.ndarray], np.ndarray, list[int]]:
        """The network's inputs (windows, future steps) and targets for every origin with a
        whole horizon after it, series after series, and the number of origins of each."""
        windows, futures, targets, counts = [], [], [], []
        for v, p, k in zip(values, places, known, strict=True):
            origins = np.arange(self.window_, len(v) - self.horizon + 1)
            steps = origins[:, None] + np.arange(self.horizon)
            window, future, level, unit = self._inputs(
                _windows(v, self.window_, origins),
                p[origins],
                None if k is None else k[steps],
            )
            windows.append(window)
            futures.append(future)
            targets.append(((v[steps] - level[:, None]) / unit[:, None]).astype(np.float32))
            counts.append(len(origins))
        return [np.concatenate(windows), np.concatenate(futures)], np.concatenate(targets), counts

    def __getstate__(self) -> dict:
        if "_module" in self.__dict__:
            raise ValueError("a network fitted with export=False forecasts in its process only")
        return super().__getstate__()

    def forecast(
        self, windows: np.ndarray, positions: np.ndarray, horizon: int, future=None
    ) -> np.ndarray:
        """Forecasts of `horizon` steps (at most the trained horizon) after each window,
        by the ONNX export. `positions`: the place in the season of each window's first
        forecast step; `future`: the covariates of every forecast step (origins x horizon x
        covariates)."""
        if horizon > self.horizon:
            raise ValueError(f"the network forecasts up to {self.horizon} steps, not {horizon}")
        if len(windows) == 0:
            return np.empty((0, horizon))
        window, ahead, level, unit = self._inputs(windows, positions, future)
        module = self.__dict__.get("_module")
        if module is not None:  # fitted with export=False
            (out,) = torch_outputs(module, [window, ahead])
        else:
            (out,) = self.run([window, ahead])
        return level[:, None] + unit[:, None] * np.asarray(out, dtype=float)[:, :horizon]
