"""Stage 7: has the world moved away from the data the model was trained on?

Recent rows come from the service's prediction log, or from a CSV/Parquet file, and are
compared with the reference statistics that training stored in the model bundle:

- numeric features: PSI over the training deciles, and a two-sample KS test against the
  training sample;
- categorical features: PSI over the categories (unseen ones pooled into one bucket), and the
  share of rows holding a category never seen in training;
- text features: the share of words never seen in training (OOV rate) against the rate
  expected of new texts, PSI over the shares of the most frequent training words, and a KS
  test on the length in words;
- every feature: the change in its missing rate;
- predictions: PSI of the outputs against the training predictions;
- when the file carries the target: every metric against the test-set evaluation.

A feature drifts when one of the rules in the `monitoring` section of configs/params.yaml
fires. They are set so that a sample of the training distribution itself fires none: PSI
and KS count only when they are large *and* significant after a Bonferroni correction
across features (a chi-squared test on the PSI bins, since small samples inflate PSI by
chance), and with fewer than `min_rows` recent rows the numbers are reported but raise no
alarm.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from collections import Counter, deque
from collections.abc import Sequence
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, ks_2samp

from . import bundle, task
from .config import MonitoringParams
from .data import write_json
from .errors import DataError
from .features import tokenize
from .predictor import to_frame

log = logging.getLogger(__name__)

DEFAULT_LOG = Path("logs/predictions.jsonl")  # where the service writes it by default
EPSILON = 1e-4  # stands in for the share of an empty bin, so that PSI stays finite
UNSEEN = "(unseen)"


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


def _psi_test(distribution: dict, rows: int, reference_rows: int) -> dict:
    reference, recent = distribution["reference"], distribution["recent"]
    return {
        "psi": psi(reference, recent),
        "psi_pvalue": psi_pvalue(reference, recent, rows, reference_rows),
    }


def _bin_labels(edges: Sequence[float]) -> list[str]:
    if len(edges) < 2:
        return [f"{edges[0]:.4g}"] if len(edges) else ["all"]
    last = len(edges) - 2
    return [
        f"[{lo:.4g}, {hi:.4g}{']' if i == last else ')'}"
        for i, (lo, hi) in enumerate(pairwise(edges))
    ]


def _distribution(labels: list[str], reference, recent) -> dict:
    return {
        "labels": labels,
        "reference": [float(v) for v in reference],
        "recent": [float(v) for v in recent],
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
    distribution = _distribution(_bin_labels(reference["edges"]), reference["shares"], shares)
    test = ks_2samp(present, np.asarray(reference["sample"], dtype=float))
    result.update(
        _psi_test(distribution, present.size, reference_rows),
        mean_recent=float(present.mean()),
        ks_statistic=float(test.statistic),
        ks_pvalue=float(test.pvalue),
        distribution=distribution,
    )
    return result


def _category_shares(known: dict[str, float], values: pd.Series) -> tuple[dict, pd.Series]:
    """Recent shares over the training categories plus one bucket for unseen ones."""
    present = values.dropna().astype(str)
    unseen = ~present.isin(list(known))
    counts = present.where(~unseen, UNSEEN).value_counts(normalize=True)
    buckets = [*known, UNSEEN]
    reference = [known.get(bucket, 0.0) for bucket in buckets]
    recent = [float(counts.get(bucket, 0.0)) for bucket in buckets]
    return _distribution(buckets, reference, recent), present[unseen]


def categorical_drift(reference: dict, values: pd.Series, reference_rows: int) -> dict:
    """PSI over the categories and the share of rows with categories unseen in training."""
    distribution, unseen = _category_shares(reference["shares"], values)
    present = int(values.notna().sum())
    result = {
        "psi": None,
        "psi_pvalue": None,
        "unseen_share": len(unseen) / len(values) if len(values) else 0.0,
        "unseen_examples": [value[:40] for value in sorted(unseen.unique())[:5]],
        "distribution": None,
    }
    if present:
        result.update(_psi_test(distribution, present, reference_rows), distribution=distribution)
    return result


def text_drift(reference: dict, values: pd.Series, reference_rows: int) -> dict:
    """Words never seen in training, the top words' shares and the length in words.

    A new vocabulary (product names, slang, another language) shows as a higher OOV rate;
    a change of topic or tone as PSI over the word shares; longer or shorter texts in KS."""
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
    distribution = _distribution(
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
        result.update(_psi_test(distribution, len(documents), reference_rows))
        result["distribution"] = distribution
    return result


def prediction_drift(reference: dict, outputs: Sequence, reference_rows: int) -> dict:
    """PSI of the outputs against the training predictions: class shares or value bins."""
    if reference["kind"] == "class_shares":
        distribution, _ = _category_shares(reference["shares"], pd.Series(list(outputs)))
    else:
        shares = bin_shares(np.asarray(outputs, dtype=float), reference["edges"])
        labels = _bin_labels(reference["edges"])
        distribution = _distribution(labels, reference["shares"], shares)
    return {
        "kind": reference["kind"],
        **_psi_test(distribution, len(outputs), reference_rows),
        "distribution": distribution,
    }


def _finite(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def performance(
    y: np.ndarray, predictions: task.Predictions, evaluation: dict, thresholds: MonitoringParams
) -> dict:
    """Every metric on the labelled recent rows against the test-set evaluation."""
    scores = task.score(y, predictions)
    metrics = {}
    for name, value in scores.items():
        reference = _finite(evaluation["candidate"].get(name))
        recent = _finite(value)
        change = None if reference is None or recent is None else recent - reference
        metrics[name] = {"reference": reference, "recent": recent, "change": change}
    primary = evaluation["primary"]
    name = primary["metric"]
    reference, recent = metrics[name]["reference"], metrics[name]["recent"]
    drop = None
    if reference is not None and recent is not None:
        worse = (reference - recent) if primary["greater_is_better"] else (recent - reference)
        drop = worse / (abs(reference) or 1.0)
    return {
        "rows": len(y),
        "metrics": metrics,
        "primary": {
            "metric": name,
            "greater_is_better": primary["greater_is_better"],
            "reference": reference,
            "recent": recent,
            "relative_drop": drop,
        },
    }


def _psi_significant(result: dict, level: float, alpha: float) -> bool:
    return (
        result.get("psi") is not None
        and result["psi"] >= level
        and result["psi_pvalue_adjusted"] < alpha
    )


def _psi_reasons(result: dict, thresholds: MonitoringParams) -> list[str]:
    if not _psi_significant(result, thresholds.psi_alarm, thresholds.alpha):
        return []
    return [
        f"PSI {result['psi']:.2f} ≥ {thresholds.psi_alarm:g} "
        f"(adjusted p {result['psi_pvalue_adjusted']:.1e})"
    ]


def _feature_reasons(result: dict, thresholds: MonitoringParams) -> list[str]:
    reasons = _psi_reasons(result, thresholds)
    p_adjusted = result.get("ks_pvalue_adjusted")
    if (
        p_adjusted is not None
        and p_adjusted < thresholds.alpha
        and result["ks_statistic"] >= thresholds.ks_min_statistic
    ):
        reasons.append(f"KS distance {result['ks_statistic']:.2f}, adjusted p {p_adjusted:.1e}")
    if result.get("unseen_share", 0.0) > thresholds.max_unseen_share:
        examples = ", ".join(repr(v) for v in result["unseen_examples"][:3])
        reasons.append(f"{result['unseen_share']:.0%} of rows have unseen categories ({examples})")
    if result.get("oov_rate_change", 0.0) > thresholds.max_oov_change:
        examples = ", ".join(repr(v) for v in result["oov_examples"][:3])
        reasons.append(
            f"{result['oov_rate_reference']:.0%} → {result['oov_rate_recent']:.0%} of words "
            f"never seen in training ({examples})"
        )
    if abs(result["missing_rate_change"]) > thresholds.max_missing_change:
        reasons.append(
            f"missing rate {result['missing_rate_reference']:.0%} → "
            f"{result['missing_rate_recent']:.0%}"
        )
    return reasons


def _status(reasons: list[str], result: dict, enough: bool, thresholds: MonitoringParams) -> str:
    if reasons:
        return "drift" if enough else "warn"
    return "warn" if _psi_significant(result, thresholds.psi_warn, thresholds.alpha) else "ok"


def compare(
    reference: dict,
    frame: pd.DataFrame,
    outputs: Sequence,
    thresholds: MonitoringParams,
) -> dict:
    """Recent feature rows and model outputs against the training reference.

    Returns per-feature results with a status (ok, warn or drift) and the reasons, the
    prediction drift, and the verdict. Nothing is written."""
    rows = len(frame)
    enough = rows >= thresholds.min_rows
    features = []
    for name, ref in reference["features"].items():
        column = frame[name]
        missing = float(column.isna().mean()) if rows else 0.0
        result = {
            "name": name,
            "kind": ref["kind"],
            "missing_rate_reference": ref["missing_rate"],
            "missing_rate_recent": missing,
            "missing_rate_change": missing - ref["missing_rate"],
        }
        reference_rows = round(reference["rows"] * (1 - ref["missing_rate"]))
        if ref["kind"] == "numeric":
            result.update(numeric_drift(ref, column, reference_rows))
        elif ref["kind"] == "categorical":
            result.update(categorical_drift(ref, column, reference_rows))
        elif ref["kind"] == "text":
            result.update(text_drift(ref, column, reference_rows))
        features.append(result)
    predictions = prediction_drift(reference["predictions"], outputs, reference["rows"])

    # Bonferroni: the PSI tests (features and predictions) are one family, the KS tests another.
    for test in ("psi", "ks"):
        family = [r for r in [*features, predictions] if r.get(f"{test}_pvalue") is not None]
        for result in family:
            result[f"{test}_pvalue_adjusted"] = min(1.0, result[f"{test}_pvalue"] * len(family))
    for result in features:
        result["reasons"] = _feature_reasons(result, thresholds)
        result["status"] = _status(result["reasons"], result, enough, thresholds)
    predictions["reasons"] = _psi_reasons(predictions, thresholds)
    predictions["status"] = _status(predictions["reasons"], predictions, enough, thresholds)
    drifted = [r["name"] for r in features if r["status"] == "drift"]
    return {
        "rows": rows,
        "enough_rows": enough,
        "thresholds": thresholds.model_dump(),
        "features": features,
        "predictions": predictions,
        "performance": None,
        "drifted": drifted,
        "drift": bool(drifted) or predictions["status"] == "drift",
    }


def add_performance(report: dict, result: dict, thresholds: MonitoringParams) -> None:
    """Attach a performance result to a report; alarm when the primary metric drops too far."""
    drop = result["primary"]["relative_drop"]
    enough = result["rows"] >= thresholds.min_rows
    result["reasons"] = []
    if drop is not None and drop > thresholds.max_metric_drop:
        primary = result["primary"]
        result["reasons"].append(
            f"{primary['metric']} {primary['reference']:.4f} → {primary['recent']:.4f} "
            f"({drop:.0%} worse, more than {thresholds.max_metric_drop:.0%})"
        )
    result["status"] = ("drift" if enough else "warn") if result["reasons"] else "ok"
    report["performance"] = result
    report["drift"] = report["drift"] or result["status"] == "drift"


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_record(line: str) -> dict:
    """One line of the service's log: the request and response bodies as they were sent."""
    record = json.loads(line)
    request, response = record["request"], record["response"]
    inputs, outputs = request["instances"], response["predictions"]
    if not isinstance(inputs, list) or len(inputs) != len(outputs):
        raise ValueError("instances and predictions differ in length")
    return {
        "time": _as_utc(datetime.fromisoformat(record["time"])),
        "model_version": response["model_version"],
        "inputs": inputs,
        "outputs": outputs,
    }


