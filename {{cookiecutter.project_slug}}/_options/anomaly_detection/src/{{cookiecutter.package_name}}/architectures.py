"""The torch modules of the autoencoder detector; imported only to train or rebuild one (see
`networks.py`), so that serving needs no torch."""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn


class Autoencoder(nn.Module):
    """A multilayer perceptron that squeezes the preprocessed row through `code` numbers and
    rebuilds it: ReLU layers of `hidden` sizes with dropout down to the code, and the same
    sizes in reverse back up to the row's width.

    Trained on the training readings, it learns how the sensors move together; a reading that
    breaks those relations, or leaves their range, comes back with a large error.
    """

    def __init__(self, inputs: int, hidden: list[int], code: int, dropout: float) -> None:
        super().__init__()

        def stack(sizes: list[int]) -> nn.Sequential:
            layers: list[nn.Module] = []
            for width, size in pairwise(sizes[:-1]):
                layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))

        self.encoder = stack([inputs, *hidden, code])
        self.decoder = stack([code, *reversed(hidden), inputs])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class ReconstructionError(nn.Module):
    """The exported detector: each row's mean squared reconstruction error, its anomaly
    score, and the flagging threshold (the outputs of a detector compiled to ONNX, see
    `AnomalyDetection.from_onnx`).

    The autoencoder sees the row standardised by the training rows' `center` and `scale`,
    so that every column weighs the same in the error whatever the preprocessing left
    unscaled (date parts, or `scaler: none`).
    """

    def __init__(self, autoencoder: Autoencoder, inputs: int) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.register_buffer("center", torch.zeros(inputs))
        self.register_buffer("scale", torch.ones(inputs))
        self.register_buffer("threshold", torch.tensor([float("nan")], dtype=torch.float64))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.center) / self.scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.standardise(x)
        error = (self.autoencoder(z) - z).square().mean(dim=1)
        return error, self.threshold
