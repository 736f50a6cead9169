"""The torch modules of the row network; imported only to train or rebuild one (see
`row_networks.py`), so that serving needs no torch."""

from __future__ import annotations

import torch
from torch import nn


class RowNetwork(nn.Module):
    """A multilayer perceptron over the preprocessed row, with an embedding per block.

    A block is a run of input columns that one-hot encode a categorical feature, or hold the
    TF-IDF weights of a text's vocabulary. Each goes through its own bias-free linear map into
    `embedding_dims[i]` numbers: for a one-hot block that is an embedding lookup, for TF-IDF
    weights the weighted sum of token embeddings that `nn.EmbeddingBag` computes. The other
    columns (numbers, date parts) are standardised with the training rows' mean and spread
    (`center` and `scale`, set before training): the preprocessing may leave them unscaled
    (`scaler: none`, the year of a date), and a network learns badly from inputs of very
    different sizes. Then ReLU layers of `hidden` sizes with dropout, and a linear layer to
    `outputs` numbers.
    """

    def __init__(
        self,
        inputs: int,
        blocks: list[list[int]],
        embedding_dims: list[int],
        hidden: list[int],
        dropout: float,
        outputs: int,
    ) -> None:
        super().__init__()
        in_blocks = {column for start, stop in blocks for column in range(start, stop)}
        plain = [column for column in range(inputs) if column not in in_blocks]
        self.blocks = [(start, stop) for start, stop in blocks]
        self.register_buffer("plain", torch.tensor(plain, dtype=torch.long))
        self.register_buffer("center", torch.zeros(len(plain)))
        self.register_buffer("scale", torch.ones(len(plain)))
        self.has_plain = bool(plain)
        self.embeddings = nn.ModuleList(
            nn.Linear(stop - start, dim, bias=False)
            for (start, stop), dim in zip(self.blocks, embedding_dims, strict=True)
        )
        width = len(plain) + sum(embedding_dims)
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = (
            [(x.index_select(1, self.plain) - self.center) / self.scale] if self.has_plain else []
        )
        parts += [
            embed(x[:, start:stop])
            for (start, stop), embed in zip(self.blocks, self.embeddings, strict=True)
        ]
        return self.layers(torch.cat(parts, dim=1))

    def standardise_from(self, x: torch.Tensor) -> None:
        """Set `center` and `scale` from the training inputs `x` (a constant column: 1)."""
        plain = x.index_select(1, self.plain)
        spread = plain.std(dim=0, unbiased=False)
        self.center.copy_(plain.mean(dim=0))
        self.scale.copy_(torch.where(spread > 0, spread, torch.ones_like(spread)))


class ClassProbabilities(nn.Module):
    """The exported classifier: the index of the most probable class, and the probabilities
    (the outputs of a scikit-learn classifier converted to ONNX)."""

    def __init__(self, network: RowNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities = torch.softmax(self.network(x), dim=1)
        return probabilities.argmax(dim=1), probabilities


class Rescaled(nn.Module):
    """The exported regressor: the network learns the standardised target; this maps its
    output back to the target's scale."""

    def __init__(self, network: RowNetwork, mean: float, scale: float) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[:, 0] * self.scale + self.mean