def read_log(path: Path, last: int | None = None, since: datetime | None = None) -> list[dict]:
    """Records of the service's prediction log, optionally the last N or those since a time.

    Each comes back as {"time", "model_version", "inputs": rows, "outputs": predictions}."""
    if not path.exists():
        raise DataError(
            f"{path}: no prediction log; serve the model (`make serve`) or pass --data FILE"
        )
    records: deque[dict] = deque(maxlen=last)
    skipped = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = parse_record(line)
            except (ValueError, KeyError, TypeError):
                skipped += 1  # e.g. a line cut short while the service was writing it
                continue
            if since is None or record["time"] >= _as_utc(since):
                records.append(record)
    if skipped:
        log.warning("%s: skipped %d unreadable lines", path, skipped)
    if not records:
        window = f" since {since.isoformat()}" if since else ""
        raise DataError(f"{path}: no prediction records{window}")
    return list(records)


def read_data(path: Path) -> pd.DataFrame:
    """Recent rows from a CSV or Parquet file; with the target column for performance."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    raise DataError(f"{path}: unsupported file type {suffix!r}; valid choices: .csv, .parquet")


def recent_frame(rows: list[dict], schema: list[dict]) -> pd.DataFrame:
    """Rows as the model's DataFrame, categories as text so they match the reference."""
    frame = to_frame(rows, schema)
    for feature in schema:
        if feature["kind"] == "categorical":
            column = frame[feature["name"]]
            frame[feature["name"]] = column.astype(str).where(column.notna())
    return frame


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "feature"


