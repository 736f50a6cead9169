"""Experiment tracking with MLflow: what `train`, `evaluate`, `retrain` and `tune` record.

One MLflow run per bundle: `train` opens it and the bundle records its id
(`mlflow_run_id`); `evaluate` adds the test metrics, the gate's verdict and the report to
the same run. `tune` opens a run with one nested run per trial.

Runs go to `MLFLOW_TRACKING_URI`, by default the SQLite file mlflow.db at the project root
with artifacts in mlruns/; `MLFLOW_TRACKING_URI=` (set and empty) turns tracking off. The
model registry in models/ stays the source of truth for serving: MLflow is the lab notebook.

Tracking never fails a stage and barely slows it. A worker process (`python -m` this
module) imports mlflow and opens the run on the other core while the stage works, since
that takes seconds of CPU; the stage sends it what to log, in order. The first failure (not
installed, server unreachable, database locked) is logged once as a warning and the stage
goes on untracked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import CannotTell, GateFailed

if TYPE_CHECKING:
    from .config import Paths

log = logging.getLogger(__name__)

EXPERIMENT = "{{ cookiecutter.project_slug }}"
DATABASE = "mlflow.db"
ARTIFACTS = "mlruns"
MAX_PARAM_CHARS = 6000  # MLflow refuses longer param values
# A server that does not answer would block each call for minutes with MLflow's defaults.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
TOP = "run"  # the worker's name for the stage's own run; nested runs go by their names

_off: str | None = None  # why tracking stopped in this process, once it has


def tracking_uri(root: Path) -> str | None:
    """Where runs go: MLFLOW_TRACKING_URI, else the project's mlflow.db; None when off."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None:
        return f"sqlite:///{root.resolve() / DATABASE}"
    return uri or None


def _stop(cause: str) -> None:
    global _off
    if _off is None:
        _off = cause or "the MLflow worker failed"
        log.warning("experiment tracking is off for this run: %s", _off)


class _Worker:
    """The process that talks to MLflow for one stage: `python -m` this module."""

    def __init__(self, root: Path, uri: str, name: str, run_id: str | None) -> None:
        package = Path(__file__).resolve().parent
        paths = [str(package.parent), os.environ.get("PYTHONPATH", "")]
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"{package.name}.tracking", str(root), uri, name, run_id or ""],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # mlflow's own chatter
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))},
        )
        self._answered = False
        self._run_id: str | None = None

    def run_id(self) -> str | None:
        """The run's id, once the worker has opened it (waits for it); None if it failed."""
        if not self._answered:
            self._answered = True
            message = _message(self.process.stdout.readline())
            if "error" in message:
                _stop(message["error"])
            self._run_id = message.get("run_id")
        return self._run_id if _off is None else None

    def send(self, **request: Any) -> None:
        if self.run_id() is None:
            return
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except OSError as exc:
            _stop(str(exc))

    def close(self) -> None:
        """Wait until the worker has logged everything, and report its failure if any."""
        self.run_id()
        with suppress(OSError):
            self.process.stdin.close()
        for line in self.process.stdout:
            _stop(_message(line).get("error", ""))
        self.process.wait()


def _message(line: str) -> dict:
    """A line the worker answered: {"run_id": ...} or {"error": ...}."""
    try:
        return json.loads(line)
    except ValueError:
        return {"error": line.strip() or "the MLflow worker ended"}


class Run:
    """An MLflow run, or nothing when tracking is off: every method is then a no-op, and
    any failure turns tracking off (one warning) instead of failing the stage."""

    def __init__(self, worker: _Worker | None = None, key: str = TOP, root: Path = Path()):
        self._worker = worker
        self._key = key
        self.root = root

    @property
    def id(self) -> str | None:
        """The stage's run id (waits for the worker to open it); None when untracked."""
        return None if self._worker is None or _off is not None else self._worker.run_id()

    def _send(self, op: str, **request: Any) -> None:
        if self.id is not None:
            self._worker.send(op=op, run=self._key, **request)

    def log(
        self,
        params: dict | None = None,
        metrics: dict | None = None,
        tags: dict | None = None,
        step: int = 0,
    ) -> None:
        """Params, metrics and tags in one request; metrics that are not finite numbers
        (undefined, NaN) are left out."""
        self._send(
            "batch",
            metrics={k: float(v) for k, v in (metrics or {}).items() if _finite(v)},
            params={k: str(v)[:MAX_PARAM_CHARS] for k, v in (params or {}).items()},
            tags={k: str(v) for k, v in (tags or {}).items()},
            step=step,
        )

    def artifacts(self, paths: list[Path], folder: str) -> None:
        for path in paths:
            if path.is_file():
                self._send("artifact", path=str(path.resolve()), folder=folder)

    @contextmanager
    def child(self, name: str) -> Iterator[Run]:
        """A run nested in this one (a tuning trial), or nothing when tracking is off."""
        self._send("child", name=name)
        with _ending(Run(self._worker if self.id else None, name, self.root)) as run:
            yield run


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
        run._send("end", status=status)


