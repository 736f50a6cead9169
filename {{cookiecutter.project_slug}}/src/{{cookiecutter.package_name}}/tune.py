"""Hyperparameter search (`tune`): Optuna over the candidate's search space in params.yaml.

Each trial scores the candidate with the trial's params on the training set alone, as
`train` does (`PROBLEM_TYPE.score_candidate`: cross-validation, or a backtest for series);
the test set is never read. The study lives in optuna.db at the project root, so a second
`tune` adds trials to it. The best params are written to params.yaml `model.params`,
comments kept, where `train` reads them; every trial is an MLflow run nested in the tune run.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from . import tracking
from .config import Params, Paths, ProblemConfig, SearchRange
from .data import FEATURES_FILE, TRAIN_FILE
from .errors import ConfigError, DataError, ProjectError
from .problem_type import PROBLEM_TYPE

log = logging.getLogger(__name__)

STUDY_FILE = "optuna.db"
PROJECT = "{{ cookiecutter.project_slug }}"


def read_training(processed_dir: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """The training set and its input schema from data/processed; the test set stays unread."""
    paths = [processed_dir / TRAIN_FILE, processed_dir / FEATURES_FILE]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise DataError(f"{', '.join(missing)} missing: run `prepare` first")
    features = dict(json.loads(paths[1].read_text(encoding="utf-8"))["features"])
    return pd.read_parquet(paths[0]).reset_index(drop=True), features


def _suggest(trial, name: str, space: SearchRange) -> Any:
    if space.choices is not None:
        return trial.suggest_categorical(name, space.choices)
    if space.integer:
        return trial.suggest_int(name, space.low, space.high, log=space.log)
    return trial.suggest_float(name, space.low, space.high, log=space.log)


def with_model_params(params: Params, values: dict[str, Any]) -> Params:
    """`params` with `values` over model.params."""
    model = params.model.model_copy(update={"params": {**params.model.params, **values}})
    return params.model_copy(update={"model": model})


def checked_space(problem: ProblemConfig, params: Params) -> dict[str, SearchRange]:
    """params.yaml `tune.space`, each parameter one the candidate takes (a ConfigError
    names the one it does not)."""
    space = params.tune.space
    if not space:
        raise ConfigError(
            "params.yaml: tune.space: empty; give a range (low, high) or choices for some "
            f"params of the candidate {params.model.name!r}"
        )
    for name, dimension in space.items():
        example = dimension.choices[0] if dimension.choices is not None else dimension.low
        try:
            PROBLEM_TYPE.make_candidate(
                params.model.name, {name: example}, params.split.seed, problem.target
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"params.yaml: tune.space.{name}: not a parameter the candidate "
                f"{params.model.name!r} takes ({str(exc).splitlines()[0]})"
            ) from exc
    return space


def _study(paths: Paths, problem: ProblemConfig, params: Params):
    """The study of this candidate and metric in optuna.db, new or resumed. The sampler's
    seed is params.split.seed plus the trials so far, so a resumed study draws new points."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are logged here
    storage = f"sqlite:///{paths.root / STUDY_FILE}"
    name = f"{PROJECT}-{params.model.name}-{problem.metric}"
    greater = PROBLEM_TYPE.metrics[problem.metric].greater_is_better
    previous = next(
        (s.n_trials for s in optuna.get_all_study_summaries(storage) if s.study_name == name), 0
    )
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize" if greater else "minimize",
        sampler=optuna.samplers.TPESampler(seed=params.split.seed + previous),
        load_if_exists=True,
    )


def _objective(train, features, problem: ProblemConfig, params: Params, space, tracked):
    """A trial: the candidate with the trial's params, scored on the training set alone."""
    metric = problem.metric

    def objective(trial) -> float:
        values = {name: _suggest(trial, name, dimension) for name, dimension in space.items()}
        with tracked.child(f"trial {trial.number}") as child:
            child.log(params=values)
            try:
                cv = PROBLEM_TYPE.score_candidate(
                    train, features, problem, with_model_params(params, values)
                )
            except ValueError as exc:
                raise ConfigError(f"params.yaml: tune.space: trial {values}: {exc}") from exc
            if cv is None:
                raise ConfigError(
                    f"tune needs scores on the training set, and this {PROBLEM_TYPE.name} "
                    "project has none: name the label column (target.name in problem.yaml)"
                )
            child.log(metrics={f"cv_{metric}_mean": cv["mean"], f"cv_{metric}_std": cv["std"]})
        log.info("trial %d: %s -> %s %.4f", trial.number, values, metric, cv["mean"])
        return cv["mean"]

    return objective


def run(paths: Paths, problem: ProblemConfig, params: Params, trials: int, tracked) -> dict:
    """Add `trials` trials to the study, write its best params to params.yaml and return
    them. CannotTell (exit 3) when the training set is too small to score a trial."""
    space = checked_space(problem, params)
    try:
        study = _study(paths, problem, params)
    except ImportError as exc:
        raise ProjectError(f"tune needs optuna: install the experiments extra ({exc})") from exc
    train, features = read_training(paths.processed)
    current = {k: v for k, v in params.model.params.items() if k in space}
    if not study.trials and current:
        study.enqueue_trial(current)  # the params in use are the first trial: never worse
    tracked.log(
        params={**tracking.config_params(paths), "tune.trials": trials},
        tags={"study": study.study_name, "study_storage": STUDY_FILE},
    )
    study.optimize(_objective(train, features, problem, params, space, tracked), trials)
    best, metric = dict(study.best_params), problem.metric
    log.info(
        "best of %d trials: %s %.4f with %s", len(study.trials), metric, study.best_value, best
    )
    write_model_params(paths.params, best)
    tracked.log(
        params={f"best.{k}": v for k, v in best.items()},
        metrics={f"best_cv_{metric}": study.best_value, "study_trials": len(study.trials)},
    )
    return best


def write_model_params(path: Path, values: dict[str, Any]) -> None:
    """Set `values` in params.yaml `model.params`, keeping the file's comments and layout
    (a round trip with ruamel.yaml), and log what changed."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 4096  # never rewrap a line
    document = yaml.load(path.read_text(encoding="utf-8"))
    section = document["model"].setdefault("params", {})
    changed = {k: (section.get(k), v) for k, v in values.items() if section.get(k) != v}
    if not changed:
        log.info("%s model.params already holds the best params", path.name)
        return
    section.update(values)
    staging = path.with_name(f".{path.name}.tune")
    with staging.open("w", encoding="utf-8") as stream:
        yaml.dump(document, stream)
    os.replace(staging, path)
    for key, (old, new) in changed.items():
        log.info("%s model.params.%s: %s -> %s", path.name, key, old, new)