def figures(report: dict, figures_dir: Path, stamp: str) -> list[tuple[str, Path]]:
    """Training against recent shares for every feature not ok, and for the predictions."""
    import matplotlib.pyplot as plt

    figures_dir.mkdir(parents=True, exist_ok=True)
    items = [
        (f"{r['name']} ({r['status']})", r["name"], r["distribution"])
        for r in report["features"]
        if r["status"] != "ok" and r.get("distribution")
    ]
    items.append(("predictions", "predictions", report["predictions"]["distribution"]))
    written = []
    for title, name, distribution in items:
        x = np.arange(len(distribution["labels"]))
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        ax.bar(x - 0.2, distribution["reference"], width=0.4, label="training", color="tab:blue")
        ax.bar(x + 0.2, distribution["recent"], width=0.4, label="recent", color="tab:orange")
        ax.set_xticks(x, distribution["labels"], rotation=40, ha="right", fontsize=7)
        ax.set_ylabel("share of rows")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        path = figures_dir / f"{stamp}-{_slug(name)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append((title, path))
    return written


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: dict, figure_paths: list[tuple[str, Path]], reports_dir: Path) -> str:
    """The report for people: verdict, one row per feature, predictions, performance, rules."""
    t = report["thresholds"]
    source = report["source"]
    if report["drift"]:
        verdict = f"**DRIFT** — {_cell(report['summary'])}"
    elif not report["enough_rows"]:
        verdict = (
            f"**Not enough data** — {report['rows']} rows, the alarms need {t['min_rows']}; "
            "the numbers below are for information only."
        )
    else:
        verdict = "**No drift** past the thresholds in configs/params.yaml."
    rows = [
        {
            "feature": _cell(r["name"]),
            "kind": r["kind"],
            "status": r["status"],
            "PSI": _fmt(r.get("psi"), ".3f"),
            "PSI p (adjusted)": _fmt(r.get("psi_pvalue_adjusted"), ".2g"),
            "KS distance": _fmt(r.get("ks_statistic"), ".3f"),
            "KS p (adjusted)": _fmt(r.get("ks_pvalue_adjusted"), ".2g"),
            "missing (train → recent)": (
                f"{r['missing_rate_reference']:.1%} → {r['missing_rate_recent']:.1%}"
            ),
            "unseen": _fmt(r.get("unseen_share", r.get("oov_rate_recent")), ".1%"),
            "why": _cell("; ".join(r["reasons"])),
        }
        for r in report["features"]
    ]
    prediction = report["predictions"]
    lines = [
        f"# Drift report {report['created_at']}",
        "",
        f"Model `{report['model_version']}` against its training data. Recent data: "
        f"{report['rows']} rows from `{source['path']}` ({source['description']}).",
        "",
        f"Verdict: {verdict}",
        "",
        "## Features",
        "",
        pd.DataFrame(rows).to_markdown(index=False),
        "",
        "## Predictions",
        "",
        f"PSI of the outputs ({prediction['kind']}, from {report['predictions_source']}): "
        f"{prediction['psi']:.3f}, **{prediction['status']}**.",
        "",
    ]
    result = report["performance"]
    if result is not None:
        table = pd.DataFrame(
            [
                {"metric": name, "test set": m["reference"], "recent": m["recent"]}
                | {"change": m["change"]}
                for name, m in result["metrics"].items()
            ]
        ).to_markdown(index=False, floatfmt=".4f", missingval="—")
        primary = result["primary"]
        lines += [
            f"## Performance on {result['rows']} labelled rows",
            "",
            table,
            "",
            f"Primary metric {primary['metric']}: {_fmt(primary['reference'], '.4f')} on the "
            f"test set, {_fmt(primary['recent'], '.4f')} now, **{result['status']}**"
            f"{': ' + _cell('; '.join(result['reasons'])) if result['reasons'] else '.'}",
            "",
        ]
    lines += [
        "## Alarm rules (configs/params.yaml, `monitoring`)",
        "",
        f"- Nothing alarms below {t['min_rows']} recent rows.",
        f"- A feature or the predictions drift at PSI ≥ {t['psi_alarm']:g} (a warning from "
        f"{t['psi_warn']:g}), if sampling alone is unlikely to explain it: a chi-squared p below "
        f"{t['alpha']:g} after a Bonferroni correction across features.",
        f"- A numeric feature drifts when its KS p-value, Bonferroni-corrected across the "
        f"numeric features, is below {t['alpha']:g} and the KS distance is at least "
        f"{t['ks_min_statistic']:g}.",
        f"- A categorical feature drifts when more than {t['max_unseen_share']:.0%} of rows "
        "hold a category not seen in training.",
        f"- Any feature drifts when its missing rate moves by more than "
        f"{t['max_missing_change']:.0%} (absolute).",
        f"- With labels, performance drifts when the primary metric is more than "
        f"{t['max_metric_drop']:.0%} worse than on the test set.",
        *(
            [
                f"- A text feature drifts when the share of words never seen in training rises "
                f"more than {t['max_oov_change']:.0%} (absolute) above the rate expected of new "
                "texts (the unseen column shows its OOV rate); its KS test is on the length in "
                "words, its PSI on the top words' shares."
            ]
            if any(r["kind"] == "text" for r in report["features"])
            else []
        ),
        "",
        "## Figures",
        "",
        "Shares per training decile (numeric), category, or top word (text), training against "
        "recent.",
        "",
        *[
            f"![{_cell(title)}]({path.relative_to(reports_dir).as_posix()})"
            for title, path in figure_paths
        ],
        "",
    ]
    return "\n".join(lines)