@contextmanager
def start(root: Path, name: str, run_id: str | None = None) -> Iterator[Run]:
    """A run named `name` (the stage), or the existing run `run_id` reopened, for the time
    of the block; a Run that records nothing when tracking is off or fails."""
    uri = tracking_uri(root)
    worker = None
    if uri is not None and _off is None:
        if uri.startswith(("http://", "https://")):
            for key, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
        worker = _Worker(root, uri, name, run_id)
    try:
        with _ending(Run(worker, TOP, root)) as run:
            yield run
    finally:
        if worker is not None:
            worker.close()


@contextmanager
def for_bundle(root: Path, name: str, pointer: str = "candidate") -> Iterator[Run]:
    """The run of the bundle `pointer` names, reopened; a new run `name` for a bundle that
    was trained untracked (it then records the bundle as `train` would)."""
    from . import bundle
    from .config import Paths

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
    from .config import Paths
    from .data import MANIFEST_FILE

    paths = Paths(run.root)
    run.log(
        params=config_params(paths),
        metrics={**scores, "train_rows": metadata.get("train_rows")},
        tags={
            "bundle_version": metadata["version"],
            "bundle_content_sha256": metadata["content_sha256"],
            "data_manifest_sha256": _sha256(paths.raw / MANIFEST_FILE),
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


# --- the worker: `python -m` this module, started by `start` ------------------------------


def _open(root: Path, uri: str, name: str, run_id: str | None) -> tuple:
    """mlflow's client on `uri`, this project's experiment, and a new run `name` (or the
    run `run_id` again)."""
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


def _apply(client, experiment_id: str, runs: dict[str, str], request: dict) -> None:
    """One request of the stage: a batch to log, an artifact, a nested run, an ending."""
    from mlflow.entities import Metric, Param, RunTag

    run_id, op = runs.get(request["run"]), request["op"]
    if op == "child":
        tags = {"mlflow.parentRunId": runs[TOP]}
        child = client.create_run(experiment_id, run_name=request["name"], tags=tags)
        runs[request["name"]] = child.info.run_id
    elif op == "batch":
        now, step = int(time.time() * 1000), request["step"]
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, step) for k, v in request["metrics"].items()],
            params=[Param(k, v) for k, v in request["params"].items()],
            tags=[RunTag(k, v) for k, v in request["tags"].items()],
        )
    elif op == "artifact":
        client.log_artifact(run_id, request["path"], request["folder"])
    elif op == "end":
        client.set_terminated(run_id, request["status"])


def _serve(root: str, uri: str, name: str, run_id: str) -> None:
    """Open the run, answer its id (or the error) on stdout, then log each request read
    from stdin until it closes; the first error is answered and ends the logging."""
    import warnings

    warnings.simplefilter("ignore")
    out, sys.stdout = sys.stdout, sys.stderr  # stdout is for answers alone

    def answer(**message: str) -> None:
        print(json.dumps(message), file=out, flush=True)

    try:
        client, experiment_id, run_id = _open(Path(root), uri, name, run_id or None)
    except Exception as exc:  # not installed, unreachable, locked: the stage goes on
        answer(error=(str(exc).splitlines() or [type(exc).__name__])[0])
        return
    answer(run_id=run_id)
    runs = {TOP: run_id}
    for line in sys.stdin:
        try:
            _apply(client, experiment_id, runs, json.loads(line))
        except Exception as exc:  # reported once by the stage, which goes on
            answer(error=(str(exc).splitlines() or [type(exc).__name__])[0])
            return


if __name__ == "__main__":
    _serve(*sys.argv[1:5])
