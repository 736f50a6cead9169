"""The forecasting network in PyTorch: a GRU reads the window, a head forecasts each step.

Imported only to train the network or to rebuild it from a bundle (see networks.py); the
service runs the network's ONNX export and never imports torch.
"""

from __future__ import annotations

import torch
from torch import nn


class WindowGRU(nn.Module):
    """A GRU encoder over the window and a per-step head over the horizon.

    `window`: rows x window steps x 3 (the value in window units, and the sine and cosine
    of each step's place in the season). `future`: rows x horizon x (2 + covariates) (the
    place in the season of each forecast step and its covariates). Returns rows x horizon
    forecasts in window units. Each step's forecast reads the encoded window, that step's
    own future inputs and a learnt vector for its distance ahead, so forecasting fewer steps
    gives the same values for those steps."""

    def __init__(
        self,
        window_features: int,
        future_features: int,
        horizon: int,
        hidden_size: int,
        layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.encoder = nn.GRU(
            window_features,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.context = nn.Linear(hidden_size, hidden_size)
        self.known = nn.Linear(future_features, hidden_size)
        self.steps = nn.Parameter(torch.zeros(horizon, hidden_size))
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, window: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        _, state = self.encoder(window)
        context = self.context(self.dropout(state[-1]))  # rows x hidden
        mixed = torch.relu(context.unsqueeze(1) + self.known(future) + self.steps)
        return self.out(self.dropout(mixed)).squeeze(-1)


def build(architecture: dict) -> WindowGRU:
    """The untrained network for an architecture dict (see `GRUForecaster.architecture`)."""
    return WindowGRU(**architecture)
