"""Stage 7: trends for the operator dashboard, as charts drawn on the server.

Drift per check across past monitor runs, the primary test metric per model version, and
the service's traffic and latency over time, each an SVG string to put in the page (no
JavaScript, nothing fetched from elsewhere). Charts are drawn with matplotlib's object API
(no pyplot, so requests may draw at once) and come out byte-identical for the same input.
matplotlib is imported when a chart is first drawn, not when the service starts.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
from collections import deque
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from . import registry

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

# Okabe-Ito: told apart with every common colour-vision deficiency.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
INK, GREY, ALARM = "#000000", "#999999", "#D55E00"
SIZE = (7.0, 2.4)  # inches: a chart across a 72rem page
MOST_LINES = 8  # checks drawn in the drift chart, by their largest PSI
UNCOUNTED = ("/metrics", "/health", "/ready")  # and /dashboard*: not traffic of the model
PREDICTION_ROUTE = "/v1/predict"


def verdict(report: dict) -> str:
    """drift, no drift or not enough data; reports written before the monitor had three
    verdicts say only whether it drifted and whether there were enough rows."""
    if "verdict" in report:
        return report["verdict"]
    enough = report.get("enough_rows", True)
    return "drift" if report["drift"] else "no drift" if enough else "not enough data"


def _run(report: dict) -> dict:
    """One monitor run as the trends need it: PSI per check (None where a check has no
    PSI, e.g. text or the forecast intervals), and the checks that drifted."""
    checks = report["features"]
    decides = report.get("decides") or {}
    drifted = [r["name"] for r in checks if r["status"] == "drift"]
    drifted += ["predictions"] if report["predictions"].get("status") == "drift" else []
    drifted += [decides["name"]] if decides.get("status") == "drift" else []
    if (report.get("performance") or {}).get("status") == "drift":
        drifted.append("performance")
    return {
        "created_at": report["created_at"],
        "verdict": verdict(report),
        "features": {r["name"]: r.get("psi") for r in checks},
        "predictions": report["predictions"].get("psi"),
        "drifted": drifted,
    }


def drift_history(reports_dir: Path, limit: int = 60) -> list[dict]:
    """The last `limit` monitor runs in reports_dir/monitoring, oldest first (see `_run`).
    A report that cannot be read is left out with a warning."""
    paths = sorted(
        path for path in (reports_dir / "monitoring").glob("*.json") if path.name != "latest.json"
    )
    runs = []
    for path in paths[-limit:] if limit else []:
        try:
            runs.append(_run(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s: not a monitor report, left out of the trends: %s", path, exc)
    return runs


def _svg(figure: Figure, title: str) -> str:
    """The figure as an inline SVG element, the same bytes for the same figure."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "trends"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    return text.replace("<svg ", f'<svg role="img" aria-label="{escape(title)}" ', 1)


def _figure(rows: int = 1, height: float = SIZE[1]) -> tuple[Figure, list]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(SIZE[0], height), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(True, color="#dddddd", linewidth=0.6)
        ax.tick_params(labelsize=7)
    return figure, list(axes)


def _dates(ax, times: list[datetime]) -> None:
    """UTC date and time ticks, with room around the runs (a minute at least)."""
    from matplotlib.dates import AutoDateLocator, DateFormatter

    pad = max((max(times) - min(times)) * 0.04, timedelta(seconds=30))
    ax.set_xlim(min(times) - pad, max(times) + pad)
    ax.xaxis.set_major_locator(AutoDateLocator(tz=timezone.utc, maxticks=7))
    ax.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d\n%H:%M", tz=timezone.utc))


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _drawn(history: list[dict]) -> tuple[list[str], list[str]]:
    """The checks with a PSI in some run, largest first, and those with none."""
    largest: dict[str, float] = {}
    for run in history:
        for name, value in run["features"].items():
            if value is not None and math.isfinite(value):
                largest[name] = max(largest.get(name, 0.0), value)
    names = {name for run in history for name in run["features"]}
    with_psi = sorted(largest, key=lambda name: (-largest[name], name))
    return with_psi, sorted(names - set(largest))


def _psi_line(ax, times, values, **style) -> None:
    points = [math.nan if v is None else v for v in values]
    ax.plot(times, points, marker="o", markersize=3, **style)


def _drift_title(history: list[dict], hidden: int, without: list[str]) -> str:
    title = f"PSI per check across the last {len(history)} monitor runs"
    if hidden:
        title += f"; the {MOST_LINES} largest drawn, {hidden} more not drawn"
    if without:
        title += f"; no PSI: {', '.join(without[:3])}" + ("…" if len(without) > 3 else "")
    return title


