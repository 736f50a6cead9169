"""Stage 4's neural networks in PyTorch: training, safe weight files and the ONNX export.

A network trains with torch, then is exported to ONNX and checked against itself: the
service, the evaluation of a saved bundle and the monitor run the export with ONNX Runtime,
so the service image installs no torch (it is the optional `torch` extra). What a bundle
keeps of a network:

- its architecture, as a plain dict of numbers the module is rebuilt from;
- its weights as safetensors (a flat table of arrays: loading one runs no code, and a pickle
  is refused);
- its ONNX export, with probe inputs and the torch outputs for them: every load runs the
  export on the probes and refuses a bundle whose answers differ (`ExportMismatch`).

Training is deterministic on the CPU for a given seed: the seed fixes the initial weights,
the validation split, the batch order and dropout. Early stopping watches the loss on a
validation split taken from the training data only, and keeps the best epoch's weights.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from .errors import CannotTell, ConfigError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
PROBE_ROWS = 32
# The export computes in float32 like the module, but may order its sums differently.
RTOL, ATOL = 1e-4, 1e-5
# An epoch improves on the best one when its validation loss is lower by more than this
# share: smaller gains are noise, and waiting for them only spends epochs.
MIN_IMPROVEMENT = 1e-3


class ExportMismatch(Exception):
    """The ONNX export does not give the torch module's outputs: the bundle is refused."""


class WeightsError(ValueError):
    """A weights file is not a safetensors table of the expected arrays."""


