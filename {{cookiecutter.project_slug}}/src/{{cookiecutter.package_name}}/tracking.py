"""Experiment tracking with MLflow: what `train`, `evaluate`, `retrain` and `tune` record.

One MLflow run per bundle: `train` opens it and the bundle records its id
(`mlflow_run_id`); `evaluate` adds the test metrics, the gate's verdict and the report to
the same run. `tune` opens a run with one nested run per trial.

Runs go to `MLFLOW_TRACKING_URI`, by default the SQLite file mlflow.db at the project root
with artifacts in mlruns/; `MLFLOW_TRACKING_URI=` (set and empty) turns tracking off. The
model registry in models/ stays the source of truth for serving: MLflow is the lab notebook.

Tracking never fails a stage and barely slows it: mlflow is imported only here, in a
background thread while the stage works (importing it and opening the store take seconds),
and the first failure (not installed, server unreachable, database locked) is logged once as
a warning; the stage goes on untracked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from .config import Paths
from .data import MANIFEST_FILE
from .errors import CannotTell, GateFailed

log = logging.getLogger(__name__)

EXPERIMENT = "{{ cookiecutter.project_slug }}"
DATABASE = "mlflow.db"
ARTIFACTS = "mlruns"
MAX_PARAM_CHARS = 6000  # MLflow refuses longer param values
# A server that does not answer would block each call for minutes with MLflow's defaults.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}

_off: str | None = None  # why tracking stopped in this process, once it has


def tracking_uri(root: Path) -> str | None:
    """Where runs go: MLFLOW_TRACKING_URI, else the project's mlflow.db; None when off."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None:
        return f"sqlite:///{root.resolve() / DATABASE}"
    return uri or None


def _stop(cause: BaseException) -> None:
    global _off
    if _off is None:
        _off = (str(cause).splitlines() or [type(cause).__name__])[0]
        log.warning("experiment tracking is off for this run: %s", _off)