def drift_chart(history: list[dict], warn: float = 0.1, alarm: float = 0.2) -> str | None:
    """PSI of each check and of the predictions per monitor run, with the warning and alarm
    levels (`monitoring.psi_warn`, `psi_alarm`); runs that drifted are shaded, runs without
    enough data dotted. None without any run."""
    if not history:
        return None
    times = [_when(run["created_at"]) for run in history]
    with_psi, without = _drawn(history)
    figure, (ax,) = _figure(height=SIZE[1] + 0.6)
    for index, name in enumerate(with_psi[:MOST_LINES]):
        values = [run["features"].get(name) for run in history]
        style = {"linestyle": "-" if index < len(PALETTE) else "--"}
        _psi_line(ax, times, values, color=PALETTE[index % len(PALETTE)], label=name, **style)
    predictions = [run["predictions"] for run in history]
    _psi_line(ax, times, predictions, color=INK, linewidth=2.4, label="predictions")
    ax.axhline(warn, color=GREY, linestyle="--", linewidth=1, label=f"warn {warn:g}")
    ax.axhline(alarm, color=ALARM, linestyle="--", linewidth=1, label=f"alarm {alarm:g}")
    for moment, run in zip(times, history, strict=True):
        if run["verdict"] == "drift":
            ax.axvline(moment, color=ALARM, alpha=0.25, linewidth=6)
        elif run["verdict"] == "not enough data":
            ax.axvline(moment, color=GREY, linestyle=":", linewidth=1.2)
    title = _drift_title(history, max(len(with_psi) - MOST_LINES, 0), without)
    ax.set_title(title, fontsize=8.5)
    ax.set_ylabel("PSI (unitless)", fontsize=8)
    ax.set_xlabel("monitor run (UTC); shaded: drift, dotted: not enough data", fontsize=8)
    ax.set_ylim(bottom=0)
    _dates(ax, times)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _svg(figure, title)


def _scores(models_dir: Path) -> list[dict]:
    """Evaluated versions oldest first, with the baseline's score on the same test set."""
    rows = []
    for row in reversed(registry.versions(models_dir)):
        if row["test_score"] is None:
            continue
        primary = (registry.evaluation(models_dir, row["version"]) or {}).get("primary", {})
        rows.append(
            row | {"baseline": primary.get("baseline"), "higher": primary.get("greater_is_better")}
        )
    return rows


VERDICT_MARKERS = {  # gate verdict: marker, face colour, label
    "passed": ("o", PALETTE[2], "gate passed"),
    "failed": ("X", ALARM, "gate failed"),
    "inconclusive": ("s", "white", "gate inconclusive"),
}


def metric_chart(models_dir: Path) -> str | None:
    """The primary metric on the test set per model version, candidate and baseline; the
    marker says the gate's verdict, a ring marks the serving version. None without any
    evaluated version."""
    rows = _scores(models_dir)
    if not rows:
        return None
    metric = rows[-1]["metric"]
    shown = [row for row in rows if row["metric"] == metric]
    x = list(range(len(shown)))
    figure, (ax,) = _figure(height=SIZE[1] + 0.4)
    ax.plot(x, [row["test_score"] for row in shown], color=PALETTE[0], label="model")
    baseline = [math.nan if row["baseline"] is None else row["baseline"] for row in shown]
    ax.plot(x, baseline, color=GREY, linestyle="--", marker=".", label="baseline")
    for verdict_name, (marker, face, label) in VERDICT_MARKERS.items():
        points = [(i, row["test_score"]) for i, row in zip(x, shown, strict=True)]
        points = [p for p, row in zip(points, shown, strict=True) if row["verdict"] == verdict_name]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, marker=marker, s=40, c=face, edgecolors=INK, zorder=3, label=label)
    for i, row in zip(x, shown, strict=True):
        if row["current"]:
            ax.scatter([i], [row["test_score"]], s=220, facecolors="none", edgecolors=INK)
            ax.annotate(
                "serving",
                (i, row["test_score"]),
                xytext=(8, 8),
                fontsize=7,
                textcoords="offset points",
            )
    ax.set_xticks(x, [row["version"] for row in shown], rotation=20, ha="right", fontsize=6)
    ax.margins(x=0.08, y=0.25)
    left_out = len(rows) - len(shown)
    better = {True: " (higher is better)", False: " (lower is better)"}.get(rows[-1]["higher"], "")
    title = f"{metric} on the test set per model version{better}, oldest to newest"
    title += f" ({left_out} scored on another metric not drawn)" if left_out else ""
    ax.set_title(title, fontsize=8.5)
    ax.set_ylabel(f"{metric} (test set)", fontsize=8)
    ax.set_xlabel("model version", fontsize=8)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _svg(figure, title)


def _counted(route: str) -> bool:
    return route not in UNCOUNTED and not route.startswith("/dashboard")


def _totals(metrics) -> dict:
    """The service's counters now: requests by status class, and the latency histogram's
    cumulative bucket counts of the prediction routes, by upper edge."""
    totals = {"requests": 0.0, "errors": 0.0, "client_errors": 0.0, "buckets": {}}
    for family in metrics.requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and _counted(sample.labels["route"]):
                status = int(sample.labels["status"])
                totals["requests"] += sample.value
                totals["errors"] += sample.value if status >= 500 else 0
                totals["client_errors"] += sample.value if 400 <= status < 500 else 0
    buckets = totals["buckets"]
    for family in metrics.latency.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels["route"] == PREDICTION_ROUTE:
                edge = float(sample.labels["le"])
                buckets[edge] = buckets.get(edge, 0.0) + sample.value
    return totals


