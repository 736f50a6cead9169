"""The forecasters: the seasonal-naive control, the lag-boosting treatment, and how both
forecast from rolling origins.

Both models forecast from a window of the most recent values. The candidate is recursive:
one gradient-boosting model predicts the next step from lags, the level and spread of the
last season and the position in the season, then feeds its forecast back as the newest lag
until the horizon is reached. Values enter relative to the level of the last season, so
the trees, which cannot extrapolate, follow a trend or a level shift.
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
from threadpoolctl import threadpool_limits

EPOCH = pd.Timestamp(0)  # the fixed anchor grid steps are counted from: 1970-01-01, a Thursday

# Offsets with one step per month, quarter or year, by their length in months.
MONTHS_PER_STEP = {
    **dict.fromkeys([MonthBegin, MonthEnd, BMonthBegin, BMonthEnd, CBMonthBegin, CBMonthEnd], 1),
    **dict.fromkeys([QuarterBegin, QuarterEnd, BQuarterBegin, BQuarterEnd], 3),
    **dict.fromkeys([YearBegin, YearEnd, BYearBegin, BYearEnd], 12),
}


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


class SeasonalNaive(RegressorMixin, BaseEstimator):
    """The control: every step repeats the value one season earlier (season_length=1 is
    the plain naive forecast, the last value)."""

    def __init__(self, season_length: int = 7) -> None:
        self.season_length = season_length

    def fit(self, series: np.ndarray, positions: np.ndarray | None = None):
        self.window_ = self.season_length
        self.n_train_ = len(series)
        return self

    def forecast(self, windows: np.ndarray, positions: np.ndarray, horizon: int) -> np.ndarray:
        last = np.asarray(windows, dtype=float)[:, -self.season_length :]
        repeats = -(-horizon // self.season_length)
        return np.tile(last, (1, repeats))[:, :horizon]


class LagBoostingForecaster(RegressorMixin, BaseEstimator):
    """The treatment: a recursive one-step HistGradientBoostingRegressor on lag features.

    Features for the next step: the last `lag_seasons * season_length` values minus the
    mean of the last season (the level), the change of that level from the season before,
    the spread of the last season, and the next step's place in the season. Target: the
    next value minus the level."""

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
        self, windows: np.ndarray, positions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        s = self.season_length
        level = windows[:, -s:].mean(axis=1)
        previous = windows[:, -2 * s : -s].mean(axis=1)
        spread = windows[:, -s:].std(axis=1)
        X = np.column_stack([windows - level[:, None], level - previous, spread, positions])
        return X, level

    def fit(self, series: np.ndarray, positions: np.ndarray):
        if self.lag_seasons < 2:
            raise ValueError(f"lag_seasons must be at least 2, got {self.lag_seasons}")
        series = np.asarray(series, dtype=float)
        self.window_ = self.lag_seasons * self.season_length
        origins = np.arange(self.window_, len(series))
        if len(origins) < 2 * self.min_samples_leaf:
            raise ValueError(
                f"the training series has {len(series)} steps; the candidate needs at least "
                f"{self.window_ + 2 * self.min_samples_leaf}"
            )
        X, level = self._features(_windows(series, self.window_, origins), positions[origins])
        model = HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            random_state=self.random_state,
        )
        # A series is small: OpenMP threads cost more to coordinate than they save.
        with threadpool_limits(limits=1, user_api="openmp"):
            self.model_ = model.fit(X, series[origins] - level)
        self.n_train_ = len(series)
        return self

    def forecast(self, windows: np.ndarray, positions: np.ndarray, horizon: int) -> np.ndarray:
        """`positions`: the place in the season of each window's first forecast step."""
        current = np.asarray(windows, dtype=float)[:, -self.window_ :].copy()
        out = np.empty((len(current), horizon))
        with threadpool_limits(limits=1, user_api="openmp"):
            for step in range(horizon):
                X, level = self._features(current, (positions + step) % self.season_length)
                out[:, step] = level + self.model_.predict(X)
                current = np.column_stack([current[:, 1:], out[:, step]])
        return out


def seasonal_scale(series: np.ndarray, season_length: int) -> float:
    """MASE's denominator: the in-sample mean absolute seasonal difference."""
    series = np.asarray(series, dtype=float)
    scale = float(np.abs(series[season_length:] - series[:-season_length]).mean())
    return scale if scale > 0 else 1.0


def backtest(
    model, series: np.ndarray, positions: np.ndarray, origins: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Forecast `horizon` steps from each origin with the true history before it.

    Returns the forecasts and the actual values, both one row per origin."""
    series = np.asarray(series, dtype=float)
    forecasts = model.forecast(
        _windows(series, model.window_, origins), positions[origins], horizon
    )
    actuals = np.stack([series[o : o + horizon] for o in origins])
    return forecasts, actuals
