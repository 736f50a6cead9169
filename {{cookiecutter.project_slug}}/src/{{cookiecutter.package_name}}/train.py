"""Stage 4: train the control (baseline) and the treatment (candidate) and write a bundle."""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import StratifiedGroupKFold

from . import bundle, drift
from .config import FeatureKind, Params, ProblemConfig
from .data import sha256_file
from .errors import CannotTell, ConfigError
from .features import TRAIN_FILE, model_pipeline, parse_dates, read_processed
from .problem_type import PROBLEM_TYPE

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: object
    baseline: object
    cv: dict | None


def cv_groups(X: pd.DataFrame, y: pd.Series) -> np.ndarray:
    """One group per distinct (features, target) row: identical rows share a fold."""
    rows = pd.concat([X, y], axis=1).astype(str)
    return pd.util.hash_pandas_object(rows, index=False).to_numpy()


def _enough_for_folds(splitter, y: pd.Series, groups: np.ndarray, folds: int) -> None:
    """Too few distinct training rows (of some class, for a stratified splitter) to fill
    every fold: the scores could not be trusted, so cross-validation cannot tell (exit 3).
    Copies of a repeated row count once, since they share a fold."""
    distinct = pd.Series(y.to_numpy(), index=groups)
    distinct = distinct[~distinct.index.duplicated()]
    if isinstance(splitter, StratifiedGroupKFold):
        counts = distinct.value_counts()
        short = f"distinct rows of every class; class {counts.idxmin()!r} has {counts.min()}"
        enough = counts.min() >= folds
    else:
        short = f"distinct rows; the training set has {len(distinct)}"
        enough = len(distinct) >= folds
    if not enough:
        raise CannotTell(
            f"cross-validation in {folds} folds needs {folds} training {short}: use fewer "
            "cv.folds (at least 2) or more data"
        )


def cross_validate(pipeline, X: pd.DataFrame, y: pd.Series, metric: str, params: Params) -> dict:
    """Score the primary metric fold by fold on the training set only, with every copy of a
    repeated row in the same fold, so no fold is scored on rows it was fitted on."""
    spec = PROBLEM_TYPE.metrics[metric]
    scorer = get_scorer(spec.scorer)
    sign = -1.0 if spec.scorer.startswith("neg_") else 1.0
    splitter = PROBLEM_TYPE.cv_splitter(params.cv.folds, params.split.seed)
    groups = cv_groups(X, y)
    _enough_for_folds(splitter, y, groups, params.cv.folds)
    scores = []
    folds = splitter.split(X, y, groups=groups)
    for fold, (fit_idx, val_idx) in enumerate(folds, start=1):
        fitted = clone(pipeline).fit(X.iloc[fit_idx], y.iloc[fit_idx])
        scores.append(sign * float(scorer(fitted, X.iloc[val_idx], y.iloc[val_idx])))
        log.info("cv fold %d/%d: %s = %.4f", fold, params.cv.folds, metric, scores[-1])
    return {
        "metric": metric,
        "folds": scores,
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
    }


def fit(
    train: pd.DataFrame, features: dict[str, FeatureKind], problem: ProblemConfig, params: Params
) -> TrainResult:
    """Cross-validate the candidate, then fit it and the baseline on the whole training set.

    Without a target (unlabelled anomaly data) there is nothing to cross-validate against."""
    target = problem.target.name
    X, y = train[list(features)], None if target is None else train[target]
    try:
        estimator = PROBLEM_TYPE.make_candidate(
            params.model.name, params.model.params, params.split.seed, problem.target
        )
    except ValueError as exc:
        raise ConfigError(f"params.yaml model.params: {exc}") from exc
    candidate = model_pipeline(features, params.preprocessing, estimator)
    cv = None
    if y is None:
        log.info("no target column: cross-validation skipped")
    else:
        cv = cross_validate(candidate, X, y, problem.metric, params)
        log.info("cv %s: %.4f ± %.4f", problem.metric, cv["mean"], cv["std"])
    candidate.fit(X, y)
    baseline = PROBLEM_TYPE.make_baseline(
        params.baseline.strategy, params.split.seed, problem.target
    )
    baseline.fit(X, y)
    return TrainResult(model=candidate, baseline=baseline, cv=cv)


def feature_schema(X: pd.DataFrame, features: dict[str, FeatureKind]) -> list[dict]:
    """Names, kinds, dtypes, categories and observed ranges: the contract the API serves."""
    schema = []
    for name, kind in features.items():
        column = X[name]
        entry = {"name": name, "kind": kind, "dtype": str(column.dtype)}
        if kind == "numeric":
            entry.update(min=float(column.min()), max=float(column.max()))
        elif kind == "categorical":
            entry["categories"] = sorted(map(str, column.dropna().unique()))
        elif kind == "text":
            chars = column.dropna().str.len()
            entry.update(max_chars=int(chars.max()), median_chars=int(chars.median()))
        else:
            dates = parse_dates(column)
            entry.update(min=str(dates.min().date()), max=str(dates.max().date()))
        schema.append(entry)
    return schema


def export_onnx(pipeline) -> bytes | None:
    """The fitted estimator (after preprocessing) as ONNX for fast serving, if it converts."""
    from skl2onnx import to_onnx

    estimator = pipeline[-1]
    sample = np.zeros((1, estimator.n_features_in_), dtype=np.float32)
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    try:
        return to_onnx(estimator, sample, options=options).SerializeToString()
    except Exception as exc:  # skl2onnx signals unsupported models with many error types
        name = type(estimator).__name__
        log.warning("%s does not convert to ONNX (%s); serving uses scikit-learn", name, exc)
        return None


def _versions() -> dict[str, str]:
    packages = ("scikit-learn", "pandas", "numpy", "skops")
    return {"python": platform.python_version(), **{name: version(name) for name in packages}}


def run(processed_dir: Path, models_dir: Path, problem: ProblemConfig, params: Params) -> str:
    """Train on data/processed, save a bundle, and point `models/candidate` at it."""
    train, _, features = read_processed(processed_dir)
    log.info("training %s on %d rows, %d features", params.model.name, len(train), len(features))
    result = fit(train, features, problem, params)
    X = train[list(features)]
    metadata = {
        "problem_type": PROBLEM_TYPE.name,
        "target": problem.target.name,
        "features": feature_schema(X, features),
        "model": params.model.model_dump(),
        "baseline": params.baseline.model_dump(),
        "params": params.model_dump(mode="json"),
        "train_rows": len(train),
        "train_data_sha256": sha256_file(processed_dir / TRAIN_FILE),
        "cv": result.cv,
        "library_versions": _versions(),
    }
    outputs = PROBLEM_TYPE.prediction_reference(PROBLEM_TYPE.predict(result.model, X))
    reference = drift.reference_statistics(X, features, outputs)
    if "text" in features.values():
        # TF-IDF has no compiled fast path: the service runs the scikit-learn pipeline.
        log.info("text features: the service will predict with the scikit-learn pipeline")
        onnx = None
    else:
        onnx = export_onnx(result.model)
    version = bundle.save(models_dir, result.model, result.baseline, metadata, reference, onnx)
    bundle.set_pointer(models_dir, "candidate", version)
    bundle.log_event(models_dir, "trained", version, cv=result.cv)
    log.info("saved bundle %s", models_dir / version)
    return version