def resolve_device(name: str):
    """The torch device params.yaml names: `auto` is CUDA when there is one, else the CPU."""
    import torch

    if name not in DEVICES:
        raise ConfigError(f"params.yaml model.params.device={name!r}: use one of {DEVICES}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("params.yaml model.params.device='cuda': no CUDA device; use auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@dataclass(frozen=True)
class TrainingSettings:
    """The optimiser and early-stopping settings of one training run."""

    learning_rate: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    patience: int
    device: str
    seed: int


@dataclass(frozen=True)
class History:
    """What training did, recorded in the bundle's model card."""

    epochs: int  # epochs run
    best_epoch: int  # the epoch whose weights were kept (lowest validation loss)
    train_loss: float
    validation_loss: float
    device: str


def validation_split(
    n: int, share: float, seed: int, strata: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rows to fit on and of the validation rows, from the training data
    only. Stratified on `strata` when every stratum has two rows or more."""
    if not 0 < share < 1:
        raise ConfigError(f"params.yaml model.params.validation_share={share}: use 0 < share < 1")
    held = max(1, round(n * share))
    if n - held < 1:
        raise CannotTell(
            f"{n} training rows: a network needs rows to fit on and a validation split "
            f"({share:.0%}) for early stopping; add data"
        )
    rng = np.random.default_rng(seed)
    if strata is not None:
        _, codes, counts = np.unique(strata, return_inverse=True, return_counts=True)
        if counts.min() >= 2:
            # Each stratum gives its share of the validation rows, at least one.
            val = np.concatenate(
                [
                    rng.permutation(np.flatnonzero(codes == k))[: max(1, round(c * share))]
                    for k, c in enumerate(counts)
                ]
            )
            return np.setdiff1d(np.arange(n), val), np.sort(val)
    order = rng.permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])


def train(
    module,
    loss: Callable,
    inputs: Sequence[np.ndarray],
    target: np.ndarray,
    fit_rows: np.ndarray,
    validation_rows: np.ndarray,
    settings: TrainingSettings,
) -> History:
    """Fit `module` (already seeded) with Adam on mini-batches of `fit_rows`, one log line
    per epoch, and stop when the validation loss has not improved for `patience` epochs.
    The module keeps the weights of its best epoch. `loss(outputs, target)` is a torch loss;
    `inputs` are the module's positional inputs, row-aligned with `target`."""
    import torch

    device = resolve_device(settings.device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        # Batches of a small network are microseconds of arithmetic each: more threads only
        # add hand-offs, and on a busy machine they wait for each other (many times slower).
        torch.set_num_threads(1)
    try:
        return _train(module, loss, inputs, target, fit_rows, validation_rows, settings, device)
    finally:
        torch.set_num_threads(threads)


def _train(module, loss, inputs, target, fit_rows, validation_rows, settings, device) -> History:
    import torch

    module.to(device)
    tensors = [torch.as_tensor(np.asarray(x), device=device) for x in inputs]
    truth = torch.as_tensor(np.asarray(target), device=device)
    optimiser = torch.optim.Adam(
        module.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    rng = np.random.default_rng(settings.seed)
    val = torch.as_tensor(validation_rows, device=device)
    best = (float("inf"), 0, float("nan"))  # validation loss, epoch, train loss
    best_state = copy.deepcopy(module.state_dict())
    epoch = 0
    for epoch in range(1, settings.max_epochs + 1):
        batches = [
            torch.as_tensor(rows, device=device)
            for rows in np.array_split(
                rng.permutation(fit_rows),
                range(settings.batch_size, len(fit_rows), settings.batch_size),
            )
        ]
        train_loss = _epoch(module, loss, optimiser, tensors, truth, batches)
        with torch.no_grad():
            val_loss = float(loss(module(*(t[val] for t in tensors)), truth[val]))
        improved = val_loss < best[0] * (1 - MIN_IMPROVEMENT)
        if improved:
            best = (val_loss, epoch, train_loss)
            best_state = copy.deepcopy(module.state_dict())
        log.info(
            "epoch %d/%d: train loss %.4f, validation loss %.4f%s",
            epoch,
            settings.max_epochs,
            train_loss,
            val_loss,
            " (best)" if improved else "",
        )
        if epoch - best[1] >= settings.patience:
            log.info("early stop: no better validation loss for %d epochs", settings.patience)
            break
    module.load_state_dict(best_state)
    module.to("cpu").eval()
    log.info("kept epoch %d: validation loss %.4f", best[1], best[0])
    return History(epoch, best[1], best[2], best[0], device.type)


def _epoch(module, loss: Callable, optimiser, tensors: list, truth, batches: list) -> float:
    """One pass of the optimiser over the batches; the mean training loss per row."""
    module.train()
    total = 0.0
    for rows in batches:
        optimiser.zero_grad()
        batch_loss = loss(module(*(t[rows] for t in tensors)), truth[rows])
        batch_loss.backward()
        optimiser.step()
        total += batch_loss.item() * len(rows)
    module.eval()
    return total / sum(len(rows) for rows in batches)


def seeded(seed: int) -> None:
    """Fix torch's random state (initial weights, dropout) and ask for deterministic
    kernels, so that training on the CPU repeats exactly for a seed."""
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def save_weights(module) -> bytes:
    """The module's weights as safetensors bytes."""
    from safetensors.torch import save

    return save({name: t.detach().cpu().contiguous() for name, t in module.state_dict().items()})


def load_weights(module, data: bytes) -> None:
    """Load safetensors bytes into `module`; WeightsError for anything else (a pickle, a
    truncated file, missing or extra arrays): no code in the file ever runs."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        state = load(bytes(data))
    except (SafetensorError, ValueError, OSError) as exc:
        raise WeightsError(f"not a safetensors weights file: {exc}") from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"weights do not fit the architecture: {exc}") from exc


def export_onnx(module, example: Sequence[np.ndarray], input_names: Sequence[str]) -> bytes:
    """The module (in eval mode) as ONNX, with a variable number of rows."""
    import torch

    module = module.to("cpu").eval()
    args = tuple(torch.as_tensor(np.asarray(x)) for x in example)
    rows = torch.export.Dim("rows", min=1)
    # The exporter and its optimiser log every pass, and warn about operators of packages
    # this model does not use (torchvision); a failure still raises.
    for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations, inside export
        program = torch.onnx.export(
            module,
            args,
            input_names=list(input_names),
            dynamic_shapes=tuple({0: rows} for _ in args),
            dynamo=True,
            verbose=False,
            report=False,
        )
    return program.model_proto.SerializeToString()


def torch_outputs(module, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The module's outputs for numpy inputs, as numpy arrays."""
    import torch

    with torch.no_grad():
        out = module(*(torch.as_tensor(np.asarray(x)) for x in inputs))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


class OnnxModel:
    """An ONNX model in ONNX Runtime, one thread (a request is microseconds of work)."""

    def __init__(self, onnx: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            onnx, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.inputs, inputs, strict=True)))


def check_export(model: OnnxModel, probes: Sequence[np.ndarray], expected: Sequence) -> None:
    """Raise ExportMismatch unless the export gives the recorded torch outputs."""
    got = model.run(probes)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        if np.shape(a) != np.shape(b) or not np.allclose(a, b, rtol=RTOL, atol=ATOL):
            worst = np.max(np.abs(np.asarray(a, float) - np.asarray(b, float)), initial=0.0)
            raise ExportMismatch(f"ONNX output {i} differs from torch's by up to {worst:.3g}")


@dataclass
class Exported:
    """A trained network as a bundle keeps it: no torch object, nothing pickled."""

    architecture: dict[str, Any]  # the numbers the module is rebuilt from
    weights: bytes  # safetensors
    onnx: bytes
    probes: list[np.ndarray]  # inputs on which the export was checked against torch
    expected: list[np.ndarray]  # torch's outputs for them

    @classmethod
    def of(
        cls,
        module,
        architecture: dict,
        probes: Sequence[np.ndarray],
        input_names: Sequence[str],
    ) -> Exported:
        """Export `module`, then check the export against it on `probes`."""
        onnx = export_onnx(module, probes, input_names)
        expected = torch_outputs(module, probes)
        check_export(OnnxModel(onnx), probes, expected)
        return cls(architecture, save_weights(module), onnx, list(probes), expected)


class NetworkEstimator(BaseEstimator):
    """The scikit-learn face of a network, so that it goes where any candidate goes:
    cross-validation, the baseline comparison, the gate, the bundle, the service.

    A subclass trains its module in `fit` and ends with `self.exported_ = Exported.of(...)`;
    it predicts through `run`, the ONNX export, also right after fitting, so every score is
    the export's. `build(architecture)` rebuilds the torch module (weights not loaded);
    `network()` rebuilds it with its trained weights, for a user who wants it in torch.
    """

    exported_: Exported
    history_: History

    @staticmethod
    def build(architecture: dict):
        """The untrained torch module for an architecture dict."""
        raise NotImplementedError

    def settings(self) -> TrainingSettings:
        return TrainingSettings(
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            patience=self.patience,
            device=self.device,
            seed=self.random_state,
        )

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The export's outputs for float32 inputs."""
        runner = self.__dict__.get("_runner")
        if runner is None:
            runner = self.__dict__["_runner"] = OnnxModel(self.exported_.onnx)
        return runner.run(inputs)

    def network(self):
        """The trained torch module, rebuilt from the architecture and the safetensors
        weights (needs torch)."""
        module = self.build(self.exported_.architecture)
        load_weights(module, self.exported_.weights)
        return module.eval()

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ gives __dict__
        state.pop("_runner", None)  # an ONNX Runtime session: rebuilt on demand
        return state

    def __setstate__(self, state: dict) -> None:
        """A loaded network is checked before it predicts: its export must still give the
        torch outputs recorded at training (see `check_export`)."""
        super().__setstate__(state)
        if "exported_" in state:
            exported = state["exported_"]
            runner = self.__dict__["_runner"] = OnnxModel(exported.onnx)
            check_export(runner, exported.probes, exported.expected)
