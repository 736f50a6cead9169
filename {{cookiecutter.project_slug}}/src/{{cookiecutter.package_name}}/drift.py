"""Drift checks, one per feature kind, and the verdict they add up to.

Each feature kind has a `Check` in `CHECKS`: how training builds its reference
(`reference`), how recent values are compared with it (`compare`), the alarm rules that
read the comparison (`reasons`) and the sentence that states them in the report (`rule`).
This module owns the reference's format: training builds it with `build_reference`
(`reference_statistics` for rows), readers take its parts with `feature_references` and
`prediction_reference`, and the monitor compares through the same checks, so both sides
are computed alike from the values as they are (nothing is rounded on one side only). The
built-in kinds are numeric, categorical, datetime and text; a problem type adds its own
with `register`.

- numeric: PSI over the training deciles, and a two-sample KS test against a training sample;
- categorical: PSI over the categories (unseen ones pooled into one bucket), and the share
  of rows holding a category never seen in training;
- datetime: the share of dates outside the training range (or not dates at all), and PSI
  over the shares of months and of weekdays;
- text: the share of words never seen in training (OOV rate) against the rate expected of
  new texts, PSI over the shares of the most frequent training words, and a KS test on the
  length in words;
- every feature: the change in its missing rate; the model's outputs: PSI against training.

PSI and KS count only when they are large *and* significant after a Bonferroni correction
across features (a chi-squared test on the PSI bins, since small samples inflate PSI by
chance). With fewer than `min_rows` recent rows nothing alarms and the verdict is "not
enough data": the numbers are reported, and checks that would alarm show as warnings.
"""

from __future__ import annotations

import calendar
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, ks_2samp

if TYPE_CHECKING:  # PROBLEM_TYPE.py of a type may register checks: no import of config here
    from .config import MonitoringParams

EPSILON = 1e-4  # stands in for the share of an empty bin, so that PSI stays finite
UNSEEN = "(unseen)"
SAMPLE_SIZE = 500  # numeric: training values kept for the KS test
MAX_VOCABULARY = 20_000  # text: the most frequent training words kept to measure OOV rates
TOP_TERMS = 30  # text: the words whose shares are compared for drift
# dates: the parts whose shares are compared, as (pandas attribute, first number, labels)
DATE_PARTS = {
    "month": ("month", 1, list(calendar.month_abbr)[1:]),
    "weekday": ("day_of_week", 0, list(calendar.day_abbr)),
}

DRIFT, NO_DRIFT, NOT_ENOUGH = "drift", "no drift", "not enough data"


# ----------------------------------------------------------------------------- statistics


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index: the sum of (actual - expected) * ln(actual / expected)."""
    e = np.clip(np.asarray(expected, dtype=float), EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=float), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """The share of values in each bin; values beyond the outer edges count in the end bins."""
    bins = max(len(edges) - 1, 1)
    index = np.searchsorted(np.asarray(edges, dtype=float)[1:-1], values, side="right")
    counts = np.bincount(index, minlength=bins)
    return counts / max(counts.sum(), 1)


def psi_pvalue(reference: Sequence[float], recent: Sequence[float], rows: int, reference_rows: int):
    """How often sampling alone gives bins this different: a chi-squared test on the counts.

    PSI itself grows large by chance in small samples (an empty bin alone adds about 0.7), so
    it counts as drift only when this test says the difference is real."""
    table = np.array([np.asarray(reference) * reference_rows, np.asarray(recent) * rows])
    table = table[:, table.sum(axis=0) > 0]
    if rows == 0 or table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table, correction=False).pvalue)


def psi_test(distribution: dict, rows: int, reference_rows: int) -> dict:
    """PSI of a distribution's recent shares against its reference shares, with its p-value."""
    reference, recent = distribution["reference"], distribution["recent"]
    return {
        "psi": psi(reference, recent),
        "psi_pvalue": psi_pvalue(reference, recent, rows, reference_rows),
    }


def bin_labels(edges: Sequence[float]) -> list[str]:
    if len(edges) < 2:
        return [f"{edges[0]:.4g}"] if len(edges) else ["all"]
    last = len(edges) - 2
    return [
        f"[{lo:.4g}, {hi:.4g}{']' if i == last else ')'}"
        for i, (lo, hi) in enumerate(pairwise(edges))
    ]


