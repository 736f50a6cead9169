"""Stage 5: control against treatment on the test period, bootstrap intervals, the gate.

Both models forecast `horizon` steps from every origin in the test period, each time from
the true history before it (rolling origins), as they would in service. The intervals
resample blocks of `horizon` consecutive origins: neighbouring origins share most of their
target steps, so resampling single forecasts would pretend to more evidence than there is.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import bundle, task
from .config import Params, ProblemConfig
from .data import write_json
from .errors import DataError, GateFailed
from .features import read_processed, series_frame
from .train import as_series

log = logging.getLogger(__name__)


def bootstrap_primary(
    y: np.ndarray,
    candidate: task.Predictions,
    baseline: task.Predictions,
    metric: str,
    params: Params,
) -> dict[str, list[float]]:
    """Percentile intervals for candidate, baseline and their paired difference.

    Each resample draws the same blocks of consecutive origins for both models."""
    compute = task.METRICS[metric].compute
    horizon = y.shape[1]
    blocks = [np.arange(start, min(start + horizon, len(y))) for start in range(0, len(y), horizon)]
    rng = np.random.default_rng(params.split.seed)
    draws = np.empty((params.evaluation.bootstrap_resamples, 3))
    for i in range(len(draws)):
        rows = np.concatenate([blocks[b] for b in rng.integers(len(blocks), size=len(blocks))])
        c = compute(y[rows], task.subset(candidate, rows))
        b = compute(y[rows], task.subset(baseline, rows))
        draws[i] = c, b, c - b
    tail = (1 - params.evaluation.confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail], axis=0)
    return {
        name: [float(low[i]), float(high[i])]
        for i, name in enumerate(("candidate", "baseline", "difference"))
    }


def rolling_forecasts(
    model_bundle: bundle.Bundle, history: pd.DataFrame, period: pd.DataFrame, spec
):
    """Both models' forecasts from every origin in `period`, with `history` before it.

    Returns (dates, series, first origin, candidate, baseline, actuals)."""
    frame = pd.concat([history, period], ignore_index=True)
    dates, series, positions = as_series(frame, spec)
    if not pd.date_range(dates[0], periods=len(dates), freq=spec.frequency).equals(dates):
        raise DataError(
            f"the period from {period[spec.timestamp].iloc[0]} does not continue the history "
            f"that ends {history[spec.timestamp].iloc[-1]} step by step"
        )
    window = max(model_bundle.model.window_, model_bundle.baseline.window_)
    first = max(len(history), window)
    origins = np.arange(first, len(series) - spec.horizon + 1)
    if len(origins) == 0:
        raise DataError(
            f"{len(period)} steps after {len(history)} of history: too short for one "
            f"{spec.horizon}-step forecast with {window} steps of history"
        )
    candidate, actuals = task.backtest(model_bundle.model, series, positions, origins, spec.horizon)
    baseline, _ = task.backtest(model_bundle.baseline, series, positions, origins, spec.horizon)
    scale = model_bundle.metadata["scale"]
    return (
        dates,
        series,
        first,
        task.Predictions(candidate, scale),
        task.Predictions(baseline, scale),
        actuals,
    )


def primary_score(model_bundle: bundle.Bundle, history, period, problem: ProblemConfig):
    """The primary metric of a bundle's rolling forecasts over `period`, or None if the
    bundle forecasts another series."""
    spec = problem.target
    if (
        model_bundle.metadata["target"] != spec.name
        or model_bundle.metadata["features"][0]["horizon"] < spec.horizon
    ):
        return None
    *_, candidate, _, actuals = rolling_forecasts(model_bundle, history, period, spec)
    return task.METRICS[problem.metric].compute(actuals, candidate)


def champion_scores(
    models_dir: Path,
    candidate_version: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    holdout: pd.DataFrame | None,
    problem: ProblemConfig,
) -> dict | None:
    """The serving model's primary metric on the same test period (and holdout), if
    another model serves."""
    version = bundle.read_pointer(models_dir, "current")
    if version is None or version == candidate_version:
        return None
    champion = bundle.load(models_dir / version)
    score = primary_score(champion, train, test, problem)
    if score is None:
        log.warning("the current model %s forecasts another series; not compared", version)
        return None
    result = {"version": version, "score": score}
    if holdout is not None:
        full = pd.concat([train, test], ignore_index=True)
        result["holdout_score"] = primary_score(champion, full, holdout, problem)
    return result


def _worse(score: float, other: float, sign: float) -> bool:
    return sign * (score - other) < 0 and not math.isclose(
        score, other, rel_tol=1e-9, abs_tol=1e-12
    )


def gate(report: dict, problem: ProblemConfig, params: Params) -> tuple[bool, str]:
    """Does the candidate beat the baseline and meet the success threshold?"""
    primary = report["primary"]
    name = primary["metric"]
    candidate, baseline = primary["candidate"], primary["baseline"]
    improvement = baseline - candidate  # every forecasting metric is an error: lower wins
    if improvement <= params.gate.min_improvement:
        return False, (
            f"candidate {name} {candidate:.4f} does not beat baseline {baseline:.4f} "
            f"by more than {params.gate.min_improvement:g}"
        )
    champion = report.get("champion")
    if champion and _worse(candidate, champion["score"], -1.0):
        return False, (
            f"candidate {name} {candidate:.4f} is worse than the serving model "
            f"{champion['version']} ({champion['score']:.4f})"
        )
    recent = report.get("holdout")
    comparable = champion and recent and champion.get("holdout_score") is not None
    if comparable and _worse(recent["candidate"], champion["holdout_score"], -1.0):
        return False, (
            f"on the recent holdout, candidate {name} {recent['candidate']:.4f} is worse "
            f"than the serving model {champion['version']} ({champion['holdout_score']:.4f})"
        )
    if params.gate.require_significant and not primary["ci"]["difference"][1] < 0:
        return False, (
            f"candidate {name} {candidate:.4f} vs baseline {baseline:.4f}: the "
            f"{params.evaluation.confidence:.0%} interval of the difference includes zero"
        )
    if candidate > problem.success_threshold:
        return False, (
            f"candidate {name} {candidate:.4f} is above the success threshold "
            f"{problem.success_threshold:g} in problem.yaml"
        )
    return (
        True,
        f"candidate {name} {candidate:.4f} beats baseline {baseline:.4f} and meets {problem.success_threshold:g}",
    )


def evaluate(
    model_bundle: bundle.Bundle,
    train: pd.DataFrame,
    test: pd.DataFrame,
    problem: ProblemConfig,
    params: Params,
):
    """Every metric for both models over rolling origins in the test period, plus intervals
    for the primary metric. Returns the report and what the figures need."""
    spec = problem.target
    dates, series, first, candidate, baseline, actuals = rolling_forecasts(
        model_bundle, train, test, spec
    )
    metric = problem.metric
    log.info(
        "%d forecasts of %d steps; bootstrapping %s over %d resamples",
        len(actuals),
        spec.horizon,
        metric,
        params.evaluation.bootstrap_resamples,
    )
    candidate_scores, baseline_scores = (
        task.score(actuals, candidate),
        task.score(actuals, baseline),
    )
    report = {
        "version": model_bundle.version,
        "test_rows": len(test),
        "origins": len(actuals),
        "horizon": spec.horizon,
        "candidate": candidate_scores,
        "baseline": baseline_scores,
        "primary": {
            "metric": metric,
            "greater_is_better": task.METRICS[metric].greater_is_better,
            "candidate": candidate_scores[metric],
            "baseline": baseline_scores[metric],
            "confidence": params.evaluation.confidence,
            "ci": bootstrap_primary(actuals, candidate, baseline, metric, params),
        },
        "cv": model_bundle.metadata["cv"],
    }
    figures = (
        dates,
        series,
        first,
        {"candidate": candidate.values, "baseline": baseline.values},
        actuals,
    )
    return report, figures


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
    ci = primary["ci"]
    level = f"{primary['confidence']:.0%}"
    lines = [
        f"# Evaluation of model {report['version']}",
        "",
        f"Test period: the last {report['test_rows']} steps of the series, never used for "
        f"training or selection. Both models forecast {report['horizon']} steps from each of "
        f"{report['origins']} origins in it, from the true history before each origin.",
        "",
        f"**Gate: {'PASSED' if report['gate']['passed'] else 'FAILED'}** — {report['gate']['reason']}.",
        "",
        "## Control (seasonal naive) against treatment (candidate)",
        "",
        table,
        "",
        "All four are errors: lower is better. MASE divides the MAE by the seasonal-naive "
        "forecast's mean absolute error on the training series; sMAPE is in percent.",
        "",
        f"## Primary metric: {primary['metric']} with {level} bootstrap intervals",
        "",
        f"- candidate: {primary['candidate']:.4f} [{ci['candidate'][0]:.4f}, {ci['candidate'][1]:.4f}]",
        f"- baseline: {primary['baseline']:.4f} [{ci['baseline'][0]:.4f}, {ci['baseline'][1]:.4f}]",
        f"- difference: {primary['candidate'] - primary['baseline']:.4f} "
        f"[{ci['difference'][0]:.4f}, {ci['difference'][1]:.4f}] (paired resamples of "
        f"blocks of {report['horizon']} consecutive origins)",
        f"- rolling-origin backtest on the training part: {report['cv']['mean']:.4f} ± {report['cv']['std']:.4f}",
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

    `holdout`: recent steps after the data (timestamp and value columns); the candidate must
    then also match the serving model on them."""
    model_bundle = bundle.load(bundle.resolve(models_dir, pointer))
    train, test, _ = read_processed(processed_dir)
    report, figure_data = evaluate(model_bundle, train, test, problem, params)
    recent = series_frame(holdout, problem.target) if holdout is not None else None
    if recent is not None:
        full = pd.concat([train, test], ignore_index=True)
        score = primary_score(model_bundle, full, recent, problem)
        if score is None:
            raise DataError("the holdout does not fit the model's series")
        report["holdout"] = {"rows": len(recent), "candidate": score}
    report["champion"] = champion_scores(
        models_dir, model_bundle.version, train, test, recent, problem
    )
    passed, reason = gate(report, problem, params)
    report["gate"] = {"passed": passed, "reason": reason}

    figures_dir = reports_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    figures = task.evaluation_figures(*figure_data, figures_dir)
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
