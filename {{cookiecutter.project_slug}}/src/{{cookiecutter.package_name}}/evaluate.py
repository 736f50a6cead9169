"""Stage 5: control against treatment on the held-out test set, bootstrap intervals, the gate.

The gate has three verdicts, each with its own exit code: passed (0), failed (1,
`GateFailed`) and inconclusive (3, `CannotTell`) when the test set is too small to judge.
What the problem type does its own way (how both models predict the test set, how many
consecutive test units the bootstrap resamples together, what makes a test set too small)
comes from `task`; the gate, the bootstrap and the report are the same for every type.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from . import bundle, registry, tracking
from .config import Params, ProblemConfig
from .data import read_processed
from .errors import CannotTell, DataError, GateFailed
from .problem_type import PROBLEM_TYPE

log = logging.getLogger(__name__)

PASSED, FAILED, INCONCLUSIVE = "passed", "failed", "inconclusive"


def bootstrap_primary(
    y: np.ndarray, candidate, baseline, metric: str, params: Params, block: int = 1
) -> dict[str, list[float]] | None:
    """Percentile intervals for candidate, baseline and their paired difference.

    Each resample draws the same test units for both models, so the difference is paired.
    With `block` > 1 it draws blocks of that many consecutive units (forecast origins that
    share most of their target steps), so neighbours do not pretend to be more evidence
    than they are. None with fewer than two blocks: nothing to resample."""
    compute = PROBLEM_TYPE.metrics[metric].compute
    starts = np.arange(0, len(y), block)
    if len(starts) < 2:
        return None

    def statistic(drawn: np.ndarray) -> np.ndarray:
        rows = (starts[drawn.astype(int)][:, None] + np.arange(block)).ravel()
        rows = rows[rows < len(y)]  # the last block may be shorter
        c = compute(y[rows], PROBLEM_TYPE.subset(candidate, rows))
        b = compute(y[rows], PROBLEM_TYPE.subset(baseline, rows))
        return np.array([c, b, c - b])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate sample is judged by the gate, not warned
        result = bootstrap(
            (np.arange(len(starts)),),
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


def primary_score(
    model_bundle: bundle.Bundle, history: pd.DataFrame, period: pd.DataFrame, problem
) -> float | None:
    """The primary metric of a bundle on the labelled `period` (with `history` before it),
    or None if the bundle does not fit the data (other features, another series)."""
    held_out = PROBLEM_TYPE.held_out(model_bundle, history, period, problem.target)
    if held_out is None:
        return None
    y, candidate, _ = held_out
    return PROBLEM_TYPE.measure(problem.metric, y, candidate)


def champion_scores(
    models_dir: Path,
    candidate_version: str,
    train: pd.DataFrame,
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
    score = primary_score(champion, train, test, problem)
    if score is None:
        log.warning("the current model %s does not fit this data; not compared", version)
        return None
    result = {"version": version, "score": score}
    if holdout is not None:
        full = pd.concat([train, test], ignore_index=True)
        result["holdout_score"] = primary_score(champion, full, holdout, problem)
    return result


def _worse(score: float, other: float, sign: float) -> bool:
    # Equal models can differ in the last bits: a parallel forest sums its trees in any order.
    return sign * (score - other) < 0 and not math.isclose(
        score, other, rel_tol=1e-9, abs_tol=1e-12
    )


def _degenerate(interval: list[float] | None) -> bool:
    """No interval, a NaN bound or zero width: the resamples cannot tell models apart."""
    return (
        interval is None
        or not all(math.isfinite(bound) for bound in interval)
        or math.isclose(interval[0], interval[1], rel_tol=1e-12, abs_tol=1e-12)
    )


def _cannot_judge(report: dict, params: Params) -> str | None:
    """Why the test set cannot support a verdict, or None if it can."""
    primary = report["primary"]
    name = primary["metric"]
    if report.get("no_verdict"):
        return report["no_verdict"]
    if primary["candidate"] is None or primary["baseline"] is None:
        why = report.get("undefined", {}).get(name, "no value on this test set")
        return f"{name} is undefined: {why}; add data or a larger split.test_size"
    interval = (primary.get("ci") or {}).get("difference")
    if params.gate.require_significant and _degenerate(interval):
        return (
            f"the {params.evaluation.confidence:.0%} interval of the {name} difference is "
            "degenerate (zero width): too few test units to judge; add data or a larger "
            "split.test_size"
        )
    return None


def _failure(report: dict, problem: ProblemConfig, params: Params) -> str | None:
    """Why the candidate fails the gate, or None if it passes."""
    primary = report["primary"]
    name, better = primary["metric"], primary["greater_is_better"]
    candidate, baseline = primary["candidate"], primary["baseline"]
    sign = 1.0 if better else -1.0
    if sign * (candidate - baseline) <= params.gate.min_improvement:
        return (
            f"candidate {name} {candidate:.4f} does not beat baseline {baseline:.4f} "
            f"by more than {params.gate.min_improvement:g}"
        )
    champion = report.get("champion")
    if champion and _worse(candidate, champion["score"], sign):
        return (
            f"candidate {name} {candidate:.4f} is worse than the serving model "
            f"{champion['version']} ({champion['score']:.4f})"
        )
    recent = report.get("holdout")
    comparable = champion and recent and champion.get("holdout_score") is not None
    if comparable and _worse(recent["candidate"], champion["holdout_score"], sign):
        return (
            f"on the recent holdout, candidate {name} {recent['candidate']:.4f} is worse "
            f"than the serving model {champion['version']} ({champion['holdout_score']:.4f})"
        )
    low, high = primary["ci"]["difference"] if primary.get("ci") else (math.nan, math.nan)
    if params.gate.require_significant and not (low if better else -high) > 0:
        return (
            f"candidate {name} {candidate:.4f} vs baseline {baseline:.4f}: the "
            f"{params.evaluation.confidence:.0%} interval of the difference includes zero"
        )
    meets = sign * (candidate - problem.success_threshold) >= 0
    if not meets:
        return (
            f"candidate {name} {candidate:.4f} is {'below' if better else 'above'} the "
            f"success threshold {problem.success_threshold:g} in problem.yaml"
        )
    return None


def gate(report: dict, problem: ProblemConfig, params: Params) -> tuple[str, str]:
    """The verdict, passed, failed or inconclusive, and its reason in one line.

    Inconclusive comes first: on a test set too small to judge, neither a pass nor a
    failure would mean anything."""
    unknown = _cannot_judge(report, params)
    if unknown:
        return INCONCLUSIVE, unknown
    failure = _failure(report, problem, params)
    if failure:
        return FAILED, failure
    primary = report["primary"]
    return PASSED, (
        f"candidate {primary['metric']} {primary['candidate']:.4f} beats baseline "
        f"{primary['baseline']:.4f} and meets {problem.success_threshold:g}"
    )


def _scores(y, predictions) -> dict[str, float | None]:
    """Every metric; one undefined for this sample is None (its reason is in `undefined`)."""
    undefined = PROBLEM_TYPE.undefined(y, predictions)
    return {
        name: None if name in undefined else value
        for name, value in PROBLEM_TYPE.score(y, predictions).items()
    }


def evaluate(
    model_bundle: bundle.Bundle,
    train: pd.DataFrame,
    test: pd.DataFrame,
    problem: ProblemConfig,
    params: Params,
) -> tuple[dict, tuple]:
    """Every metric for both models on the test set, plus intervals for the primary metric.

    Returns the report and (truth, candidate, baseline) for the figures."""
    held_out = PROBLEM_TYPE.held_out(model_bundle, train, test, problem.target)
    if held_out is None:
        raise DataError("the test set does not fit the model: run `prepare` and `train` again")
    y, candidate, baseline = held_out
    metric = problem.metric
    candidate_scores, baseline_scores = _scores(y, candidate), _scores(y, baseline)
    report = {
        "version": model_bundle.version,
        "train_rows": len(train),
        "test_rows": len(test),
        **PROBLEM_TYPE.test_facts(problem.target, y),
        "no_verdict": PROBLEM_TYPE.no_verdict(y, problem.target, params.gate, metric),
        "undefined": PROBLEM_TYPE.undefined(y, candidate),
        "candidate": candidate_scores,
        "baseline": baseline_scores,
        "tables": {
            title: json.loads(table.to_json(orient="records"))
            for title, table in PROBLEM_TYPE.evaluation_tables(y, candidate, baseline).items()
        },
        "primary": {
            "metric": metric,
            "greater_is_better": PROBLEM_TYPE.metrics[metric].greater_is_better,
            "candidate": candidate_scores.get(metric),
            "baseline": baseline_scores.get(metric),
            "confidence": params.evaluation.confidence,
            "block": PROBLEM_TYPE.resampling_block(problem.target),
            "ci": None,
        },
        "cv": model_bundle.metadata["cv"],
    }
    primary = report["primary"]
    measured = None not in (primary["candidate"], primary["baseline"])
    if measured and not report["no_verdict"]:
        log.info(
            "bootstrapping %s over %d resamples", metric, params.evaluation.bootstrap_resamples
        )
        primary["ci"] = bootstrap_primary(
            y, candidate, baseline, metric, params, block=primary["block"]
        )
    return report, (y, candidate, baseline)


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _intervals(report: dict) -> list[str]:
    primary, cv = report["primary"], report["cv"]
    ci = primary["ci"]
    if not ci:
        return [f"- not measured: {report['gate']['reason']}"]
    blocks = f", blocks of {primary['block']}" if primary["block"] > 1 else ""
    candidate, baseline = primary["candidate"], primary["baseline"]
    return [
        f"- candidate: {candidate:.4f} [{ci['candidate'][0]:.4f}, {ci['candidate'][1]:.4f}]",
        f"- baseline: {baseline:.4f} [{ci['baseline'][0]:.4f}, {ci['baseline'][1]:.4f}]",
        f"- difference: {candidate - baseline:.4f} "
        f"[{ci['difference'][0]:.4f}, {ci['difference'][1]:.4f}] (paired resamples{blocks})",
        f"- cross-validation on the training set: {cv['mean']:.4f} ± {cv['std']:.4f}",
    ]


def _tables(report: dict) -> list[str]:
    lines = []
    for title, records in report["tables"].items():
        table = pd.DataFrame(records).to_markdown(index=False, floatfmt=".4f")
        lines += [f"## {title}", "", table, ""]
    return lines


def _markdown(report: dict, figures: list[Path], reports_dir: Path) -> str:
    primary, verdict = report["primary"], report["gate"]["verdict"]
    rows = [
        {"metric": name, "baseline": _number(report["baseline"][name]), "candidate": _number(value)}
        for name, value in report["candidate"].items()
    ]
    undefined = [f"- {name} is undefined: {why}" for name, why in report["undefined"].items()]
    lines = [
        f"# Evaluation of model {report['version']}",
        "",
        f"Training set: {report['train_rows']} rows. Held-out test set: {report['test_rows']} "
        "rows, never used for training or selection.",
        *PROBLEM_TYPE.describe_test(report),
        "",
        f"**Gate: {verdict.upper()}** — {report['gate']['reason']}.",
        "",
        "## Control (baseline) against treatment (candidate)",
        "",
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
        "",
        *([*undefined, ""] if undefined else []),
        f"## Primary metric: {primary['metric']} with {primary['confidence']:.0%} "
        "bootstrap intervals",
        "",
        *_intervals(report),
        "",
        *_tables(report),
        "## Figures",
        "",
        *[f"![{p.stem}]({p.relative_to(reports_dir).as_posix()})" for p in figures],
        "",
    ]
    return "\n".join(lines)


def _holdout_report(model_bundle, train, test, holdout, problem) -> dict:
    full = pd.concat([train, test], ignore_index=True)
    score = primary_score(model_bundle, full, holdout, problem)
    if score is None:
        raise DataError("the holdout does not fit the model: its features, target or series")
    return {"rows": len(holdout), "candidate": score}


def _write_reports(report: dict, figures: list[Path], model_bundle, reports_dir: Path) -> None:
    bundle.write_json(reports_dir / "metrics.json", report)
    # beside the bundle, for the service
    bundle.write_evaluation(model_bundle.path, report)
    (reports_dir / "evaluation.md").write_text(
        _markdown(report, figures, reports_dir), encoding="utf-8"
    )
    log.info("wrote %s and %s", reports_dir / "metrics.json", reports_dir / "evaluation.md")


def run(
    processed_dir: Path,
    models_dir: Path,
    reports_dir: Path,
    problem: ProblemConfig,
    params: Params,
    pointer: str = "candidate",
    holdout: pd.DataFrame | None = None,
    promote: bool = True,
    tracked: tracking.Run | None = None,
) -> dict:
    """Evaluate the bundle `pointer` names, write the reports, and promote it through the
    registry if it passes. Raises GateFailed (exit 1) or CannotTell (exit 3) otherwise.

    `holdout`: recent labelled rows; the candidate must then also match the serving model
    on them. Without `promote`, a candidate that passed waits for an operator to promote it.
    A `tracked` MLflow run records the test metrics, the verdict and the report."""
    model_bundle = bundle.load(bundle.resolve(models_dir, pointer))
    train, test, _ = read_processed(processed_dir)
    report, (y, candidate, baseline) = evaluate(model_bundle, train, test, problem, params)
    recent = None if holdout is None else PROBLEM_TYPE.holdout_frame(holdout, problem.target)
    if recent is not None:
        report["holdout"] = _holdout_report(model_bundle, train, test, recent, problem)
    report["champion"] = champion_scores(
        models_dir, model_bundle.version, train, test, recent, problem
    )
    verdict, reason = gate(report, problem, params)
    report["gate"] = {"verdict": verdict, "passed": verdict == PASSED, "reason": reason}

    figures_dir = reports_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    figures = PROBLEM_TYPE.evaluation_figures(
        y, candidate, baseline, train, test, problem.target, figures_dir
    )
    _write_reports(report, figures, model_bundle, reports_dir)
    if tracked is not None:
        tracking.log_evaluation(tracked, report, reports_dir)

    primary = report["primary"]
    details = {k: primary[k] for k in ("metric", "candidate", "baseline")}
    version = model_bundle.version
    if verdict == INCONCLUSIVE:
        registry.record(models_dir, registry.INCONCLUSIVE, version, reason=reason, **details)
        raise CannotTell(reason)
    if verdict == FAILED:
        registry.record(models_dir, registry.REJECTED, version, reason=reason, **details)
        raise GateFailed(f"evaluation gate failed: {reason}")
    if not promote:
        log.info("gate passed: %s; %s waits for an operator to promote it", reason, version)
        return report
    registry.promote(models_dir, version, reason, **details)
    log.info("gate passed: %s; models/current -> %s", reason, version)
    return report