def distribution(labels: list[str], reference, recent) -> dict:
    return {
        "labels": labels,
        "reference": [float(v) for v in reference],
        "recent": [float(v) for v in recent],
    }


def value_bins(values: np.ndarray) -> dict:
    """Decile edges of values and the share of values in each: the reference for PSI."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)))
    return {"edges": edges.tolist(), "shares": bin_shares(values, edges).tolist()}


# --------------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Check:
    """How one feature kind is drift-checked.

    reference: training values (missing ones dropped) -> the JSON-able reference;
    compare: (reference, recent values with missing ones, reference rows) -> the numbers;
    reasons: (result, thresholds) -> why it alarms, beyond PSI, KS and the missing rate;
    rule: thresholds (as a dict) -> the sentence in the report that states those reasons."""

    reference: Callable[[pd.Series], dict]
    compare: Callable[[dict, pd.Series, int], dict]
    reasons: Callable[[dict, MonitoringParams], list[str]] = lambda result, thresholds: []
    rule: Callable[[dict], str] | None = None


CHECKS: dict[str, Check] = {}


def register(kind: str, check: Check) -> None:
    """Add or replace the check of a feature kind: how a problem type brings its own."""
    CHECKS[kind] = check


def numeric_reference(values: pd.Series) -> dict:
    """Mean, spread, decile bins with their shares, and a sample, for PSI and KS tests."""
    values = pd.to_numeric(values, errors="coerce").dropna().astype(float)
    sample = values.sample(min(len(values), SAMPLE_SIZE), random_state=0)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        **value_bins(values.to_numpy()),
        "sample": sample.tolist(),  # exact floats: JSON keeps every digit
    }


def numeric_drift(reference: dict, values: pd.Series, reference_rows: int) -> dict:
    """PSI over the training deciles and the KS test against the training sample."""
    present = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    result: dict = {"mean_reference": reference["mean"], "mean_recent": None}
    result.update(psi=None, psi_pvalue=None, ks_statistic=None, ks_pvalue=None)
    result["distribution"] = None
    if present.size == 0:
        return result
    shares = bin_shares(present, reference["edges"])
    bins = distribution(bin_labels(reference["edges"]), reference["shares"], shares)
    test = ks_2samp(present, np.asarray(reference["sample"], dtype=float))
    result.update(
        psi_test(bins, present.size, reference_rows),
        mean_recent=float(present.mean()),
        ks_statistic=float(test.statistic),
        ks_pvalue=float(test.pvalue),
        distribution=bins,
    )
    return result


def ks_reasons(result: dict, thresholds: MonitoringParams) -> list[str]:
    p_adjusted = result.get("ks_pvalue_adjusted")
    if (
        p_adjusted is not None
        and p_adjusted < thresholds.alpha
        and result["ks_statistic"] >= thresholds.ks_min_statistic
    ):
        return [f"KS distance {result['ks_statistic']:.2f}, adjusted p {p_adjusted:.1e}"]
    return []


def _numeric_rule(t: dict) -> str:
    return (
        f"A numeric feature drifts when its KS p-value, Bonferroni-corrected across the KS "
        f"tests, is below {t['alpha']:g} and the KS distance is at least "
        f"{t['ks_min_statistic']:g}."
    )


def category_text(values: pd.Series) -> pd.Series:
    """Categories as text, missing ones dropped: the same on both sides of the comparison."""
    return values.dropna().astype(str)


def categorical_reference(values: pd.Series) -> dict:
    shares = category_text(values).value_counts(normalize=True)
    return {"shares": {str(k): float(v) for k, v in shares.items()}}


def category_shares(known: dict[str, float], values: pd.Series) -> tuple[dict, pd.Series]:
    """Recent shares over the training categories plus one bucket for unseen ones."""
    present = category_text(values)
    unseen = ~present.isin(list(known))
    counts = present.where(~unseen, UNSEEN).value_counts(normalize=True)
    buckets = [*known, UNSEEN]
    reference = [known.get(bucket, 0.0) for bucket in buckets]
    recent = [float(counts.get(bucket, 0.0)) for bucket in buckets]
    return distribution(buckets, reference, recent), present[unseen]


def categorical_drift(reference: dict, values: pd.Series, reference_rows: int) -> dict:
    """PSI over the categories and the share of rows with categories unseen in training."""
    shares, unseen = category_shares(reference["shares"], values)
    present = int(values.notna().sum())
    result = {
        "psi": None,
        "psi_pvalue": None,
        "unseen_share": len(unseen) / len(values) if len(values) else 0.0,
        "unseen_examples": [value[:40] for value in sorted(unseen.unique())[:5]],
        "distribution": None,
    }
    if present:
        result.update(psi_test(shares, present, reference_rows), distribution=shares)
    return result


def _unseen_reasons(result: dict, thresholds: MonitoringParams) -> list[str]:
    if result["unseen_share"] <= thresholds.max_unseen_share:
        return []
    examples = ", ".join(repr(v) for v in result["unseen_examples"][:3])
    return [f"{result['unseen_share']:.0%} of rows have unseen categories ({examples})"]


def parse_dates(values: pd.Series) -> pd.Series:
    """Dates as UTC timestamps without a zone; NaT where a value is missing or not a date."""
    text = values.dropna().astype(str)
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    return parsed.dt.tz_localize(None)


def _part_shares(dates: pd.Series, part: str) -> list[float]:
    attribute, first, labels = DATE_PARTS[part]
    counts = getattr(dates.dt, attribute).value_counts(normalize=True)
    return [float(counts.get(first + i, 0.0)) for i in range(len(labels))]


def datetime_reference(values: pd.Series) -> dict:
    """The training range of the dates and the shares of each month and weekday."""
    dates = parse_dates(values).dropna()
    return {
        "min": dates.min().isoformat() if len(dates) else None,
        "max": dates.max().isoformat() if len(dates) else None,
        **{f"{part}_shares": _part_shares(dates, part) for part in DATE_PARTS},
    }


def datetime_drift(reference: dict, values: pd.Series, reference_rows: int) -> dict:
    """Dates outside the training range (or not dates), and PSI over months and weekdays.

    Of the two PSI tests the stronger is reported, its p-value doubled (Bonferroni within
    the feature): a feature is one test in the family across features."""
    if reference.get("min") is None:  # no training dates, or a bundle from before date checks
        return {"range_reference": None, "outside_share": 0.0, "outside_examples": []} | {
            "psi": None,
            "psi_pvalue": None,
            "psi_part": None,
            "distribution": None,
        }
    dates = parse_dates(values)
    valid = dates.dropna()
    low, high = (pd.Timestamp(reference[end]) for end in ("min", "max"))
    outside = ~dates.between(low, high)  # NaT, not a date, counts as outside too
    examples = values.loc[outside[outside].index].astype(str).str[:40]
    result = {
        "range_reference": f"{low.date()} to {high.date()}",
        "outside_share": int(outside.sum()) / len(values) if len(values) else 0.0,
        "outside_examples": sorted(set(examples))[:5],
        "psi": None,
        "psi_pvalue": None,
        "psi_part": None,
        "distribution": None,
    }
    if valid.empty:
        return result
    tests = []
    for part, (_, _, labels) in DATE_PARTS.items():
        shares = distribution(labels, reference[f"{part}_shares"], _part_shares(valid, part))
        tests.append((part, shares, psi_test(shares, len(valid), reference_rows)))
    part, shares, test = max(tests, key=lambda item: item[2]["psi"])
    result.update(
        psi=test["psi"],
        psi_pvalue=min(1.0, min(t["psi_pvalue"] for _, _, t in tests) * len(tests)),
        psi_part=part,
        distribution=shares,
    )
    return result


def _outside_reasons(result: dict, thresholds: MonitoringParams) -> list[str]:
    if result["outside_share"] <= thresholds.max_outside_share:
        return []
    examples = ", ".join(repr(v) for v in result["outside_examples"][:3])
    return [
        f"{result['outside_share']:.0%} of rows outside the training range "
        f"{result['range_reference']} ({examples})"
    ]


def _datetime_rule(t: dict) -> str:
    return (
        f"A date feature drifts when more than {t['max_outside_share']:.0%} of rows fall "
        "outside the training range or are not dates, or by its PSI over the shares of months "
        "or weekdays (the stronger of the two). A date that moves with time, such as an order "
        "date, leaves the range by design: derive an age from it, or drop it."
    )


def _vocabulary(documents: list[list[str]]) -> list[str]:
    counts = Counter(word for words in documents for word in words)
    return [word for word, _ in counts.most_common(MAX_VOCABULARY)]


def text_reference(texts: pd.Series) -> dict:
    """Length in words, the vocabulary, the top words' shares, and the expected OOV rate.

    New texts always hold some words that training never saw (names, typos). The expected
    rate is measured honestly: words of the second half of the training texts missing from
    the vocabulary of the first half. Drift is a rise well above it."""
    from .features import tokenize  # text kinds only: forecasting has no tokenizer

    documents = [tokenize(text) for text in texts.dropna().astype(str)]
    half = len(documents) // 2
    known = set(_vocabulary(documents[:half]))
    held_out = [word for words in documents[half:] for word in words]
    counts = Counter(word for words in documents for word in words)
    total = max(sum(counts.values()), 1)
    return {
        "length": numeric_reference(pd.Series([len(words) for words in documents], dtype=float)),
        "vocabulary": _vocabulary(documents),
        "oov_rate": sum(word not in known for word in held_out) / max(len(held_out), 1),
        "terms": {word: count / total for word, count in counts.most_common(TOP_TERMS)},
    }


def text_drift(reference: dict, values: pd.Series, reference_rows: int) -> dict:
    """Words never seen in training, the top words' shares and the length in words.

    A new vocabulary (product names, slang, another language) shows as a higher OOV rate;
    a change of topic or tone as PSI over the word shares; longer or shorter texts in KS."""
    from .features import tokenize

    documents = [tokenize(text) for text in values.dropna().astype(str)]
    lengths = pd.Series([len(words) for words in documents], dtype=float)
    length = numeric_drift(reference["length"], lengths, reference_rows)
    words = [word for text in documents for word in text]
    known = set(reference["vocabulary"])
    unseen = Counter(word for word in words if word not in known)
    oov = sum(unseen.values()) / len(words) if words else 0.0
    terms = reference["terms"]  # the top training words and their shares of all words
    counts = Counter(word for word in words if word in terms)
    recent = [counts[word] / max(len(words), 1) for word in terms]
    shares = distribution(
        [*terms, "(other words)"],
        [*terms.values(), 1.0 - sum(terms.values())],
        [*recent, 1.0 - sum(recent)],
    )
    result = {
        "words_mean_reference": reference["length"]["mean"],
        "words_mean_recent": length["mean_recent"],
        "length_psi": length["psi"],
        "ks_statistic": length["ks_statistic"],
        "ks_pvalue": length["ks_pvalue"],
        "oov_rate_reference": reference["oov_rate"],
        "oov_rate_recent": oov,
        "oov_rate_change": oov - reference["oov_rate"],
        "oov_examples": [word[:40] for word, _ in unseen.most_common(5)],
        "psi": None,
        "psi_pvalue": None,
        "distribution": None,
    }
    if documents:
        result.update(psi_test(shares, len(documents), reference_rows), distribution=shares)
    return result


def _oov_reasons(result: dict, thresholds: MonitoringParams) -> list[str]:
    reasons = ks_reasons(result, thresholds)
    if result["oov_rate_change"] > thresholds.max_oov_change:
        examples = ", ".join(repr(v) for v in result["oov_examples"][:3])
        reasons.append(
            f"{result['oov_rate_reference']:.0%} → {result['oov_rate_recent']:.0%} of words "
            f"never seen in training ({examples})"
        )
    return reasons


def _text_rule(t: dict) -> str:
    return (
        f"A text feature drifts when the share of words never seen in training rises more "
        f"than {t['max_oov_change']:.0%} (absolute) above the rate expected of new texts (the "
        "unseen column shows its OOV rate); its KS test is on the length in words, its PSI on "
        "the top words' shares."
    )


register("numeric", Check(numeric_reference, numeric_drift, ks_reasons, _numeric_rule))
register(
    "categorical",
    Check(
        categorical_reference,
        categorical_drift,
        _unseen_reasons,
        lambda t: (
            f"A categorical feature drifts when more than {t['max_unseen_share']:.0%} of "
            "rows hold a category not seen in training."
        ),
    ),
)
register("datetime", Check(datetime_reference, datetime_drift, _outside_reasons, _datetime_rule))
register("text", Check(text_reference, text_drift, _oov_reasons, _text_rule))


# ------------------------------------------------------------------ reference and compare


def feature_reference(kind: str, values: pd.Series) -> dict:
    """The reference of one feature: its kind, its missing rate, and what its check needs."""
    present = values.dropna()
    entry = {"kind": kind, "missing_rate": float(values.isna().mean()) if len(values) else 0.0}
    return entry | CHECKS[kind].reference(present)


def build_reference(rows: int, features: Mapping[str, dict], predictions: dict) -> dict:
    """The drift reference a bundle stores (reference.json), the yardstick for monitoring:
    the number of training units it describes, the reference of each feature
    (`feature_reference`), and the type's reference of its outputs
    (`PROBLEM_TYPE.prediction_reference`). Read it back with `feature_references`,
    `prediction_reference` and `reference_rows`."""
    return {"rows": rows, "features": dict(features), "predictions": predictions}


def reference_statistics(X: pd.DataFrame, features: Mapping[str, str], predictions: dict) -> dict:
    """The drift reference of training rows: every feature of `X` by its kind, and
    `predictions`, the type's reference of its outputs (see `build_reference`)."""
    return build_reference(
        len(X),
        {name: feature_reference(kind, X[name]) for name, kind in features.items()},
        predictions,
    )


