"""The forecasters: the seasonal-naive and Theta controls, the lag-boosting treatment,
how they forecast from rolling origins, and the prediction intervals.

Every model forecasts from a window of the most recent values. The candidate is recursive:
one gradient-boosting model predicts the next step from lags, the level and spread of the
last season and the position in the season, then feeds its forecast back as the newest lag
until the horizon is reached. Values enter relative to the level of the last season and in
units of the window's typical step-to-step change, so the trees, which cannot extrapolate,
follow a trend or a level shift, and one model serves many series of different scales.
The Theta control smooths the deseasonalised window exponentially and goes on at half its
trend; like the candidate, one fit serves many series.

A prediction interval is the forecast plus or minus a quantile of the backtest errors at
the same step ahead, in the same units (split conformal prediction): it widens with the
horizon and with the volatility of the recent window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import (
    BMonthBegin,
    BMonthEnd,
    BQuarterBegin,
    BQuarterEnd,
    BusinessDay,
    BYearBegin,
    BYearEnd,
    CBMonthBegin,
    CBMonthEnd,
    Day,
    MonthBegin,
    MonthEnd,
    QuarterBegin,
    QuarterEnd,
    Tick,
    Week,
    YearBegin,
    YearEnd,
)
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import ThreadpoolController

EPOCH = pd.Timestamp(0)  # the fixed anchor grid steps are counted from: 1970-01-01, a Thursday

# Offsets with one step per month, quarter or year, by their length in months.
MONTHS_PER_STEP = {
    **dict.fromkeys([MonthBegin, MonthEnd, BMonthBegin, BMonthEnd, CBMonthBegin, CBMonthEnd], 1),
    **dict.fromkeys([QuarterBegin, QuarterEnd, BQuarterBegin, BQuarterEnd], 3),
    **dict.fromkeys([YearBegin, YearEnd, BYearBegin, BYearEnd], 12),
}


# The thread pools of the loaded libraries, found once: a forecast limits OpenMP to one
# thread (a series is small, threads cost more to coordinate than they save), and looking
# the libraries up again on every request would cost milliseconds.
OPENMP = ThreadpoolController()


def season_positions(timestamps: pd.DatetimeIndex, frequency: str, season_length: int):
    """Each timestamp's place in the season (0 to season_length - 1), the same for any
    stretch of the series: grid steps since the Unix epoch, modulo the season length. A
    step of a monthly, quarterly or yearly frequency counts calendar months, so month or
    quarter 1 of a year has position 0 at a season of 12 or 4 steps."""
    return grid_steps(timestamps, to_offset(frequency)) % season_length


def grid_steps(timestamps: pd.DatetimeIndex, offset) -> np.ndarray:
    """How many steps of `offset` each timestamp on its grid is after the epoch (negative
    before it): consecutive grid timestamps get consecutive numbers. A multiple (15min,
    2MS) counts single steps and divides, which keeps any grid of it consecutive."""
    step, months = offset.base, MONTHS_PER_STEP.get(type(offset.base))
    if isinstance(step, Tick | Day):
        single = (timestamps - EPOCH) // pd.Timedelta(step)
    elif months:
        single = (timestamps.year * 12 + timestamps.month - 1) // months
    elif isinstance(step, Week):
        single = (timestamps - EPOCH).days // 7
    elif type(step) is BusinessDay:
        days = timestamps.normalize().to_numpy("datetime64[D]")
        single = np.busday_count(EPOCH.to_datetime64().astype("datetime64[D]"), days)
    else:  # semi-monthly, custom business days, ...: count the steps on the grid itself
        grid = pd.date_range(min(timestamps.min(), EPOCH), max(timestamps.max(), EPOCH), freq=step)
        single = grid.searchsorted(timestamps, "right") - grid.searchsorted(EPOCH, "right")
    return np.asarray(single, dtype=np.int64) // offset.n


def _windows(series: np.ndarray, width: int, origins: np.ndarray) -> np.ndarray:
    """The `width` values before each origin, one row per origin."""
    return (
        np.stack([series[o - width : o] for o in origins]) if len(origins) else np.empty((0, width))
    )


def window_unit(windows: np.ndarray) -> np.ndarray:
    """The unit of each window: its mean absolute step-to-step change (1 for a flat window).
    Features, targets and interval widths are measured in it."""
    windows = np.asarray(windows, dtype=float)
    if windows.shape[1] < 2:
        return np.ones(len(windows))
    unit = np.abs(np.diff(windows, axis=1)).mean(axis=1)
    return np.where(unit > 0, unit, 1.0)


def _series_list(series, positions, covariates) -> tuple[list, list, list]:
    """One series or a list of them, as lists of float values, of season positions and of
    covariates (one row per step; None without covariates)."""
    if isinstance(series, np.ndarray) and series.ndim == 1:
        series, positions, covariates = [series], [positions], [covariates]
    covariates = covariates if covariates is not None else [None] * len(series)
    return (
        [np.asarray(s, dtype=float) for s in series],
        [np.asarray(p) for p in positions],
        [None if c is None else np.asarray(c, dtype=float) for c in covariates],
    )


class SeasonalNaive(RegressorMixin, BaseEstimator):
    """The control: every step repeats the value one season earlier (season_length=1 is
    the plain naive forecast, the last value)."""

    def __init__(self, season_length: int = 7) -> None:
        self.season_length = season_length

    def fit(self, series, positions=None, covariates=None):
        """Nothing to learn: `series` is one array or a list of them."""
        self.window_ = self.season_length
        return self

    def forecast(
        self, windows: np.ndarray, positions: np.ndarray, horizon: int, future=None
    ) -> np.ndarray:
        """The last season repeated; covariates (`future`) do not move it."""
        last = np.asarray(windows, dtype=float)[:, -self.season_length :]
        repeats = -(-horizon // self.season_length)
        return np.tile(last, (1, repeats))[:, :horizon]


class LagBoostingForecaster(RegressorMixin, BaseEstimator):
    """The treatment: a recursive one-step HistGradientBoostingRegressor on lag features.

    Features for the next step: the last `lag_seasons * season_length` values minus the
    mean of the last season (the level), the change of that level from the season before,
    the spread of the last season, all in units of the window's mean absolute change, and
    the next step's place in the season, and the next step's covariates (values known in
    advance, as they are). Target: the next value minus the level, in the same unit. `fit`
    takes one series or a list of them: one global model learns from all."""

    def __init__(
        self,
        season_length: int = 7,
        lag_seasons: int = 2,
        max_iter: int = 200,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 20,
        l2_regularization: float = 0.0,
        random_state: int | None = None,
    ) -> None:
        self.season_length = season_length
        self.lag_seasons = lag_seasons
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def _features(
        self, windows: np.ndarray, positions: np.ndarray, known: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features of the next step after each window; `known`: its covariates."""
        s = self.season_length
        level = windows[:, -s:].mean(axis=1)
        previous = windows[:, -2 * s : -s].mean(axis=1)
        spread = windows[:, -s:].std(axis=1)
        unit = window_unit(windows)
        X = np.column_stack(
            [(windows - level[:, None]) / unit[:, None], (level - previous) / unit, spread / unit]
        )
        columns = [X, positions] if known is None else [X, positions, known]
        return np.column_stack(columns), level, unit

    def fit(self, series, positions, covariates=None):
        if self.lag_seasons < 2:
            raise ValueError(f"lag_seasons must be at least 2, got {self.lag_seasons}")
        self.window_ = self.lag_seasons * self.season_length
        X, y = [], []
        for values, places, known in zip(*_series_list(series, positions, covariates), strict=True):
            origins = np.arange(self.window_, len(values))
            features, level, unit = self._features(
                _windows(values, self.window_, origins),
                places[origins],
                None if known is None else known[origins],
            )
            X.append(features)
            y.append((values[origins] - level) / unit)
        X, y = np.concatenate(X), np.concatenate(y)
        if len(y) < 2 * self.min_samples_leaf:
            raise ValueError(
                f"{len(y)} training steps after the first {self.window_} of each series; "
                f"the candidate needs at least {2 * self.min_samples_leaf}"
            )
        model = HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            random_state=self.random_state,
        )
        # A series is small: OpenMP threads cost more to coordinate than they save.
        with OPENMP.limit(limits=1, user_api="openmp"):
            self.model_ = model.fit(X, y)
        return self

    def forecast(
        self, windows: np.ndarray, positions: np.ndarray, horizon: int, future=None
    ) -> np.ndarray:
        """`positions`: the place in the season of each window's first forecast step;
        `future`: the covariates of every forecast step (origins x horizon x covariates)."""
        current = np.asarray(windows, dtype=float)[:, -self.window_ :].copy()
        out = np.empty((len(current), horizon))
        with OPENMP.limit(limits=1, user_api="openmp"):
            for step in range(horizon):
                place = (positions + step) % self.season_length
                known = None if future is None else np.asarray(future, dtype=float)[:, step]
                X, level, unit = self._features(current, place, known)
                out[:, step] = level + unit * self.model_.predict(X)
                current = np.column_stack([current[:, 1:], out[:, step]])
        return out


