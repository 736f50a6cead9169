"""Stage 7: the operator dashboard, rendered on the server from what the service knows.

One page for the people who run the model: the alerts and what answers them, which version
serves, how it scored against the baseline, the latest drift report, trends as charts,
traffic, the registry history, the console's actions for operators, and the audit log.
"""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from . import alerts, bundle, console, registry, trends
from .config import MonitoringParams, load_params
from .problem_type import PROBLEM_TYPE

_templates = Environment(
    loader=PackageLoader(__package__, "templates"), autoescape=select_autoescape(["html"])
)
BADGES = {"drift": "drift", "no drift": "ok", "not enough data": "warn"}  # verdict: CSS class
OUTCOMES = {"accepted": "ok", "done": "ok", "no drift": "ok", "passed": "ok", "running": "warn"}
OUTCOMES |= {"not enough data": "warn", "inconclusive": "warn", "started": "warn"}
LABELS = {  # the console's actions (alerts.ACTIONS), as the page names them
    "upload": "upload new data",
    "drift-check": "check drift now",
    "retrain": "start a retrain",
    "promote": "promote a candidate",
    "rollback": "roll back",
}


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
    return {**report, "verdict": trends.verdict(report)}


def render(served, metrics, settings, caller: console.Caller, ops, samples) -> str:
    """The dashboard for `caller`: the console's forms only for a role that can act."""
    drift = latest_drift(settings.reports_dir)
    history = registry.history(settings.models_dir)
    budget = settings.latency_budget_ms / 1000
    return _templates.get_template("dashboard.html").render(
        problem_type=PROBLEM_TYPE.name,
        served=served.predictor,
        reason=served.reason,
        reload_error=served.reload_error,
        evaluation=served.evaluation,
        metric_rows=_metric_rows(served.evaluation),
        drift=drift,
        active_alerts=alerts.active(served, drift, history, samples, budget),
        charts=available_charts(settings, samples),
        traffic=traffic(metrics),
        history=list(reversed(history))[:20],
        alerts=alerts.ALERTS,
        badges=BADGES,
        actions=LABELS,
        caller=caller,
        audit=list(reversed(console.read_audit(settings.audit_log_path)))[:20],
        **(_console(ops, settings) if caller.can_act else {}),
    )


def _metric_rows(evaluation: dict | None) -> list[dict]:
    if not evaluation:
        return []
    return [
        {
            "name": name,
            "baseline": evaluation["baseline"][name],
            "candidate": evaluation["candidate"][name],
            # None for a description of unlabelled predictions, which is not a metric
            "greater_is_better": getattr(PROBLEM_TYPE.metrics.get(name), "greater_is_better", None),
        }
        for name in evaluation["candidate"]
    ]


def _console(ops, settings) -> dict:
    """The console's forms: each with its own one-time token."""
    rows = registry.versions(settings.models_dir)
    current = next((row for row in rows if row["current"]), None)
    passed = [row for row in rows if row["verdict"] == "passed" and not row["current"]]
    older = [r for r in passed if current is None or r["created_at"] < current["created_at"]]
    newer = [r for r in passed if r not in older]
    latest = ops.jobs.latest()
    return {
        "tokens": {
            "upload": ops.forms.token(),
            "drift": ops.forms.token(),
            "retrain": ops.forms.token(),
            "promote": [ops.forms.token() for _ in newer],
            "rollback": [ops.forms.token() for _ in older],
        },
        "unavailable": ops.unavailable(),
        "uploads": console.uploads(ops.root),
        "max_upload_mb": settings.max_upload_bytes / 1e6,
        "latest_job": latest,
        "job_running": registry.retrain_running(settings.models_dir),
        "promotable": newer,
        "rollback_targets": older,
    }


CHARTS = {
    "drift": "Drift per feature and of the predictions across monitor runs",
    "metric": "The primary test metric per model version",
    "traffic": "Requests and latency since the service started",
}


def available_charts(settings, samples) -> list[dict]:
    """The charts there are data for: an image that failed to load would be an error."""
    have = {
        "drift": bool(trends.drift_history(settings.reports_dir)),
        "metric": any(
            row["test_score"] is not None for row in registry.versions(settings.models_dir)
        ),
        "traffic": len(samples) >= 2,
    }
    return [{"name": name, "alt": alt} for name, alt in CHARTS.items() if have[name]]


def chart(name: str, settings, samples) -> str | None:
    """One chart as SVG, or None when there is nothing to draw."""
    if name == "drift":
        thresholds = _monitoring(settings)
        return trends.drift_chart(trends.drift_history(settings.reports_dir), **thresholds)
    if name == "metric":
        return trends.metric_chart(settings.models_dir)
    if name == "traffic":
        return trends.traffic_chart(samples, budget=settings.latency_budget_ms / 1000)
    return None


def _monitoring(settings) -> dict:
    """The PSI thresholds of params.yaml; the defaults where the project is not deployed."""
    path = settings.project_dir / "configs" / "params.yaml"
    params = load_params(path).monitoring if path.exists() else MonitoringParams()
    return {"warn": params.psi_warn, "alarm": params.psi_alarm}


def result(action: str, outcome: str, lines: list[str]) -> str:
    """The page an action answers with."""
    return _templates.get_template("result.html").render(
        action=action, result=outcome, lines=lines, badge=OUTCOMES.get(outcome, "bad")
    )


def job_page(job: dict, models_dir: Path, caller: console.Caller, token: str) -> str:
    """A retrain's progress; once it ended, the gate's verdict against the serving model."""
    return _templates.get_template("job.html").render(
        job=job,
        badge=OUTCOMES.get(job["status"], "bad"),
        gate=_gate(job, models_dir) if job["status"] not in {"running", "error", "lost"} else None,
        caller=caller,
        token=token,
    )


def _gate(job: dict, models_dir: Path) -> dict | None:
    """The candidate the job trained, its verdict and scores, and whether it can be promoted."""
    version = job.get("candidate")
    report = registry.evaluation(models_dir, version) if version else None
    if report is None:
        return None
    primary, champion = report["primary"], report.get("champion") or {}
    verdict = registry.verdict(report)
    current = bundle.read_pointer(models_dir, "current")
    return {
        "version": version,
        "verdict": verdict,
        "badge": OUTCOMES.get(verdict, "bad"),
        "reason": report["gate"]["reason"],
        "metric": primary["metric"],
        "candidate": primary["candidate"],
        "baseline": primary["baseline"],
        "champion": champion.get("score"),
        "champion_version": champion.get("version"),
        "promotable": verdict == "passed" and version != current,
    }


def runbook(docs_dir: Path) -> str:
    """docs/runbook.md as a page, its headings the targets of the alerts' links."""
    return _templates.get_template("runbook.html").render(body=alerts.runbook_html(docs_dir))