def _summary(report: dict) -> str:
    parts = [
        f"{r['name']}: {'; '.join(r['reasons'])}"
        for r in report["features"]
        if r["status"] == "drift"
    ]
    if report["predictions"]["status"] == "drift":
        parts.append(f"predictions: {'; '.join(report['predictions']['reasons'])}")
    if report["performance"] and report["performance"]["status"] == "drift":
        parts.append(f"performance: {'; '.join(report['performance']['reasons'])}")
    return "drift in " + " | ".join(parts) if parts else "no drift"


def run(
    models_dir: Path,
    reports_dir: Path,
    thresholds: MonitoringParams,
    log_path: Path = DEFAULT_LOG,
    data_path: Path | None = None,
    last: int | None = None,
    since: datetime | None = None,
) -> dict:
    """Compare recent data with the current model's reference; write the reports.

    Reads the prediction log at `log_path`, or the file at `data_path` when given. Writes
    reports_dir/<UTC time>.json and .md, figures under reports_dir/figures/, and a copy of
    the JSON as reports_dir/latest.json. Returns the report; `report["drift"]` is the verdict."""
    served = bundle.load(bundle.resolve(models_dir, "current"))
    schema = served.metadata["features"]
    names = [f["name"] for f in schema]
    target = served.metadata["target"]
    labels = None
    if data_path is not None:
        data = read_data(data_path)
        absent = [name for name in names if name not in data.columns]
        if absent:
            raise DataError(f"{data_path}: feature columns missing: {', '.join(absent)}")
        data = data.tail(last) if last else data
        if data.empty:
            raise DataError(f"{data_path}: no rows")
        frame = recent_frame(data[names].to_dict("records"), schema)
        if target in data.columns:
            labels = data[target].reset_index(drop=True)
        source = {"kind": "file", "path": str(data_path), "description": f"{len(data)} rows"}
        outputs = None
    else:
        records = read_log(log_path, last, since)
        frame = recent_frame([row for r in records for row in r["inputs"]], schema)
        first, final = (r["time"].isoformat(timespec="seconds") for r in (records[0], records[-1]))
        description = f"{len(records)} requests, {first} to {final}"
        source = {"kind": "log", "path": str(log_path), "description": description}
        source.update(requests=len(records), first=first, last=final)
        versions = {r["model_version"] for r in records}
        # Logged outputs are comparable with this model's reference only if it made them all.
        outputs = (
            [o for r in records for o in r["outputs"]] if versions == {served.version} else None
        )

    predictions = None
    if outputs is None:
        predictions = task.predict(served.model, frame)
        outputs = predictions.values.tolist()
    report = compare(served.reference, frame, outputs, thresholds)
    now = datetime.now(timezone.utc)
    report = {
        "created_at": now.isoformat(timespec="seconds"),
        "model_version": served.version,
        "source": source,
        "predictions_source": "the current model" if predictions is not None else "the log",
        **report,
    }
    if labels is not None:
        evaluation_path = served.path / "evaluation.json"
        known = labels.notna().to_numpy()
        if not evaluation_path.exists():
            log.warning("%s missing: performance not checked", evaluation_path)
        elif known.any():
            evaluation = json.loads(evaluation_path.read_text(encoding="utf-8"))
            result = performance(
                labels[known].to_numpy(),
                task.subset(predictions, np.flatnonzero(known)),
                evaluation,
                thresholds,
            )
            add_performance(report, result, thresholds)
    report["summary"] = _summary(report)

    stamp = f"{now:%Y%m%dT%H%M%SZ}"
    reports_dir.mkdir(parents=True, exist_ok=True)
    figure_paths = figures(report, reports_dir / "figures", stamp)
    report["figures"] = [path.relative_to(reports_dir).as_posix() for _, path in figure_paths]
    write_json(reports_dir / f"{stamp}.json", report)
    shutil.copyfile(reports_dir / f"{stamp}.json", reports_dir / "latest.json")
    (reports_dir / f"{stamp}.md").write_text(
        markdown(report, figure_paths, reports_dir), encoding="utf-8"
    )
    level = logging.WARNING if report["drift"] else logging.INFO
    log.log(level, "%s; wrote %s", report["summary"], reports_dir / f"{stamp}.md")
    return report