def quantile(buckets: dict[float, float], share: float) -> tuple[float, float] | None:
    """The bucket a quantile of the latencies falls in, from cumulative counts by upper
    edge: (lower edge, upper edge) in seconds, the upper inf above the top bucket. The
    histogram knows no more than that: the upper edge is an upper bound. None without any
    request."""
    edges = sorted(buckets)
    total = buckets[edges[-1]] if edges else 0
    if total <= 0:
        return None
    lower = 0.0
    for edge in edges:
        if buckets[edge] >= share * total:
            return lower, edge
        lower = edge
    return lower, math.inf


class TrafficSamples:
    """Traffic over time, kept in memory (the last `maxlen` samples): every `interval`
    seconds, the requests of that interval (without /metrics, /health, /ready and the
    dashboard), the 5xx errors and 4xx client errors among them, and the 50th and 95th
    percentile latency of the predictions, as upper bounds from the histogram's bucket
    edges (`quantile`). The first sample comes one interval after the first reading."""

    def __init__(self, maxlen: int = 1440) -> None:
        self.samples: deque[dict] = deque(maxlen=maxlen)
        self.last: tuple[datetime, dict] | None = None

    def __iter__(self):
        return iter(list(self.samples))

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, metrics, now: datetime | None = None) -> dict | None:
        """Read the counters; the sample since the previous reading, None at the first."""
        now = now or datetime.now(timezone.utc)
        totals = _totals(metrics)
        previous, self.last = self.last, (now, totals)
        if previous is None:
            return None
        before, old = previous
        delta = {key: max(totals[key] - old[key], 0.0) for key in totals if key != "buckets"}
        buckets = {
            edge: max(count - old["buckets"].get(edge, 0.0), 0.0)
            for edge, count in totals["buckets"].items()
        }
        p50, p95 = quantile(buckets, 0.5), quantile(buckets, 0.95)
        sample = {
            "time": now,
            "seconds": max((now - before).total_seconds(), 1e-9),
            **{key: round(value) for key, value in delta.items()},
            "predictions": round(max(buckets.values(), default=0.0)),
            "p50": p50[1] if p50 else None,
            "p95": p95[1] if p95 else None,
            "p95_above": p95[0] if p95 else None,  # the bucket's lower edge: a lower bound
            "top_bucket": max((e for e in buckets if math.isfinite(e)), default=None),
        }
        self.samples.append(sample)
        return sample

    async def run(self, metrics, interval: float) -> None:
        """Sample every `interval` seconds until cancelled; a failed reading is logged."""
        self.sample(metrics)
        while True:
            await asyncio.sleep(interval)
            try:
                self.sample(metrics)
            except Exception:  # the dashboard must outlive a bad reading
                log.exception("traffic sample failed")


def _latency_points(samples: list[dict], key: str) -> list[float]:
    """Milliseconds; above the top bucket drawn at its edge (marked on the chart)."""
    points = []
    for sample in samples:
        value = sample[key]
        if value is not None and math.isinf(value):
            value = sample["top_bucket"]
        points.append(math.nan if value is None else value * 1000)
    return points


def traffic_chart(samples, budget: float | None = None) -> str | None:
    """Requests per minute (with 5xx and 4xx) and the predictions' p50 and p95 latency per
    sample, the latency budget dashed if given (seconds). None with fewer than 2 samples."""
    samples = list(samples)
    if len(samples) < 2:
        return None
    times = [sample["time"] for sample in samples]
    figure, (top, bottom) = _figure(rows=2, height=SIZE[1] * 1.7)
    for key, label, color in (
        ("requests", "requests", PALETTE[0]),
        ("client_errors", "4xx", PALETTE[1]),
        ("errors", "5xx", ALARM),
    ):
        per_minute = [sample[key] * 60 / sample["seconds"] for sample in samples]
        top.plot(times, per_minute, color=color, label=label, marker=".", markersize=3)
    title = "Traffic per minute and prediction latency (UTC)"
    top.set_title(title, fontsize=8.5)
    top.set_ylabel("requests / min", fontsize=8)
    top.set_ylim(bottom=0)
    bottom.plot(times, _latency_points(samples, "p50"), color=PALETTE[4], label="p50 ≤")
    bottom.plot(times, _latency_points(samples, "p95"), color=INK, label="p95 ≤", marker=".")
    above = [(s["time"], s["top_bucket"] * 1000) for s in samples if s["p95"] == math.inf]
    if above:
        xs, ys = zip(*above, strict=True)
        bottom.scatter(xs, ys, marker="^", color=ALARM, zorder=3, label="p95 above top bucket")
    if budget is not None:
        bottom.axhline(budget * 1000, color=ALARM, linestyle="--", label="budget")
    bottom.set_ylabel("ms (upper bound)", fontsize=8)
    bottom.set_xlabel("time (UTC); latency bounded by the histogram's bucket edges", fontsize=8)
    bottom.set_ylim(bottom=0)
    _dates(bottom, times)
    for ax in (top, bottom):
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _svg(figure, title)