def feature_references(reference: dict) -> dict[str, dict]:
    """The reference of each feature in a drift reference, by feature name."""
    return reference["features"]


def prediction_reference(reference: dict) -> dict:
    """The type's reference of its outputs in a drift reference (what
    `PROBLEM_TYPE.prediction_counts` and the prediction-drift check compare with)."""
    return reference["predictions"]


def reference_rows(reference: dict) -> int:
    """How many training units a drift reference describes."""
    return reference["rows"]


def prediction_drift(reference: dict, outputs: Sequence, rows: int, reference_rows: int) -> dict:
    """PSI of the outputs against the training predictions: class shares or value bins."""
    if reference["kind"] == "class_shares":
        shares, _ = category_shares(reference["shares"], pd.Series(list(outputs)))
    else:
        recent = bin_shares(np.asarray(outputs, dtype=float), reference["edges"])
        shares = distribution(bin_labels(reference["edges"]), reference["shares"], recent)
    return {"kind": reference["kind"], **psi_test(shares, rows, reference_rows)} | {
        "distribution": shares
    }


def _psi_significant(result: dict, level: float, alpha: float) -> bool:
    return (
        result.get("psi") is not None
        and result["psi"] >= level
        and result["psi_pvalue_adjusted"] < alpha
    )


def psi_reasons(result: dict, thresholds: MonitoringParams) -> list[str]:
    if not _psi_significant(result, thresholds.psi_alarm, thresholds.alpha):
        return []
    over = f" over {result['psi_part']}s" if result.get("psi_part") else ""
    return [
        f"PSI{over} {result['psi']:.2f} ≥ {thresholds.psi_alarm:g} "
        f"(adjusted p {result['psi_pvalue_adjusted']:.1e})"
    ]