ALPHAS = np.linspace(0.05, 1.0, 20)  # the smoothing weights Theta chooses from


def seasonal_indices(values: np.ndarray, positions: np.ndarray, season_length: int):
    """Classical multiplicative seasonal indices of one series (values over a centred moving
    average, averaged per place in the season) when the series has three seasons, only
    positive values and an autocorrelation at one season significant at 90%;
    otherwise None."""
    s, n = season_length, len(values)
    if s < 2 or n < 3 * s or np.any(values <= 0):
        return None
    x = values - values.mean()
    acf = np.array([x[k:] @ x[: n - k] for k in range(s + 1)]) / (x @ x)
    if abs(acf[s]) <= 1.645 * np.sqrt((1 + 2 * np.sum(acf[1:s] ** 2)) / n):
        return None
    weights = np.r_[0.5, np.ones(s - 1), 0.5] / s if s % 2 == 0 else np.ones(s) / s
    trend = np.convolve(values, weights, mode="valid")
    offset = (len(weights) - 1) // 2
    ratios = values[offset : offset + len(trend)] / trend
    places = positions[offset : offset + len(trend)] % s
    return np.array([ratios[places == p].mean() for p in range(s)])


class ThetaForecaster(RegressorMixin, BaseEstimator):
    """A statistical baseline: the Theta method as simple exponential smoothing with drift.

    From a window of the last `window_` values, divided by the seasonal indices: the
    level is their exponentially smoothed value and the drift half the slope of their
    straight-line fit, so the forecast goes on at half the window's trend; the indices
    put the season back. `fit` learns what the series share: the smoothing weight, chosen
    on one-step errors in window units, and the seasonal indices (all ones unless most
    series test seasonal), averaged over the series. Level and slope are each window's, so
    one fit serves series of any scale."""

    def __init__(self, season_length: int = 7) -> None:
        self.season_length = season_length

    def _level_and_drift(self, windows: np.ndarray, alphas: np.ndarray):
        """The smoothed level at the end of each window (rows) for each smoothing weight
        (columns), the drift (half the slope of each window's straight-line fit) and the
        drift's offset: the forecast h steps ahead is level + drift * (h - 1 + offset), the
        SES-with-drift form of Hyndman and Billah (2003)."""
        width = windows.shape[1]
        ages = np.arange(width - 1, -1, -1)[:, None]
        weights = alphas * (1 - alphas) ** ages
        weights[0] = (1 - alphas) ** (width - 1)  # the first value starts the level
        time = np.arange(width) - (width - 1) / 2
        slope = windows @ time / (time @ time)
        offset = 1 / alphas - (1 - alphas) ** width / alphas
        return windows @ weights, slope[:, None] / 2, offset

    def _deseasonalised(self, windows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The windows divided by the index of each value's place in the season."""
        width = windows.shape[1]
        places = (np.asarray(positions)[:, None] - width + np.arange(width)) % len(self.indices_)
        return windows / self.indices_[places]

    def fit(self, series, positions, covariates=None):
        """Learn the seasonal indices and the smoothing weight from every series (their
        covariates play no part). The window is 4 seasons (at least 8 steps), shortened to
        fit the longest series."""
        values, places, _ = _series_list(series, positions, covariates)
        longest = max(map(len, values))
        if longest < 3:
            raise ValueError(f"Theta needs a series of at least 3 steps, the longest has {longest}")
        self.window_ = min(max(4 * self.season_length, 8), longest - 1)
        found = [
            seasonal_indices(v, p, self.season_length) for v, p in zip(values, places, strict=True)
        ]
        found = [indices for indices in found if indices is not None]
        self.indices_ = np.ones(self.season_length)
        if 2 * len(found) > len(values):
            mean = np.mean(found, axis=0)
            self.indices_ = mean / mean.mean()
        errors = []
        for v, p in zip(values, places, strict=True):
            origins = np.arange(self.window_, len(v))
            windows = self._deseasonalised(_windows(v, self.window_, origins), p[origins])
            level, drift, offset = self._level_and_drift(windows, ALPHAS)
            actual = v[origins] / self.indices_[p[origins] % self.season_length]
            unit = window_unit(windows)[:, None]
            errors.append(((actual[:, None] - level - drift * offset) / unit) ** 2)
        self.alpha_ = float(ALPHAS[np.argmin(np.concatenate(errors).sum(axis=0))])
        return self

    def forecast(
        self, windows: np.ndarray, positions: np.ndarray, horizon: int, future=None
    ) -> np.ndarray:
        """`positions`: the place in the season of each window's first forecast step;
        covariates (`future`) do not move the forecast."""
        windows = np.asarray(windows, dtype=float)[:, -self.window_ :]
        positions = np.asarray(positions)
        alpha = np.array([self.alpha_])
        level, drift, offset = self._level_and_drift(
            self._deseasonalised(windows, positions), alpha
        )
        steps = np.arange(horizon)
        trend = level + drift * (steps + offset)
        return trend * self.indices_[(positions[:, None] + steps) % self.season_length]


def seasonal_scale(series: np.ndarray, season_length: int) -> float:
    """MASE's denominator: the in-sample mean absolute seasonal difference."""
    series = np.asarray(series, dtype=float)
    scale = float(np.abs(series[season_length:] - series[:-season_length]).mean())
    return scale if scale > 0 else 1.0


def backtest(
    model,
    series: np.ndarray,
    positions: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    covariates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Forecast `horizon` steps from each origin with the true history before it, and the
    covariates of the forecast steps (one row per step of the series) if there are any.

    Returns the forecasts and the actual values, both one row per origin."""
    series = np.asarray(series, dtype=float)
    future = None
    if covariates is not None:
        future = np.stack([covariates[o : o + horizon] for o in origins])
    forecasts = model.forecast(
        _windows(series, model.window_, origins), positions[origins], horizon, future
    )
    actuals = np.stack([series[o : o + horizon] for o in origins])
    return forecasts, actuals


def origin_units(series: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    """The unit (see `window_unit`) of the `window` values before each origin."""
    return window_unit(_windows(np.asarray(series, dtype=float), window, origins))


def interval_widths(errors: np.ndarray, coverage: float) -> tuple[list[float], float]:
    """Half-widths of the prediction interval per step ahead, in window units, from
    backtest errors in those units (one row per origin): the conformal quantile of the
    absolute errors, ceil((n + 1) * coverage) / n. Returns them and the quantile level used,
    which is 1 (the largest error seen) when n is too small for the coverage asked."""
    errors = np.abs(np.asarray(errors, dtype=float))
    n = len(errors)
    level = min(1.0, np.ceil((n + 1) * coverage) / n)
    return np.quantile(errors, level, axis=0, method="higher").tolist(), float(level)
