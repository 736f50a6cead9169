"""The network candidate of anomaly detection: an autoencoder whose reconstruction error is
the anomaly score.

The autoencoder learns to rebuild the preprocessed training readings through a narrow code,
so it learns how the sensors move together; a reading that breaks those relations comes back
with a large error. Like every detector (see detectors.py) it trains without labels, on part
of the training rows, and the threshold is chosen on the rest, by the same rule. Early
stopping watches the reconstruction loss on a further split of the rows it trains on, so the
threshold's validation rows stay unseen until the threshold is chosen.

The trained detector is exported to ONNX with its threshold, the outputs the service's fast
path reads, and scores through that export: no torch is needed to serve it (see neural.py).
This module imports torch only to train; the modules are in architectures.py.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .detectors import _Thresholded
from .neural import (
    PROBE_ROWS,
    Exported,
    NetworkEstimator,
    seeded,
    torch_outputs,
    train,
    validation_split,
)


class AutoencoderDetector(_Thresholded, NetworkEstimator):
    """The reconstruction error of an autoencoder as an anomaly score, with a validated
    threshold. Architecture: `hidden` layer sizes down to `code` numbers and back up, with
    `dropout`; the optimiser settings and `device` are those of neural.py; the threshold
    rule's `expected_share`, `min_precision` and `validation_share` those of detectors.py.
    `early_stopping_share` of the rows it trains on watch the loss for early stopping."""

    def __init__(
        self,
        hidden: tuple[int, ...] = (8,),
        code: int = 2,
        dropout: float = 0.0,
        learning_rate: float = 0.01,
        weight_decay: float = 0.0,
        batch_size: int = 128,
        max_epochs: int = 60,
        patience: int = 6,
        early_stopping_share: float = 0.2,
        device: str = "auto",
        expected_share: float = 0.05,
        min_precision: float | None = None,
        validation_share: float = 0.25,
        random_state: int = 0,
    ) -> None:
        self.hidden = hidden
        self.code = code
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.early_stopping_share = early_stopping_share
        self.device = device
        self.expected_share = expected_share
        self.min_precision = min_precision
        self.validation_share = validation_share
        self.random_state = random_state

    @staticmethod
    def build(architecture: dict):
        from .architectures import Autoencoder, ReconstructionError

        return ReconstructionError(Autoencoder(**architecture), architecture["inputs"])

    def fit(self, X, y=None):
        """Train on part of the rows and choose the threshold on the rest (see
        `_Thresholded.fit`), then export the detector with its threshold."""
        for fitted in ("exported_", "_runner"):  # a refit must not score with the old export
            self.__dict__.pop(fitted, None)
        super().fit(X, y)
        module = self.__dict__.pop("training_module_")
        module.threshold.fill_(self.threshold_)
        # Probes in the space of the preprocessed rows, not training rows: the bundle keeps
        # them, and a model file should not carry the data it was trained on.
        rng = np.random.default_rng(self.random_state)
        probes = rng.standard_normal((PROBE_ROWS, self.n_features_in_)).astype(np.float32)
        self.exported_ = Exported.of(module, self.architecture_, [probes], ["x"])
        return self

    def _fit_scorer(self, X) -> None:
        import torch

        x = _inputs(X)
        self.n_features_in_ = x.shape[1]
        self.architecture_ = {
            "inputs": x.shape[1],
            "hidden": [int(size) for size in self.hidden],
            "code": int(self.code),
            "dropout": float(self.dropout),
        }
        seeded(self.random_state)
        module = self.build(self.architecture_)
        spread = x.std(axis=0)
        module.center.copy_(torch.as_tensor(x.mean(axis=0)))
        module.scale.copy_(torch.as_tensor(np.where(spread > 0, spread, 1.0)))
        with torch.no_grad():
            z = module.standardise(torch.as_tensor(x)).numpy()
        rows, watched = validation_split(len(x), self.early_stopping_share, self.random_state)
        self.history_ = train(
            module.autoencoder, torch.nn.MSELoss(), [z], z, rows, watched, self.settings()
        )
        self.training_module_ = module

    def score_samples(self, X) -> np.ndarray:
        """Each row's mean squared reconstruction error, from the ONNX export (from the torch
        module while `fit` chooses the threshold, before the export exists)."""
        x = _inputs(X)
        if "training_module_" in self.__dict__:
            return np.asarray(torch_outputs(self.training_module_, [x])[0], dtype=float)
        check_is_fitted(self, "exported_")
        return np.asarray(self.run([x])[0], dtype=float)


def _inputs(X) -> np.ndarray:
    return np.ascontiguousarray(X, dtype=np.float32)