def _missing_reasons(result: dict, thresholds: MonitoringParams) -> list[str]:
    if abs(result["missing_rate_change"]) <= thresholds.max_missing_change:
        return []
    return [
        f"missing rate {result['missing_rate_reference']:.0%} → {result['missing_rate_recent']:.0%}"
    ]


def status(reasons: list[str], result: dict, enough: bool, thresholds: MonitoringParams) -> str:
    """drift, warn or ok: below min_rows what would alarm is a warning only."""
    if reasons:
        return "drift" if enough else "warn"
    return "warn" if _psi_significant(result, thresholds.psi_warn, thresholds.alpha) else "ok"


def _bonferroni(results: list[dict]) -> None:
    """The PSI tests (features and outputs) are one family, the KS tests another."""
    for test in ("psi", "ks"):
        family = [r for r in results if r.get(f"{test}_pvalue") is not None]
        for result in family:
            result[f"{test}_pvalue_adjusted"] = min(1.0, result[f"{test}_pvalue"] * len(family))


def _compare_feature(name: str, ref: dict, values: pd.Series, reference_rows: int, missing):
    missing = float(values.isna().mean()) if missing is None and len(values) else missing or 0.0
    result = {
        "name": name,
        "kind": ref["kind"],
        "missing_rate_reference": ref["missing_rate"],
        "missing_rate_recent": missing,
        "missing_rate_change": missing - ref["missing_rate"],
    }
    rows = round(reference_rows * (1 - ref["missing_rate"]))
    return result | CHECKS[ref["kind"]].compare(ref, values, rows)


