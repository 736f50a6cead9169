"""Stage 5: control against treatment on the held-out test set, bootstrap intervals, the gate."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from . import bundle, task
from .config import Params, ProblemConfig
from .data import write_json
from .errors import DataError, GateFailed
from .features import read_processed

log = logging.getLogger(__name__)


def bootstrap_primary(
    y: np.ndarray, candidate, baseline, metric: str, params: Params
) -> dict[str, list[float]]:
    """Percentile intervals for candidate, baseline and their paired difference.

    Each resample draws the same test rows for both models, so the difference is paired.
    """
    compute = task.METRICS[metric].compute

    def statistic(rows: np.ndarray) -> np.ndarray:
        rows = rows.astype(int)
        c = compute(y[rows], task.subset(candidate, rows))
        b = compute(y[rows], task.subset(baseline, rows))
        return np.array([c, b, c - b])

    result = bootstrap(
        (np.arange(len(y)),),
        statistic,
        vectorized=False,
        n_resamples=params.evaluation.bootstrap_resamples,
        confidence_level=params.evaluation.confidence,
        method="percentile",
        random_state=params.split.seed,
    )
    low, high = result.confidence_interval
    return {
        name: [float(low[i]), float(high[i])]
        for i, name in enumerate(("candidate", "baseline", "difference"))
    }


def primary_score(model_bundle: bundle.Bundle, frame: pd.DataFrame, problem: ProblemConfig):
    """The primary metric of a bundle on labelled rows, or None if the columns do not fit."""
    names = [f["name"] for f in model_bundle.metadata["features"]]
    if not {*names, problem.target.name} <= set(frame.columns):
        return None
    frame = frame[frame[problem.target.name].notna()]
    predictions = task.predict(model_bundle.model, frame[names])
    return task.METRICS[problem.metric].compute(frame[problem.target.name].to_numpy(), predictions)


def champion_scores(
    models_dir: Path,
    candidate_version: str,
    test: pd.DataFrame,
    holdout: pd.DataFrame | None,
    problem: ProblemConfig,
) -> dict | None:
    """The serving model's primary metric on the same test set (and holdout), if another
    model serves."""
    version = bundle.read_pointer(models_dir, "current")
    if version is None or version == candidate_version:
        return None
    champion = bundle.load(models_dir / version)
    score = primary_score(champion, test, problem)
    if score is None:
        log.warning("the current model %s expects other features; not compared", version)
        return None
    result = {"version": version, "score": score}
    if holdout is not None:
        result["holdout_score"] = primary_score(champion, holdout, problem)
    return result


def _worse(score: float, other: float, sign: float) -> bool:
    # Equal models can differ in the last bits: a parallel forest sums its trees in any order.
    return sign * (score - other) < 0 and not math.isclose(
        score, other, rel_tol=1e-9, abs_tol=1e-12
    )


def gate(report: dict, problem: ProblemConfig, params: Params) -> tuple[bool, str]:
    """Does the candidate beat the baseline and meet the success threshold?"""
    primary = report["primary"]
    name, better = primary["metric"], primary["greater_is_better"]
    candidate, baseline = primary["candidate"], primary["baseline"]
    if candidate is None:
        return False, (
            f"no labels: {name} cannot be measured without a target column; review the "
            "flagged test rows, then promote by hand with `models promote --force`"
        )
    sign = 1.0 if better else -1.0
    improvement = sign * (candidate - baseline)
    low, high = primary["ci"]["difference"]
    lower_bound = low if better else -high
    if improvement <= params.gate.min_improvement:
        return False, (
            f"candidate {name} {candidate:.4f} does not beat baseline {baseline:.4f} "
            f"by more than {params.gate.min_improvement:g}"
        )
    champion = report.get("champion")
    if champion and _worse(candidate, champion["score"], sign):
        return False, (
            f"candidate {name} {candidate:.4f} is worse than the serving model "
            f"{champion['version']} ({champion['score']:.4f})"
        )
    recent = report.get("holdout")
    comparable = champion and recent and champion.get("holdout_score") is not None
    if comparable and _worse(recent["candidate"], champion["holdout_score"], sign):
        return False, (
            f"on the recent holdout, candidate {name} {recent['candidate']:.4f} is worse "
            f"than the serving model {champion['version']} ({champion['holdout_score']:.4f})"
        )
    if params.gate.require_significant and not lower_bound > 0:
        return False, (
            f"candidate {name} {candidate:.4f} vs baseline {baseline:.4f}: the "
            f"{params.evaluation.confidence:.0%} interval of the difference includes zero"
        )
    meets = (
        candidate >= problem.success_threshold if better else candidate <= problem.success_threshold
    )
    if not meets:
        relation = "below" if better else "above"
        return False, (
            f"candidate {name} {candidate:.4f} is {relation} the success threshold "
            f"{problem.success_threshold:g} in problem.yaml"
        )
    return (
        True,
        f"candidate {name} {candidate:.4f} beats baseline {baseline:.4f} and meets {problem.success_threshold:g}",
    )


def evaluate(
    model_bundle: bundle.Bundle, test: pd.DataFrame, problem: ProblemConfig, params: Params
) -> tuple[dict, task.Predictions]:
    """Every metric for both models on the test set, plus intervals for the primary metric.

    Without a target, task.score describes the predictions instead and nothing is compared.
    Returns the report and the candidate's test-set predictions (for the figures)."""
    features = [f["name"] for f in model_bundle.metadata["features"]]
    target = problem.target.name
    X, y = test[features], None if target is None else test[target].to_numpy()
    candidate = task.predict(model_bundle.model, X)
    baseline = task.predict(model_bundle.baseline, X)
    metric = problem.metric
    candidate_scores, baseline_scores = task.score(y, candidate), task.score(y, baseline)
    ci = None
    if y is not None:
        log.info(
            "bootstrapping %s over %d resamples", metric, params.evaluation.bootstrap_resamples
        )
        ci = bootstrap_primary(y, candidate, baseline, metric, params)
    report = {
        "version": model_bundle.version,
        "test_rows": len(test),
        "candidate": candidate_scores,
        "baseline": baseline_scores,
        "primary": {
            "metric": metric,
            "greater_is_better": task.METRICS[metric].greater_is_better,
            "candidate": candidate_scores.get(metric),
            "baseline": baseline_scores.get(metric),
            "confidence": params.evaluation.confidence,
            "ci": ci,
        },
        "cv": model_bundle.metadata["cv"],
    }
    return report, candidate


