"""Stage 7: the operator dashboard, rendered on the server from what the service knows.

One page for the people who run the model: which version serves, how it scored against
the baseline, the latest drift report, traffic, the registry history, and the runbook.
"""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markdown_it import MarkdownIt

from . import registry
from .problem_type import PROBLEM_TYPE

_templates = Environment(
    loader=PackageLoader(__package__, "templates"), autoescape=select_autoescape(["html"])
)
ALERTS = ("Drift alarm", "Evaluation gate failure", "Service not ready", "High latency")
BADGES = {"drift": "drift", "no drift": "ok", "not enough data": "warn"}  # verdict: CSS class


def _samples(metric) -> list:
    return [s for family in metric.collect() for s in family.samples if s.name.endswith("_total")]


def traffic(metrics) -> dict:
    """Request and prediction counts since the process started, from the Prometheus metrics."""
    requests = [
        {"route": s.labels["route"], "status": s.labels["status"], "count": int(s.value)}
        for s in _samples(metrics.requests)
    ]
    predictions = [
        {"value": s.labels["value"], "count": int(s.value)} for s in _samples(metrics.predictions)
    ]
    return {
        "requests": sorted(requests, key=lambda r: (r["route"], r["status"])),
        "predictions": sorted(predictions, key=lambda p: p["value"]),
    }


def latest_drift(reports_dir: Path) -> dict | None:
    """The latest drift report, with its verdict: drift, no drift or not enough data."""
    path = reports_dir / "monitoring" / "latest.json"
    if not path.exists():
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    if "verdict" not in report:  # written before the monitor had three verdicts
        enough = report.get("enough_rows", True)
        report["verdict"] = (
            "drift" if report["drift"] else "no drift" if enough else "not enough data"
        )
    return report


def render(state, metrics, models_dir: Path, reports_dir: Path) -> str:
    served = state.predictor
    evaluation = state.evaluation
    metric_rows = []
    if evaluation:
        metric_rows = [
            {
                "name": name,
                "baseline": evaluation["baseline"][name],
                "candidate": evaluation["candidate"][name],
                # None for a description of unlabelled predictions, which is not a metric
                "greater_is_better": getattr(
                    PROBLEM_TYPE.metrics.get(name), "greater_is_better", None
                ),
            }
            for name in evaluation["candidate"]
        ]
    return _templates.get_template("dashboard.html").render(
        problem_type=PROBLEM_TYPE.name,
        served=served,
        reason=state.reason,
        reload_error=state.reload_error,
        evaluation=evaluation,
        metric_rows=metric_rows,
        drift=latest_drift(reports_dir),
        traffic=traffic(metrics),
        history=list(reversed(registry.history(models_dir)))[:20],
        alerts=ALERTS,
        badges=BADGES,
    )


def runbook(docs_dir: Path) -> str:
    """docs/runbook.md as a page. Raw HTML in the Markdown is shown as text, not run, and
    markdown-it renders no javascript: or vbscript: links."""
    path = docs_dir / "runbook.md"
    body = (
        MarkdownIt("commonmark", {"html": False}).render(path.read_text(encoding="utf-8"))
        if path.exists()
        else f"<p>{path} is not deployed with this service.</p>"
    )
    return _templates.get_template("runbook.html").render(body=body)