def compare_columns(
    reference: dict,
    columns: Mapping[str, pd.Series],
    outputs: Sequence,
    thresholds: MonitoringParams,
    output_rows: int | None = None,
    missing: Mapping[str, float] | None = None,
) -> dict:
    """Recent values of every referenced feature and the model's outputs against training.

    `columns` holds the recent values per feature name, missing ones included (their share
    is the recent missing rate, unless `missing` gives it); the first one's length is the
    sample size judged against `min_rows`. `output_rows` is the sample size behind the
    outputs (one per output unless given). Returns per-feature results with
    a status (ok, warn or drift) and the reasons, the output drift, and the verdict."""
    rows = len(next(iter(columns.values()), ()))  # the first feature's: the sample size
    enough = rows >= thresholds.min_rows
    trained = reference_rows(reference)
    features = [
        _compare_feature(name, ref, columns[name], trained, (missing or {}).get(name))
        for name, ref in feature_references(reference).items()
    ]
    output_rows = len(outputs) if output_rows is None else output_rows
    predictions = prediction_drift(prediction_reference(reference), outputs, output_rows, trained)
    _bonferroni([*features, predictions])
    for result in features:
        check = CHECKS[result["kind"]]
        result["reasons"] = [
            *psi_reasons(result, thresholds),
            *check.reasons(result, thresholds),
            *_missing_reasons(result, thresholds),
        ]
        result["status"] = status(result["reasons"], result, enough, thresholds)
    predictions["reasons"] = psi_reasons(predictions, thresholds)
    predictions["status"] = status(predictions["reasons"], predictions, enough, thresholds)
    report = {
        "rows": rows,
        "enough_rows": enough,
        "thresholds": thresholds.model_dump(),
        "features": features,
        "predictions": predictions,
        "performance": None,
        "drifted": [r["name"] for r in features if r["status"] == "drift"],
    }
    return report | {"verdict": verdict(report), "drift": verdict(report) == DRIFT}


def decide(report: dict, check: dict) -> None:
    """Add a type's own check (`Recent.decides`) to a comparison: it alarms like any check,
    and where it can judge, the verdict needs no `min_rows` recent rows to be "no drift"."""
    report["decides"] = check
    report["verdict"] = verdict(report)
    report["drift"] = report["verdict"] == DRIFT


def verdict(report: dict) -> str:
    """drift, no drift, or not enough data (fewer recent rows than `min_rows`, and no
    check of the type's own that can judge)."""
    decides = report.get("decides") or {}
    results = [*report["features"], report["predictions"], report.get("performance") or {}]
    if any(result.get("status") == "drift" for result in [*results, decides]):
        return DRIFT
    return NO_DRIFT if report["enough_rows"] or decides.get("enough") else NOT_ENOUGH


def rules(report: dict) -> list[str]:
    """The alarm rules of the checks in a report, one sentence each, for people."""
    kinds = dict.fromkeys(r["kind"] for r in report["features"])
    return [rule(report["thresholds"]) for kind in kinds if (rule := CHECKS[kind].rule)]


def finite(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