def _markdown(report: dict, figures: list[Path], reports_dir: Path) -> str:
    primary = report["primary"]
    rows = [
        {
            "metric": name,
            "baseline": report["baseline"][name],
            "candidate": report["candidate"][name],
        }
        for name in report["candidate"]
    ]
    table = pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f")
    ci, cv = primary["ci"], report["cv"]
    level = f"{primary['confidence']:.0%}"
    intervals = ["- not measurable: the test set has no labels"]
    if ci:
        intervals = [
            f"- candidate: {primary['candidate']:.4f} [{ci['candidate'][0]:.4f}, {ci['candidate'][1]:.4f}]",
            f"- baseline: {primary['baseline']:.4f} [{ci['baseline'][0]:.4f}, {ci['baseline'][1]:.4f}]",
            f"- difference: {primary['candidate'] - primary['baseline']:.4f} "
            f"[{ci['difference'][0]:.4f}, {ci['difference'][1]:.4f}] (paired resamples)",
            f"- cross-validation on the training set: {cv['mean']:.4f} ± {cv['std']:.4f}",
        ]
    lines = [
        f"# Evaluation of model {report['version']}",
        "",
        f"Held-out test set: {report['test_rows']} rows, never used for training or selection.",
        "",
        f"**Gate: {'PASSED' if report['gate']['passed'] else 'FAILED'}** — {report['gate']['reason']}.",
        "",
        "## Control (baseline) against treatment (candidate)",
        "",
        table,
        "",
        f"## Primary metric: {primary['metric']} with {level} bootstrap intervals",
        "",
        *intervals,
        "",
        "## Figures",
        "",
        *[f"![{p.stem}]({p.relative_to(reports_dir).as_posix()})" for p in figures],
        "",
    ]
    return "\n".join(lines)


def run(
    processed_dir: Path,
    models_dir: Path,
    reports_dir: Path,
    problem: ProblemConfig,
    params: Params,
    pointer: str = "candidate",
    holdout: pd.DataFrame | None = None,
) -> dict:
    """Evaluate the bundle `pointer` names, write the reports, and promote it if it passes.

    `holdout`: recent labelled rows; the candidate must then also match the serving model
    on them."""
    model_bundle = bundle.load(bundle.resolve(models_dir, pointer))
    _, test, _ = read_processed(processed_dir)
    report, candidate = evaluate(model_bundle, test, problem, params)
    if holdout is not None:
        score = primary_score(model_bundle, holdout, problem)
        if score is None:
            raise DataError("the holdout lacks the model's features or the target column")
        report["holdout"] = {"rows": len(holdout), "candidate": score}
    report["champion"] = champion_scores(models_dir, model_bundle.version, test, holdout, problem)
    passed, reason = gate(report, problem, params)
    report["gate"] = {"passed": passed, "reason": reason}

    figures_dir = reports_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    y = None if problem.target.name is None else test[problem.target.name].to_numpy()
    figures = task.evaluation_figures(y, candidate, figures_dir)
    write_json(reports_dir / "metrics.json", report)
    write_json(model_bundle.path / "evaluation.json", report)  # beside the bundle, for the service
    (reports_dir / "evaluation.md").write_text(
        _markdown(report, figures, reports_dir), encoding="utf-8"
    )
    log.info("wrote %s and %s", reports_dir / "metrics.json", reports_dir / "evaluation.md")

    primary = report["primary"]
    details = {
        "metric": primary["metric"],
        "candidate": primary["candidate"],
        "baseline": primary["baseline"],
    }
    if not passed:
        bundle.log_event(models_dir, "rejected", model_bundle.version, reason=reason, **details)
        raise GateFailed(f"evaluation gate failed: {reason}")
    bundle.set_pointer(models_dir, "current", model_bundle.version)
    bundle.log_event(models_dir, "promoted", model_bundle.version, reason=reason, **details)
    log.info("gate passed: %s; models/current -> %s", reason, model_bundle.version)
    return report