class Run:
    """An MLflow run, or nothing when tracking is off: every method is then a no-op, and
    any failure turns tracking off (one warning) instead of failing the stage. The run is
    opened in the background; `id` waits for it."""

    def __init__(self, pending: Future | None = None, root: Path = Path()) -> None:
        self._pending = pending  # resolves to (MlflowClient, experiment id, run id)
        self.paths = Paths(root)

    def _target(self) -> tuple | None:
        if self._pending is None or _off is not None:
            return None
        try:
            return self._pending.result()
        except Exception as exc:  # tracking must never fail a stage
            _stop(exc)
            return None

    @property
    def id(self) -> str | None:
        target = self._target()
        return None if target is None else target[2]

    def _call(self, name: str, *args: Any, **kwargs: Any) -> None:
        target = self._target()
        if target is None:
            return
        try:
            getattr(target[0], name)(target[2], *args, **kwargs)
        except Exception as exc:  # tracking must never fail a stage
            _stop(exc)

    def log(
        self,
        params: dict | None = None,
        metrics: dict | None = None,
        tags: dict | None = None,
        step: int = 0,
    ) -> None:
        """Params, metrics and tags in one request; metrics that are not finite numbers
        (undefined, NaN) are left out."""
        if self._target() is None:
            return
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self._call(
            "log_batch",
            metrics=[
                Metric(k, float(v), now, step) for k, v in (metrics or {}).items() if _finite(v)
            ],
            params=[Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def artifacts(self, paths: list[Path], folder: str) -> None:
        for path in paths:
            if path.is_file():
                self._call("log_artifact", str(path), folder)

    @contextmanager
    def child(self, name: str) -> Iterator[Run]:
        """A nested run (a tuning trial), or nothing when tracking is off."""
        target = self._target()
        if target is None:
            yield Run(None, self.paths.root)
            return
        client, experiment, parent = target
        pending: Future = Future()
        try:
            tags = {"mlflow.parentRunId": parent}
            run = client.create_run(experiment, run_name=name, tags=tags)
            pending.set_result((client, experiment, run.info.run_id))
        except Exception as exc:  # tracking must never fail a stage
            _stop(exc)
            pending = None
        with _ending(Run(pending, self.paths.root)) as run:
            yield run


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _open(root: Path, uri: str, name: str, run_id: str | None) -> tuple:
    """mlflow's client on `uri`, this project's experiment, and a new run `name` (or the
    run `run_id` again). Runs in the background thread."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = (root / ARTIFACTS).resolve().as_uri() if uri.startswith("sqlite") else None
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    if run_id is None:
        run_id = client.create_run(experiment_id, run_name=name).info.run_id
    else:
        client.update_run(run_id, status="RUNNING")
    return client, experiment_id, run_id


def _background(work: Callable[[], tuple]) -> Future:
    """`work` in a daemon thread: the stage starts at once, and exits even if it hangs."""
    future: Future = Future()

    def target() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # reported by the first caller
            future.set_exception(exc)

    threading.Thread(target=target, name="mlflow", daemon=True).start()
    return future


def _quiet() -> None:
    """mlflow's and alembic's own chatter off the command's output."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"(mlflow|alembic|sqlalchemy)(\.|$)")


@contextmanager
def _ending(run: Run) -> Iterator[Run]:
    """End `run` with the block: FINISHED, or FAILED when the stage raises anything but a
    verdict (a failed or inconclusive gate is a finished run)."""
    status = "FINISHED"
    try:
        yield run
    except (GateFailed, CannotTell):
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        run._call("set_terminated", status)


@contextmanager
def start(root: Path, name: str, run_id: str | None = None) -> Iterator[Run]:
    """A run named `name` (the stage), or the existing run `run_id` reopened, for the time
    of the block; a Run that records nothing when tracking is off or fails."""
    uri = tracking_uri(root)
    pending = None
    if uri is not None and _off is None:
        if uri.startswith(("http://", "https://")):
            for key, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
        _quiet()
        pending = _background(lambda: _open(root, uri, name, run_id))
    with _ending(Run(pending, root)) as run:
        yield run


@contextmanager
def for_bundle(root: Path, name: str, pointer: str = "candidate") -> Iterator[Run]:
    """The run of the bundle `pointer` names, reopened; a new run `name` for a bundle that
    was trained untracked (it then records the bundle as `train` would)."""
    from . import bundle

    try:
        metadata = bundle.read_metadata(bundle.resolve(Paths(root).models, pointer))
    except bundle.BundleError:
        metadata = {}  # the stage itself says what is missing
    run_id = metadata.get("mlflow_run_id")
    with start(root, name, run_id) as run:
        if run_id is None and metadata:
            log_training(run, metadata)
        yield run


def flatten(values: Any, prefix: str) -> dict[str, Any]:
    """Nested config sections as dotted keys: {"model": {"name": x}} -> {"p.model.name": x}."""
    if isinstance(values, dict) and values:
        flat: dict[str, Any] = {}
        for key, value in values.items():
            flat |= flatten(value, f"{prefix}.{key}")
        return flat
    return {prefix: json.dumps(values) if isinstance(values, list | dict) else values}


def config_params(paths: Paths) -> dict[str, Any]:
    """Both config files, flattened: problem.* from problem.yaml, params.* from params.yaml."""
    flat: dict[str, Any] = {}
    for name, path in (("problem", paths.problem), ("params", paths.params)):
        if path.exists():
            flat |= flatten(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, name)
    return flat


def _sha256(path: Path) -> str:
    from .bundle import sha256_file

    return sha256_file(path) if path.exists() else "none"


def log_training(run: Run, metadata: dict) -> None:
    """What `train` records: both configs, the candidate's cross-validation scores, the
    bundle's version and digest, and the raw snapshot's manifest hash."""
    cv = metadata.get("cv") or {}
    scores = {f"cv_{cv['metric']}_{k}": cv[k] for k in ("mean", "std")} if cv else {}
    run.log(
        params=config_params(run.paths),
        metrics={**scores, "train_rows": metadata.get("train_rows")},
        tags={
            "bundle_version": metadata["version"],
            "bundle_content_sha256": metadata["content_sha256"],
            "data_manifest_sha256": _sha256(run.paths.raw / MANIFEST_FILE),
            "problem_type": metadata["problem_type"],
            "model": metadata["model"]["name"],
        },
    )
    for step, score in enumerate(cv.get("folds", [])):
        run.log(metrics={f"cv_{cv['metric']}_fold": score}, step=step)


def log_evaluation(run: Run, report: dict, reports_dir: Path) -> None:
    """What `evaluate` records: both models' test metrics, the gate's verdict, and the
    report with its figures as artifacts."""
    gate = report.get("gate") or {}
    metrics = {
        f"test_{model}_{name}": value
        for model in ("candidate", "baseline")
        for name, value in (report.get(model) or {}).items()
    }
    run.log(
        metrics={
            **metrics,
            "test_rows": report.get("test_rows"),
            "gate_passed": int(bool(gate.get("passed"))),
        },
        tags={"gate_verdict": gate.get("verdict"), "gate_reason": gate.get("reason")},
    )
    run.artifacts([reports_dir / "evaluation.md", reports_dir / "metrics.json"], "evaluation")
    run.artifacts(sorted((reports_dir / "figures").glob("*.png")), "evaluation/figures")
