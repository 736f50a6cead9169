"""The network candidate for rows: a multilayer perceptron with embeddings, as scikit-learn
estimators that train in PyTorch and predict with their ONNX export (see `neural.py`).

`NetworkPipeline` is the preprocessing followed by the network; it tells the network which
of the preprocessed columns one-hot encode each categorical feature, or hold a text's TF-IDF
weights, so that each such block gets its own embedding (`row_architectures.RowNetwork`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.pipeline import Pipeline

from .neural import PROBE_ROWS, Exported, NetworkEstimator, seeded, train, validation_split

Blocks = list[list[int]]


def input_blocks(preprocess) -> Blocks:
    """The [start, stop) columns of each one-hot encoded categorical feature and of each
    text's TF-IDF weights in the output of the fitted preprocessing (`features.py`)."""
    blocks = []
    for name, transformer, _ in preprocess.transformers_:
        where = preprocess.output_indices_[name]
        if name == "categorical":
            encoder = transformer.named_steps["encode"]
            infrequent = encoder.infrequent_categories_
            start = where.start
            for categories, rare in zip(encoder.categories_, infrequent, strict=True):
                width = len(categories) - (len(rare) - 1 if rare is not None else 0)
                blocks.append([start, start + width])
                start += width
            if start != where.stop:
                raise ValueError("one-hot widths do not add up to the categorical columns")
        elif name.startswith("text_") and where.stop > where.start:
            blocks.append([where.start, where.stop])
    return blocks


class NetworkPipeline(Pipeline):
    """The preprocessing, then a network given the blocks its input is made of."""

    def fit(self, X, y=None, **params):
        preprocess, network = self.steps[0][1], self.steps[-1][1]
        inputs = preprocess.fit_transform(X, y)
        network.fit(inputs, y, blocks=input_blocks(preprocess))
        return self


def _dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float32)


class _RowNetworkEstimator(NetworkEstimator):
    """The hyperparameters params.yaml sets, and training shared by both tasks."""

    def __init__(
        self,
        hidden: tuple[int, ...] = (64, 32),
        embedding_dim: int = 8,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 32,
        max_epochs: int = 200,
        patience: int = 20,
        validation_share: float = 0.15,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.hidden = hidden
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_share = validation_share
        self.device = device
        self.random_state = random_state

    def _architecture(self, inputs: int, blocks: Blocks, outputs: int) -> dict:
        if not self.hidden or min(self.hidden) < 1 or self.embedding_dim < 1:
            raise ValueError("hidden needs layer sizes of 1 or more, embedding_dim 1 or more")
        return {
            "inputs": inputs,
            "blocks": [list(b) for b in blocks],
            # A block of n columns needs no more than n numbers.
            "embedding_dims": [min(self.embedding_dim, stop - start) for start, stop in blocks],
            "hidden": [int(h) for h in self.hidden],
            "dropout": float(self.dropout),
            "outputs": outputs,
        }

    def _train(self, X, target: np.ndarray, blocks: Blocks, outputs: int, loss, strata=None):
        """Train a `RowNetwork` on float32 `X`; returns it in eval mode on the CPU."""
        import torch

        from .row_architectures import RowNetwork

        X = _dense(X)
        self.n_features_in_ = X.shape[1]
        architecture = self._architecture(X.shape[1], blocks, outputs)
        seeded(self.random_state)
        module = RowNetwork(**architecture)
        fit_rows, validation_rows = validation_split(
            len(X), self.validation_share, self.random_state, strata
        )
        module.standardise_from(torch.as_tensor(X[fit_rows]))
        self.history_ = train(module, loss, [X], target, fit_rows, validation_rows, self.settings())
        return module, architecture

    def _probes(self) -> np.ndarray:
        rng = np.random.default_rng(self.random_state)
        return rng.standard_normal((PROBE_ROWS, self.n_features_in_)).astype(np.float32)


class NetworkClassifier(ClassifierMixin, _RowNetworkEstimator):
    """Class probabilities from a `RowNetwork` trained with cross-entropy."""

    def fit(self, X, y, blocks: Blocks = ()):
        import torch

        from .row_architectures import ClassProbabilities

        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        network, architecture = self._train(
            X,
            codes.astype(np.int64),
            list(blocks),
            len(self.classes_),
            torch.nn.CrossEntropyLoss(),
            strata=codes,
        )
        self.exported_ = Exported.of(
            ClassProbabilities(network), architecture, [self._probes()], ["features"]
        )
        return self

    @staticmethod
    def build(architecture: dict):
        from .row_architectures import ClassProbabilities, RowNetwork

        return ClassProbabilities(RowNetwork(**architecture))

    def predict_proba(self, X) -> np.ndarray:
        proba = self.run([_dense(X)])[1].astype(float)
        return proba / proba.sum(axis=1, keepdims=True)  # exactly 1 in float64

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class NetworkRegressor(RegressorMixin, _RowNetworkEstimator):
    """A number from a `RowNetwork` trained with squared error on the standardised target."""

    def fit(self, X, y, blocks: Blocks = ()):
        import torch

        from .row_architectures import Rescaled

        y = np.asarray(y, dtype=float)
        mean, scale = float(y.mean()), float(y.std()) or 1.0
        standardised = ((y - mean) / scale).astype(np.float32)[:, None]
        network, architecture = self._train(X, standardised, list(blocks), 1, torch.nn.MSELoss())
        architecture = {**architecture, "mean": mean, "scale": scale}
        self.exported_ = Exported.of(
            Rescaled(network, mean, scale), architecture, [self._probes()], ["features"]
        )
        return self

    @staticmethod
    def build(architecture: dict):
        from .row_architectures import Rescaled, RowNetwork

        layers = {k: v for k, v in architecture.items() if k not in {"mean", "scale"}}
        return Rescaled(RowNetwork(**layers), architecture["mean"], architecture["scale"])

    def predict(self, X) -> np.ndarray:
        return self.run([_dense(X)])[0].astype(float)
