"""Stage 4: train the control (baseline) and the treatment (candidate) and write a bundle.

How the models are scored and fitted is the problem type's (`PROBLEM_TYPE.fit`); what a
bundle records, and how it becomes the candidate, is the same for every type."""

from __future__ import annotations

import logging
import platform
from importlib.metadata import version
from pathlib import Path

from . import bundle, tracking
from .config import Params, ProblemConfig
from .data import TRAIN_FILE, read_processed
from .problem_type import PROBLEM_TYPE

log = logging.getLogger(__name__)


def _versions() -> dict[str, str]:
{%- if cookiecutter.deep_learning == "yes" %}
    packages = ("scikit-learn", "pandas", "numpy", "skops", "torch", "onnxruntime")
{%- else %}
    packages = ("scikit-learn", "pandas", "numpy", "skops")
{%- endif %}
    return {"python": platform.python_version(), **{name: version(name) for name in packages}}


def run(
    processed_dir: Path,
    models_dir: Path,
    problem: ProblemConfig,
    params: Params,
    tracked: tracking.Run | None = None,
) -> str:
    """Train on data/processed, save a bundle, and point `models/candidate` at it. With a
    `tracked` MLflow run, the bundle records its id and the run what `train` did."""
    train, test, features = read_processed(processed_dir)
    trained = PROBLEM_TYPE.fit(train, test, features, problem, params)
    metadata = {
        "problem_type": PROBLEM_TYPE.name,
        "target": problem.target.name,
        "features": trained.schema,
        **trained.facts,
        "model": params.model.model_dump(),
        "baseline": params.baseline.model_dump(),
        "params": params.model_dump(mode="json"),
        "train_rows": len(train),
        "train_data_sha256": bundle.sha256_file(processed_dir / TRAIN_FILE),
        "cv": trained.cv,
        "library_versions": _versions(),
    }
    if tracked is not None and tracked.id is not None:
        metadata["mlflow_run_id"] = tracked.id
    version = bundle.save(
        models_dir, trained.model, trained.baseline, metadata, trained.reference, trained.onnx
    )
    bundle.set_pointer(models_dir, "candidate", version)
    saved = bundle.read_metadata(models_dir / version)
    digest = saved["content_sha256"]
    bundle.log_event(models_dir, "trained", version, cv=trained.cv, content_sha256=digest)
    if tracked is not None:
        tracking.log_training(tracked, saved)
    log.info("saved bundle %s", models_dir / version)
    return version
