"""The base for row types whose models compile to ONNX and are served by the fast path.

Training exports the fitted candidate to ONNX where it converts, and the service builds
the compiled fast path from it (`fastpath.py`): the same predictions as the pipeline, in
microseconds. A type that subclasses this base says how to read the ONNX model's outputs
(`from_onnx`) and when two predictions agree (`same_predictions`), against which the fast
path is checked before it serves.
"""

from __future__ import annotations

import logging
from abc import abstractmethod

import numpy as np

from .rows import RowProblemType

log = logging.getLogger(__name__)


class CompiledRowProblemType(RowProblemType):
    """A row type whose fitted estimator compiles to ONNX for a fast serving path."""

    @abstractmethod
    def from_onnx(self, outputs: list, classes: np.ndarray | None):
        """`Predictions` from the outputs of the estimator compiled to ONNX (`classes`: the
        fitted estimator's classes, where it has them)."""

    @abstractmethod
    def same_predictions(self, a, b) -> bool:
        """Whether two `Predictions` agree to ONNX's float32 precision."""

    # fastpath.py imports this project's type, so it is imported when called.

    def onnx_model(self, pipeline, features: dict[str, str]) -> bytes | None:
        """The fitted estimator (after preprocessing) as ONNX, or None if it does not
        convert or a feature is text: TF-IDF has no compiled path, so the pipeline serves."""
        if "text" in features.values():
            log.info("text features: the service will predict with the scikit-learn pipeline")
            return None
        from .fastpath import export_onnx

        return export_onnx(pipeline)

    def fast_path(self, model_bundle):
        """The compiled fast path for a bundle with an ONNX model, checked against its
        pipeline (see `fastpath.compile_bundle`); None where the pipeline serves."""
        from .fastpath import compile_bundle

        return compile_bundle(model_bundle)
